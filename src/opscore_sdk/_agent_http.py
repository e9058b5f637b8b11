"""Serving a small ASGI app on uvicorn inside the caller's event loop (for the agent helper)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator
from typing import Any

import uvicorn

__all__ = ["EmbeddedServer"]


class _QuietServer(uvicorn.Server):
    """Uvicorn without its signal handling: the embedding program owns SIGINT/SIGTERM
    (``Agent.run`` installs its own; tests run several servers in one process)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _bind(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


class EmbeddedServer:
    """An ASGI app served by uvicorn as a task of the running event loop.

    The socket is bound by :meth:`start` itself, so port 0 yields a free port (read
    :attr:`port`) and a port in use raises OSError instead of exiting the process.
    """

    def __init__(self, app: Any, *, host: str, port: int, graceful_shutdown_s: int = 5) -> None:
        self._app = app
        self._host = host
        self._requested_port = port
        self._graceful_shutdown_s = graceful_shutdown_s
        self._sock: socket.socket | None = None
        self._port: int | None = None
        self._server: _QuietServer | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        if self._port is None:
            raise RuntimeError("the server is not started")
        return self._port

    @property
    def task(self) -> asyncio.Task[None]:
        """The task running uvicorn; it ends when the server stops or crashes."""
        if self._task is None:
            raise RuntimeError("the server is not started")
        return self._task

    async def start(self, timeout_s: float = 30.0) -> None:
        """Bind, start serving, and return once connections are accepted."""
        self._sock = _bind(self._host, self._requested_port)
        self._port = int(self._sock.getsockname()[1])
        config = uvicorn.Config(
            self._app,
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=False,
            ws="none",
            timeout_graceful_shutdown=self._graceful_shutdown_s,
        )
        self._server = _QuietServer(config)
        self._task = asyncio.create_task(
            self._server.serve(sockets=[self._sock]), name=f"agent-http:{self.port}"
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        # uvicorn has no start-up event; its ``started`` flag is set once it listens.
        while not self._server.started:
            if self._task.done() or loop.time() > deadline:
                await self.stop()
                raise RuntimeError(f"the agent's HTTP server did not start on port {self.port}")
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        """Stop accepting, let requests in progress finish (bounded), close the socket."""
        if self._server is not None:
            self._server.should_exit = True
        try:
            if self._task is not None:
                await asyncio.wait({self._task})
                if not self._task.cancelled():
                    self._task.exception()  # retrieved: a crash was already logged by uvicorn
        finally:
            if self._sock is not None:
                self._sock.close()
            self._task = None
            self._server = None
