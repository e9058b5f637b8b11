"""``opscore serve`` as a real process: it answers, generates and prints a key that
works, logs JSON lines only, and reuses the key after a restart."""

from __future__ import annotations

import asyncio
import json
import re
import stat
import subprocess
import sys
from pathlib import Path

import httpx
from click.testing import CliRunner

from opscore import __version__
from opscore.cli.main import main
from support.server_process import ServerProcess

KEY_LINE = re.compile(r"generated API key (\S+) stored in (\S+)")


def test_version_and_help() -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output
    result = runner.invoke(main, ["serve", "--help"])
    assert result.exit_code == 0
    for option in ("--host", "--port", "--log-level"):
        assert option in result.output


def test_python_dash_m() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "opscore", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert __version__ in result.stdout


async def test_serve_generates_a_working_key(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = ServerProcess(
        storage_url=f"sqlite:///{tmp_path / 'serve.db'}", data_dir=data_dir, api_key="unused"
    )
    for name in ("OPSCORE_API_KEY", "OPSCORE_API_KEYS"):
        server.env.pop(name, None)
    server.env["OPSCORE_LOG_LEVEL"] = "info"
    server.env["OPSCORE_TYPO_SETTING"] = "1"
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            health = await client.get("/health")
            assert health.json() == {"status": "ok"}
            assert health.headers["x-request-id"]
            key_file = data_dir / "api_key"
            key = key_file.read_text().strip()
            assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
            auth = {"Authorization": f"Bearer {key}"}
            assert (await client.get("/v1/opscore/agents", headers=auth)).status_code == 200
            denied = await client.get("/v1/opscore/agents", headers={"Authorization": "Bearer x"})
            assert denied.status_code == 401
            assert denied.headers["content-type"] == "application/problem+json"
            ready = await client.get("/health/ready")
            assert ready.json() == {"status": "ok", "storage": "sqlite"}
    finally:
        await server.stop()
    output = (data_dir / f"server-{server.port}-1.log").read_text()
    match = KEY_LINE.search(output)
    assert match is not None, output
    assert match.group(1) == key
    assert match.group(2) == str(key_file)
    events = []
    for line in output.splitlines():
        if KEY_LINE.search(line):
            continue
        events.append(json.loads(line))  # every other line is a JSON log line
    names = [e["event"] for e in events]
    assert "unknown_setting" in names
    assert "webhook_unsigned" in names
    assert any(n.startswith("Uvicorn running on") for n in names)
    assert "services_stopped" in names  # SIGTERM shut it down cleanly
    access = [e for e in events if e["event"] == "request"]
    assert {(e["method"], e["path"], e["status"]) for e in access} >= {
        ("GET", "/health", 200),
        ("GET", "/v1/opscore/agents", 401),
    }
    assert not any(e.get("logger") == "uvicorn.access" for e in events)
    assert key not in "\n".join(json.dumps(e) for e in events)

    # Restarted on the same data dir: the stored key is reused, not regenerated.
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            response = await client.get(
                "/v1/opscore/agents", headers={"Authorization": f"Bearer {key}"}
            )
            assert response.status_code == 200
    finally:
        await server.stop()
    restarted = (data_dir / f"server-{server.port}-2.log").read_text()
    assert not KEY_LINE.search(restarted)
    assert "api_key_loaded" in restarted


async def test_a_second_server_on_the_same_sqlite_file_refuses_in_one_line(
    tmp_path: Path,
) -> None:
    first = ServerProcess(
        storage_url=f"sqlite:///{tmp_path / 'one.db'}", data_dir=tmp_path / "data", api_key="k"
    )
    await first.start()
    try:
        second = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "opscore", "serve", "--port", "0"),
            env=first.env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, raw = await asyncio.wait_for(second.communicate(), timeout=60)
    finally:
        await first.stop()
    stderr = raw.decode()
    assert second.returncode == 1
    assert stderr.count("\n") == 1, stderr  # one line, no traceback
    assert "cannot start: SQLite database" in stderr
    assert f"in use by another process (pid {first.process.pid})" in stderr
