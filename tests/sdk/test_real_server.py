"""Both clients against a real Ops-Core served by uvicorn over HTTP.

The sync client drives a server (and an agent helper) living in another thread, since
a blocking call inside the test's event loop would starve an in-loop server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sdk_server import API_KEY
from sdk_support import workflow

from opscore_sdk import (
    AsyncOpsCoreClient,
    ConflictError,
    NotFoundError,
    OpsCoreClient,
    OpsCoreConnectionError,
    WaitTimeoutError,
)
from opscore_sdk.agent import Agent, TaskContext
from support.threaded_server import ThreadedOpsCore


def test_sync_client_end_to_end(threaded_opscore: ThreadedOpsCore, tmp_path: Path) -> None:
    url = threaded_opscore.url
    failures_left = [1]
    agent = Agent("sync-helper", capabilities=["work"], api_url=url, api_key=API_KEY)

    @agent.task
    def handle(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        if payload.get("fragile") and failures_left[0] > 0:
            failures_left[0] -= 1
            raise RuntimeError("first run breaks")
        return {"doubled": payload["n"] * 2}

    threaded_opscore.run(agent.start())
    try:
        with OpsCoreClient(url, API_KEY, backoff_s=0.01) as client:
            assert client.health() == {"status": "ok"}
            assert client.ready()["status"] == "ok"

            # agents and state
            assert client.get_agent(agent.agent_id).contact_endpoint == agent.url
            client.register_agent("other", agent_id="other", capabilities=["none"])
            client.update_state("other", "idle", {"x": 1})
            assert client.get_state("other").details == {"x": 1}
            assert [e.state for e in client.agent_history("other")] == ["idle"]
            assert {a.agent_id for a in client.list_agents().items} == {"other", agent.agent_id}
            assert [a.agent_id for a in client.iter_agents(capability="none", page_size=1)] == [
                "other"
            ]

            # workflows
            record = client.create_workflow(workflow("double", "work", parameters={"n": 21}))
            assert record.id == "double"
            yaml_file = tmp_path / "fragile.yaml"
            yaml_file.write_text(
                "id: fragile\nname: Fragile\nversion: '1'\n"
                "taskDefaults: {maxRetries: 0, retryBackoffS: 0.05}\n"
                "tasks:\n  - taskId: only\n    agentCapability: work\n"
                "    parameters: {n: 1, fragile: true}\n"
            )
            assert client.create_workflow_from_file(yaml_file).id == "fragile"
            assert {w.id for w in client.iter_workflows(page_size=1)} == {"double", "fragile"}
            assert len(client.list_workflows().items) == 2
            assert client.get_workflow("fragile", version="1").name == "Fragile"
            assert "properties" in client.workflow_schema()

            # a run that completes
            started = client.trigger("double")
            done = client.wait(started.session_id, timeout_s=30, poll_interval_s=0.05)
            assert done.status == "completed"
            assert done.tasks is not None
            assert done.tasks[0].result == {"doubled": 42}
            assert client.get_session(started.session_id).status == "completed"

            # a dead letter, retried
            seed = client.trigger_workflow(agent.agent_id, "fragile")
            failed = client.wait(seed.session_id, timeout_s=30, poll_interval_s=0.05)
            assert failed.status == "failed"
            dead = client.dead_letters().items
            assert [t.session_id for t in dead] == [seed.session_id]
            assert client.get_task(dead[0].id).status == "dead"
            client.retry_task(dead[0].id)
            rerun = client.wait(seed.session_id, timeout_s=30, poll_interval_s=0.05)
            assert rerun.status == "completed"
            with pytest.raises(ConflictError):
                client.submit_result(dead[0].id, "completed", result={})
            assert len(client.list_tasks(agent_id=agent.agent_id).items) == 2
            assert len(list(client.iter_tasks(page_size=1))) == 2
            assert {s.session_id for s in client.iter_sessions(page_size=1)} == {
                started.session_id,
                seed.session_id,
            }
            assert len(client.list_sessions(status="completed").items) == 2

            # session control on a run nobody can serve
            parked = client.trigger(definition=workflow("parked", "nobody"))
            assert client.pause_session(parked.session_id).status == "paused"
            assert client.resume_session(parked.session_id).status == "running"
            with pytest.raises(WaitTimeoutError):
                client.wait(parked.session_id, timeout_s=0.1, poll_interval_s=0.05)
            assert client.cancel_session(parked.session_id).status == "cancelled"

            # clean-up calls
            client.delete_workflow("double")
            client.deregister_agent("other")
            with pytest.raises(NotFoundError):
                client.get_agent("other")
    finally:
        threaded_opscore.run(agent.stop())


def test_sync_client_reports_a_down_server_as_a_connection_error(
    threaded_opscore: ThreadedOpsCore,
) -> None:
    url = threaded_opscore.url
    threaded_opscore.stop()
    with (
        OpsCoreClient(url, API_KEY, max_retries=1, backoff_s=0.01) as client,
        pytest.raises(OpsCoreConnectionError) as caught,
    ):
        client.list_agents()
    assert caught.value.code == "connection_error"


async def test_async_client_over_http(opscore_url: str) -> None:
    async with AsyncOpsCoreClient(opscore_url, API_KEY) as client:
        assert (await client.health())["status"] == "ok"
        await client.register_agent("http", agent_id="over-http", capabilities=["x"])
        await client.update_state("over-http", "idle")
        assert (await client.get_state("over-http")).state == "idle"
        await client.create_workflow(workflow("http-flow", "nobody"))
        started = await client.trigger("http-flow", idempotency_key="once")
        assert (await client.trigger("http-flow", idempotency_key="once")).session_id == (
            started.session_id
        )
        assert (await client.cancel_session(started.session_id)).status == "cancelled"
        with pytest.raises(NotFoundError):
            await client.get_task("nope:nope")
