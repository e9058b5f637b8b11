"""Task delivery over real HTTP: direct to agents and through a fake AgentKit.

Faults come from real servers (refused ports, 4xx/5xx answers, slow answers); only the
send-side timeouts and dropped connections use httpx.MockTransport.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from opscore.engine.transports import (
    AgentKitTransport,
    DirectTransport,
    TaskDelivery,
    TransportSet,
    build_message,
    choose_transport_kind,
)
from opscore.errors import DispatchError
from support.agentkit import FakeAgentKit
from support.agents import ContractAgent
from support.servers import serve_app, unused_url


class LateFailures:
    """An ``on_late_failure`` callback that records what it gets."""

    def __init__(self) -> None:
        self.errors: list[DispatchError] = []
        self.called = asyncio.Event()

    async def __call__(self, error: DispatchError) -> None:
        self.errors.append(error)
        self.called.set()


def delivery(
    endpoint: str | None = None,
    *,
    agent_id: str = "agent-7",
    dispatch_timeout_s: float = 10.0,
    completion_timeout_s: float = 60.0,
    **parameters: Any,
) -> TaskDelivery:
    return TaskDelivery(
        agent_id=agent_id,
        contact_endpoint=endpoint,
        session_id="sess-1",
        task_id="task-abc",
        task_name="step_1",
        attempt=2,
        parameters=parameters or {"message": "hello"},
        dispatch_timeout_s=dispatch_timeout_s,
        completion_timeout_s=completion_timeout_s,
    )


@pytest.fixture
async def transports() -> AsyncIterator[TransportSet]:
    async with TransportSet(agentkit_url=None) as transport_set:
        yield transport_set


class HoldingApp:
    """An HTTP endpoint that holds each request until released, then answers ``status``."""

    def __init__(self, status: int = 200, body: dict[str, Any] | None = None) -> None:
        self.status = status
        self.body = body or {"status": "completed", "result": {}}
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()
        self.app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["POST"])])

    async def _handle(self, request: Request) -> JSONResponse:
        await request.body()
        self.arrived.set()
        await self.release.wait()
        return JSONResponse(self.body, status_code=self.status)


@pytest.fixture
async def holding() -> AsyncIterator[tuple[HoldingApp, str]]:
    holder = HoldingApp()
    async with serve_app(holder.app, lifespan="off") as url:
        try:
            yield holder, url
        finally:
            holder.release.set()


async def _failure(transport: Any, task: TaskDelivery) -> str:
    with pytest.raises(DispatchError) as caught:
        await transport.deliver(task, LateFailures())
    return caught.value.message


# -- the message ---------------------------------------------------------------------


def test_build_message_has_exactly_the_contract_fields() -> None:
    now = datetime(2026, 11, 24, 11, 23, 12, 694000, tzinfo=UTC)
    message = build_message(delivery(value=123), now=now)
    assert message == {
        "senderId": "opscore",
        "messageType": "workflow_task",
        "payload": {"value": 123},
        "sessionContext": {"sessionId": "sess-1"},
        "timestamp": "2026-11-24T11:23:12.694000+00:00",
        "task_name": "step_1",
        "opscore_session_id": "sess-1",
        "opscore_task_id": "task-abc",
        "opscore_attempt": 2,
    }


def test_build_message_defaults_to_now() -> None:
    stamp = datetime.fromisoformat(build_message(delivery())["timestamp"])
    assert stamp.tzinfo is not None
    assert abs((datetime.now(UTC) - stamp).total_seconds()) < 3600


# -- choosing a transport ------------------------------------------------------------


@pytest.mark.parametrize(
    ("explicit", "source", "agentkit_url", "expected"),
    [
        ("direct", "webhook", "http://ak", "direct"),
        ("agentkit", "api", None, "agentkit"),
        (None, "webhook", "http://ak", "agentkit"),
        (None, "webhook", None, "direct"),
        (None, "api", "http://ak", "direct"),
        (None, "report", "http://ak", "direct"),
    ],
)
def test_choose_transport_kind(
    explicit: Any, source: str, agentkit_url: str | None, expected: str
) -> None:
    assert choose_transport_kind(explicit, source, agentkit_url) == expected


async def test_transport_set_chooses_by_kind(transports: TransportSet) -> None:
    assert transports.choose("direct") is transports.direct
    assert transports.choose("agentkit") is transports.agentkit
    assert transports.direct.name == "direct"
    assert transports.agentkit.name == "agentkit"
    with pytest.raises(DispatchError, match="unknown transport"):
        transports.choose("carrier-pigeon")  # type: ignore[arg-type]


# -- direct --------------------------------------------------------------------------


async def test_direct_delivers_the_message_to_the_agent(transports: TransportSet) -> None:
    async with ContractAgent() as agent:
        await transports.direct.deliver(delivery(agent.url, value=5), LateFailures())
        (received,) = await agent.wait_for_tasks(1)
    expected = build_message(delivery(agent.url, value=5))
    assert received.keys() == expected.keys()
    assert {k: v for k, v in received.items() if k != "timestamp"} == {
        k: v for k, v in expected.items() if k != "timestamp"
    }


async def test_direct_refused_connection(transports: TransportSet) -> None:
    message = await _failure(transports.direct, delivery(unused_url()))
    assert "agent-7" in message
    assert "cannot connect" in message
    assert "connection refused" in message


async def test_direct_unknown_host(transports: TransportSet) -> None:
    message = await _failure(transports.direct, delivery("http://no-such-host.invalid/task"))
    assert "host name not resolved" in message


async def test_direct_to_an_unstarted_contract_agent(transports: TransportSet) -> None:
    async with ContractAgent(behaviour="unreachable") as agent:
        message = await _failure(transports.direct, delivery(agent.url, agent_id=agent.agent_id))
    assert agent.agent_id in message


async def test_direct_without_contact_endpoint(transports: TransportSet) -> None:
    message = await _failure(transports.direct, delivery(None))
    assert "agent 'agent-7' has no contactEndpoint" in message
    assert "cannot receive tasks" in message


async def test_direct_5xx_names_status_and_body(transports: TransportSet) -> None:
    async with ContractAgent(behaviour="refuse") as agent:
        message = await _failure(transports.direct, delivery(agent.url, agent_id=agent.agent_id))
    assert f"agent {agent.agent_id!r} answered HTTP 500" in message
    assert "refuses tasks" in message  # excerpt of the agent's body


async def test_direct_4xx_is_a_failure(transports: TransportSet) -> None:
    async with ContractAgent() as agent:
        message = await _failure(transports.direct, delivery(agent.base_url + "/no-such-path"))
        assert agent.received == []
    assert "answered HTTP 404" in message


async def test_direct_error_messages_never_carry_credentials(transports: TransportSet) -> None:
    endpoint = unused_url(path="/task?token=s3cr3t").replace("http://", "http://user:pw@")
    message = await _failure(transports.direct, delivery(endpoint))
    assert "s3cr3t" not in message
    assert "pw" not in message
    assert "cannot connect" in message


async def test_direct_unusable_url(transports: TransportSet) -> None:
    message = await _failure(transports.direct, delivery("ftp://127.0.0.1/task"))
    assert "unusable URL" in message


async def test_slow_inline_agent_counts_as_delivered(
    transports: TransportSet, holding: tuple[HoldingApp, str]
) -> None:
    holder, url = holding
    late = LateFailures()
    # Returns although the agent has not answered: the task is running inside the POST.
    await transports.direct.deliver(delivery(url, dispatch_timeout_s=0.2), late)
    assert transports.direct.pending == 1
    await asyncio.wait_for(holder.arrived.wait(), 30)
    holder.release.set()
    await asyncio.wait_for(transports.direct.join(), 30)
    assert late.errors == []


async def test_inline_contract_agent_answers_after_dispatch_timeout(
    transports: TransportSet,
) -> None:
    late = LateFailures()
    async with ContractAgent(behaviour="inline", work_s=1.0) as agent:
        task = delivery(agent.url, agent_id=agent.agent_id, dispatch_timeout_s=0.1)
        await transports.direct.deliver(task, late)
        assert transports.direct.pending == 1  # returned before the agent answered
        await asyncio.wait_for(transports.direct.join(), 30)
        assert len(agent.received) == 1  # delivered once, never re-sent
    assert late.errors == []


async def test_late_500_after_dispatch_timeout_reports_late_failure(
    transports: TransportSet,
) -> None:
    holder = HoldingApp(status=500, body={"detail": "crashed while working"})
    late = LateFailures()
    async with serve_app(holder.app, lifespan="off") as url:
        await transports.direct.deliver(delivery(url, dispatch_timeout_s=0.2), late)
        assert late.errors == []
        holder.release.set()
        await asyncio.wait_for(late.called.wait(), 30)
    (error,) = late.errors
    assert "agent 'agent-7' answered HTTP 500" in error.message
    assert "crashed while working" in error.message


async def test_read_timeout_after_completion_timeout_is_not_a_failure(
    transports: TransportSet, holding: tuple[HoldingApp, str]
) -> None:
    _, url = holding
    late = LateFailures()
    task = delivery(url, dispatch_timeout_s=0.1, completion_timeout_s=0.3)
    await transports.direct.deliver(task, late)
    await asyncio.wait_for(transports.direct.join(), 30)
    assert late.errors == []


async def test_aclose_cancels_background_requests(holding: tuple[HoldingApp, str]) -> None:
    _, url = holding
    late = LateFailures()
    transport_set = TransportSet(agentkit_url=None)
    await transport_set.direct.deliver(delivery(url, dispatch_timeout_s=0.1), late)
    assert transport_set.direct.pending == 1
    await asyncio.wait_for(transport_set.aclose(), 30)
    assert transport_set.direct.pending == 0
    assert transport_set.client.is_closed
    assert late.errors == []


async def test_cancelled_delivery_cancels_its_request(
    transports: TransportSet, holding: tuple[HoldingApp, str]
) -> None:
    holder, url = holding
    job = asyncio.create_task(transports.direct.deliver(delivery(url), LateFailures()))
    await asyncio.wait_for(holder.arrived.wait(), 30)
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    assert transports.direct.pending == 0


async def test_late_failure_handler_errors_are_contained(
    transports: TransportSet,
) -> None:
    holder = HoldingApp(status=503)

    async def broken(error: DispatchError) -> None:
        raise RuntimeError("handler bug")

    async with serve_app(holder.app, lifespan="off") as url:
        await transports.direct.deliver(delivery(url, dispatch_timeout_s=0.1), broken)
        holder.release.set()
        await asyncio.wait_for(transports.direct.join(), 30)


# -- faults only a mock can produce ----------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (httpx.ConnectTimeout("slow SYN"), "timed out after 10s connecting to agent 'agent-7'"),
        (httpx.WriteTimeout("slow send"), "timed out after 10s sending the task"),
        (httpx.PoolTimeout("busy"), "no free connection"),
        (httpx.RemoteProtocolError("peer closed"), "closed the connection"),
    ],
)
async def test_direct_transport_errors_are_translated(fault: Exception, expected: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise fault

    async with TransportSet(agentkit_url=None, transport=httpx.MockTransport(handler)) as ts:
        with pytest.raises(DispatchError) as caught:
            await ts.direct.deliver(delivery("http://agent.invalid/task"), LateFailures())
    assert expected in caught.value.message
    assert caught.value.__cause__ is fault


async def test_late_dropped_connection_is_a_late_failure() -> None:
    release = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        await release.wait()
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.")

    late = LateFailures()
    async with TransportSet(agentkit_url=None, transport=httpx.MockTransport(handler)) as ts:
        task = delivery("http://agent.invalid/task", dispatch_timeout_s=0.1)
        await ts.direct.deliver(task, late)
        release.set()
        await asyncio.wait_for(ts.direct.join(), 30)
    (error,) = late.errors
    assert "closed the connection" in error.message


# -- AgentKit ------------------------------------------------------------------------


async def test_agentkit_delivery_reaches_the_agent() -> None:
    async with ContractAgent() as agent, FakeAgentKit() as agentkit:
        agent_id = await agentkit.register(name="a", contact_endpoint=agent.url)
        async with TransportSet(agentkit_url=agentkit.url + "/") as ts:
            task = delivery(agent_id=agent_id, value=9)
            await ts.agentkit.deliver(task, LateFailures())
        (received,) = await agent.wait_for_tasks(1)
    assert agentkit.runs[0].agent_id == agent_id
    assert agentkit.runs[0].body["opscore_attempt"] == 2
    assert received["payload"] == {"value": 9}
    assert received["opscore_task_id"] == "task-abc"


async def test_agentkit_forward_defect_still_counts_as_delivered() -> None:
    async with FakeAgentKit(forward_defect=True) as agentkit:
        agent_id = await agentkit.register(name="a", contact_endpoint="http://x/task")
        async with TransportSet(agentkit_url=agentkit.url) as ts:
            await ts.agentkit.deliver(delivery(agent_id=agent_id), LateFailures())
    assert len(agentkit.runs) == 1
    assert agentkit.forwards == []


async def test_agentkit_404_says_agentkit_does_not_know_the_agent() -> None:
    async with FakeAgentKit() as agentkit, TransportSet(agentkit_url=agentkit.url) as ts:
        message = await _failure(ts.agentkit, delivery(agent_id="ghost"))
    assert "AgentKit does not know agent 'ghost'" in message
    assert "not found" in message


async def test_agentkit_422_says_agentkit_rejected_the_body() -> None:
    async def reject(request: Request) -> JSONResponse:
        detail = [{"loc": ["body", "payload"], "msg": "Field required"}]
        return JSONResponse({"detail": detail}, status_code=422)

    app = Starlette(routes=[Route("/v1/agents/{agent_id}/run", reject, methods=["POST"])])
    async with serve_app(app, lifespan="off") as url, TransportSet(agentkit_url=url) as ts:
        message = await _failure(ts.agentkit, delivery())
    assert "AgentKit rejected the task body for agent 'agent-7'" in message
    assert "Field required" in message


async def test_agentkit_other_status_is_a_failure() -> None:
    async def down(request: Request) -> JSONResponse:
        return JSONResponse({"detail": "maintenance"}, status_code=503)

    app = Starlette(routes=[Route("/v1/agents/{agent_id}/run", down, methods=["POST"])])
    async with serve_app(app, lifespan="off") as url, TransportSet(agentkit_url=url) as ts:
        message = await _failure(ts.agentkit, delivery())
    assert "AgentKit answered HTTP 503" in message
    assert "maintenance" in message


async def test_agentkit_not_configured(transports: TransportSet) -> None:
    message = await _failure(transports.agentkit, delivery())
    assert "OPSCORE_AGENTKIT_URL is not set" in message
    assert "agent-7" in message


async def test_agentkit_unreachable() -> None:
    async with TransportSet(agentkit_url=unused_url(path="")) as ts:
        message = await _failure(ts.agentkit, delivery())
    assert "agent 'agent-7'" in message
    assert "cannot connect to AgentKit" in message


async def test_agentkit_slow_answer_is_a_failure(holding: tuple[HoldingApp, str]) -> None:
    _, url = holding
    async with httpx.AsyncClient() as client:
        transport = AgentKitTransport(client, agentkit_url=url)
        message = await _failure(transport, delivery(dispatch_timeout_s=0.5))
    assert "AgentKit" in message
    assert "0.5s" in message  # normally "did not answer within 0.5s"


async def test_direct_transport_works_with_its_own_client() -> None:
    async with httpx.AsyncClient() as client, ContractAgent() as agent:
        direct = DirectTransport(client)
        await direct.deliver(delivery(agent.url), LateFailures())
        await agent.wait_for_tasks(1)
        await direct.aclose()
