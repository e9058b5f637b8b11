"""The SDK tests' Ops-Core: settings and an opened app.

Kept out of conftest.py so test modules can import it by a name of its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI

from opscore.api.app import create_app
from opscore.settings import Settings
from opscore.storage.memory import MemoryStorage

__all__ = ["API_KEY", "BASE_URL", "make_settings", "opened_app"]

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
