"""Run any ASGI app on a real uvicorn server inside the test's own event loop.

    async with serve_app(create_app(settings)) as base_url:
        ...  # http://127.0.0.1:<free port>, accepting connections

The server binds port 0 (the OS picks a free port), so many servers run side by side.
Uvicorn's own logging is quiet and it leaves signal handlers alone; the app's lifespan
runs (``lifespan="auto"``), so Ops-Core's start-up and shut-down code runs too.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Generator
from typing import Any, Literal

import uvicorn

__all__ = ["serve_app", "unused_url"]


class _QuietServer(uvicorn.Server):
    """A uvicorn server that does not take over SIGINT/SIGTERM: several run at once in
    one process, and restoring handlers in the wrong order would leave a stale one."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._stop = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    def stop(self) -> None:
        """Ask the server to shut down now (no wait for uvicorn's next 0.1 s tick)."""
        self.should_exit = True
        self._stop.set()

    async def main_loop(self) -> None:
        # uvicorn's loop, but woken at once by stop() instead of only polling.
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864_000
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.1):
                    await self._stop.wait()


def _bound_socket(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.set_inheritable(True)
    return sock


@contextlib.asynccontextmanager
async def serve_app(
    app: Any,
    *,
    host: str = "127.0.0.1",
    lifespan: Literal["auto", "on", "off"] = "auto",
    graceful_shutdown_s: int = 5,
    startup_timeout_s: float = 30.0,
) -> AsyncIterator[str]:
    """Serve ``app`` on ``host`` at a free port; yield its base URL (no trailing slash).

    On exit the server stops accepting, waits up to ``graceful_shutdown_s`` for requests
    in progress (then cancels them), runs the lifespan shut-down and returns.
    Raises RuntimeError if the server does not start (e.g. the lifespan start-up failed).
    """
    sock = _bound_socket(host)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        lifespan=lifespan,
        log_config=None,
        log_level="warning",
        access_log=False,
        ws="none",
        timeout_graceful_shutdown=graceful_shutdown_s,
    )
    server = _QuietServer(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]), name=f"uvicorn:{port}")
    try:
        await _wait_started(server, serving, startup_timeout_s)
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        try:
            await serving
        finally:
            sock.close()


async def _wait_started(
    server: uvicorn.Server, serving: asyncio.Task[None], timeout_s: float
) -> None:
    # Uvicorn offers no start-up event; its ``started`` flag is set once it listens.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not server.started:
        if serving.done():
            serving.result()  # re-raise a crash, if any
            raise RuntimeError("the test server stopped during start-up (lifespan failed?)")
        if loop.time() > deadline:
            raise RuntimeError(f"the test server did not start within {timeout_s:g}s")
        await asyncio.sleep(0.005)


def unused_url(host: str = "127.0.0.1", path: str = "/task") -> str:
    """A URL on a port nobody listens on: connecting to it is refused.

    The port was free a moment ago; the OS hands out ports round-robin, so it is very
    unlikely to be reused during a test.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port = sock.getsockname()[1]
    return f"http://{host}:{port}{path}"
