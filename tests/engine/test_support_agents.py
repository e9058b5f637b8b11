"""The test agents and fake AgentKit behave as the contract says, over real HTTP.

Ops-Core's side is a tiny stub (a FastAPI app served by uvicorn) that records state
reports and registrations, so these tests do not depend on the real API.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from opscore.engine.transports import TaskDelivery, build_message
from support.agentkit import FakeAgentKit, sign_webhook
from support.agents import ContractAgent, contract_timestamp, running_agents
from support.servers import serve_app, unused_url

API_KEY = "test-key-123"
SECRET = "webhook-secret"


@dataclass
class StubOpsCore:
    """Records what agents and AgentKit send to Ops-Core."""

    url: str = ""
    reports: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    registrations: list[dict[str, Any]] = field(default_factory=list)
    webhooks: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    def states(self, agent_id: str) -> list[str]:
        return [body["state"] for aid, _, body in self.reports if aid == agent_id]


def _stub_app(stub: StubOpsCore) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/opscore/agent/{agent_id}/state", status_code=202)
    async def state(agent_id: str, request: Request) -> dict[str, str]:
        stub.reports.append(
            (agent_id, request.headers.get("authorization", ""), await request.json())
        )
        return {"status": "accepted"}

    @app.post("/v1/opscore/agents", status_code=201)
    async def register(request: Request) -> JSONResponse:
        if request.headers.get("authorization") != f"Bearer {API_KEY}":
            return JSONResponse({"detail": "unauthenticated"}, status_code=401)
        body = await request.json()
        stub.registrations.append(body)
        return JSONResponse(body, status_code=201)

    @app.post("/v1/opscore/internal/agent/notify")
    async def notify(request: Request) -> dict[str, str]:
        stub.webhooks.append((dict(request.headers), await request.body()))
        return {"status": "ok"}

    return app


@pytest.fixture
async def opscore() -> AsyncIterator[StubOpsCore]:
    stub = StubOpsCore()
    async with serve_app(_stub_app(stub)) as url:
        stub.url = url
        yield stub


def _delivery(task_id: str = "task-1", attempt: int = 1, **params: Any) -> TaskDelivery:
    return TaskDelivery(
        agent_id="ignored",
        contact_endpoint=None,
        session_id="session-1",
        task_id=task_id,
        task_name="step_1",
        attempt=attempt,
        parameters=params or {"message": "hello"},
        dispatch_timeout_s=5.0,
        completion_timeout_s=30.0,
    )


async def _send(agent: ContractAgent, delivery: TaskDelivery) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.post(agent.url, json=build_message(delivery))


async def test_succeeding_agent_reports_active_then_idle_with_result(
    opscore: StubOpsCore,
) -> None:
    async with ContractAgent(opscore_url=opscore.url, api_key=API_KEY) as agent:
        response = await _send(agent, _delivery(message="hi"))
        assert response.status_code == 200
        await agent.wait_for_reports(1, state="idle")

    assert agent.received[0]["payload"] == {"message": "hi"}
    assert opscore.states(agent.agent_id) == ["active", "idle"]
    for path_id, auth, body in opscore.reports:
        assert path_id == agent.agent_id
        assert auth == f"Bearer {API_KEY}"
        assert set(body) == {"agentId", "timestamp", "state", "details"}
        assert body["agentId"] == agent.agent_id
        assert body["timestamp"].endswith("+00:00")
    active, idle = (body["details"] for _, _, body in opscore.reports)
    assert active == {"opscore_task_id": "task-1", "opscore_attempt": 1}
    assert idle == {
        "echo": {"message": "hi"},
        "taskName": "step_1",
        "handledBy": agent.agent_id,
        "opscore_task_id": "task-1",
        "opscore_attempt": 1,
    }
    assert all(r.status_code == 202 for r in agent.reports)


async def test_fail_first_fails_n_attempts_then_succeeds(opscore: StubOpsCore) -> None:
    async with ContractAgent(
        behaviour="fail_first", fail_times=2, opscore_url=opscore.url, api_key=API_KEY
    ) as agent:
        for attempt in (1, 2, 3):
            await _send(agent, _delivery(attempt=attempt))
            await agent.wait_for_reports(attempt, state="idle")
        assert agent.attempts_seen("task-1") == 3

    assert opscore.states(agent.agent_id) == [
        *("active", "error", "idle"),
        *("active", "error", "idle"),
        *("active", "idle"),
    ]
    error = opscore.reports[1][2]["details"]
    assert error["error_code"] == "PROCESSING_ERROR"
    assert agent.agent_id in error["message"]
    assert error["opscore_attempt"] == 1
    assert opscore.reports[2][2]["details"] == {}  # the idle after an error is no result
    assert opscore.reports[-1][2]["details"]["echo"] == {"message": "hello"}


async def test_always_fail_never_succeeds(opscore: StubOpsCore) -> None:
    async with ContractAgent(
        behaviour="always_fail", opscore_url=opscore.url, api_key=API_KEY
    ) as agent:
        for attempt in (1, 2):
            await _send(agent, _delivery(attempt=attempt))
            await agent.wait_for_reports(attempt, state="idle")
    assert opscore.states(agent.agent_id) == ["active", "error", "idle"] * 2


async def test_silent_agent_accepts_and_never_reports(opscore: StubOpsCore) -> None:
    async with ContractAgent(behaviour="silent", opscore_url=opscore.url, api_key=API_KEY) as a:
        response = await _send(a, _delivery())
        assert response.status_code == 200
        assert len(a.received) == 1
    assert a.reports == []
    assert opscore.reports == []


async def test_refusing_agent_answers_500(opscore: StubOpsCore) -> None:
    async with ContractAgent(behaviour="refuse", opscore_url=opscore.url, api_key=API_KEY) as a:
        response = await _send(a, _delivery())
    assert response.status_code == 500
    assert a.agent_id in response.json()["detail"]
    assert len(a.received) == 1
    assert opscore.reports == []


async def test_inline_agent_answers_when_done_then_reports(opscore: StubOpsCore) -> None:
    async with ContractAgent(
        behaviour="inline", work_s=0.2, opscore_url=opscore.url, api_key=API_KEY
    ) as agent:
        response = await _send(agent, _delivery(value=123))
        assert response.status_code == 200
        answer = response.json()
        assert answer["status"] == "completed"
        assert answer["result"]["echo"] == {"value": 123}
        assert agent.reports == [] or agent.reports[0].state == "active"
        await agent.wait_for_reports(1, state="idle")
    assert opscore.states(agent.agent_id) == ["active", "idle"]


async def test_unreachable_agent_refuses_connections() -> None:
    async with ContractAgent(behaviour="unreachable") as agent:
        assert agent.url.endswith("/task")
        with pytest.raises(httpx.ConnectError):
            await _send(agent, _delivery())


async def test_uncorrelated_agent_reports_no_task_id(opscore: StubOpsCore) -> None:
    async with ContractAgent(correlate=False, opscore_url=opscore.url, api_key=API_KEY) as a:
        await _send(a, _delivery())
        await a.wait_for_reports(1, state="idle")
    active, idle = (body["details"] for _, _, body in opscore.reports)
    assert active == {}
    assert "opscore_task_id" not in idle
    assert idle["echo"] == {"message": "hello"}


async def test_custom_result_function(opscore: StubOpsCore) -> None:
    def doubled(body: dict[str, Any]) -> dict[str, Any]:
        return {"value": body["payload"]["value"] * 2}

    async with ContractAgent(result=doubled, opscore_url=opscore.url, api_key=API_KEY) as a:
        await _send(a, _delivery(value=21))
        (idle,) = await a.wait_for_reports(1, state="idle")
    assert idle.details["value"] == 42


async def test_register_posts_the_agent_to_opscore(opscore: StubOpsCore) -> None:
    async with ContractAgent(capabilities=["x", "y"]) as agent:
        await agent.register(opscore.url, API_KEY)
        report = await agent.report("idle")
    assert opscore.registrations == [
        {
            "agentId": agent.agent_id,
            "name": agent.agent_id,
            "capabilities": ["x", "y"],
            "contactEndpoint": agent.url,
            "transport": "direct",
        }
    ]
    assert report.status_code == 202
    assert opscore.states(agent.agent_id) == ["idle"]


async def test_report_to_unreachable_opscore_is_recorded_not_raised() -> None:
    async with ContractAgent(opscore_url=unused_url(path=""), api_key=API_KEY) as agent:
        report = await agent.report("idle", {"a": 1})
    assert report.status_code == 0
    assert report.error


async def test_several_agents_run_at_once(opscore: StubOpsCore) -> None:
    agents = [ContractAgent(opscore_url=opscore.url, api_key=API_KEY) for _ in range(3)]
    async with running_agents(*agents):
        assert len({a.url for a in agents}) == 3
        for number, agent in enumerate(agents):
            await _send(agent, _delivery(task_id=f"t{number}", n=number))
        for number, agent in enumerate(agents):
            (idle,) = await agent.wait_for_reports(1, state="idle")
            assert idle.details["echo"] == {"n": number}


async def test_agent_rejects_a_body_that_is_not_a_message() -> None:
    async with ContractAgent() as agent, httpx.AsyncClient() as client:
        response = await client.post(agent.url, json=[1, 2])
    assert response.status_code == 422
    assert agent.received == []


def test_contract_timestamp_is_iso_with_utc_offset() -> None:
    stamp = contract_timestamp()
    assert stamp.endswith("+00:00")
    assert datetime.fromisoformat(stamp).utcoffset() is not None


# -- FakeAgentKit --------------------------------------------------------------------


async def test_agentkit_register_sends_signed_compact_webhook(opscore: StubOpsCore) -> None:
    notify = f"{opscore.url}/v1/opscore/internal/agent/notify"
    async with FakeAgentKit(webhook_url=notify, webhook_secret=SECRET) as agentkit:
        agent_id = await agentkit.register(
            name="a1", contact_endpoint="http://127.0.0.1:9/task", capabilities=["x"]
        )
        await agentkit.wait_for("webhooks", 1)
    assert agentkit.webhooks[0].status_code == 200
    headers, raw = opscore.webhooks[0]
    assert raw == (
        b'{"event_type":"REGISTER","agent_details":{"agentId":"' + agent_id.encode() + b'",'
        b'"agentName":"a1","version":"1","capabilities":["x"],'
        b'"contactEndpoint":"http://127.0.0.1:9/task","metadata":{}}}'
    )
    timestamp = headers["x-agentkit-timestamp"]
    expected = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + raw, hashlib.sha256)
    assert headers["x-agentkit-signature"] == expected.hexdigest()
    assert sign_webhook(SECRET, timestamp, raw) == expected.hexdigest()
    assert headers["content-type"] == "application/json"
    assert "authorization" not in headers


async def test_agentkit_sends_no_webhook_for_agents_with_metadata(opscore: StubOpsCore) -> None:
    notify = f"{opscore.url}/v1/opscore/internal/agent/notify"
    async with FakeAgentKit(webhook_url=notify, webhook_secret=SECRET) as agentkit:
        await agentkit.register(
            name="meta", contact_endpoint="http://x/task", metadata={"description": "d"}
        )
        await agentkit.register(name="plain", contact_endpoint="http://x/task")
        await agentkit.wait_for("webhooks", 1)
    names = [json.loads(raw)["agent_details"]["agentName"] for _, raw in opscore.webhooks]
    assert names == ["plain"]


async def test_agentkit_deregister_notification(opscore: StubOpsCore) -> None:
    notify = f"{opscore.url}/v1/opscore/internal/agent/notify"
    async with FakeAgentKit(webhook_url=notify, webhook_secret=SECRET) as agentkit:
        agent_id = await agentkit.register(name="a", contact_endpoint="http://x/task")
        webhook = await agentkit.notify("DEREGISTER", agent_id)
    assert webhook.status_code == 200
    assert json.loads(webhook.body)["event_type"] == "DEREGISTER"


async def test_agentkit_run_schedules_and_forwards_known_fields(opscore: StubOpsCore) -> None:
    async with (
        ContractAgent(opscore_url=opscore.url, api_key=API_KEY) as agent,
        FakeAgentKit() as agentkit,
        httpx.AsyncClient() as client,
    ):
        agent_id = await agentkit.register(name="a", contact_endpoint=agent.url)
        sent = build_message(_delivery())
        response = await client.post(f"{agentkit.url}/v1/agents/{agent_id}/run", json=sent)
        (received,) = await agent.wait_for_tasks(1)
        await agentkit.wait_for("forwards", 1)
    assert response.status_code == 202
    assert response.json() == {
        "status": "success",
        "message": f"Message for agent {agent_id} scheduled for dispatch.",
        "data": {"agentId": agent_id, "dispatch_status": "scheduled"},
        "error_code": None,
    }
    assert agentkit.runs[0].body == sent
    expected = {k: v for k, v in sent.items() if k != "opscore_attempt"}  # dropped
    assert received == expected
    assert agentkit.forwards[0].status_code == 200


async def test_agentkit_run_404_and_422() -> None:
    async with FakeAgentKit() as agentkit, httpx.AsyncClient() as client:
        missing = await client.post(
            f"{agentkit.url}/v1/agents/nope/run", json=build_message(_delivery())
        )
        agent_id = await agentkit.register(name="a", contact_endpoint="http://x/task")
        malformed = await client.post(
            f"{agentkit.url}/v1/agents/{agent_id}/run", json={"senderId": "opscore"}
        )
    assert missing.status_code == 404
    assert missing.json() == {"detail": "Agent with ID 'nope' not found."}
    assert malformed.status_code == 422
    assert agentkit.runs == []


async def test_agentkit_forward_defect_never_reaches_the_agent() -> None:
    async with ContractAgent() as agent, FakeAgentKit(forward_defect=True) as agentkit:
        agent_id = await agentkit.register(name="a", contact_endpoint=agent.url)
        async with httpx.AsyncClient() as client:
            response = await client.post(
                f"{agentkit.url}/v1/agents/{agent_id}/run", json=build_message(_delivery())
            )
    assert response.status_code == 202
    assert len(agentkit.runs) == 1
    assert agentkit.forwards == []
    assert agent.received == []


# -- against the real Ops-Core ---------------------------------------------------------


async def test_agentkit_agent_runs_a_workflow_on_the_real_opscore(tmp_path: Path) -> None:
    """AgentKit registers the agent by webhook; the task goes through AgentKit's /run."""
    from opscore.api.app import create_app
    from opscore.settings import Settings

    async with FakeAgentKit() as agentkit:
        settings = Settings(
            storage_url="memory://",
            data_dir=tmp_path,
            api_key=API_KEY,
            webhook_secret=SECRET,
            agentkit_url=agentkit.url,
            log_level="warning",
        )
        async with serve_app(create_app(settings)) as url:
            agentkit.webhook_url = f"{url}/v1/opscore/internal/agent/notify"
            agentkit.webhook_secret = SECRET
            async with (
                ContractAgent(opscore_url=url, api_key=API_KEY) as agent,
                httpx.AsyncClient(
                    base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}
                ) as client,
            ):
                agent_id = await agent.register_with_agentkit(agentkit.url)
                await agentkit.wait_for("webhooks", 1)
                assert agentkit.webhooks[0].status_code in {200, 202}
                await agent.report("idle")
                definition = {
                    "id": "one_step",
                    "name": "One step",
                    "version": "1.0",
                    "tasks": [
                        {
                            "taskId": "step_1",
                            "name": "First Step",
                            "agentCapability": "test_capability",
                            "parameters": {"message": "via agentkit"},
                            "nextTaskId": None,
                        }
                    ],
                }
                started = await client.post(
                    f"/v1/opscore/agent/{agent_id}/workflow",
                    json={"workflowDefinition": definition, "initialPayload": {}},
                )
                assert started.status_code == 202, started.text
                session = await _finished_session(client, started.json()["sessionId"])
    assert session["status"] == "completed", session
    (task,) = session["tasks"]
    assert task["result"]["echo"] == {"message": "via agentkit"}
    assert task["attempts"][0]["transport"] == "agentkit"
    assert agentkit.runs[0].agent_id == agent_id
    assert "opscore_attempt" not in agent.received[0]  # AgentKit drops unknown fields


async def _finished_session(client: httpx.AsyncClient, session_id: str) -> dict[str, Any]:
    async with asyncio.timeout(30):
        while True:
            session: dict[str, Any] = (
                await client.get(f"/v1/opscore/sessions/{session_id}")
            ).json()
            if session.get("status") in {"completed", "failed", "cancelled"}:
                return session
            await asyncio.sleep(0.05)
