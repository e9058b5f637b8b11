"""Engine tests run against a real Ops-Core served over HTTP on each backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from opscore.api.app import create_app
from opscore.storage import Storage
from support.opscore_server import API_KEY, OpsCore, engine_settings
from support.servers import serve_app


@pytest.fixture
async def opscore(storage: Storage, tmp_path: Path) -> AsyncIterator[OpsCore]:
    app = create_app(engine_settings(tmp_path), storage=storage)
    async with serve_app(app) as url:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
            yield OpsCore(url=url, api_key=API_KEY, app=app, client=client)
