"""The real Ops-Core app served by uvicorn in a thread with its own event loop, for
tests whose own code blocks (the sync SDK client, the CLI through CliRunner)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from opscore.api.app import create_app
from opscore.settings import Settings
from support.servers import serve_app

__all__ = ["ThreadedOpsCore"]

T = TypeVar("T")


class ThreadedOpsCore:
    """``create_app(settings)`` served from a background thread until :meth:`stop`."""

    def __init__(self, settings: Settings, *, name: str = "opscore-server") -> None:
        self._settings = settings
        self._url: Future[str] = Future()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)

    @property
    def url(self) -> str:
        return self._url.result(timeout=60)

    def start(self) -> str:
        self._thread.start()
        return self.url

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = 60.0) -> T:
        """Run ``coro`` on the server's event loop (e.g. start an agent helper there)."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=timeout_s)

    def stop(self) -> None:
        """Stop serving; safe to call twice."""
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=60)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # report a start-up failure to the waiting test
            if not self._url.done():
                self._url.set_exception(exc)
            raise

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serve_app(create_app(self._settings)) as url:
            self._url.set_result(url)
            await self._stop.wait()
