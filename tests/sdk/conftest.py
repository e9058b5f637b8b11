"""Fixtures of the SDK tests: the real Ops-Core app, in-process and over HTTP.

* ``app``: the app with its lifespan running (memory storage).
* ``aclient``: an :class:`AsyncOpsCoreClient` talking to ``app`` through ``httpx.ASGITransport``.
* ``opscore_url``: ``app`` served by uvicorn on a free port (``tests/support/servers.py``).
* ``threaded_opscore``: a separate app served from its own thread and event loop, for the
  blocking sync client (a sync call inside the test's loop would starve an in-loop server).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sdk_server import API_KEY, BASE_URL, make_settings, opened_app

from opscore_sdk import AsyncOpsCoreClient
from support.servers import serve_app
from support.threaded_server import ThreadedOpsCore


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Clients and servers are configured in code only, never by the caller's environment
    (nor by a ``.opscore/api_key`` in the working directory)."""
    for key in list(os.environ):
        if key.upper().startswith("OPSCORE_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    """The real app, lifespan running, on fresh memory storage."""
    app, storage = await opened_app(tmp_path / "data")
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


@pytest.fixture
def threaded_opscore(tmp_path: Path) -> Iterator[ThreadedOpsCore]:
    """A real Ops-Core served from another thread (for the blocking client)."""
    server = ThreadedOpsCore(make_settings(tmp_path / "threaded"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
