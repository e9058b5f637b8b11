"""Ops-Core and the sample agents on throwaway storage, served from a background thread.

    with DemoStack() as stack:          # server on a free port + three agents, ready
        client = OpsCoreClient(stack.url, stack.api_key)
        ...
    # agents stopped (reported offline), server stopped, temp directory removed

The thread runs its own event loop with uvicorn (in-process, no subprocess) and the
agents, so the calling thread is free to use the blocking SDK client and the CLI's
renderers. Nothing outlives :meth:`DemoStack.stop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import tempfile
import threading
from collections.abc import Generator
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

import uvicorn

from opscore.api.app import create_app
from opscore.demo.agents import DemoFailure, build_agents
from opscore.logging import configure_logging
from opscore.settings import Settings
from opscore_sdk.agent import Agent

__all__ = ["DemoStack", "StorageKind"]

StorageKind = Literal["sqlite", "memory"]
_AGENT_LOGGER = "opscore_sdk.agent"


class _QuietServer(uvicorn.Server):
    """Uvicorn without signal handlers: it runs off the main thread, and Ctrl-C belongs
    to the CLI, which then stops the demo in order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class _HideSimulatedFailures(logging.Filter):
    """Drop the agent helper's traceback for the analyst's planned failure: the demo
    shows that failure itself, as a retried attempt."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, DemoFailure)


class DemoStack:
    """Ops-Core on a temporary SQLite database (or memory) plus the sample agents.

    Args:
        storage: ``"sqlite"`` (a file in a temporary directory) or ``"memory"``.
        port: port of the API on 127.0.0.1; 0 picks a free one.
        log_level: the server's log level (JSON lines on stderr).
        start_timeout_s: how long :meth:`start` waits for everything to be ready.
    """

    def __init__(
        self,
        *,
        storage: StorageKind = "sqlite",
        port: int = 0,
        log_level: Literal["debug", "info", "warning", "error"] = "error",
        start_timeout_s: float = 30.0,
    ) -> None:
        self.storage = storage
        self.api_key = secrets.token_urlsafe(24)
        self.agents: list[Agent] = []
        self._port = port
        self._log_level = log_level
        self._start_timeout_s = start_timeout_s
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._ready: Future[str] = Future()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._filter = _HideSimulatedFailures()
        self.url = ""

    @property
    def data_dir(self) -> Path:
        """The temporary directory holding the database (removed by :meth:`stop`)."""
        if self._tmp is None:
            raise RuntimeError("the demo is not started")
        return Path(self._tmp.name)

    def start(self) -> None:
        """Start the server and the agents; return once the agents are registered.

        Raises OSError if the port is taken, or whatever stopped the start-up.
        """
        self._tmp = tempfile.TemporaryDirectory(prefix="opscore-demo-")
        configure_logging(self._log_level)
        logging.getLogger(_AGENT_LOGGER).addFilter(self._filter)
        self._thread = threading.Thread(target=self._main, name="opscore-demo", daemon=True)
        self._thread.start()
        try:
            self.url = self._ready.result(timeout=self._start_timeout_s)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the agents (they report offline), then the server; remove the storage.
        Safe to call twice."""
        if self._thread is not None:
            if self._loop is not None and self._stop is not None:
                with contextlib.suppress(RuntimeError):  # the loop already ended
                    self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout=30)
            self._thread = None
        logging.getLogger(_AGENT_LOGGER).removeFilter(self._filter)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the background thread ---------------------------------------------------------
    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # hand a start-up failure to start()
            if not self._ready.done():
                self._ready.set_exception(exc)

    def _settings(self) -> Settings:
        storage_url = (
            "memory://" if self.storage == "memory" else f"sqlite:///{self.data_dir / 'demo.db'}"
        )
        return Settings(
            _env_file=None,  # only what is given here and OPSCORE_* variables
            data_dir=self.data_dir,
            storage_url=storage_url,
            api_key=self.api_key,
            api_keys=[],
            webhook_secret=secrets.token_urlsafe(24),
            agentkit_url=None,
            workflow_dir=None,
            log_level=self._log_level,
        )

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", self._port))
            url = f"http://127.0.0.1:{sock.getsockname()[1]}"
            config = uvicorn.Config(
                create_app(self._settings()),
                lifespan="on",
                log_config=None,
                log_level=self._log_level,
                access_log=False,
                ws="none",
                timeout_graceful_shutdown=3,
            )
            server = _QuietServer(config)
            serving = asyncio.create_task(server.serve(sockets=[sock]), name="opscore-demo-api")
            try:
                await _until_started(server, serving)
                await self._run_agents(url)
            finally:
                server.should_exit = True
                await asyncio.wait({serving})
        finally:
            sock.close()

    async def _run_agents(self, url: str) -> None:
        assert self._stop is not None
        self.agents = build_agents(url, self.api_key)
        try:
            await asyncio.gather(*(agent.start() for agent in self.agents))
            self._ready.set_result(url)
            await self._stop.wait()
        finally:
            await asyncio.gather(*(agent.stop() for agent in self.agents))


async def _until_started(server: uvicorn.Server, serving: asyncio.Task[None]) -> None:
    # uvicorn has no start-up event; ``started`` is set once it listens.
    while not server.started:
        if serving.done():
            serving.result()  # re-raise the crash, if any
            raise RuntimeError("the Ops-Core server stopped during start-up")
        await asyncio.sleep(0.01)
