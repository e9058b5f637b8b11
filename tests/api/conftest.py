"""Fixtures of the API tests: settings, a running in-process app, captured logs."""

from __future__ import annotations

import io
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from api_support import make_settings, running_app
from fastapi import FastAPI

from opscore.logging import configure_logging
from opscore.settings import Settings
from opscore.storage import Storage


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests' settings come from code only, never from the caller's environment."""
    for key in list(os.environ):
        if key.upper().startswith("OPSCORE_"):
            monkeypatch.delenv(key)


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """JSON log lines of the test, captured (logging goes back to stderr afterwards)."""
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    try:
        yield stream
    finally:
        configure_logging("info")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
async def app_client(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with running_app(settings) as pair:
        yield pair


@pytest.fixture
async def client(app_client: tuple[FastAPI, httpx.AsyncClient]) -> httpx.AsyncClient:
    """A client of a running app on memory storage, sending the test API key."""
    return app_client[1]


@pytest.fixture
async def backend_client(tmp_path: Path, storage: Storage) -> AsyncIterator[httpx.AsyncClient]:
    """Like ``client``, over each storage backend (memory, sqlite, redis)."""
    async with running_app(make_settings(tmp_path), storage=storage) as (_app, http):
        yield http
