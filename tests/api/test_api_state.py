"""State reports and reads: /v1/opscore/agent/{agentId}/state (contract sections 3, 4)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from api_support import assert_problem, make_settings, running_app, snapshot

STATE = "/v1/opscore/agent/{}/state"


async def test_report_registers_unknown_agent_implicitly(
    backend_client: httpx.AsyncClient,
) -> None:
    response = await backend_client.post(
        STATE.format("fresh-1"), json={"agentId": "fresh-1", "state": "initializing"}
    )
    assert response.status_code == 202
    assert response.json() == {"status": "accepted", "agentId": "fresh-1", "state": "initializing"}
    agent = (await backend_client.get("/v1/opscore/agents/fresh-1")).json()
    assert agent["source"] == "report"
    assert agent["name"] == "fresh-1"
    assert agent["state"] == "initializing"


async def test_report_without_body_agent_id_and_with_details(
    backend_client: httpx.AsyncClient,
) -> None:
    details = {"error_code": "PROCESSING_ERROR", "message": "boom"}
    response = await backend_client.post(
        STATE.format("a1"), json={"state": "ERROR", "details": details}
    )
    assert response.status_code == 202
    assert response.json()["state"] == "error"
    view = (await backend_client.get(STATE.format("a1"))).json()
    assert view["state"] == "error"
    assert view["details"] == details


async def test_repeating_the_current_state_is_accepted(client: httpx.AsyncClient) -> None:
    for _ in range(3):
        assert (await client.post(STATE.format("a1"), json={"state": "idle"})).status_code == 202
    history = (await client.get("/v1/opscore/agents/a1/history")).json()["items"]
    assert [e["state"] for e in history] == ["idle", "idle", "idle"]


async def test_bad_transition_is_409_naming_both_states(
    backend_client: httpx.AsyncClient,
) -> None:
    await backend_client.post(STATE.format("a1"), json={"state": "finished"})
    before = await snapshot(backend_client)
    response = await backend_client.post(STATE.format("a1"), json={"state": "active"})
    body = assert_problem(response, 409, "invalid_transition")
    assert "'finished'" in body["detail"]
    assert "'active'" in body["detail"]
    assert await snapshot(backend_client) == before


async def test_path_body_mismatch_is_400_and_changes_nothing(client: httpx.AsyncClient) -> None:
    await client.post(STATE.format("a1"), json={"state": "idle"})
    before = await snapshot(client)
    response = await client.post(STATE.format("a1"), json={"agentId": "a2", "state": "active"})
    body = assert_problem(response, 400, "agent_id_mismatch")
    assert "'a1'" in body["detail"]
    assert "'a2'" in body["detail"]
    assert await snapshot(client) == before


async def test_unknown_and_invalid_states_are_rejected(client: httpx.AsyncClient) -> None:
    await client.post(STATE.format("a1"), json={"state": "idle"})
    before = await snapshot(client)
    problem = assert_problem(
        await client.post(STATE.format("a1"), json={"state": "sleeping"}), 422, "validation_error"
    )
    assert [e["field"] for e in problem["errors"]] == ["body.state"]
    assert_problem(
        await client.post(STATE.format("a1"), json={"state": "unknown"}), 400, "invalid_input"
    )
    problem = assert_problem(
        await client.post(
            STATE.format("a1"), json={"state": 3, "details": [], "timestamp": "yesterday"}
        ),
        422,
        "validation_error",
    )
    assert {e["field"] for e in problem["errors"]} == {
        "body.state",
        "body.details",
        "body.timestamp",
    }
    problem = assert_problem(
        await client.post(STATE.format("bad id"), json={"state": "idle"}), 422, "validation_error"
    )
    assert [e["field"] for e in problem["errors"]] == ["path.agentId"]
    assert await snapshot(client) == before


async def test_get_state_shape_and_404(backend_client: httpx.AsyncClient) -> None:
    assert_problem(await backend_client.get(STATE.format("ghost")), 404, "agent_not_found")
    registered = (
        await backend_client.post("/v1/opscore/agents", json={"agentId": "r1", "name": "r"})
    ).json()
    view = (await backend_client.get(STATE.format("r1"))).json()
    # No report yet: the registration time stands in for the report's timestamp.
    assert view == {
        "agentId": "r1",
        "state": "unknown",
        "details": {},
        "timestamp": registered["registeredAt"],
    }
    await backend_client.post(
        STATE.format("r1"),
        json={"state": "idle", "timestamp": "2026-01-02T03:04:05+02:00", "details": {"k": 1}},
    )
    view = (await backend_client.get(STATE.format("r1"))).json()
    assert view["state"] == "idle"
    assert view["details"] == {"k": 1}
    reported = datetime.fromisoformat(view["timestamp"])
    assert reported == datetime(2026, 1, 2, 1, 4, 5, tzinfo=UTC)


async def test_stale_agent_reads_as_offline(tmp_path: Path) -> None:
    async with running_app(make_settings(tmp_path, agent_stale_s=0.05)) as (_app, client):
        await client.post(STATE.format("a1"), json={"state": "active"})
        await asyncio.sleep(0.2)  # only ever gets staler on a slow machine
        assert (await client.get(STATE.format("a1"))).json()["state"] == "offline"
        assert (await client.get("/v1/opscore/agents/a1")).json()["state"] == "offline"
        listed = (await client.get("/v1/opscore/agents", params={"state": "offline"})).json()
        assert [a["agentId"] for a in listed["items"]] == ["a1"]
        # Coming back is a normal report.
        assert (await client.post(STATE.format("a1"), json={"state": "idle"})).status_code == 202


@pytest.mark.parametrize("count", [40])
async def test_concurrent_reports_all_recorded(client: httpx.AsyncClient, count: int) -> None:
    responses = await asyncio.gather(
        *(client.post(STATE.format(f"c{i}"), json={"state": "idle"}) for i in range(count))
    )
    assert all(r.status_code == 202 for r in responses)
    listed = (await client.get("/v1/opscore/agents", params={"limit": 500})).json()["items"]
    assert len(listed) == count
