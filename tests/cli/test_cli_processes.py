"""The CLI as real processes: ``python -m opscore ...`` against ``opscore serve`` running
in another process, and ``python -m opscore demo`` from start to clean exit."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from support.server_process import ServerProcess

TIMEOUT_S = 120


def opscore(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "opscore", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=TIMEOUT_S,
        check=False,
    )


def client_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("OPSCORE_")}
    return {**env, "COLUMNS": "200", **values}


async def test_commands_against_a_server_process(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = ServerProcess(storage_url="memory://", data_dir=data_dir, api_key="unused")
    server.env.pop("OPSCORE_API_KEY")  # the server generates a key into data/api_key
    await server.start()
    try:
        # No key given: the CLI reads the local server's key file, as after `opscore serve`.
        env = client_env(OPSCORE_API_URL=server.url, OPSCORE_DATA_DIR=str(data_dir))

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return opscore(*args, env=env)

        registered = await asyncio.to_thread(
            run, "agent", "register", "--name", "p", "--id", "proc-1", "--capability", "work"
        )
        assert registered.returncode == 0, registered.stderr
        assert registered.stdout == "registered agent proc-1 (p)\n"

        listed = await asyncio.to_thread(run, "agent", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        assert [a["agentId"] for a in json.loads(listed.stdout)["items"]] == ["proc-1"]

        definition = {
            "id": "proc",
            "name": "proc",
            "tasks": [{"taskId": "a", "routing": "capability", "agentCapability": "nobody"}],
        }
        path = tmp_path / "proc.json"
        path.write_text(json.dumps(definition), encoding="utf-8")
        created = await asyncio.to_thread(run, "workflow", "create", str(path))
        assert created.returncode == 0, created.stderr
        started = await asyncio.to_thread(run, "workflow", "trigger", "proc", "--json")
        session_id = json.loads(started.stdout)["sessionId"]
        cancelled = await asyncio.to_thread(run, "session", "cancel", session_id)
        assert cancelled.returncode == 0, cancelled.stderr
        assert cancelled.stdout == f"session {session_id} is cancelled\n"

        missing = await asyncio.to_thread(run, "agent", "show", "ghost")
        assert missing.returncode == 1
        assert missing.stdout == ""
        assert missing.stderr.startswith("Error: agent 'ghost' is not registered (404 ")
        assert len(missing.stderr.splitlines()) == 1

        wrong_key = await asyncio.to_thread(run, "agent", "list", "--api-key", "wrong")
        assert wrong_key.returncode == 1
        assert "refused the API key" in wrong_key.stderr
        assert len(wrong_key.stderr.splitlines()) == 1
    finally:
        await server.stop()

    down = await asyncio.to_thread(opscore, "agent", "list", env=env)
    assert down.returncode == 1
    assert down.stderr.startswith(f"Error: cannot reach Ops-Core at {server.url}: ")
    assert len(down.stderr.splitlines()) == 1
    assert "Traceback" not in down.stderr


def test_the_demo_runs_and_leaves_nothing_behind() -> None:
    result = opscore("demo", env=client_env())
    out = result.stdout
    assert result.returncode == 0, f"{out}\n{result.stderr}"
    assert "Traceback" not in result.stderr

    # Three agents built with the SDK's helper registered themselves.
    for agent in ("demo-fetcher", "demo-analyst", "demo-writer"):
        assert f"agent {agent} (" in out
    # The flaky step failed once and was retried; the run completed.
    assert "analyze attempt 1 failed on demo-analyst" in out
    assert "→ retry" in out
    assert "analyze completed on demo-analyst (attempt 2)" in out
    assert "summarize completed on demo-writer" in out
    assert re.search(r"✓ session \w+ completed in [\d.]+s", out)
    assert "Retried and completed: analyze" in out
    assert "Result (task summarize): 3 notes" in out
    # The timeline table, and where to look next.
    assert re.search(r"analyze\s+completed\s+demo-analyst\s+2\s", out)
    url = re.search(r"API docs \(OpenAPI\):\s+(http://127\.0\.0\.1:\d+)/docs", out)
    assert url is not None
    assert "opscore session show " in out
    assert "stopped the demo agents and server" in out

    # Nothing is left: the server's port is closed and the temporary storage is gone.
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url.group(1)}/health", timeout=5)
    storage = re.search(r"storage in (\S+)\)", out)
    assert storage is not None
    assert not Path(storage.group(1)).exists()


def test_the_demo_on_a_taken_port_fails_cleanly() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = opscore("demo", "--storage", "memory", "--port", str(port), env=client_env())
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("Error: the demo could not start: ")
    assert "in use" in result.stderr
