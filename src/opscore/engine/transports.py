"""Task delivery to agents: a swappable transport, as httpx swaps its own.

Two transports send the same body, AgentKit's ``MessagePayload`` (contract section 2):

- :class:`AgentKitTransport` posts it to ``{OPSCORE_AGENTKIT_URL}/v1/agents/{agentId}/run``;
  AgentKit answers ``202`` ("scheduled") at once and forwards the body to the agent later.
- :class:`DirectTransport` posts it straight to the agent's ``contactEndpoint``. An agent
  may do the work inside that request and answer only when done, so a slow answer is a
  delivered task, never a failed one (see :meth:`DirectTransport.deliver`).

A transport raises :class:`~opscore.errors.DispatchError` when the task was definitely not
delivered; the message names the agent and the cause and never carries credentials.
:class:`TransportSet` owns the one pooled ``httpx.AsyncClient`` both transports share.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import structlog

from opscore import __version__
from opscore.errors import DispatchError
from opscore.models import TransportKind, utcnow

__all__ = [
    "SENDER_ID",
    "AgentKitTransport",
    "DirectTransport",
    "LateFailure",
    "TaskDelivery",
    "Transport",
    "TransportSet",
    "build_message",
    "choose_transport_kind",
]

log = structlog.get_logger("opscore.transports")

SENDER_ID = "opscore"
MESSAGE_TYPE = "workflow_task"
EXCERPT_CHARS = 200


@dataclass(frozen=True, slots=True)
class TaskDelivery:
    """Everything needed to deliver one attempt of one task to one agent.

    ``task_id`` is the runtime task id (globally unique, sent as ``opscore_task_id``);
    ``task_name`` is the definition's ``taskId`` (sent as ``task_name``); ``attempt`` is
    1-based (sent as ``opscore_attempt``). Timeouts are in seconds.
    """

    agent_id: str
    contact_endpoint: str | None
    session_id: str
    task_id: str
    task_name: str
    attempt: int
    parameters: dict[str, Any]
    dispatch_timeout_s: float
    completion_timeout_s: float


LateFailure = Callable[[DispatchError], Awaitable[None]]
"""Called when a direct delivery that already counted as delivered ends in failure."""


class Transport(Protocol):
    """Delivers one attempt. Raises DispatchError on definite non-delivery."""

    name: str

    async def deliver(self, delivery: TaskDelivery, on_late_failure: LateFailure) -> None: ...


def build_message(delivery: TaskDelivery, *, now: datetime | None = None) -> dict[str, Any]:
    """The JSON body sent to AgentKit or to the agent: AgentKit's ``MessagePayload``.

    Fields and names follow contract section 2 exactly. ``opscore_attempt`` is our
    addition so agents can de-duplicate on (``opscore_task_id``, ``opscore_attempt``);
    AgentKit drops unknown fields when it forwards, so agents reached through AgentKit
    see it only on direct dispatch and must not rely on it.
    """
    stamp = now if now is not None else utcnow()
    return {
        "senderId": SENDER_ID,
        "messageType": MESSAGE_TYPE,
        "payload": delivery.parameters,
        "sessionContext": {"sessionId": delivery.session_id},
        "timestamp": stamp.isoformat(),
        "task_name": delivery.task_name,
        "opscore_session_id": delivery.session_id,
        "opscore_task_id": delivery.task_id,
        "opscore_attempt": delivery.attempt,
    }


def choose_transport_kind(
    agent_transport: TransportKind | None, agent_source: str, agentkit_url: str | None
) -> TransportKind:
    """Which transport an agent gets: its explicit ``transport`` if set; else ``agentkit``
    when it came through AgentKit's webhook and an AgentKit URL is configured; else
    ``direct``."""
    if agent_transport is not None:
        return agent_transport
    if agent_source == "webhook" and agentkit_url:
        return "agentkit"
    return "direct"


def safe_url(url: str) -> str:
    """``url`` without user info, query or fragment: safe to log and put in messages."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<invalid URL>"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _excerpt(response: httpx.Response) -> str:
    try:
        text = " ".join(response.text.split())
    except (UnicodeDecodeError, LookupError):
        return "<undecodable body>"
    if not text:
        return "<empty body>"
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + "..."


def _cause(exc: Exception) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _connect_cause(exc: Exception) -> str:
    """The most telling reason a connection failed, from the chain httpx keeps."""
    seen: BaseException | None = exc
    for _ in range(10):  # the chain is short; bound it anyway
        if seen is None:
            break
        if isinstance(seen, ConnectionRefusedError):
            return "connection refused: nothing listens there"
        if isinstance(seen, socket.gaierror):
            return f"host name not resolved: {seen.strerror or seen}"
        seen = seen.__cause__ or seen.__context__
    return _cause(exc)


def _transport_failure(exc: Exception, *, whom: str, url: str, timeout_s: float) -> str:
    """A sentence for an httpx error: what failed, towards whom, and why."""
    where = f"{whom} at {safe_url(url)}"
    if isinstance(exc, httpx.ConnectTimeout):
        return f"timed out after {timeout_s:g}s connecting to {where}"
    if isinstance(exc, httpx.WriteTimeout):
        return f"timed out after {timeout_s:g}s sending the task to {where}"
    if isinstance(exc, httpx.PoolTimeout):
        return f"no free connection to {where} within {timeout_s:g}s (too many deliveries)"
    if isinstance(exc, httpx.ReadTimeout):
        return f"{where} did not answer within {timeout_s:g}s"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect to {where} ({_connect_cause(exc)})"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"{where} closed the connection without a valid answer ({_cause(exc)})"
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return f"{where} has an unusable URL ({_cause(exc)})"
    return f"cannot deliver the task to {where} ({_cause(exc)})"


def _timeouts(delivery: TaskDelivery, *, read_s: float) -> httpx.Timeout:
    sending = delivery.dispatch_timeout_s
    return httpx.Timeout(connect=sending, write=sending, pool=sending, read=read_s)


class AgentKitTransport:
    """Asks AgentKit to run the task: ``POST {agentkit_url}/v1/agents/{agentId}/run``.

    AgentKit answers at once (``202`` = scheduled), so everything, including the
    answer, must arrive within the task's ``dispatch_timeout_s``.
    """

    name = "agentkit"

    def __init__(self, client: httpx.AsyncClient, *, agentkit_url: str | None) -> None:
        self._client = client
        self._base = agentkit_url.rstrip("/") if agentkit_url else None

    async def deliver(self, delivery: TaskDelivery, on_late_failure: LateFailure) -> None:
        """Deliver through AgentKit; ``on_late_failure`` is never called (no late phase).

        Raises DispatchError when AgentKit is not configured, unreachable, slow, or
        answers anything but 2xx."""
        agent = delivery.agent_id
        if self._base is None:
            raise DispatchError(
                f"agent {agent!r} uses the agentkit transport but OPSCORE_AGENTKIT_URL is "
                "not set; set it or give the agent transport 'direct'"
            )
        url = f"{self._base}/v1/agents/{quote(agent, safe='')}/run"
        try:
            response = await self._client.post(
                url,
                json=build_message(delivery),
                timeout=_timeouts(delivery, read_s=delivery.dispatch_timeout_s),
            )
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            reason = _transport_failure(
                exc, whom="AgentKit", url=url, timeout_s=delivery.dispatch_timeout_s
            )
            raise DispatchError(f"task not delivered to agent {agent!r}: {reason}") from exc
        if response.is_success:
            return
        status = response.status_code
        if status == 404:
            raise DispatchError(
                f"AgentKit does not know agent {agent!r} (HTTP 404: {_excerpt(response)}); "
                "the agent must register with AgentKit, or use transport 'direct'"
            )
        if status == 422:
            raise DispatchError(
                f"AgentKit rejected the task body for agent {agent!r} "
                f"(HTTP 422: {_excerpt(response)})"
            )
        raise DispatchError(
            f"AgentKit answered HTTP {status} when asked to run a task on agent {agent!r}: "
            f"{_excerpt(response)}"
        )


@dataclass(frozen=True, slots=True)
class _Outcome:
    """How a direct request ended. ``error`` None means delivered."""

    error: DispatchError | None = None


class DirectTransport:
    """Posts the task straight to the agent's ``contactEndpoint``.

    A request that has not finished after ``dispatch_timeout_s`` counts as delivered (the
    agent may be working inside it); it goes on in the background for up to
    ``completion_timeout_s`` and reports a later failure through ``on_late_failure``.
    Call :meth:`aclose` to cancel those background requests.
    """

    name = "direct"

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client
        self._background: set[asyncio.Task[None]] = set()

    @property
    def pending(self) -> int:
        """Requests that counted as delivered and are still waiting for an answer."""
        return len(self._background)

    async def deliver(self, delivery: TaskDelivery, on_late_failure: LateFailure) -> None:
        """Send the task; return once it finished with 2xx or ``dispatch_timeout_s`` passed.

        Raises DispatchError when the agent has no contactEndpoint, cannot be reached, or
        answers non-2xx within ``dispatch_timeout_s``. If the answer comes later and is a
        failure (non-2xx, dropped connection, or a send-side timeout), ``on_late_failure``
        is awaited with the error; a read timeout after ``completion_timeout_s`` is not
        reported (the engine's own completion timeout covers it).
        """
        agent = delivery.agent_id
        endpoint = delivery.contact_endpoint
        if not endpoint:
            raise DispatchError(
                f"agent {agent!r} has no contactEndpoint and its transport is 'direct', so it "
                "cannot receive tasks; register it with a contactEndpoint or use AgentKit"
            )
        request = asyncio.create_task(self._send(delivery, endpoint))
        try:
            done, _ = await asyncio.wait({request}, timeout=delivery.dispatch_timeout_s)
        except asyncio.CancelledError:
            request.cancel()
            raise
        if request in done:
            outcome = request.result()
            if outcome.error is not None:
                raise outcome.error
            return
        log.info(
            "task_delivery_pending",
            agentId=agent,
            taskId=delivery.task_id,
            attempt=delivery.attempt,
            waitedS=delivery.dispatch_timeout_s,
        )
        watcher = asyncio.create_task(self._watch(request, delivery, on_late_failure))
        self._background.add(watcher)
        watcher.add_done_callback(self._background.discard)

    async def join(self) -> None:
        """Wait until every background request has ended (and its failure was reported)."""
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    async def aclose(self) -> None:
        """Cancel every background request and wait until they are gone."""
        pending = list(self._background)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    async def _send(self, delivery: TaskDelivery, endpoint: str) -> _Outcome:
        agent = delivery.agent_id
        try:
            response = await self._client.post(
                endpoint,
                json=build_message(delivery),
                timeout=_timeouts(delivery, read_s=delivery.completion_timeout_s),
            )
        except httpx.ReadTimeout:
            # The request was sent and the agent is still on it: delivered, not failed.
            return _Outcome()
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            reason = _transport_failure(
                exc, whom=f"agent {agent!r}", url=endpoint, timeout_s=delivery.dispatch_timeout_s
            )
            error = DispatchError(f"task not delivered: {reason}")
            error.__cause__ = exc
            return _Outcome(error)
        if response.is_success:
            return _Outcome()
        return _Outcome(
            DispatchError(
                f"agent {agent!r} answered HTTP {response.status_code} to the task at "
                f"{safe_url(endpoint)}: {_excerpt(response)}"
            )
        )

    async def _watch(
        self, request: asyncio.Task[_Outcome], delivery: TaskDelivery, report: LateFailure
    ) -> None:
        try:
            outcome = await request
        except asyncio.CancelledError:
            request.cancel()
            raise
        except Exception:
            log.exception(
                "late_delivery_crashed", agentId=delivery.agent_id, taskId=delivery.task_id
            )
            return
        if outcome.error is None:
            return
        try:
            await report(outcome.error)
        except Exception:
            # Nobody awaits this task: log instead of losing the error.
            log.exception(
                "late_failure_handler_failed", agentId=delivery.agent_id, taskId=delivery.task_id
            )


class TransportSet:
    """Both transports over one shared, pooled ``httpx.AsyncClient``.

    Args:
        agentkit_url: base URL of AgentKit's API (``OPSCORE_AGENTKIT_URL``) or None.
        transport: an httpx transport to use instead of the network (tests pass an
            ``httpx.MockTransport`` to produce faults).
        limits: connection-pool limits; the default puts no cap on connections (a
            direct request may stay open while its agent works, one per busy agent) and
            keeps up to 256 idle connections alive for 4 s for quick re-dispatch.
    """

    def __init__(
        self,
        *,
        agentkit_url: str | None,
        transport: httpx.AsyncBaseTransport | None = None,
        limits: httpx.Limits | None = None,
    ) -> None:
        self.client = httpx.AsyncClient(
            transport=transport,
            limits=limits
            or httpx.Limits(
                max_connections=None,
                max_keepalive_connections=256,
                # Below common server keep-alive timeouts (uvicorn: 5 s), so a pooled
                # connection is not reused just as the agent closes it.
                keepalive_expiry=4.0,
            ),
            headers={"User-Agent": f"opscore/{__version__}"},
            follow_redirects=False,
        )
        self.agentkit = AgentKitTransport(self.client, agentkit_url=agentkit_url)
        self.direct = DirectTransport(self.client)

    def choose(self, kind: TransportKind) -> Transport:
        """The transport for ``kind`` (``"agentkit"`` or ``"direct"``)."""
        if kind == "agentkit":
            return self.agentkit
        if kind == "direct":
            return self.direct
        raise DispatchError(f"unknown transport {kind!r}; use 'agentkit' or 'direct'")

    async def aclose(self) -> None:
        """Cancel background direct requests, then close the connection pool."""
        try:
            await self.direct.aclose()
        finally:
            with contextlib.suppress(Exception):
                await self.client.aclose()

    async def __aenter__(self) -> TransportSet:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
