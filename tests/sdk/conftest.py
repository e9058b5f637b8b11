"""Fixtures of the SDK tests: the real Ops-Core app, in-process and over HTTP.

* ``app``: the app with its lifespan running (memory storage).
* ``aclient``: an :class:`AsyncOpsCoreClient` talking to ``app`` through ``httpx.ASGITransport``.
* ``opscore_url``: ``app`` served by uvicorn on a free port (``tests/support/servers.py``).
* ``threaded_opscore``: a separate app served from its own thread and event loop, for the
  blocking sync client (a sync call inside the test's loop would starve an in-loop server).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from fastapi import FastAPI

from opscore.api.app import create_app
from opscore.settings import Settings
from opscore.storage.memory import MemoryStorage
from opscore_sdk import AsyncOpsCoreClient
from support.servers import serve_app

T = TypeVar("T")

API_KEY = "sdk-test-key-7d2e"
BASE_URL = "http://opscore.test"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Clients and servers are configured in code only, never by the caller's environment
    (nor by a ``.opscore/api_key`` in the working directory)."""
    for key in list(os.environ):
        if key.upper().startswith("OPSCORE_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


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


async def _opened_app(data_dir: Path) -> tuple[FastAPI, MemoryStorage]:
    storage = MemoryStorage()
    await storage.open()
    return create_app(make_settings(data_dir), storage=storage), storage


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    """The real app, lifespan running, on fresh memory storage."""
    app, storage = await _opened_app(tmp_path / "data")
    try:
        async with app.router.lifespan_context(app):
            yield app
    finally:
        await storage.close()


@pytest.fixture
async def aclient(app: FastAPI) -> AsyncIterator[AsyncOpsCoreClient]:
    """An async SDK client on ``app`` in-process; fast retries."""
    async with AsyncOpsCoreClient(
        BASE_URL, API_KEY, transport=httpx.ASGITransport(app=app), backoff_s=0.01
    ) as client:
        yield client


@pytest.fixture
async def opscore_url(app: FastAPI) -> AsyncIterator[str]:
    """``app`` served over real HTTP (for agents, which Ops-Core must reach)."""
    async with serve_app(app, lifespan="off") as url:
        yield url


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
        app, storage = await _opened_app(self._data_dir)
        try:
            async with serve_app(app) as url:
                self._url.set_result(url)
                await self._stop.wait()
        finally:
            await storage.close()


@pytest.fixture
def threaded_opscore(tmp_path: Path) -> Iterator[ThreadedOpsCore]:
    """A real Ops-Core served from another thread (for the blocking client)."""
    server = ThreadedOpsCore(tmp_path / "threaded")
    server.start()
    try:
        yield server
    finally:
        server.stop()
