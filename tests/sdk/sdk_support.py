"""Helpers of the SDK tests: workflow definitions, polling, task bodies."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

T = TypeVar("T")

FAST = {"retryBackoffS": 0.05, "retryJitter": False, "maxRetries": 2}


def workflow(
    workflow_id: str,
    capability: str,
    *,
    steps: int = 1,
    parameters: dict[str, Any] | None = None,
    **task_defaults: Any,
) -> dict[str, Any]:
    """A chain of ``steps`` tasks on ``capability`` with fast retries."""
    return {
        "id": workflow_id,
        "name": f"{workflow_id} workflow",
        "version": "1",
        "taskDefaults": {**FAST, **task_defaults},
        "tasks": [
            {
                "taskId": f"s{i}",
                "agentCapability": capability,
                "parameters": {"step": i, **(parameters or {})},
                "nextTaskId": f"s{i + 1}" if i < steps else None,
            }
            for i in range(1, steps + 1)
        ],
    }


def message(task_id: str, attempt: int | None, payload: dict[str, Any]) -> dict[str, Any]:
    """A task body as Ops-Core sends it (contract section 2)."""
    body: dict[str, Any] = {
        "senderId": "opscore",
        "messageType": "workflow_task",
        "payload": payload,
        "sessionContext": {"sessionId": "session-x"},
        "timestamp": datetime.now(UTC).isoformat(),
        "task_name": "s1",
        "opscore_session_id": "session-x",
        "opscore_task_id": task_id,
    }
    if attempt is not None:
        body["opscore_attempt"] = attempt
    return body


async def eventually(
    probe: Callable[[], Awaitable[T]],
    check: Callable[[T], bool],
    *,
    timeout_s: float = 30.0,
    what: str = "a condition",
) -> T:
    """Poll ``probe`` until ``check`` accepts its value; fail after a generous timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        value = await probe()
        if check(value):
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}: {value!r}")
        await asyncio.sleep(0.02)
