"""Crash safety and scale-out with real server processes.

* kill -9 of the server mid-workflow on SQLite and on Redis: after a restart every
  session runs to its end, nothing is lost and no completion is applied twice;
* two server processes sharing one Redis dispatch together and never send the same
  attempt twice.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.agents import ContractAgent, running_agents
from support.server_process import ServerProcess

API_KEY = "crash-test-key"
HEADERS = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture(params=["sqlite", "redis"])
def durable_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'crash.db'}"
    url: str = request.getfixturevalue("redis_url")
    return url


def workflow(steps: int) -> dict[str, Any]:
    return {
        "id": "crashy",
        "name": "crash test",
        "taskDefaults": {
            "completionTimeoutS": 1.5,
            "retryBackoffS": 0.05,
            "retryJitter": False,
            "maxRetries": 10,
        },
        "tasks": [
            {
                "taskId": f"s{i}",
                "agentCapability": "work",
                "routing": "capability",
                "parameters": {"step": i, "prev": f"${{tasks.s{i - 1}.result.echo.step}}"}
                if i > 1
                else {"step": i},
                "nextTaskId": f"s{i + 1}" if i < steps else None,
            }
            for i in range(1, steps + 1)
        ],
    }


async def wait_all_final(
    client: httpx.AsyncClient, session_ids: list[str], timeout_s: float
) -> list[dict[str, Any]]:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        sessions = [(await client.get(f"/v1/opscore/sessions/{s}")).json() for s in session_ids]
        if all(s["status"] in {"completed", "failed", "cancelled"} for s in sessions):
            return sessions
        if asyncio.get_running_loop().time() > deadline:
            pending = [(s["sessionId"], s["status"]) for s in sessions if s["status"] == "running"]
            raise AssertionError(f"sessions still running: {pending}")
        await asyncio.sleep(0.1)


def assert_each_completion_applied_once(sessions: list[dict[str, Any]], steps: int) -> None:
    for session in sessions:
        failed = [t for t in session["tasks"] if t["status"] != "completed"]
        assert session["status"] == "completed", (session["error"], failed)
        assert len(session["tasks"]) == steps
        for task in session["tasks"]:
            assert task["status"] == "completed", task
            completed = [a for a in task["attempts"] if a["status"] == "completed"]
            assert len(completed) == 1, task
            numbers = [a["attempt"] for a in task["attempts"]]
            assert numbers == list(range(1, len(numbers) + 1)), task
        # Each step saw the result of the step before it (parameters rendered once).
        for task in session["tasks"][1:]:
            assert task["parameters"]["prev"] == task["parameters"]["step"] - 1


def assert_no_attempt_sent_twice(agents: list[ContractAgent]) -> None:
    sent = Counter(
        (body["opscore_task_id"], body["opscore_attempt"]) for a in agents for body in a.received
    )
    assert [key for key, n in sent.items() if n > 1] == []


async def test_kill_9_mid_workflow_then_restart_completes_everything(
    durable_url: str, tmp_path: Path
) -> None:
    steps, sessions_n = 5, 6
    server = ServerProcess(storage_url=durable_url, data_dir=tmp_path / "data", api_key=API_KEY)
    agents = [ContractAgent(capabilities=["work"], work_s=0.05) for _ in range(3)]
    try:
        await server.start()
        async with (
            running_agents(*agents),
            httpx.AsyncClient(base_url=server.url, headers=HEADERS, timeout=30) as client,
        ):
            for agent in agents:
                await agent.register(server.url, API_KEY)
                await agent.report("idle")
            assert (await client.post("/v1/opscore/workflows", json=workflow(steps))).is_success
            session_ids = []
            for n in range(sessions_n):
                response = await client.post(
                    "/v1/opscore/sessions",
                    json={"workflowDefinitionId": "crashy", "initialPayload": {"n": n}},
                )
                assert response.status_code == 202, response.text
                session_ids.append(response.json()["sessionId"])
            # Let the workflows get going, then crash the server without warning; twice.
            for seen in (3, 6):
                await asyncio.gather(*(a.wait_for_tasks(seen) for a in agents))
                server.kill()
                await asyncio.sleep(0.3)  # agents' reports meanwhile are lost
                await server.start()
                for agent in agents:  # agents announce themselves again with a heartbeat
                    await agent.report("idle", {"opscore_heartbeat": True})
            sessions = await wait_all_final(client, session_ids, timeout_s=90)
    finally:
        await server.stop()
    assert_each_completion_applied_once(sessions, steps)
    assert_no_attempt_sent_twice(agents)
    assert server.starts == 3


async def test_two_processes_over_one_redis_send_each_attempt_once(
    redis_url: str, tmp_path: Path
) -> None:
    steps, sessions_n = 4, 10
    servers = [
        ServerProcess(storage_url=redis_url, data_dir=tmp_path / f"data{i}", api_key=API_KEY)
        for i in range(2)
    ]
    agents = [ContractAgent(capabilities=["work"], work_s=0.02) for _ in range(4)]
    try:
        for server in servers:
            await server.start()
        async with (
            running_agents(*agents),
            httpx.AsyncClient(headers=HEADERS, timeout=30) as client,
        ):
            # Half the agents talk to each process; registrations and triggers alternate.
            for agent, server in zip(agents, itertools.cycle(servers), strict=False):
                await agent.register(server.url, API_KEY)
                await agent.report("idle")
            first = servers[0].url
            assert (
                await client.post(f"{first}/v1/opscore/workflows", json=workflow(steps))
            ).is_success
            session_ids = []
            for n, server in zip(range(sessions_n), itertools.cycle(servers), strict=False):
                response = await client.post(
                    f"{server.url}/v1/opscore/sessions",
                    json={"workflowDefinitionId": "crashy", "initialPayload": {"n": n}},
                )
                assert response.status_code == 202, response.text
                session_ids.append(response.json()["sessionId"])
            client.base_url = httpx.URL(servers[1].url)
            sessions = await wait_all_final(client, session_ids, timeout_s=90)
    finally:
        for server in servers:
            await server.stop()
    assert_each_completion_applied_once(sessions, steps)
    assert_no_attempt_sent_twice(agents)
    # Both processes did dispatch work (each attempt's agent got it from one of them).
    total = sum(len(a.received) for a in agents)
    assert total >= steps * sessions_n
