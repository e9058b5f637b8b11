"""The README's quick tour works as pasted: its agent example (run as a real process)
completes its workflow example on a real server."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import yaml

from support.server_process import ServerProcess

README = Path(__file__).parents[1] / "README.md"
API_KEY = "readme-key"


def code_block(language: str, after: str) -> str:
    """The first ``language`` fenced block following the text ``after``."""
    text = README.read_text()
    start = text.index(after)
    match = re.compile(rf"```{language}\n(.*?)```", re.S).search(text, start)
    assert match is not None, f"no {language} block after {after!r}"
    return match.group(1)


def test_readme_has_exactly_the_two_quick_start_commands() -> None:
    block = code_block("sh", "## Quick start")
    commands = [line for line in block.splitlines() if line and not line.startswith("#")]
    assert commands == [
        "python3 -m pip install -e . && opscore serve",
        "python3 -m pip install -e '.[dev]' && python3 -m pytest",
    ]
    ci = (README.parent / ".ci" / "run").read_text()
    assert "python3 -m pip install -e '.[dev]' && python3 -m pytest" in ci


async def test_readme_agent_runs_the_readme_workflow(tmp_path: Path) -> None:
    agent_file = tmp_path / "summarizer.py"
    agent_file.write_text(code_block("python", "An agent in fifteen lines"))
    definition = yaml.safe_load(code_block("yaml", "A workflow."))
    server = ServerProcess(storage_url="memory://", data_dir=tmp_path / "data", api_key=API_KEY)
    await server.start()
    env = {**os.environ, "OPSCORE_API_URL": server.url, "OPSCORE_API_KEY": API_KEY}
    agent = subprocess.Popen(  # noqa: ASYNC220 - returns at once
        [sys.executable, str(agent_file)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    headers = {"Authorization": f"Bearer {API_KEY}"}
    try:
        async with httpx.AsyncClient(base_url=server.url, headers=headers) as client:
            for _ in range(200):  # the agent registers and reports idle
                agents = (await client.get("/v1/opscore/agents")).json()["items"]
                if agents and agents[0]["state"] == "idle":
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError(f"agent never became idle: {agents}")
            assert agents[0]["capabilities"] == ["summarize"]
            assert (await client.post("/v1/opscore/workflows", json=definition)).status_code == 201
            text = "Ops-Core runs multi-step workflows across agents."
            response = await client.post(
                "/v1/opscore/sessions",
                json={"workflowDefinitionId": "summary", "initialPayload": {"text": text}},
            )
            session_id = response.json()["sessionId"]
            for _ in range(300):
                session = (await client.get(f"/v1/opscore/sessions/{session_id}")).json()
                if session["status"] != "running":
                    break
                await asyncio.sleep(0.05)
        assert session["status"] == "completed", session
        first, second = session["tasks"]
        assert first["result"] == {"summary": text[:40], "words": len(text.split())}
        assert second["result"] == {"summary": text[:40], "words": len(text[:40].split())}
    finally:
        agent.send_signal(signal.SIGINT)
        try:
            output, _ = await asyncio.to_thread(agent.communicate, timeout=15)
        except subprocess.TimeoutExpired:
            agent.kill()
            output, _ = agent.communicate()
        await server.stop()
    assert agent.returncode == 0, output.decode(errors="replace")
