"""A small real HTTP agent that speaks the contract, for end-to-end tests and benchmarks.

    async with ContractAgent(behaviour="fail_first", fail_times=2) as agent:
        await agent.register(opscore_url, api_key)          # POST /v1/opscore/agents
        ...
        bodies = await agent.wait_for_tasks(3)

The agent serves ``POST /task`` (its ``contactEndpoint``, ``agent.url``) and takes the
contract's ``MessagePayload``. Like an agent using the AgentKit SDK it then reports its
state to Ops-Core over real HTTP (contract section 3)::

    POST {opscore_url}/v1/opscore/agent/{agentId}/state   Authorization: Bearer <key>
    {"agentId": ..., "timestamp": "...+00:00", "state": "active", "details": {...}}

Reports, per received task (``behaviour``):

- ``succeed``: answer 200 ``{"status":"accepted"}``, report ``active``, wait ``work_s``,
  report ``idle`` with the result as details.
- ``fail_first``: fail the first ``fail_times`` attempts of each task, then succeed. A
  failure reports ``active``, ``error`` with ``{"error_code":"PROCESSING_ERROR",
  "message":...}``, then after ``error_pause_s`` ``idle`` with empty details (the agent is
  free again and can take the retry).
- ``always_fail``: every attempt fails as above.
- ``silent``: answer 200 and never report (the attempt must time out).
- ``refuse``: answer HTTP 500 and never report.
- ``inline``: work ``work_s`` inside the request, answer 200
  ``{"status":"completed","result":<result>}``, then report ``active`` and ``idle`` (as
  AgentKit's example agent does).
- ``unreachable``: no server at all; ``agent.url`` is a port nobody listens on.

Idle details (the task's result as Ops-Core records it) are the result object, by default
``{"echo": <payload>, "taskName": <task_name>, "handledBy": <agentId>}``, plus, when
``correlate`` is true (default), the correlation fields ``opscore_task_id`` and
``opscore_attempt`` copied from the task body (Ops-Core strips them from the result).
``active`` and ``error`` reports carry the same correlation fields. With
``correlate=False`` reports carry no task id, like an agent that ignores them, so Ops-Core
must match reports to the task in flight. Pass ``result=`` to compute a different result
from the task body.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .servers import serve_app, unused_url

__all__ = ["Behaviour", "ContractAgent", "Report", "contract_timestamp", "running_agents"]

Behaviour = Literal[
    "succeed", "fail_first", "always_fail", "silent", "refuse", "inline", "unreachable"
]
CORRELATION_FIELDS = ("opscore_task_id", "opscore_attempt")
TASK_PATH = "/task"
_names = itertools.count(1)


def contract_timestamp() -> str:
    """Now, as the AgentKit SDK writes it: ISO-8601, milliseconds, ``+00:00``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True, slots=True)
class Report:
    """One state report the agent sent. ``status_code`` 0: Ops-Core was unreachable."""

    state: str
    details: dict[str, Any]
    status_code: int
    at: float = 0.0  # event-loop time when the answer came back
    error: str | None = None


@dataclass(slots=True)
class _Waiters:
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def wait(self, check: Callable[[], bool], timeout_s: float, what: str) -> None:
        try:
            async with asyncio.timeout(timeout_s), self.changed:
                await self.changed.wait_for(check)
        except TimeoutError:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}") from None


class ContractAgent:
    """A contract-speaking HTTP agent; use as ``async with ContractAgent(...) as agent``.

    Args:
        agent_id: default ``agent-<n>-<random>``. name: default the agent id.
        capabilities: advertised on :meth:`register`.
        behaviour: see the module docstring. fail_times: for ``fail_first``.
        work_s: seconds of "work" per task (the only sleep besides ``error_pause_s``).
        error_pause_s: pause between an ``error`` report and the ``idle`` after it.
        correlate: put ``opscore_task_id``/``opscore_attempt`` in report details.
        result: computes the result from the task body (default: echo, see module doc).
        opscore_url, api_key: where to report; :meth:`register` sets them too.
    """

    def __init__(
        self,
        *,
        agent_id: str | None = None,
        name: str | None = None,
        capabilities: tuple[str, ...] | list[str] = ("test_capability",),
        behaviour: Behaviour = "succeed",
        fail_times: int = 1,
        work_s: float = 0.0,
        error_pause_s: float = 0.05,
        correlate: bool = True,
        result: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        opscore_url: str | None = None,
        api_key: str | None = None,
    ) -> None:
        self.agent_id = agent_id or f"agent-{next(_names)}-{uuid.uuid4().hex[:6]}"
        self.name = name or self.agent_id
        self.capabilities = list(capabilities)
        self.behaviour = behaviour
        self.fail_times = fail_times
        self.work_s = work_s
        self.error_pause_s = error_pause_s
        self.correlate = correlate
        self._result = result or self._echo
        self.opscore_url = opscore_url.rstrip("/") if opscore_url else None
        self.api_key = api_key
        self.received: list[dict[str, Any]] = []
        self.received_at: list[float] = []  # event-loop time of each receipt
        self.reports: list[Report] = []
        self.base_url = ""
        self.url = ""  # the contactEndpoint
        self._attempts: dict[str, int] = {}
        self._work: set[asyncio.Task[None]] = set()
        self._waiters = _Waiters()
        self._client: httpx.AsyncClient | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._closing = False

    # -- life cycle -------------------------------------------------------------------
    async def __aenter__(self) -> ContractAgent:
        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        try:
            # Plain HTTP to local servers: skipping CA loading saves ~40 ms per agent.
            client = httpx.AsyncClient(timeout=30.0, verify=False)
            self._client = await stack.enter_async_context(client)
            if self.behaviour == "unreachable":
                self.url = unused_url(path=TASK_PATH)
                self.base_url = self.url.removesuffix(TASK_PATH)
            else:
                app = Starlette(routes=[Route(TASK_PATH, self._on_task, methods=["POST"])])
                self.base_url = await stack.enter_async_context(
                    serve_app(app, lifespan="off", graceful_shutdown_s=2)
                )
                self.url = self.base_url + TASK_PATH
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._closing = True
        await self._cancel_work()
        if self._stack is not None:
            stack, self._stack = self._stack, None
            await stack.aclose()
        await self._cancel_work()

    async def _cancel_work(self) -> None:
        while self._work:
            work = list(self._work)
            for task in work:
                task.cancel()
            await asyncio.gather(*work, return_exceptions=True)

    # -- talking to Ops-Core ----------------------------------------------------------
    async def register(
        self,
        opscore_url: str,
        api_key: str,
        *,
        transport: Literal["agentkit", "direct"] | None = "direct",
    ) -> dict[str, Any]:
        """Register through ``POST /v1/opscore/agents`` and remember where to report.

        Raises httpx.HTTPStatusError on a non-2xx answer; returns the answer's JSON."""
        self.opscore_url = opscore_url.rstrip("/")
        self.api_key = api_key
        body: dict[str, Any] = {
            "agentId": self.agent_id,
            "name": self.name,
            "capabilities": self.capabilities,
            "contactEndpoint": self.url,
        }
        if transport is not None:
            body["transport"] = transport
        response = await self._http.post(
            f"{self.opscore_url}/v1/opscore/agents", json=body, headers=self._auth
        )
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    async def register_with_agentkit(
        self, agentkit_url: str, *, metadata: dict[str, Any] | None = None
    ) -> str:
        """Register with AgentKit (``POST /v1/agents/register``), as an AgentKit SDK agent
        does, and adopt the ``agentId`` AgentKit assigns; return it. AgentKit then tells
        Ops-Core through its webhook (not when ``metadata`` is non-empty: AgentKit's bug).
        Set ``opscore_url``/``api_key`` in the constructor so the agent can report."""
        body: dict[str, Any] = {
            "agentName": self.name,
            "version": "1",
            "capabilities": self.capabilities,
            "contactEndpoint": self.url,
        }
        if metadata is not None:
            body["metadata"] = metadata
        response = await self._http.post(
            f"{agentkit_url.rstrip('/')}/v1/agents/register", json=body
        )
        response.raise_for_status()
        self.agent_id = str(response.json()["data"]["agentId"])
        return self.agent_id

    async def report(self, state: str, details: dict[str, Any] | None = None) -> Report:
        """Send one state report exactly as the AgentKit SDK does; record and return it.

        Never raises: an unreachable Ops-Core gives a Report with ``status_code`` 0."""
        details = details or {}
        loop = asyncio.get_running_loop()
        if self.opscore_url is None:
            report = Report(state, details, 0, loop.time(), "no opscore_url configured")
        else:
            body = {
                "agentId": self.agent_id,
                "timestamp": contract_timestamp(),
                "state": state,
                "details": details,
            }
            url = f"{self.opscore_url}/v1/opscore/agent/{self.agent_id}/state"
            try:
                response = await self._http.post(url, json=body, headers=self._auth)
            except httpx.HTTPError as exc:
                report = Report(state, details, 0, loop.time(), f"{type(exc).__name__}: {exc}")
            else:
                report = Report(state, details, response.status_code, loop.time())
        self.reports.append(report)
        await self._waiters.notify()
        return report

    # -- waiting ----------------------------------------------------------------------
    async def wait_for_tasks(self, count: int, timeout_s: float = 30.0) -> list[dict[str, Any]]:
        """Wait until ``count`` task bodies have arrived; return all received so far."""
        await self._waiters.wait(
            lambda: len(self.received) >= count, timeout_s, f"{count} task(s) at {self.agent_id}"
        )
        return list(self.received)

    async def wait_for_reports(
        self, count: int, state: str | None = None, timeout_s: float = 30.0
    ) -> list[Report]:
        """Wait until ``count`` reports (of ``state``, if given) were sent and answered."""

        def matching() -> list[Report]:
            return [r for r in self.reports if state is None or r.state == state]

        await self._waiters.wait(
            lambda: len(matching()) >= count,
            timeout_s,
            f"{count} {state or 'any'} report(s) from {self.agent_id}",
        )
        return matching()

    def attempts_seen(self, task_id: str) -> int:
        """How many times a task (by ``opscore_task_id``) reached this agent."""
        return self._attempts.get(task_id, 0)

    # -- serving tasks ----------------------------------------------------------------
    async def _on_task(self, request: Request) -> JSONResponse:
        if self._closing:
            return JSONResponse({"detail": "agent shutting down"}, status_code=503)
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"detail": "body is not JSON"}, status_code=422)
        if not isinstance(body, dict) or not isinstance(body.get("payload"), dict):
            return JSONResponse({"detail": "expected a MessagePayload object"}, status_code=422)
        key = str(body.get("opscore_task_id") or body.get("task_name") or "")
        attempt = self._attempts[key] = self._attempts.get(key, 0) + 1
        self.received.append(body)
        self.received_at.append(asyncio.get_running_loop().time())
        await self._waiters.notify()

        if self.behaviour == "refuse":
            return JSONResponse({"detail": f"agent {self.agent_id} refuses tasks"}, 500)
        if self.behaviour == "inline":
            return await self._work_inline(body)
        if self.behaviour != "silent":
            self._spawn(self._work_and_report(body, failing=self._fails(attempt)))
        return JSONResponse({"status": "accepted", "agentId": self.agent_id})

    async def _work_inline(self, body: dict[str, Any]) -> JSONResponse:
        # Run the work as a tracked task so closing the agent ends it promptly.
        work = self._spawn(asyncio.sleep(self.work_s))
        try:
            await work
        except asyncio.CancelledError:
            if self._closing:
                return JSONResponse({"detail": "agent shutting down"}, status_code=503)
            raise
        result = self._result(body)
        self._spawn(self._report_inline_done(body, result))
        return JSONResponse({"status": "completed", "result": result})

    async def _report_inline_done(self, body: dict[str, Any], result: dict[str, Any]) -> None:
        await self.report("active", self._correlation(body))
        await self.report("idle", {**result, **self._correlation(body)})

    async def _work_and_report(self, body: dict[str, Any], *, failing: bool) -> None:
        correlation = self._correlation(body)
        await self.report("active", correlation)
        if self.work_s > 0:
            await asyncio.sleep(self.work_s)
        if not failing:
            await self.report("idle", {**self._result(body), **correlation})
            return
        message = f"agent {self.agent_id} failed task {body.get('task_name')!r} on purpose"
        error = {"error_code": "PROCESSING_ERROR", "message": message}
        await self.report("error", {**error, **correlation})
        await asyncio.sleep(self.error_pause_s)
        # Ready again, unless a new task arrived meanwhile: a real agent does not say
        # "idle" while it works on the next one.
        if self.received[-1] is body:
            await self.report("idle", {})

    def _fails(self, attempt: int) -> bool:
        if self.behaviour == "always_fail":
            return True
        return self.behaviour == "fail_first" and attempt <= self.fail_times

    def _correlation(self, body: dict[str, Any]) -> dict[str, Any]:
        if not self.correlate:
            return {}
        return {name: body[name] for name in CORRELATION_FIELDS if name in body}

    def _echo(self, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "echo": body.get("payload"),
            "taskName": body.get("task_name"),
            "handledBy": self.agent_id,
        }

    def _spawn(self, work: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.create_task(work)
        self._work.add(task)
        task.add_done_callback(self._work.discard)
        return task

    @property
    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            raise RuntimeError("use the agent inside 'async with ContractAgent(...)'")
        return self._client

    @property
    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


@contextlib.asynccontextmanager
async def running_agents(*agents: ContractAgent) -> AsyncIterator[list[ContractAgent]]:
    """Start several agents; stop them all, concurrently, on exit."""
    started: list[ContractAgent] = []
    try:
        for agent in agents:
            started.append(await agent.__aenter__())
        yield started
    finally:
        await asyncio.gather(*(agent.__aexit__(None, None, None) for agent in started))
