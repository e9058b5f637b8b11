"""A real Ops-Core served over HTTP, and helpers to drive it in tests."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from opscore.engine.service import WorkflowEngine
from opscore.settings import Settings

API_KEY = "engine-test-key"
FINAL = {"completed", "failed", "cancelled"}


@dataclass
class OpsCore:
    url: str
    api_key: str
    app: FastAPI
    client: httpx.AsyncClient

    @property
    def engine(self) -> WorkflowEngine:
        engine: WorkflowEngine = self.app.state.services.engine
        return engine

    async def trigger(
        self, definition: dict[str, Any], *, agent_id: str | None = None, **extra: Any
    ) -> str:
        body: dict[str, Any] = {"workflowDefinition": definition, **extra}
        if agent_id is not None:
            body["agentId"] = agent_id
        response = await self.client.post("/v1/opscore/sessions", json=body)
        assert response.status_code == 202, response.text
        return str(response.json()["sessionId"])

    async def session(self, session_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/v1/opscore/sessions/{session_id}")
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    async def wait_session(
        self, session_id: str, statuses: set[str] = FINAL, timeout_s: float = 30.0
    ) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            data = await self.session(session_id)
            if data["status"] in statuses:
                return data
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"session {session_id} still {data['status']}: {data}")
            await asyncio.sleep(0.02)


def engine_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "api_key": API_KEY,
        "data_dir": tmp_path / "data",
        "webhook_secret": "engine-test-secret",
        "log_level": "warning",
        **overrides,
    }
    return Settings(**values)


def linear_workflow(
    steps: int = 2, *, workflow_id: str = "linear", **task_defaults: Any
) -> dict[str, Any]:
    """A chain s1 -> s2 -> ... with fast timeouts suitable for tests."""
    defaults = {"retryBackoffS": 0.05, "retryJitter": False, **task_defaults}
    return {
        "id": workflow_id,
        "name": "linear",
        "version": "1",
        "taskDefaults": defaults,
        "tasks": [
            {
                "taskId": f"s{i}",
                "agentCapability": "test_capability",
                "parameters": {"step": i},
                "nextTaskId": f"s{i + 1}" if i < steps else None,
            }
            for i in range(1, steps + 1)
        ],
    }
