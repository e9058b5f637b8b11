"""Helpers for the API tests: an in-process app with its lifespan, problem checks,
and data snapshots (to prove a rejected request changed nothing)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from opscore.api.app import create_app
from opscore.settings import Settings
from opscore.storage import Storage
from opscore.storage.memory import MemoryStorage

API_KEY = "test-key-3c1f0a"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
BASE_URL = "http://opscore.test"


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings that ignore any .env file, with a known API key and memory storage."""
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "api_key": API_KEY,
        "storage_url": "memory://",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@contextlib.asynccontextmanager
async def running_app(
    settings: Settings, *, storage: Storage | None = None
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app with its lifespan running, and a client authenticated with API_KEY."""
    if storage is None and settings.storage_url == "memory://":
        storage = MemoryStorage()
        await storage.open()
    app = create_app(settings, storage=storage)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url=BASE_URL, headers=AUTH
        ) as client:
            yield app, client


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Check an RFC 9457 problem answer; returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["type"] == f"https://opscore.dev/problems/{code}"
    assert body["status"] == status
    assert body["code"] == code
    assert isinstance(body["title"], str)
    assert body["title"]
    assert isinstance(body["detail"], str)
    assert body["detail"]
    assert body["requestId"] == response.headers["x-request-id"]
    return body


async def snapshot(client: httpx.AsyncClient) -> dict[str, Any]:
    """Every agent (as listed and as read) and its full history."""
    agents: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": 500, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/opscore/agents", params=params, headers=AUTH)).json()
        agents.extend(page["items"])
        cursor = page["nextCursor"]
        if cursor is None:
            break
    histories = {}
    for agent in agents:
        response = await client.get(
            f"/v1/opscore/agents/{agent['agentId']}/history",
            params={"limit": 500},
            headers=AUTH,
        )
        histories[agent["agentId"]] = response.json()["items"]
    return {"agents": agents, "histories": histories}
