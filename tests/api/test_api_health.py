"""Liveness and readiness."""

from __future__ import annotations

from pathlib import Path

import httpx
from api_support import assert_problem, make_settings, running_app

from opscore import __version__
from opscore.errors import StorageUnavailableError
from opscore.storage.memory import MemoryStorage


class _UnreachableStorage(MemoryStorage):
    """A backend whose server went away (a fault we cannot produce in memory)."""

    async def ping(self) -> None:
        raise StorageUnavailableError("connection refused")


class _BrokenDriverStorage(MemoryStorage):
    async def ping(self) -> None:
        raise OSError("socket closed")


async def test_health(client: httpx.AsyncClient) -> None:
    client.headers.pop("Authorization")
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    ready = await client.get("/health/ready")
    assert ready.json() == {"status": "ok", "storage": "memory"}


async def test_ready_with_each_backend(backend_client: httpx.AsyncClient) -> None:
    ready = (await backend_client.get("/health/ready")).json()
    assert ready["status"] == "ok"
    assert ready["storage"] in {"memory", "sqlite", "redis"}


async def test_ready_is_503_when_storage_is_down(tmp_path: Path) -> None:
    for storage in (_UnreachableStorage(), _BrokenDriverStorage()):
        async with running_app(make_settings(tmp_path), storage=storage) as (_app, client):
            assert (await client.get("/health")).status_code == 200
            assert_problem(await client.get("/health/ready"), 503, "storage_unavailable")


async def test_openapi_metadata(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/openapi.json")).json()
    assert doc["info"] == {
        "title": "Ops-Core",
        "version": __version__,
        "description": doc["info"]["description"],
    }
