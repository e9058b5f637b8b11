"""A fake AgentKit: a real HTTP server implementing AgentKit's side of the contract.

    async with FakeAgentKit(webhook_url=f"{opscore}/v1/opscore/internal/agent/notify",
                            webhook_secret="s3cret") as agentkit:
        agent_id = await agentkit.register(name="a1", contact_endpoint=agent.url)
        ...  # Ops-Core dispatches to agentkit.url

Routes, as the contract (sections 1 and 2) describes the deployed AgentKit:

- ``POST /v1/agents/register`` ``{"agentName", "contactEndpoint", "capabilities"?,
  "version"?, "metadata"?}`` -> 201 with a new UUID ``agentId``. With a webhook URL and
  secret it then sends the signed ``REGISTER`` webhook in the background (compact JSON,
  ``X-AgentKit-Timestamp``, ``X-AgentKit-Signature`` = hex HMAC-SHA256(secret,
  ``ts + "." + body``)), once, no retry; and, like the real one, sends NO webhook when
  the agent registered with non-empty metadata.
- ``POST /v1/agents/{agentId}/run`` with a ``MessagePayload`` -> 202 "scheduled"; 404
  ``{"detail":"Agent with ID '...' not found."}``; 422 on a malformed body. It then
  forwards the payload, with unknown fields dropped, to the agent's ``contactEndpoint`` in
  the background; with ``forward_defect=True`` it never does (the real AgentKit bug).

Everything received and sent is recorded (``runs``, ``forwards``, ``webhooks``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .servers import serve_app

__all__ = ["FakeAgentKit", "Forward", "Run", "Webhook", "sign_webhook"]

# MessagePayload fields AgentKit keeps; everything else is dropped when it forwards.
KNOWN_FIELDS = (
    "senderId",
    "messageType",
    "payload",
    "sessionContext",
    "timestamp",
    "task_name",
    "opscore_session_id",
    "opscore_task_id",
)
SESSION_CONTEXT_FIELDS = ("sessionId", "priorMessages")
WEBHOOK_TIMEOUT_S = 10.0


def sign_webhook(secret: str, timestamp: str, body: bytes) -> str:
    """AgentKit's webhook signature: hex HMAC-SHA256(secret, timestamp + "." + body)."""
    message = timestamp.encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Run:
    """A valid run request AgentKit accepted (202)."""

    agent_id: str
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Forward:
    """A forward to an agent: ``status_code`` 0 when the agent could not be reached."""

    agent_id: str
    body: dict[str, Any]
    status_code: int
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Webhook:
    """A webhook sent to Ops-Core: ``status_code`` 0 when Ops-Core could not be reached."""

    body: bytes
    headers: dict[str, str]
    status_code: int
    error: str | None = None


class FakeAgentKit:
    """AgentKit's API on a real port; use as ``async with FakeAgentKit(...) as agentkit``.

    Args:
        webhook_url: Ops-Core's notify URL (AgentKit's ``OPSCORE_WEBHOOK_URL``).
        webhook_secret: the shared secret (``OPSCORE_WEBHOOK_SECRET``). Webhooks are sent
            only when both are set, as in AgentKit.
        forward_defect: never forward run requests to agents (AgentKit's known bug).
    """

    def __init__(
        self,
        *,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        forward_defect: bool = False,
    ) -> None:
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.forward_defect = forward_defect
        self.url = ""
        self.agents: dict[str, dict[str, Any]] = {}  # agentId -> agent_details
        self.runs: list[Run] = []
        self.rejected: list[tuple[str, int]] = []  # (agentId, status) of refused runs
        self.forwards: list[Forward] = []
        self.webhooks: list[Webhook] = []
        self._background: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Condition()
        self._client: httpx.AsyncClient | None = None
        self._stack: contextlib.AsyncExitStack | None = None

    async def __aenter__(self) -> FakeAgentKit:
        app = Starlette(
            routes=[
                Route("/v1/agents/register", self._on_register, methods=["POST"]),
                Route("/v1/agents/{agent_id}/run", self._on_run, methods=["POST"]),
            ]
        )
        async with contextlib.AsyncExitStack() as stack:
            self._client = await stack.enter_async_context(httpx.AsyncClient())
            self.url = await stack.enter_async_context(
                serve_app(app, lifespan="off", graceful_shutdown_s=2)
            )
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        while self._background:
            pending = list(self._background)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._stack is not None:
            stack, self._stack = self._stack, None
            await stack.aclose()

    # -- helpers for tests ------------------------------------------------------------
    async def register(
        self,
        *,
        name: str,
        contact_endpoint: str,
        capabilities: list[str] | None = None,
        version: str = "1",
        metadata: dict[str, Any] | None = None,
    ) -> str:
        """Register an agent over HTTP, as an AgentKit SDK agent would; return its id."""
        body: dict[str, Any] = {
            "agentName": name,
            "version": version,
            "capabilities": capabilities or [],
            "contactEndpoint": contact_endpoint,
        }
        if metadata is not None:
            body["metadata"] = metadata
        response = await self._http.post(f"{self.url}/v1/agents/register", json=body)
        response.raise_for_status()
        agent_id: str = response.json()["data"]["agentId"]
        return agent_id

    async def notify(self, event_type: str, agent_id: str) -> Webhook:
        """Send a signed webhook for a registered agent now (e.g. ``DEREGISTER``)."""
        return await self._send_webhook(event_type, self.agents[agent_id])

    async def wait_for(self, what: str, count: int, timeout_s: float = 30.0) -> None:
        """Wait until ``len(self.<what>) >= count`` (``runs``, ``forwards``, ``webhooks``)."""

        def reached() -> bool:
            return len(getattr(self, what)) >= count

        try:
            async with asyncio.timeout(timeout_s), self._changed:
                await self._changed.wait_for(reached)
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {count} {what} at AgentKit") from None

    # -- routes -----------------------------------------------------------------------
    async def _on_register(self, request: Request) -> JSONResponse:
        body = await _json_object(request)
        problems = _registration_problems(body)
        if body is None or problems:
            return _unprocessable(problems or ["body must be a JSON object"])
        agent_id = str(uuid.uuid4())
        details = {
            "agentId": agent_id,
            "agentName": body["agentName"],
            "version": str(body.get("version") or "1"),
            "capabilities": list(body.get("capabilities") or []),
            "contactEndpoint": body["contactEndpoint"],
            "metadata": body.get("metadata") or {},
        }
        self.agents[agent_id] = details
        if self.webhook_url and self.webhook_secret and not details["metadata"]:
            # With metadata the real AgentKit fails to serialise and sends nothing.
            self._spawn(self._send_webhook("REGISTER", details))
        return JSONResponse(
            {
                "status": "success",
                "message": "Agent registered successfully.",
                "data": {"agentId": agent_id},
                "error_code": None,
            },
            status_code=201,
        )

    async def _on_run(self, request: Request) -> JSONResponse:
        agent_id = request.path_params["agent_id"]
        body = await _json_object(request)
        problems = _message_problems(body)
        if body is None or problems:
            self.rejected.append((agent_id, 422))
            return _unprocessable(problems or ["body must be a JSON object"])
        agent = self.agents.get(agent_id)
        if agent is None:
            self.rejected.append((agent_id, 404))
            return JSONResponse({"detail": f"Agent with ID '{agent_id}' not found."}, 404)
        self.runs.append(Run(agent_id, body))
        await self._notify()
        if not self.forward_defect:
            self._spawn(self._forward(agent_id, agent["contactEndpoint"], _kept(body)))
        return JSONResponse(
            {
                "status": "success",
                "message": f"Message for agent {agent_id} scheduled for dispatch.",
                "data": {"agentId": agent_id, "dispatch_status": "scheduled"},
                "error_code": None,
            },
            status_code=202,
        )

    # -- background work --------------------------------------------------------------
    async def _forward(self, agent_id: str, endpoint: str, body: dict[str, Any]) -> None:
        try:
            response = await self._http.post(endpoint, json=body, timeout=30.0)
        except httpx.HTTPError as exc:
            self.forwards.append(Forward(agent_id, body, 0, f"{type(exc).__name__}: {exc}"))
        else:
            self.forwards.append(Forward(agent_id, body, response.status_code))
        await self._notify()

    async def _send_webhook(self, event_type: str, details: dict[str, Any]) -> Webhook:
        if not (self.webhook_url and self.webhook_secret):
            raise RuntimeError("FakeAgentKit needs webhook_url and webhook_secret to notify")
        body = json.dumps(
            {"event_type": event_type, "agent_details": details}, separators=(",", ":")
        ).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-AgentKit-Timestamp": timestamp,
            "X-AgentKit-Signature": sign_webhook(self.webhook_secret, timestamp, body),
        }
        try:
            response = await self._http.post(
                self.webhook_url, content=body, headers=headers, timeout=WEBHOOK_TIMEOUT_S
            )
        except httpx.HTTPError as exc:
            webhook = Webhook(body, headers, 0, f"{type(exc).__name__}: {exc}")
        else:
            webhook = Webhook(body, headers, response.status_code)
        self.webhooks.append(webhook)
        await self._notify()
        return webhook

    def _spawn(self, work: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    @property
    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            raise RuntimeError("use inside 'async with FakeAgentKit(...)'")
        return self._client


async def _json_object(request: Request) -> dict[str, Any] | None:
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _unprocessable(problems: list[str]) -> JSONResponse:
    detail = [{"type": "value_error", "msg": problem} for problem in problems]
    return JSONResponse({"detail": detail}, status_code=422)


def _registration_problems(body: dict[str, Any] | None) -> list[str]:
    if body is None:
        return []
    problems = [
        f"{name} is required and must be a non-empty string"
        for name in ("agentName", "contactEndpoint")
        if not isinstance(body.get(name), str) or not body[name]
    ]
    if not isinstance(body.get("capabilities", []), list):
        problems.append("capabilities must be a list")
    if not isinstance(body.get("metadata", {}), dict | None):
        problems.append("metadata must be an object")
    return problems


def _message_problems(body: dict[str, Any] | None) -> list[str]:
    if body is None:
        return []
    problems = [
        f"{name} is required and must be a string"
        for name in ("senderId", "messageType")
        if not isinstance(body.get(name), str)
    ]
    if not isinstance(body.get("payload"), dict):
        problems.append("payload is required and must be an object")
    if not isinstance(body.get("sessionContext", {}), dict | None):
        problems.append("sessionContext must be an object")
    for name in ("task_name", "opscore_session_id", "opscore_task_id", "timestamp"):
        if not isinstance(body.get(name, ""), str | None):
            problems.append(f"{name} must be a string")
    return problems


def _kept(body: dict[str, Any]) -> dict[str, Any]:
    """The body as AgentKit forwards it: known fields only (others dropped)."""
    kept = {name: body.get(name) for name in KNOWN_FIELDS}
    context = body.get("sessionContext")
    if isinstance(context, dict):
        kept["sessionContext"] = {k: context[k] for k in SESSION_CONTEXT_FIELDS if k in context}
    return kept
