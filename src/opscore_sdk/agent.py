"""Write an Ops-Core-managed agent in a few lines::

    from opscore_sdk.agent import Agent

    agent = Agent("summarizer", capabilities=["summarize"])

    @agent.task
    async def handle(payload: dict, ctx) -> dict:
        return {"summary": payload["text"][:20]}

    if __name__ == "__main__":
        agent.run()

The helper serves the task endpoint (``POST {path}`` with the contract's MessagePayload,
section 2), registers the agent with its own URL as ``contactEndpoint``, reports
``idle`` when ready, and for each task reports ``active``, runs the handler, then reports
``idle`` with the result (or ``error`` and then ``idle``). It runs one task at a time,
de-duplicates a re-sent attempt, retries final reports until Ops-Core acknowledges them,
sends heartbeats while idle, and reports ``offline`` when stopped. The same body arrives
by direct dispatch and through AgentKit, so it works either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import signal
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Literal, TypeVar

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from opscore_sdk._agent_http import EmbeddedServer
from opscore_sdk._agent_support import (
    Job,
    TaskContext,
    TaskHandler,
    answer,
    correlation,
    generated_id,
    job_from_message,
    positional_arity,
    result_details,
    url_host,
)
from opscore_sdk.aio import AsyncOpsCoreClient
from opscore_sdk.errors import NotFoundError, OpsCoreConnectionError, OpsCoreError, ServerError

__all__ = ["HEARTBEAT", "PROCESSING_ERROR", "Agent", "TaskContext", "TaskHandler"]

#: ``details`` of a heartbeat: an ``idle`` report that never completes a task.
HEARTBEAT: Mapping[str, Any] = {"opscore_heartbeat": True}
#: ``error_code`` reported when the handler raises (the AgentKit SDK's spelling).
PROCESSING_ERROR = "PROCESSING_ERROR"

H = TypeVar("H", bound=TaskHandler)

_log = logging.getLogger("opscore_sdk.agent")
_SEEN_MAX = 1024


class Agent:
    """An Ops-Core-managed agent: a task endpoint, registration, state reports.

    Args:
        name: display name; also the start of a generated ``agent_id``.
        capabilities: what the agent can do (tasks route by ``agentCapability``).
        agent_id: stable id; default ``<name>-<8 hex>``, generated once per Agent
            object (pass one to keep the identity across restarts).
        api_url, api_key: Ops-Core; default ``$OPSCORE_API_URL`` / ``$OPSCORE_API_KEY``.
        host, port: where to listen; port 0 picks a free port.
        path: the task endpoint's path.
        public_url: the ``contactEndpoint`` to register when Ops-Core must reach the
            agent by another address (default ``http://{host}:{port}{path}``).
        version, metadata: registered with the agent.
        behind_agentkit: register ``transport="agentkit"`` (tasks arrive via AgentKit)
            instead of ``"direct"``.
        heartbeat_s: seconds between heartbeats while idle.
        report_backoff_s, report_backoff_max_s: first and longest wait, seconds, between
            attempts to deliver a final report (retried until acknowledged).
        stop_grace_s: how long :meth:`stop` lets a running task finish, seconds.
        http_transport: httpx transport for the calls to Ops-Core (tests).
    """

    def __init__(
        self,
        name: str,
        *,
        capabilities: Sequence[str] = (),
        agent_id: str | None = None,
        api_url: str | None = None,
        api_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        path: str = "/task",
        public_url: str | None = None,
        version: str = "1",
        metadata: Mapping[str, Any] | None = None,
        behind_agentkit: bool = False,
        heartbeat_s: float = 30.0,
        report_backoff_s: float = 0.5,
        report_backoff_max_s: float = 10.0,
        stop_grace_s: float = 10.0,
        http_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if heartbeat_s <= 0 or report_backoff_s <= 0 or report_backoff_max_s <= 0:
            raise ValueError("heartbeat_s and the report backoffs must be positive")
        self.name = name
        self.capabilities = list(capabilities)
        self.agent_id = agent_id or generated_id(name)
        self.version = version
        self.metadata = dict(metadata or {})
        self.transport: Literal["direct", "agentkit"] = "agentkit" if behind_agentkit else "direct"
        self.heartbeat_s = heartbeat_s
        self.report_backoff_s = report_backoff_s
        self.report_backoff_max_s = report_backoff_max_s
        self.stop_grace_s = stop_grace_s
        self._api_url = api_url
        self._api_key = api_key
        self._http_transport = http_transport
        self._host = host
        self._port = port
        self._path = path if path.startswith("/") else f"/{path}"
        self._public_url = public_url
        self._handler: TaskHandler | None = None
        self._client: AsyncOpsCoreClient | None = None
        self._server: EmbeddedServer | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._job: Job | None = None
        self._finishing: set[asyncio.Task[None]] = set()
        self._seen: OrderedDict[tuple[str, int | None], str] = OrderedDict()
        self._accepting = False
        self.url: str | None = None
        """The registered ``contactEndpoint`` (set by :meth:`start`)."""

    # -- declaring the handler -----------------------------------------------------------
    def task(self, handler: H) -> H:
        """Decorator: ``handler(payload, ctx)`` (or ``handler(payload)``) runs each task.

        Async handlers run on the event loop; sync ones in a worker thread. The return
        value becomes the task's result: a dict as it is, anything else as
        ``{"result": value}``; it must be JSON-serialisable. An exception fails the
        attempt (Ops-Core retries it according to the workflow's policy).
        """
        self._handler = handler
        return handler

    @property
    def busy(self) -> bool:
        """True while a task is being worked on."""
        return self._job is not None

    @property
    def started(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._server is not None

    # -- running -------------------------------------------------------------------------
    def run(self) -> None:
        """Serve until SIGINT or SIGTERM, then stop cleanly. Blocks.

        Configures basic logging at INFO if the program configured none.
        """
        if not logging.getLogger().handlers:
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        asyncio.run(self._run_until_signalled())

    async def _run_until_signalled(self) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop.set)
        try:
            await self.start()
            server = self._server
            waiter = asyncio.create_task(stop.wait())
            watched = {waiter} if server is None else {waiter, server.task}
            # Ends on a signal, or if the HTTP server dies.
            await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
        finally:
            await self.stop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.remove_signal_handler(sig)

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[Agent]:
        """``async with agent.serving():`` start, yield the agent, stop."""
        await self.start()
        try:
            yield self
        finally:
            await self.stop()

    async def start(self) -> None:
        """Serve the task endpoint, register with Ops-Core, report ``idle``, start heartbeats.

        Raises OSError if the port is taken, OpsCoreError if Ops-Core refuses or cannot
        be reached (nothing is left running then), RuntimeError without a handler.
        """
        if self._handler is None:
            raise RuntimeError("no task handler: decorate a function with @agent.task")
        if self._server is not None:
            raise RuntimeError("the agent is already started")
        self._client = AsyncOpsCoreClient(
            self._api_url, self._api_key, transport=self._http_transport
        )
        self._server = EmbeddedServer(self._asgi_app(), host=self._host, port=self._port)
        try:
            await self._server.start()
            self.url = self._public_url or (
                f"http://{url_host(self._host)}:{self._server.port}{self._path}"
            )
            # Accept before registering: Ops-Core may dispatch as soon as it knows us.
            self._accepting = True
            await self._register()
            await self._client.update_state(self.agent_id, "idle", HEARTBEAT)
        except BaseException:
            await self._shutdown(report_offline=False)
            raise
        self._heartbeat = asyncio.create_task(self._heartbeats(), name=f"heartbeat:{self.agent_id}")
        _log.info("agent %s serving at %s", self.agent_id, self.url)

    async def stop(self) -> None:
        """Stop cleanly: refuse new tasks, let a running task finish (up to
        ``stop_grace_s``, then cancel it), report ``offline`` (best effort), stop serving.
        Safe to call twice."""
        if self._server is None:
            return
        await self._shutdown(report_offline=True)
        _log.info("agent %s stopped", self.agent_id)

    async def _shutdown(self, *, report_offline: bool) -> None:
        self._accepting = False
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.wait({self._heartbeat})
            self._heartbeat = None
        pending = set(self._finishing)
        if self._job is not None and self._job.runner is not None:
            pending.add(self._job.runner)
        if pending:
            _, late = await asyncio.wait(pending, timeout=self.stop_grace_s)
            for runner in late:
                runner.cancel()
            if late:
                await asyncio.wait(late)
        if report_offline and self._client is not None:
            try:
                await self._client.update_state(self.agent_id, "offline", {})
            except OpsCoreError as exc:
                _log.warning("agent %s could not report offline: %s", self.agent_id, exc)
        if self._server is not None:
            await self._server.stop()
            self._server = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- talking to Ops-Core --------------------------------------------------------------
    async def _register(self) -> None:
        assert self._client is not None
        await self._client.register_agent(
            self.name,
            agent_id=self.agent_id,
            version=self.version,
            capabilities=self.capabilities,
            contact_endpoint=self.url,
            metadata=self.metadata,
            transport=self.transport,
        )

    async def _report_until_acknowledged(self, state: str, details: Mapping[str, Any]) -> bool:
        """Deliver a report that must not be lost; False if Ops-Core refused it."""
        assert self._client is not None
        delay = self.report_backoff_s
        while True:
            try:
                await self._client.update_state(self.agent_id, state, details)
                return True
            except NotFoundError as exc:
                if exc.code != "agent_not_found":
                    _log.error("report %r refused by Ops-Core: %s", state, exc)
                    return False
                # Ops-Core lost the agent (e.g. memory storage restarted): register again.
                _log.warning("agent %s unknown to Ops-Core; registering again", self.agent_id)
                with contextlib.suppress(OpsCoreError):
                    await self._register()
            except (OpsCoreConnectionError, ServerError) as exc:
                _log.warning("report %r not delivered (%s); retrying in %.1fs", state, exc, delay)
            except OpsCoreError as exc:
                _log.error("report %r refused by Ops-Core: %s", state, exc)
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.report_backoff_max_s)

    async def _heartbeats(self) -> None:
        assert self._client is not None
        while True:
            await asyncio.sleep(self.heartbeat_s)
            if self._job is not None or self._finishing:
                continue  # busy: the task's own reports say the agent is alive
            try:
                await self._client.update_state(self.agent_id, "idle", HEARTBEAT)
            except NotFoundError:
                with contextlib.suppress(OpsCoreError):
                    await self._register()
            except OpsCoreError as exc:
                _log.warning("agent %s heartbeat failed: %s", self.agent_id, exc)

    # -- receiving tasks ------------------------------------------------------------------
    def _asgi_app(self) -> Starlette:
        return Starlette(
            routes=[
                Route(self._path, self._receive, methods=["POST"]),
                Route("/health", self._health, methods=["GET"]),
            ]
        )

    async def _health(self, request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "agentId": self.agent_id, "busy": self.busy})

    async def _receive(self, request: Request) -> JSONResponse:
        if not self._accepting:
            return answer(503, "unavailable", "the agent is not accepting tasks")
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return answer(400, "invalid", "the body is not JSON")
        if not isinstance(body, dict) or not isinstance(body.get("payload"), dict):
            return answer(422, "invalid", "expected a MessagePayload with a 'payload' object")
        job = job_from_message(body, self.agent_id, _log)
        if job.key is not None and self._is_duplicate(job.key):
            return answer(200, "duplicate", "this attempt was already received", job)
        if self._job is not None:
            running = self._job.context.task_id
            return answer(409, "busy", f"the agent is working on task {running}", job)
        if job.key is not None:
            self._remember(job.key, "running")
        self._job = job
        job.runner = asyncio.create_task(self._work(job), name=f"task:{job.context.task_id}")
        return answer(202, "accepted", "task accepted", job)

    def _is_duplicate(self, key: tuple[str, int | None]) -> bool:
        outcome = self._seen.get(key)
        if outcome is None:
            return False
        # Without an attempt number (AgentKit drops it) a failed task's retry looks the
        # same as a re-send; let it run again.
        return key[1] is not None or outcome != "failed"

    def _remember(self, key: tuple[str, int | None], outcome: str) -> None:
        self._seen[key] = outcome
        self._seen.move_to_end(key)
        while len(self._seen) > _SEEN_MAX:
            self._seen.popitem(last=False)

    # -- working ---------------------------------------------------------------------------
    async def _work(self, job: Job) -> None:
        ctx = job.context
        ids = correlation(ctx)
        try:
            await self._report_best_effort("active", ids)
            try:
                details = result_details(await self._call_handler(job))
                ok = True
            except Exception as exc:
                ctx.logger.exception("task %s failed", ctx.task_id)
                details = {"error_code": PROCESSING_ERROR, "message": str(exc) or repr(exc)}
                ok = False
            if job.key is not None:
                self._remember(job.key, "completed" if ok else "failed")
            # Free first: Ops-Core may send the next task (or this one's retry) as soon
            # as it has processed the report, before this agent reads the answer.
            self._release(job)
            if ok:
                await self._report_until_acknowledged("idle", {**details, **ids})
            else:
                await self._report_until_acknowledged("error", {**details, **ids})
                if self._job is None:
                    # Back to idle for all to see, unless the next task already started.
                    await self._report_until_acknowledged("idle", HEARTBEAT)
        finally:
            self._release(job)

    def _release(self, job: Job) -> None:
        if self._job is job:
            self._job = None
            if job.runner is not None and not job.runner.done():
                # Keep the reports still in flight visible to stop().
                self._finishing.add(job.runner)
                job.runner.add_done_callback(self._finishing.discard)

    async def _call_handler(self, job: Job) -> Any:
        handler = self._handler
        assert handler is not None
        args: tuple[Any, ...] = (job.payload, job.context)
        if positional_arity(handler) < 2:
            args = (job.payload,)
        if inspect.iscoroutinefunction(handler):
            return await handler(*args)
        result = await asyncio.to_thread(handler, *args)
        return await result if inspect.isawaitable(result) else result

    async def _report_best_effort(self, state: str, details: Mapping[str, Any]) -> None:
        assert self._client is not None
        try:
            await self._client.update_state(self.agent_id, state, details)
        except OpsCoreError as exc:
            _log.warning("agent %s could not report %r: %s", self.agent_id, state, exc)
