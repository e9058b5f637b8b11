"""The agent registry routes: /v1/opscore/agents."""

from __future__ import annotations

import uuid

import httpx
from api_support import assert_problem, snapshot

AGENTS = "/v1/opscore/agents"


async def _register(client: httpx.AsyncClient, **body: object) -> dict[str, object]:
    response = await client.post(AGENTS, json={"name": "worker", **body})
    assert response.status_code in (200, 201), response.text
    data: dict[str, object] = response.json()
    return data


async def test_register_generates_uuid_and_location(backend_client: httpx.AsyncClient) -> None:
    response = await backend_client.post(
        AGENTS,
        json={
            "name": "summariser",
            "version": "2.1",
            "capabilities": ["summarise", "translate", "summarise"],
            "contactEndpoint": "http://agent:9000/run",
            "metadata": {"description": "d"},
            "transport": "direct",
        },
    )
    assert response.status_code == 201
    agent = response.json()
    assert str(uuid.UUID(agent["agentId"])) == agent["agentId"]
    assert response.headers["location"] == f"{AGENTS}/{agent['agentId']}"
    assert agent["name"] == "summariser"
    assert agent["version"] == "2.1"
    assert agent["capabilities"] == ["summarise", "translate"]
    assert agent["contactEndpoint"] == "http://agent:9000/run"
    assert agent["metadata"] == {"description": "d"}
    assert agent["transport"] == "direct"
    assert agent["source"] == "api"
    assert agent["state"] == "unknown"
    assert agent["registeredAt"]
    assert agent["lastSeenAt"]
    fetched = await backend_client.get(f"{AGENTS}/{agent['agentId']}")
    assert fetched.status_code == 200
    assert fetched.json() == agent


async def test_reregister_updates_fields_and_keeps_state(
    backend_client: httpx.AsyncClient,
) -> None:
    await _register(backend_client, agentId="a1", capabilities=["x"])
    report = {"agentId": "a1", "state": "active", "details": {"job": 1}}
    assert (await backend_client.post("/v1/opscore/agent/a1/state", json=report)).status_code == 202
    response = await backend_client.post(
        AGENTS, json={"agentId": "a1", "name": "renamed", "capabilities": ["y"]}
    )
    assert response.status_code == 200
    assert response.headers["location"] == f"{AGENTS}/a1"
    agent = response.json()
    assert agent["name"] == "renamed"
    assert agent["capabilities"] == ["y"]
    assert agent["state"] == "active"
    assert agent["stateDetails"] == {"job": 1}
    history = (await backend_client.get(f"{AGENTS}/a1/history")).json()["items"]
    assert [e["state"] for e in history] == ["active"]


async def test_list_filters_by_state_and_capability(backend_client: httpx.AsyncClient) -> None:
    await _register(backend_client, agentId="a1", capabilities=["x", "y"])
    await _register(backend_client, agentId="a2", capabilities=["y"])
    await _register(backend_client, agentId="a3", capabilities=["z"])
    await backend_client.post("/v1/opscore/agent/a2/state", json={"state": "idle"})

    async def ids(**params: object) -> list[str]:
        response = await backend_client.get(AGENTS, params=params)
        assert response.status_code == 200, response.text
        return [a["agentId"] for a in response.json()["items"]]

    assert await ids() == ["a1", "a2", "a3"]
    assert await ids(capability="y") == ["a1", "a2"]
    assert await ids(state="idle") == ["a2"]
    assert await ids(state="unknown") == ["a1", "a3"]
    assert await ids(state="unknown", capability="y") == ["a1"]
    assert await ids(capability="nobody") == []


async def test_list_paginates_with_cursor(backend_client: httpx.AsyncClient) -> None:
    expected = [f"agent-{i:02d}" for i in range(7)]
    for agent_id in reversed(expected):
        await _register(backend_client, agentId=agent_id)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, object] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = (await backend_client.get(AGENTS, params=params)).json()
        assert len(page["items"]) <= 3
        seen.extend(a["agentId"] for a in page["items"])
        pages += 1
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == expected
    assert pages == 3


async def test_an_exactly_full_last_page_has_no_cursor(backend_client: httpx.AsyncClient) -> None:
    for i in range(4):
        await _register(backend_client, agentId=f"agent-{i}")
    first = (await backend_client.get(AGENTS, params={"limit": 2})).json()
    second = (
        await backend_client.get(AGENTS, params={"limit": 2, "cursor": first["nextCursor"]})
    ).json()
    assert [a["agentId"] for a in second["items"]] == ["agent-2", "agent-3"]
    assert second["nextCursor"] is None


async def test_list_rejects_bad_query(client: httpx.AsyncClient) -> None:
    for params, field in [
        ({"limit": 0}, "query.limit"),
        ({"limit": 501}, "query.limit"),
        ({"limit": "many"}, "query.limit"),
        ({"state": "sleeping"}, "query.state"),
    ]:
        body = assert_problem(await client.get(AGENTS, params=params), 422, "validation_error")
        assert [e["field"] for e in body["errors"]] == [field]
    assert_problem(await client.get(AGENTS, params={"cursor": "gA"}), 400, "invalid_input")


async def test_get_unknown_agent_is_404(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.get(f"{AGENTS}/ghost"), 404, "agent_not_found")
    assert "ghost" in body["detail"]
    assert_problem(await client.get(f"{AGENTS}/ghost/history"), 404, "agent_not_found")


async def test_deregister(backend_client: httpx.AsyncClient) -> None:
    await _register(backend_client, agentId="a1")
    await backend_client.post("/v1/opscore/agent/a1/state", json={"state": "idle"})
    response = await backend_client.delete(f"{AGENTS}/a1")
    assert response.status_code == 204
    assert response.content == b""
    assert_problem(await backend_client.get(f"{AGENTS}/a1"), 404, "agent_not_found")
    assert_problem(await backend_client.delete(f"{AGENTS}/a1"), 404, "agent_not_found")
    assert (await backend_client.get(AGENTS)).json()["items"] == []


async def test_history_newest_first_with_limit_and_offset(
    backend_client: httpx.AsyncClient,
) -> None:
    states = ["initializing", "idle", "active", "idle", "active", "error", "idle"]
    for state in states:
        response = await backend_client.post(
            "/v1/opscore/agent/h1/state", json={"state": state, "details": {"s": state}}
        )
        assert response.status_code == 202, response.text
    history = (await backend_client.get(f"{AGENTS}/h1/history")).json()["items"]
    assert [e["state"] for e in history] == list(reversed(states))
    assert history[0]["previousState"] == "error"
    assert history[-1]["previousState"] == "unknown"
    assert history[0]["details"] == {"s": "idle"}
    page = (await backend_client.get(f"{AGENTS}/h1/history?limit=2&offset=1")).json()
    assert [e["state"] for e in page["items"]] == ["error", "active"]


async def test_register_rejects_bad_fields_and_changes_nothing(client: httpx.AsyncClient) -> None:
    await _register(client, agentId="keep", capabilities=["x"])
    before = await snapshot(client)
    bad_bodies = [
        ({"capabilities": ["x"]}, {"body.name"}),
        ({"name": "", "capabilities": "x"}, {"body.name", "body.capabilities"}),
        ({"name": "n", "capabilities": ["ok", 3]}, {"body.capabilities[1]"}),
        ({"name": "n", "agentId": "bad id!"}, {"body.agentId"}),
        ({"name": "n", "transport": "pigeon"}, {"body.transport"}),
        ({"agentId": "keep", "name": "n", "metadata": []}, {"body.metadata"}),
    ]
    for body, fields in bad_bodies:
        problem = assert_problem(await client.post(AGENTS, json=body), 422, "validation_error")
        assert {e["field"] for e in problem["errors"]} == fields, problem
        assert all(e["message"] for e in problem["errors"])
    assert await snapshot(client) == before
