"""kill -9 of a real server on SQLite and on Redis loses nothing it acknowledged.

Writers register agents and post state reports concurrently; the server is killed
with SIGKILL while requests are in flight and restarted on the same storage. Every
request that got a 2xx must be there afterwards: the agent, its history entry, and a
last state at least as new as the last acknowledged report.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from support.server_process import ServerProcess

API_KEY = "durability-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
WRITERS = 8
# A cycle every agent may follow forever under the transition table.
CYCLE = ["initializing", "idle", "active", "idle", "active", "error", "idle"]


@dataclass
class Acked:
    """What the server acknowledged, per agent: registration and report sequence numbers."""

    registered: set[str] = field(default_factory=set)
    reports: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    failed_requests: int = 0

    @property
    def report_count(self) -> int:
        return sum(len(r) for r in self.reports.values())


@pytest.fixture(params=["sqlite", "redis"])
def durable_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'durable.db'}"
    url: str = request.getfixturevalue("redis_url")
    return url


async def _writer(client: httpx.AsyncClient, name: str, acked: Acked) -> None:
    """Register an agent, report states through the cycle; move on to a new agent
    now and then. Stops at the first failed request (the server is gone)."""
    for number in itertools.count():
        agent_id = f"{name}-a{number}"
        try:
            response = await client.post(
                "/v1/opscore/agents",
                json={"agentId": agent_id, "name": agent_id, "capabilities": [name]},
            )
            if response.status_code not in (200, 201):
                raise AssertionError(f"register answered {response.status_code}")
            acked.registered.add(agent_id)
            for seq, state in enumerate(CYCLE * 2):
                response = await client.post(
                    f"/v1/opscore/agent/{agent_id}/state",
                    json={"agentId": agent_id, "state": state, "details": {"seq": seq}},
                )
                if response.status_code != 202:
                    raise AssertionError(f"report answered {response.status_code}")
                acked.reports.setdefault(agent_id, []).append((seq, state))
        except httpx.TransportError:
            acked.failed_requests += 1
            return


async def _load_until_killed(
    server: ServerProcess, acked: Acked, *, round_: int, min_reports: int
) -> None:
    limits = httpx.Limits(max_connections=WRITERS)
    async with httpx.AsyncClient(
        base_url=server.url, headers=AUTH, timeout=30, limits=limits
    ) as client:
        writers = [
            asyncio.create_task(_writer(client, f"r{round_}w{w}", acked)) for w in range(WRITERS)
        ]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 120
        while acked.report_count < min_reports:
            if loop.time() > deadline:
                raise AssertionError(f"only {acked.report_count} reports acknowledged")
            if all(w.done() for w in writers):
                raise AssertionError(f"writers stopped early: {server.log()}")
            await asyncio.sleep(0.01)
        server.kill()  # SIGKILL while every writer has a request on the wire
        await asyncio.wait_for(asyncio.gather(*writers), timeout=60)


async def _check_everything_acked_is_there(client: httpx.AsyncClient, acked: Acked) -> None:
    for agent_id in sorted(acked.registered):
        response = await client.get(f"/v1/opscore/agents/{agent_id}")
        assert response.status_code == 200, f"acknowledged agent {agent_id} lost"
        agent = response.json()
        reports = acked.reports.get(agent_id, [])
        if not reports:
            continue
        history = (
            await client.get(f"/v1/opscore/agents/{agent_id}/history", params={"limit": 500})
        ).json()["items"]
        stored = {(e["details"]["seq"], e["state"]) for e in history}
        missing = set(reports) - stored
        assert not missing, f"{agent_id}: acknowledged reports lost: {sorted(missing)}"
        # The last state is the last acknowledged report, or the one in flight after it.
        last_seq, _ = reports[-1]
        assert agent["stateDetails"]["seq"] in (last_seq, last_seq + 1), agent
        assert agent["state"] == CYCLE[agent["stateDetails"]["seq"] % len(CYCLE)]


@pytest.mark.timeout(300)
async def test_kill_9_loses_no_acknowledged_write(durable_url: str, tmp_path: Path) -> None:
    server = ServerProcess(storage_url=durable_url, data_dir=tmp_path / "data", api_key=API_KEY)
    acked = Acked()
    await server.start()
    try:
        await _load_until_killed(server, acked, round_=1, min_reports=150)
        assert acked.failed_requests >= 1, "the kill should have cut requests in flight"

        # A second round on the restarted server, killed again, then checked.
        await server.start()
        await _load_until_killed(server, acked, round_=2, min_reports=acked.report_count + 150)

        await server.start()
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=30) as client:
            await _check_everything_acked_is_there(client, acked)
    finally:
        await server.stop()
    assert len(acked.registered) >= WRITERS
