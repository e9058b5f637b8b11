"""The SDK tests' Ops-Core: settings, an opened app, a server in another thread.

Kept out of conftest.py so test modules can import it by a name of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from fastapi import FastAPI

from opscore.api.app import create_app
from opscore.settings import Settings
from opscore.storage.memory import MemoryStorage
from support.servers import serve_app

__all__ = ["API_KEY", "BASE_URL", "ThreadedOpsCore", "make_settings", "opened_app"]

T = TypeVar("T")

API_KEY = "sdk-test-key-7d2e"
BASE_URL = "http://opscore.test"


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "api_key": API_KEY,
        "storage_url": "memory://",
        "log_level": "warning",
        "webhook_secret": "sdk-test-webhook-secret",
        **overrides,
    }
    return Settings(_env_file=None, **values)


async def opened_app(data_dir: Path) -> tuple[FastAPI, MemoryStorage]:
    storage = MemoryStorage()
    await storage.open()
    return create_app(make_settings(data_dir), storage=storage), storage


class ThreadedOpsCore:
    """An Ops-Core served by uvicorn in a thread with its own event loop."""

    def __init__(self, data_dir: Path) -> None:
        self._data_dir = data_dir
        self._url: Future[str] = Future()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._main, name="opscore-server", daemon=True)

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
        app, storage = await opened_app(self._data_dir)
        try:
            async with serve_app(app) as url:
                self._url.set_result(url)
                await self._stop.wait()
        finally:
            await storage.close()
