"""The agent helper end to end: real Ops-Core served over HTTP, the helper's own HTTP
server, real dispatch. Faults (a lost final report) are injected into the helper's
transport to Ops-Core only."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from sdk_server import API_KEY, make_settings
from sdk_support import eventually, message, workflow

from opscore.api.app import create_app
from opscore.storage.memory import MemoryStorage
from opscore_sdk import AsyncOpsCoreClient, OpsCoreConnectionError, StateEntry
from opscore_sdk.agent import PROCESSING_ERROR, Agent, TaskContext
from support.agentkit import FakeAgentKit
from support.servers import serve_app, unused_url


def make_agent(opscore_url: str, capability: str = "summarize", **kwargs: Any) -> Agent:
    return Agent(
        "summarizer",
        capabilities=[capability],
        api_url=opscore_url,
        api_key=API_KEY,
        report_backoff_s=0.05,
        **kwargs,
    )


def reports(history: list[StateEntry]) -> list[tuple[str, dict[str, Any]]]:
    """(state, details) oldest first, heartbeats left out."""
    return [
        (e.state, e.details) for e in reversed(history) if not e.details.get("opscore_heartbeat")
    ]


async def test_agent_registers_reports_idle_and_completes_a_workflow(
    opscore_url: str, aclient: AsyncOpsCoreClient
) -> None:
    agent = make_agent(opscore_url)
    contexts: list[TaskContext] = []

    @agent.task
    async def handle(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        contexts.append(ctx)
        return {"summary": payload["text"][:5], "step": payload["step"]}

    async with agent.serving():
        registered = await aclient.get_agent(agent.agent_id)
        assert registered.contact_endpoint == agent.url
        assert registered.transport == "direct"
        assert registered.capabilities == ["summarize"]
        assert registered.name == "summarizer"
        assert (await aclient.get_state(agent.agent_id)).state == "idle"

        await aclient.create_workflow(
            workflow("summarize", "summarize", steps=2, parameters={"text": "hello world"})
        )
        started = await aclient.trigger("summarize")
        session = await aclient.wait(started.session_id, timeout_s=30, poll_interval_s=0.05)

        assert session.status == "completed"
        assert session.tasks is not None
        assert [t.result for t in session.tasks] == [
            {"summary": "hello", "step": 1},
            {"summary": "hello", "step": 2},
        ]
        first = session.tasks[0]
        assert contexts[0].task_id == first.id
        assert contexts[0].attempt == 1
        assert contexts[0].session_id == started.session_id
        assert contexts[0].task_name == "s1"
        assert contexts[0].agent_id == agent.agent_id
        assert contexts[0].message["payload"] == {"text": "hello world", "step": 1}

        history = await aclient.agent_history(agent.agent_id, limit=50)
        states = reports(history)
        assert states[:2] == [
            ("active", {"opscore_task_id": first.id, "opscore_attempt": 1}),
            (
                "idle",
                {
                    "summary": "hello",
                    "step": 1,
                    "opscore_task_id": first.id,
                    "opscore_attempt": 1,
                },
            ),
        ]
        # The first report was the "ready" idle, marked as a heartbeat.
        assert history[-1].state == "idle"
        assert history[-1].details == {"opscore_heartbeat": True}


async def test_failure_reports_error_then_idle_and_the_retry_succeeds(
    opscore_url: str, aclient: AsyncOpsCoreClient
) -> None:
    agent = make_agent(opscore_url, capability="flaky")
    calls: list[int] = []

    @agent.task
    def handle(payload: dict[str, Any], ctx: TaskContext) -> str:  # sync: runs in a thread
        calls.append(ctx.attempt or 0)
        assert threading.current_thread() is not threading.main_thread()
        if len(calls) == 1:
            raise RuntimeError("model overloaded")
        return "done"

    async with agent.serving():
        # A backoff long enough that the ready ``idle`` goes out before the retry arrives.
        started = await aclient.trigger(definition=workflow("flaky", "flaky", retryBackoffS=0.3))
        session = await aclient.wait(started.session_id, timeout_s=30, poll_interval_s=0.05)

        assert session.status == "completed"
        assert session.tasks is not None
        task = session.tasks[0]
        assert task.result == {"result": "done"}
        assert [a.status for a in task.attempts] == ["failed", "completed"]
        assert "model overloaded" in (task.attempts[0].error or "")
        assert calls == [1, 2]

        states = reports(await aclient.agent_history(agent.agent_id, limit=50))
        error_at = next(i for i, (state, _) in enumerate(states) if state == "error")
        assert states[error_at][1] == {
            "error_code": PROCESSING_ERROR,
            "message": "model overloaded",
            "opscore_task_id": task.id,
            "opscore_attempt": 1,
        }
        history = await aclient.agent_history(agent.agent_id, limit=50)
        after_error = [e for e in reversed(history)][
            [e.state for e in reversed(history)].index("error") + 1
        ]
        assert after_error.state == "idle"
        assert after_error.details == {"opscore_heartbeat": True}  # ready again


async def test_a_retry_sent_before_the_error_report_is_answered_is_accepted(
    opscore_url: str, aclient: AsyncOpsCoreClient
) -> None:
    """Ops-Core frees the agent when it processes the ``error``; the agent must not
    still call itself busy while the answer to that report is on its way."""

    class SlowAnswersToErrors(httpx.AsyncBaseTransport):
        def __init__(self) -> None:
            self._real = httpx.AsyncHTTPTransport()

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            response = await self._real.handle_async_request(request)
            if request.url.path.endswith("/state") and b'"error"' in request.content:
                await asyncio.sleep(0.5)  # the retry is dispatched meanwhile
            return response

        async def aclose(self) -> None:
            await self._real.aclose()

    agent = make_agent(opscore_url, capability="flaky", http_transport=SlowAnswersToErrors())
    calls: list[int] = []

    @agent.task
    async def handle(payload: dict[str, Any], ctx: TaskContext) -> str:
        calls.append(ctx.attempt or 0)
        if len(calls) == 1:
            raise RuntimeError("model overloaded")
        return "done"

    async with agent.serving():
        started = await aclient.trigger(
            definition=workflow("eager", "flaky", retryBackoffS=0, maxRetries=1)
        )
        session = await aclient.wait(started.session_id, timeout_s=30, poll_interval_s=0.05)

        assert session.status == "completed"
        assert session.tasks is not None
        assert [a.status for a in session.tasks[0].attempts] == ["failed", "completed"]
        assert calls == [1, 2]


async def test_resent_attempt_is_not_run_twice_and_a_second_task_gets_409(
    opscore_url: str, aclient: AsyncOpsCoreClient
) -> None:
    agent = make_agent(opscore_url, capability="slow")
    release = asyncio.Event()
    received: list[dict[str, Any]] = []

    @agent.task
    async def handle(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        received.append(ctx.message)
        await release.wait()
        return {"ok": True}

    async with agent.serving(), httpx.AsyncClient() as http:
        assert agent.url is not None
        started = await aclient.trigger(definition=workflow("slow", "slow"))
        await eventually(lambda: asyncio.sleep(0, received), bool, what="the task to arrive")
        original = received[0]
        assert agent.busy

        again = await http.post(agent.url, json=original)
        assert again.status_code == 200
        assert again.json()["status"] == "duplicate"

        other = await http.post(agent.url, json=message("other-task", 1, {"x": 1}))
        assert other.status_code == 409
        assert other.json()["status"] == "busy"

        release.set()
        session = await aclient.wait(started.session_id, timeout_s=30, poll_interval_s=0.05)
        assert session.status == "completed"
        await eventually(lambda: asyncio.sleep(0, agent.busy), lambda busy: not busy)

        late = await http.post(agent.url, json=original)
        assert late.status_code == 200
        assert late.json()["status"] == "duplicate"
        assert len(received) == 1

        bad = await http.post(agent.url, json={"senderId": "x"})
        assert bad.status_code == 422
        not_json = await http.post(agent.url, content=b"{")
        assert not_json.status_code == 400


async def test_heartbeats_while_idle(opscore_url: str, aclient: AsyncOpsCoreClient) -> None:
    agent = make_agent(opscore_url, heartbeat_s=0.05)

    @agent.task
    async def handle(payload: dict[str, Any]) -> None:  # one parameter is fine too
        return None

    async with agent.serving():
        history = await eventually(
            lambda: aclient.agent_history(agent.agent_id),
            lambda h: sum(e.details == {"opscore_heartbeat": True} for e in h) >= 3,
            what="three heartbeats",
        )
        assert all(e.state == "idle" for e in history)


async def test_final_report_is_retried_until_acknowledged(
    opscore_url: str, aclient: AsyncOpsCoreClient
) -> None:
    lost: list[str] = []

    class LosingFinalReports(httpx.AsyncBaseTransport):
        """Ops-Core "restarting": the first two result reports fail to connect."""

        def __init__(self) -> None:
            self._real = httpx.AsyncHTTPTransport()

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            body = request.content
            if request.url.path.endswith("/state") and b'"summary"' in body and len(lost) < 2:
                lost.append(request.url.path)
                raise httpx.ConnectError("connection refused", request=request)
            return await self._real.handle_async_request(request)

        async def aclose(self) -> None:
            await self._real.aclose()

    agent = make_agent(opscore_url, http_transport=LosingFinalReports())

    @agent.task
    async def handle(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        return {"summary": "kept"}

    async with agent.serving():
        started = await aclient.trigger(definition=workflow("lossy", "summarize"))
        session = await aclient.wait(started.session_id, timeout_s=30, poll_interval_s=0.05)
        assert session.status == "completed"
        assert session.tasks is not None
        assert session.tasks[0].result == {"summary": "kept"}
        assert [a.status for a in session.tasks[0].attempts] == ["completed"]
        assert len(lost) == 2


async def test_clean_stop_reports_offline_and_stops_serving(
    opscore_url: str, aclient: AsyncOpsCoreClient
) -> None:
    agent = make_agent(opscore_url, heartbeat_s=0.05)

    @agent.task
    async def handle(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        return {}

    await agent.start()
    url = agent.url
    assert url is not None
    assert agent.started
    async with httpx.AsyncClient() as http:
        health = await http.get(url.rsplit("/", 1)[0] + "/health")
        assert health.json() == {"status": "ok", "agentId": agent.agent_id, "busy": False}
        await agent.stop()
        assert not agent.started
        assert (await aclient.get_state(agent.agent_id)).state == "offline"
        with pytest.raises(httpx.ConnectError):
            await http.post(url, json=message("t", 1, {}))
    count = len(await aclient.agent_history(agent.agent_id, limit=500))
    await asyncio.sleep(0.2)  # several heartbeat periods: none may be sent after stop
    assert len(await aclient.agent_history(agent.agent_id, limit=500)) == count
    await agent.stop()  # a second stop is a no-op


async def test_stop_cancels_a_task_that_outlives_the_grace_period(
    opscore_url: str, aclient: AsyncOpsCoreClient
) -> None:
    agent = make_agent(opscore_url, capability="stuck", stop_grace_s=0.1)
    cancelled = asyncio.Event()

    @agent.task
    async def handle(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()
        return {}

    async with agent.serving():
        started = await aclient.trigger(definition=workflow("stuck", "stuck", maxRetries=0))
        await eventually(lambda: asyncio.sleep(0, agent.busy), bool, what="the task to start")
    assert cancelled.is_set()
    # "offline" while the task was in flight fails its attempt at once.
    session = await aclient.wait(started.session_id, timeout_s=30, poll_interval_s=0.05)
    assert session.status == "failed"
    assert session.tasks is not None
    assert "reported 'offline'" in (session.tasks[0].error or "")


async def test_start_without_handler_or_reachable_opscore_fails_cleanly() -> None:
    agent = Agent("lonely", api_url="http://127.0.0.1:9", api_key="k")
    with pytest.raises(RuntimeError, match="handler"):
        await agent.start()

    @agent.task
    async def handle(payload: dict[str, Any], ctx: TaskContext) -> None:
        return None

    agent_fast = Agent("lonely", api_url="http://127.0.0.1:9", api_key="k")
    agent_fast.task(handle)
    with pytest.raises(OpsCoreConnectionError):
        await agent_fast.start()
    assert not agent_fast.started


async def test_behind_agentkit_the_same_helper_works_and_retries_run_again(
    tmp_path: Path,
) -> None:
    """Ops-Core -> (fake) AgentKit -> helper. AgentKit drops ``opscore_attempt``, so a
    retry of a failed task carries the same task id and must still run."""
    calls: list[TaskContext] = []
    contact = unused_url()  # a free port, so AgentKit can learn the URL before start
    port = int(contact.rsplit(":", 1)[1].split("/")[0])
    async with FakeAgentKit() as agentkit:
        agent_id = await agentkit.register(
            name="kit-agent", contact_endpoint=contact, capabilities=["kit"]
        )
        settings = make_settings(tmp_path / "data", agentkit_url=agentkit.url)
        storage = MemoryStorage()
        await storage.open()
        app = create_app(settings, storage=storage)
        async with (
            app.router.lifespan_context(app),
            serve_app(app, lifespan="off") as opscore_url,
            AsyncOpsCoreClient(opscore_url, API_KEY) as client,
        ):
            agent = make_agent(
                opscore_url, capability="kit", agent_id=agent_id, port=port, behind_agentkit=True
            )

            @agent.task
            async def handle(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
                calls.append(ctx)
                if len(calls) == 1:
                    raise ValueError("first try fails")
                return {"via": "agentkit"}

            async with agent.serving():
                assert agent.url == contact
                assert (await client.get_agent(agent_id)).transport == "agentkit"
                started = await client.trigger(definition=workflow("kit", "kit"))
                session = await client.wait(started.session_id, timeout_s=30, poll_interval_s=0.05)
        await storage.close()

    assert session.status == "completed"
    assert session.tasks is not None
    assert session.tasks[0].result == {"via": "agentkit"}
    assert [c.attempt for c in calls] == [None, None]  # AgentKit dropped it
    assert {c.task_id for c in calls} == {session.tasks[0].id}
    assert len(agentkit.runs) == 2
    assert all("opscore_attempt" not in f.body for f in agentkit.forwards)


def documented_agent() -> str:
    """The first Python example of docs/sdk.md: the fifteen-line agent."""
    text = (Path(__file__).parents[2] / "docs" / "sdk.md").read_text()
    return text.split("```python\n", 1)[1].split("```", 1)[0]


async def test_the_documented_agent_runs_as_pasted_and_stops_on_sigterm(
    opscore_url: str, aclient: AsyncOpsCoreClient, tmp_path: Path
) -> None:
    script = tmp_path / "agent.py"
    script.write_text(documented_agent())
    assert len(documented_agent().strip().splitlines()) <= 15
    env = {**os.environ, "OPSCORE_API_URL": opscore_url, "OPSCORE_API_KEY": API_KEY}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        page = await eventually(
            lambda: aclient.list_agents(capability="summarize", state="idle"),
            lambda p: bool(p.items),
            what="the documented agent to register and report idle",
        )
        agent_id = page.items[0].agent_id
        text = "Ops-Core runs workflows durably across restarts."
        started = await aclient.trigger(
            definition=workflow("docs", "summarize", parameters={"text": text})
        )
        session = await aclient.wait(started.session_id, timeout_s=30, poll_interval_s=0.05)
        assert session.status == "completed"
        assert session.tasks is not None
        assert session.tasks[0].result == {"summary": text[:20]}

        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
        assert process.returncode == 0, stderr.decode()
        assert b"Traceback" not in stderr
        assert (await aclient.get_state(agent_id)).state == "offline"
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
