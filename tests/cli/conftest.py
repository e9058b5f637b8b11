"""Fixtures of the CLI tests: a real Ops-Core served from a background thread, a worker
agent built with the SDK's agent helper, and a CliRunner pointed at them.

The CLI is synchronous (it blocks in the SDK's sync client), so the server runs in its
own thread with its own event loop; the tests themselves are plain functions.

* ``opscore``: a :class:`~support.threaded_server.ThreadedOpsCore` (memory storage,
  API key :data:`API_KEY`).
* ``worker``: an agent with capability ``work`` running on the server's loop; what it
  does is steered by the task's parameters (see :func:`worker_handler`).
* ``cli``: :class:`Cli`, ``cli("agent", "list")`` runs ``opscore agent list`` through
  click's CliRunner with ``OPSCORE_API_URL``/``OPSCORE_API_KEY`` set for the server.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cli_support import API_KEY, WORK, Cli

from opscore.settings import Settings
from opscore_sdk.agent import Agent, TaskContext
from support.threaded_server import ThreadedOpsCore

T = TypeVar("T")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Commands see only what a test gives them: no OPSCORE_* variables of the caller,
    no ``.opscore/api_key`` in the working directory."""
    for key in list(os.environ):
        if key.upper().startswith("OPSCORE_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def opscore(tmp_path: Path) -> Iterator[ThreadedOpsCore]:
    settings = Settings(
        _env_file=None,
        data_dir=tmp_path / "server-data",
        api_key=API_KEY,
        storage_url="memory://",
        log_level="warning",
        webhook_secret="cli-test-webhook-secret",
    )
    server = ThreadedOpsCore(settings, name="cli-opscore")
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def worker_handler(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """The worker's task: ``{"fail": true}`` fails every attempt, ``{"failFirst": true}``
    fails attempt 1, ``{"sleep": s}`` works ``s`` seconds; the result echoes the payload."""
    if payload.get("fail") or (payload.get("failFirst") and ctx.attempt == 1):
        raise RuntimeError(f"asked to fail attempt {ctx.attempt}")
    await asyncio.sleep(float(payload.get("sleep", 0)))
    return {"echo": payload, "step": ctx.task_name}


@pytest.fixture
def worker(opscore: ThreadedOpsCore) -> Iterator[Agent]:
    """An agent with capability ``work`` (id ``worker-1``) serving on the server's loop."""
    agent = Agent(
        "worker",
        capabilities=[WORK],
        agent_id="worker-1",
        api_url=opscore.url,
        api_key=API_KEY,
        report_backoff_s=0.05,
        stop_grace_s=1.0,
    )
    agent.task(worker_handler)
    opscore.run(agent.start())
    try:
        yield agent
    finally:
        opscore.run(agent.stop())


@pytest.fixture
def cli(opscore: ThreadedOpsCore) -> Cli:
    return Cli(opscore.url)
