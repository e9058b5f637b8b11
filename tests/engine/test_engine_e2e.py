"""The engine end to end, on every backend: a real Ops-Core served over HTTP and real
HTTP agents that speak the contract (report ``active``, then ``idle`` or ``error``)."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from support.agents import ContractAgent, running_agents
from support.opscore_server import OpsCore, linear_workflow

SEED_SAMPLE = json.loads(
    (Path(__file__).parents[2] / "examples" / "workflows" / "seed_sample.json").read_text()
)


def attempts_of(session: dict[str, Any], task_id: str) -> list[dict[str, Any]]:
    [task] = [t for t in session["tasks"] if t["taskId"] == task_id]
    attempts: list[dict[str, Any]] = task["attempts"]
    return attempts


async def test_seed_sample_through_seed_endpoint(opscore: OpsCore) -> None:
    async with ContractAgent(capabilities=["test_capability", "another_capability"]) as agent:
        await agent.register(opscore.url, opscore.api_key)
        await agent.report("idle")
        response = await opscore.client.post(
            f"/v1/opscore/agent/{agent.agent_id}/workflow",
            json={"workflowDefinition": SEED_SAMPLE, "initialPayload": {"who": "seed"}},
        )
        assert response.status_code == 202, response.text
        body = response.json()
        assert body["workflowId"] == "sample_workflow_id"
        assert body["message"]
        session = await opscore.wait_session(body["sessionId"])
    assert session["status"] == "completed"
    assert [t["taskId"] for t in session["tasks"]] == ["step_1", "step_2"]
    for task in session["tasks"]:
        assert task["status"] == "completed"
        assert task["agentId"] == agent.agent_id
        [attempt] = task["attempts"]
        assert attempt["status"] == "completed"
        for field in ("dispatchedAt", "startedAt", "finishedAt"):
            assert attempt[field] is not None
        assert task["queuedAt"] <= task["dispatchedAt"] <= task["finishedAt"]
    # Parameters arrived as the contract's MessagePayload and came back as the result.
    first, second = agent.received
    assert first["payload"] == {"message": SEED_SAMPLE["tasks"][0]["parameters"]["message"]}
    assert first["task_name"] == "step_1"
    assert first["opscore_session_id"] == body["sessionId"]
    assert first["senderId"] == "opscore"
    assert first["messageType"] == "workflow_task"
    assert second["payload"] == {"value": 123}
    assert session["tasks"][1]["result"]["echo"] == {"value": 123}
    assert "opscore_task_id" not in session["tasks"][1]["result"]


async def test_failing_twice_then_success_retries_after_backoff(opscore: OpsCore) -> None:
    async with ContractAgent(behaviour="fail_first", fail_times=2) as agent:
        await agent.register(opscore.url, opscore.api_key)
        await agent.report("idle")
        workflow = linear_workflow(1, retryBackoffS=0.3, retryBackoffMultiplier=2)
        session_id = await opscore.trigger(workflow, agent_id=agent.agent_id)
        session = await opscore.wait_session(session_id)
    assert session["status"] == "completed"
    attempts = attempts_of(session, "s1")
    assert [a["status"] for a in attempts] == ["failed", "failed", "completed"]
    assert "PROCESSING_ERROR" in attempts[0]["error"]
    # Two backoff delays (0.3 s then 0.6 s, no jitter) separate the three attempts.
    loop_gaps = [b - a for a, b in zip(agent.received_at, agent.received_at[1:], strict=False)]
    assert loop_gaps[0] >= 0.3, loop_gaps
    assert loop_gaps[1] >= 0.6, loop_gaps


async def test_always_failing_step_runs_its_fallback(opscore: OpsCore) -> None:
    workflow = {
        "id": "with-fallback",
        "name": "fallback",
        "taskDefaults": {"maxRetries": 1, "retryBackoffS": 0.01},
        "tasks": [
            {
                "taskId": "risky",
                "agentCapability": "flaky",
                "routing": "capability",
                "onFailure": "rescue",
            },
            {"taskId": "rescue", "agentCapability": "steady", "routing": "capability"},
        ],
    }
    async with running_agents(
        ContractAgent(capabilities=["flaky"], behaviour="always_fail"),
        ContractAgent(capabilities=["steady"]),
    ) as (flaky, steady):
        for agent in (flaky, steady):
            await agent.register(opscore.url, opscore.api_key)
            await agent.report("idle")
        session = await opscore.wait_session(await opscore.trigger(workflow))
    assert session["status"] == "completed"
    by_id = {t["taskId"]: t for t in session["tasks"]}
    assert by_id["risky"]["status"] == "dead"
    assert len(by_id["risky"]["attempts"]) == 2
    assert by_id["rescue"]["status"] == "completed"
    assert by_id["rescue"]["agentId"] == steady.agent_id


async def test_always_failing_step_without_fallback_fails_session_and_is_a_dead_letter(
    opscore: OpsCore,
) -> None:
    async with ContractAgent(behaviour="always_fail") as agent:
        await agent.register(opscore.url, opscore.api_key)
        await agent.report("idle")
        workflow = linear_workflow(2, maxRetries=2, retryBackoffS=0.01)
        session_id = await opscore.trigger(workflow, agent_id=agent.agent_id)
        session = await opscore.wait_session(session_id)
        assert session["status"] == "failed"
        assert "s1" in session["error"]
        assert "PROCESSING_ERROR" in attempts_of(session, "s1")[-1]["error"]
        assert len(attempts_of(session, "s1")) == 3
        dead = (await opscore.client.get("/v1/opscore/tasks", params={"status": "dead"})).json()
        assert [t["taskId"] for t in dead["items"]] == ["s1"]
        # Re-running the dead letter reopens the session; make the agent healthy first.
        agent.behaviour = "succeed"
        task_id = dead["items"][0]["id"]
        response = await opscore.client.post(f"/v1/opscore/tasks/{task_id}/retry")
        assert response.status_code == 202, response.text
        session = await opscore.wait_session(session_id, {"completed"})
    assert [t["status"] for t in session["tasks"]] == ["completed", "completed"]
    assert len(attempts_of(session, "s1")) == 4


async def test_agent_that_never_reports_times_out_and_fails_clearly(opscore: OpsCore) -> None:
    async with ContractAgent(behaviour="silent") as agent:
        await agent.register(opscore.url, opscore.api_key)
        await agent.report("idle")
        workflow = linear_workflow(1, maxRetries=1, completionTimeoutS=0.3, retryBackoffS=0.01)
        session = await opscore.wait_session(
            await opscore.trigger(workflow, agent_id=agent.agent_id)
        )
    assert session["status"] == "failed"
    attempts = attempts_of(session, "s1")
    assert len(attempts) == 2 == len(agent.received)
    assert all("completionTimeoutS" in a["error"] for a in attempts)


async def test_unreachable_agent_fails_with_the_reason(opscore: OpsCore) -> None:
    async with ContractAgent(behaviour="unreachable") as agent:
        await agent.register(opscore.url, opscore.api_key)
        await agent.report("idle")
        workflow = linear_workflow(1, maxRetries=0)
        session = await opscore.wait_session(
            await opscore.trigger(workflow, agent_id=agent.agent_id)
        )
    assert session["status"] == "failed"
    [attempt] = attempts_of(session, "s1")
    assert agent.agent_id in attempt["error"]


async def test_capability_routing_spreads_parallel_work(opscore: OpsCore) -> None:
    workflow = {
        "id": "fan",
        "name": "fan-out and in",
        "tasks": [
            {
                "taskId": "start",
                "agentCapability": "w",
                "routing": "capability",
                "nextTaskId": ["a", "b", "c", "d"],
            },
            *[
                {
                    "taskId": x,
                    "agentCapability": "w",
                    "routing": "capability",
                    "parameters": {"part": x},
                }
                for x in ("a", "b", "c", "d")
            ],
            {
                "taskId": "join",
                "agentCapability": "w",
                "routing": "capability",
                "dependsOn": ["a", "b", "c", "d"],
                "parameters": {"parts": "${tasks.a.result.echo.part}${tasks.d.result.echo.part}"},
            },
        ],
    }
    agents = [ContractAgent(capabilities=["w"], work_s=0.1) for _ in range(2)]
    async with running_agents(*agents):
        for agent in agents:
            await agent.register(opscore.url, opscore.api_key)
            await agent.report("idle")
        session = await opscore.wait_session(await opscore.trigger(workflow))
    assert session["status"] == "completed"
    assert all(len(a.received) >= 2 for a in agents), [len(a.received) for a in agents]
    join = next(t for t in session["tasks"] if t["taskId"] == "join")
    assert join["parameters"] == {"parts": "ad"}


async def test_branching_takes_one_path_and_skips_the_other(opscore: OpsCore) -> None:
    workflow = {
        "id": "branchy",
        "name": "branch",
        "tasks": [
            {
                "taskId": "check",
                "agentCapability": "x",
                "parameters": {"level": "${input.level}"},
                "branches": [
                    {"when": {"path": "result.echo.level", "op": "gte", "value": 5}, "next": "high"}
                ],
                "nextTaskId": "low",
            },
            {"taskId": "high", "agentCapability": "x", "nextTaskId": "done"},
            {"taskId": "low", "agentCapability": "x", "nextTaskId": "done"},
            {"taskId": "done", "agentCapability": "x"},
        ],
    }
    async with ContractAgent(capabilities=["x"]) as agent:
        await agent.register(opscore.url, opscore.api_key)
        await agent.report("idle")
        session_id = await opscore.trigger(
            workflow, agent_id=agent.agent_id, initialPayload={"level": 7}
        )
        session = await opscore.wait_session(session_id)
    statuses = {t["taskId"]: t["status"] for t in session["tasks"]}
    assert session["status"] == "completed"
    assert statuses == {
        "check": "completed",
        "high": "completed",
        "low": "skipped",
        "done": "completed",
    }


async def test_idempotency_key_returns_the_same_session(opscore: OpsCore) -> None:
    body = {"workflowDefinition": linear_workflow(1)}
    headers = {"Idempotency-Key": "trigger-once"}
    first = await opscore.client.post("/v1/opscore/sessions", json=body, headers=headers)
    second = await opscore.client.post("/v1/opscore/sessions", json=body, headers=headers)
    assert first.status_code == second.status_code == 202
    assert first.json()["sessionId"] == second.json()["sessionId"]
    assert second.headers["Idempotent-Replayed"] == "true"
    listed = (await opscore.client.get("/v1/opscore/sessions")).json()
    assert len(listed["items"]) == 1


async def test_pause_resume_and_cancel(opscore: OpsCore) -> None:
    async with ContractAgent(work_s=0.2) as agent:
        await agent.register(opscore.url, opscore.api_key)
        await agent.report("idle")
        session_id = await opscore.trigger(linear_workflow(3), agent_id=agent.agent_id)
        await agent.wait_for_tasks(1)
        paused = await opscore.client.post(f"/v1/opscore/sessions/{session_id}/pause")
        assert paused.status_code == 200
        assert paused.json()["status"] == "paused"
        await asyncio.sleep(0.5)  # s1 finishes meanwhile; nothing new may start
        assert len(agent.received) == 1
        assert (await opscore.session(session_id))["status"] == "paused"
        resumed = await opscore.client.post(f"/v1/opscore/sessions/{session_id}/resume")
        assert resumed.json()["status"] == "running"
        await agent.wait_for_tasks(2)
        cancelled = await opscore.client.post(f"/v1/opscore/sessions/{session_id}/cancel")
        assert cancelled.json()["status"] == "cancelled"
        again = await opscore.client.post(f"/v1/opscore/sessions/{session_id}/resume")
        assert again.status_code == 409
        assert again.headers["content-type"].startswith("application/problem+json")
        await asyncio.sleep(0.4)
        session = await opscore.session(session_id)
    assert len(agent.received) == 2
    assert session["status"] == "cancelled"
    assert {t["taskId"]: t["status"] for t in session["tasks"]}["s2"] == "cancelled"


async def test_duplicate_reports_do_not_advance_twice(opscore: OpsCore) -> None:
    async with ContractAgent(behaviour="silent") as agent:
        await agent.register(opscore.url, opscore.api_key)
        await agent.report("idle")
        session_id = await opscore.trigger(linear_workflow(3), agent_id=agent.agent_id)
        [body] = await agent.wait_for_tasks(1)
        corr = {"opscore_task_id": body["opscore_task_id"], "opscore_attempt": 1}
        await agent.report("active", corr)
        for _ in range(3):  # the same completion, three times
            await agent.report("idle", {**corr, "n": 1})
        await agent.wait_for_tasks(2)
        await asyncio.sleep(0.2)
        session = await opscore.session(session_id)
    assert len(agent.received) == 2
    statuses = [t["status"] for t in session["tasks"]]
    assert statuses == ["completed", "dispatched"]


async def test_task_result_endpoint_completes_the_task(opscore: OpsCore) -> None:
    async with ContractAgent(behaviour="silent") as agent:
        await agent.register(opscore.url, opscore.api_key)
        await agent.report("idle")
        session_id = await opscore.trigger(linear_workflow(1), agent_id=agent.agent_id)
        [body] = await agent.wait_for_tasks(1)
        task_id = body["opscore_task_id"]
        ok = await opscore.client.post(
            f"/v1/opscore/tasks/{task_id}/result",
            json={"status": "completed", "result": {"answer": 42}, "attempt": 1},
        )
        assert ok.status_code == 202, ok.text
        again = await opscore.client.post(
            f"/v1/opscore/tasks/{task_id}/result", json={"status": "completed"}
        )
        assert again.status_code == 409
        session = await opscore.wait_session(session_id)
    assert session["status"] == "completed"
    assert session["tasks"][0]["result"] == {"answer": 42}


async def test_periodic_idle_completes_a_task_whose_report_was_lost(opscore: OpsCore) -> None:
    async with ContractAgent(behaviour="silent", correlate=False) as agent:
        await agent.register(opscore.url, opscore.api_key)
        await agent.report("idle")
        session_id = await opscore.trigger(linear_workflow(1), agent_id=agent.agent_id)
        await agent.wait_for_tasks(1)
        await agent.report("idle", {"opscore_heartbeat": True})  # a heartbeat: no completion
        assert (await opscore.session(session_id))["status"] == "running"
        await agent.report("idle", {"late": True})
        session = await opscore.wait_session(session_id)
    assert session["status"] == "completed"
    assert session["tasks"][0]["result"] == {"late": True}


async def test_agents_in_error_or_offline_get_nothing(opscore: OpsCore) -> None:
    async with ContractAgent() as agent:
        await agent.register(opscore.url, opscore.api_key)
        await agent.report("error", {"message": "broken"})
        session_id = await opscore.trigger(linear_workflow(1), agent_id=agent.agent_id)
        await asyncio.sleep(0.3)
        assert agent.received == []
        await agent.report("offline")
        await asyncio.sleep(0.1)
        assert agent.received == []
        await agent.report("idle")
        session = await opscore.wait_session(session_id)
    assert session["status"] == "completed"


async def test_stored_workflow_versions_and_session_keeps_its_version(opscore: OpsCore) -> None:
    v1 = linear_workflow(1, workflow_id="versioned")
    v2 = {**linear_workflow(2, workflow_id="versioned"), "version": "2"}
    for definition in (v1, v2):
        response = await opscore.client.post("/v1/opscore/workflows", json=definition)
        assert response.status_code == 201, response.text
    got = (await opscore.client.get("/v1/opscore/workflows/versioned")).json()
    assert got["version"] == "2"
    assert got["versions"] == ["1", "2"]
    async with ContractAgent() as agent:
        await agent.register(opscore.url, opscore.api_key)
        await agent.report("idle")
        response = await opscore.client.post(
            "/v1/opscore/sessions",
            json={
                "workflowDefinitionId": "versioned",
                "workflowVersion": "1",
                "agentId": agent.agent_id,
            },
        )
        session_id = response.json()["sessionId"]
        await opscore.client.delete("/v1/opscore/workflows/versioned")
        session = await opscore.wait_session(session_id)
    assert session["workflowVersion"] == "1"
    assert session["status"] == "completed"
    assert len(session["tasks"]) == 1


async def test_timed_out_attempt_frees_its_agent_despite_a_stale_active(opscore: OpsCore) -> None:
    async with ContractAgent(behaviour="silent") as agent:
        await agent.register(opscore.url, opscore.api_key)
        await agent.report("idle")
        workflow = linear_workflow(1, maxRetries=1, completionTimeoutS=0.4, retryBackoffS=0.01)
        session_id = await opscore.trigger(workflow, agent_id=agent.agent_id)
        [first] = await agent.wait_for_tasks(1)
        # The agent starts and then hangs: its last word stays "active".
        await agent.report("active", {"opscore_task_id": first["opscore_task_id"]})
        [_, second] = await agent.wait_for_tasks(2)
        state = (await opscore.client.get(f"/v1/opscore/agent/{agent.agent_id}/state")).json()
        assert state["state"] == "active"  # stale, yet the retry was sent
        assert second["opscore_attempt"] == 2
        await agent.report("idle", {"opscore_task_id": second["opscore_task_id"], "ok": True})
        session = await opscore.wait_session(session_id)
    assert session["status"] == "completed"
    assert [a["status"] for a in attempts_of(session, "s1")] == ["failed", "completed"]


async def test_an_idle_sent_before_the_dispatch_completes_nothing(opscore: OpsCore) -> None:
    async with ContractAgent(behaviour="silent", correlate=False) as agent:
        await agent.register(opscore.url, opscore.api_key)
        await agent.report("idle")
        session_id = await opscore.trigger(linear_workflow(1), agent_id=agent.agent_id)
        await agent.wait_for_tasks(1)
        # A report the agent wrote a minute ago (delayed in transit) arrives now.
        stale = {
            "agentId": agent.agent_id,
            "timestamp": "2020-01-01T00:00:00.000+00:00",
            "state": "idle",
            "details": {},
        }
        response = await opscore.client.post(
            f"/v1/opscore/agent/{agent.agent_id}/state", json=stale
        )
        assert response.status_code == 202
        assert (await opscore.session(session_id))["tasks"][0]["status"] == "dispatched"
        await agent.report("idle", {"done": True})
        session = await opscore.wait_session(session_id)
    assert session["tasks"][0]["result"] == {"done": True}


async def test_an_idle_stamped_in_whole_seconds_still_completes(opscore: OpsCore) -> None:
    # Some agents stamp reports from a coarse clock in whole seconds: a report sent just
    # after the dispatch can read up to a second earlier than the dispatch itself.
    async with ContractAgent(behaviour="silent", correlate=False) as agent:
        await agent.register(opscore.url, opscore.api_key)
        await agent.report("idle")
        session_id = await opscore.trigger(linear_workflow(1), agent_id=agent.agent_id)
        await agent.wait_for_tasks(1)
        task = (await opscore.session(session_id))["tasks"][0]
        dispatched = datetime.fromisoformat(task["dispatchedAt"])
        coarse = dispatched.replace(microsecond=0) - timedelta(seconds=1)
        response = await opscore.client.post(
            f"/v1/opscore/agent/{agent.agent_id}/state",
            json={
                "agentId": agent.agent_id,
                "timestamp": coarse.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
                "state": "idle",
                "details": {"coarse": True},
            },
        )
        assert response.status_code == 202
        session = await opscore.wait_session(session_id)
    assert session["tasks"][0]["result"] == {"coarse": True}


async def test_an_agent_that_only_reports_error_still_gets_its_retry(opscore: OpsCore) -> None:
    # A contract agent reports active, then error, and nothing else until the next task.
    async with ContractAgent(behaviour="fail_first", fail_times=1, error_pause_s=60) as agent:
        await agent.register(opscore.url, opscore.api_key)
        await agent.report("idle")
        workflow = linear_workflow(1, retryBackoffS=0.05)
        session = await opscore.wait_session(
            await opscore.trigger(workflow, agent_id=agent.agent_id)
        )
    assert session["status"] == "completed"
    assert [a["status"] for a in attempts_of(session, "s1")] == ["failed", "completed"]
    assert [r.state for r in agent.reports[1:]] == ["active", "error", "active", "idle"]


async def test_dead_letter_of_a_finished_session_cannot_rerun(opscore: OpsCore) -> None:
    workflow = {
        "id": "handled",
        "name": "handled failure",
        "taskDefaults": {"maxRetries": 0},
        "tasks": [
            {"taskId": "risky", "agentCapability": "x", "onFailure": "rescue"},
            {"taskId": "rescue", "agentCapability": "x", "maxRetries": 1},
        ],
    }
    async with ContractAgent(capabilities=["x"], behaviour="fail_first") as agent:
        await agent.register(opscore.url, opscore.api_key)
        await agent.report("idle")
        session_id = await opscore.trigger(workflow, agent_id=agent.agent_id)
        session = await opscore.wait_session(session_id)
        assert session["status"] == "completed"
        response = await opscore.client.post(f"/v1/opscore/tasks/{session_id}:risky/retry")
        assert response.status_code == 409, response.text
        after = await opscore.session(session_id)
    assert [t["status"] for t in after["tasks"]] == ["dead", "completed"]


async def test_resume_only_from_paused(opscore: OpsCore) -> None:
    async with ContractAgent(behaviour="always_fail") as agent:
        await agent.register(opscore.url, opscore.api_key)
        await agent.report("idle")
        workflow = linear_workflow(1, maxRetries=0)
        session_id = await opscore.trigger(workflow, agent_id=agent.agent_id)
        assert (await opscore.wait_session(session_id))["status"] == "failed"
        response = await opscore.client.post(f"/v1/opscore/sessions/{session_id}/resume")
        assert response.status_code == 409
        assert (await opscore.session(session_id))["status"] == "failed"


async def test_a_ready_again_idle_after_an_error_does_not_complete_the_retry(
    opscore: OpsCore,
) -> None:
    async with ContractAgent(behaviour="silent", correlate=False) as agent:
        await agent.register(opscore.url, opscore.api_key)
        await agent.report("idle")
        workflow = linear_workflow(1, retryBackoffS=0.01)
        session_id = await opscore.trigger(workflow, agent_id=agent.agent_id)
        await agent.wait_for_tasks(1)
        await agent.report("active")
        await agent.report("error", {"message": "boom"})
        [_, retry] = await agent.wait_for_tasks(2)  # the retry was sent at once
        await agent.report("idle")  # "ready again", sent before it saw the retry
        task = (await opscore.session(session_id))["tasks"][0]
        assert task["status"] == "dispatched"
        await agent.report("active")
        await agent.report("idle", {"done": 2})
        session = await opscore.wait_session(session_id)
    assert session["tasks"][0]["result"] == {"done": 2}
    assert retry["opscore_attempt"] == 2


async def test_a_slot_orphaned_by_a_crash_is_reaped_after_its_grace(
    opscore: OpsCore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("opscore.engine.dispatcher._SLOT_GRACE_S", 0.5)
    async with ContractAgent() as agent:
        await agent.register(opscore.url, opscore.api_key)
        # What a crash between claiming the agent and marking the task leaves behind.
        assert await opscore.engine.store.claim_slot(agent.agent_id, "lost:task", 1)
        await agent.report("idle")
        session_id = await opscore.trigger(linear_workflow(1), agent_id=agent.agent_id)
        session = await opscore.wait_session(session_id)
    assert session["status"] == "completed"
    assert await opscore.engine.store.get_slot(agent.agent_id) is None
