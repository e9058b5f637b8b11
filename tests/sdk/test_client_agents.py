"""Agents, state and health through the async client against the real app in-process."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from sdk_server import BASE_URL

from opscore_sdk import (
    Agent,
    AsyncOpsCoreClient,
    AuthenticationError,
    ConflictError,
    NotFoundError,
    ValidationError,
)


async def test_health_and_ready(aclient: AsyncOpsCoreClient) -> None:
    assert await aclient.health() == {"status": "ok"}
    ready = await aclient.ready()
    assert ready["status"] == "ok"
    assert ready["storage"] == "memory"


async def test_register_get_reregister_and_deregister(aclient: AsyncOpsCoreClient) -> None:
    agent = await aclient.register_agent(
        "worker",
        agent_id="worker:1@eu",  # ':' and '@' are valid ids and must survive the path
        version="2.1",
        capabilities=["a", "b"],
        contact_endpoint="http://127.0.0.1:9/task",
        metadata={"team": "x"},
        transport="direct",
    )
    assert isinstance(agent, Agent)
    assert agent.agent_id == "worker:1@eu"
    assert (agent.name, agent.version, agent.capabilities) == ("worker", "2.1", ["a", "b"])
    assert agent.contact_endpoint == "http://127.0.0.1:9/task"
    assert agent.metadata == {"team": "x"}
    assert (agent.transport, agent.source, agent.state) == ("direct", "api", "unknown")
    assert agent.registered_at is not None

    again = await aclient.register_agent("renamed", agent_id="worker:1@eu", capabilities=["c"])
    assert again.name == "renamed"
    assert again.capabilities == ["c"]
    assert again.registered_at == agent.registered_at

    fetched = await aclient.get_agent("worker:1@eu")
    assert fetched.name == "renamed"
    assert fetched.to_dict()["agentId"] == "worker:1@eu"  # camelCase for --json output

    generated = await aclient.register_agent("anonymous")
    assert generated.agent_id

    await aclient.deregister_agent("worker:1@eu")
    with pytest.raises(NotFoundError) as caught:
        await aclient.get_agent("worker:1@eu")
    assert caught.value.status == 404
    assert caught.value.code == "agent_not_found"
    assert caught.value.request_id
    with pytest.raises(NotFoundError):
        await aclient.deregister_agent("worker:1@eu")


async def test_list_filters_and_iterates_every_page(aclient: AsyncOpsCoreClient) -> None:
    for i in range(5):
        await aclient.register_agent(f"a{i}", agent_id=f"a{i}", capabilities=[f"cap{i % 2}"])
    await aclient.update_state("a1", "idle")

    page = await aclient.list_agents(limit=2)
    assert len(page.items) == 2
    assert page.next_cursor is not None
    rest = await aclient.list_agents(limit=10, cursor=page.next_cursor)
    assert rest.next_cursor is None
    assert len(page.items) + len(rest.items) == 5

    everything = [a.agent_id async for a in aclient.iter_agents(page_size=2)]
    assert sorted(everything) == ["a0", "a1", "a2", "a3", "a4"]

    capable = [a.agent_id async for a in aclient.iter_agents(capability="cap1")]
    assert sorted(capable) == ["a1", "a3"]
    idle = await aclient.list_agents(state="idle")
    assert [a.agent_id for a in idle.items] == ["a1"]
    idle_capable = await aclient.list_agents(state="idle", capability="cap0")
    assert idle_capable.items == []


async def test_state_reports_history_and_lifecycle_conflicts(
    aclient: AsyncOpsCoreClient,
) -> None:
    await aclient.register_agent("s", agent_id="stateful")
    accepted = await aclient.update_state("stateful", "initializing")
    assert (accepted.status, accepted.agent_id, accepted.state) == (
        "accepted",
        "stateful",
        "initializing",
    )
    await aclient.update_state("stateful", "idle", {"note": "ready"})
    await aclient.update_state("stateful", "error", {"error_code": "X", "message": "boom"})

    state = await aclient.get_state("stateful")
    assert state.state == "error"
    assert state.details == {"error_code": "X", "message": "boom"}
    assert state.timestamp is not None

    await aclient.update_state("stateful", "finished")
    with pytest.raises(ConflictError) as caught:  # finished -> active is not allowed
        await aclient.update_state("stateful", "active")
    assert caught.value.status == 409
    assert "finished" in caught.value.detail

    with pytest.raises(ValidationError) as invalid:
        await aclient.update_state("stateful", "dancing")
    assert invalid.value.status in (400, 422)

    history = await aclient.agent_history("stateful")
    assert [e.state for e in history] == ["finished", "error", "idle", "initializing"]
    assert history[1].previous_state == "idle"
    assert history[2].details == {"note": "ready"}
    assert [e.state for e in await aclient.agent_history("stateful", limit=1, offset=2)] == ["idle"]

    with pytest.raises(NotFoundError):
        await aclient.get_state("nobody-knows-me")


async def test_wrong_or_missing_key_is_an_authentication_error(app: FastAPI) -> None:
    for key in ("wrong-key", None):
        async with AsyncOpsCoreClient(
            BASE_URL, key, transport=httpx.ASGITransport(app=app)
        ) as client:
            with pytest.raises(AuthenticationError) as caught:
                await client.list_agents()
            assert caught.value.status == 401
            assert caught.value.request_id
            assert str(caught.value).startswith("401 ")
            assert "\n" not in str(caught.value)
            assert await client.health() == {"status": "ok"}  # public route
