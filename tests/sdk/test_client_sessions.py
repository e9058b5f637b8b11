"""Sessions and tasks through the async client against the real app in-process; the
agents that run the tasks are built with the agent helper and reached over HTTP."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sdk_server import API_KEY
from sdk_support import eventually, workflow

from opscore_sdk import (
    AsyncOpsCoreClient,
    ConflictError,
    NotFoundError,
    Session,
    WaitTimeoutError,
)
from opscore_sdk.agent import Agent, TaskContext


async def parked_agent(client: AsyncOpsCoreClient, agent_id: str) -> None:
    """A registered agent that receives nothing (offline), to own sessions."""
    await client.register_agent(agent_id, agent_id=agent_id)
    await client.update_state(agent_id, "offline")


async def test_trigger_idempotency_seed_call_and_listing(aclient: AsyncOpsCoreClient) -> None:
    await aclient.create_workflow(workflow("waiting", "nobody-has-this"))
    await parked_agent(aclient, "owner")

    started = await aclient.trigger("waiting", initial_payload={"n": 1}, idempotency_key="k-1")
    assert started.workflow_id == "waiting"
    assert started.workflow_version == "1"
    assert started.status in ("pending", "running")
    assert started.message
    replay = await aclient.trigger("waiting", initial_payload={"n": 1}, idempotency_key="k-1")
    assert replay.session_id == started.session_id
    fresh = await aclient.trigger("waiting")  # a generated key: a new session
    assert fresh.session_id != started.session_id

    inline = await aclient.trigger(
        definition=workflow("inline", "nobody-has-this"), agent_id="owner", version="1"
    )
    seed = await aclient.trigger_workflow("owner", "waiting", None, {"from": "seed"})
    seed_inline = await aclient.trigger_workflow(
        "owner", workflow_definition=workflow("inline2", "x"), idempotency_key="seed-key"
    )
    assert seed_inline.workflow_id == "inline2"
    again = await aclient.trigger_workflow(
        "owner", workflow_definition=workflow("inline2", "x"), idempotency_key="seed-key"
    )
    assert again.session_id == seed_inline.session_id

    session = await aclient.get_session(seed.session_id)
    assert isinstance(session, Session)
    assert (session.agent_id, session.input, session.workflow_id) == (
        "owner",
        {"from": "seed"},
        "waiting",
    )
    assert session.tasks is not None
    assert [(t.task_id, t.status) for t in session.tasks] == [("s1", "queued")]
    assert not session.is_final

    by_agent = await aclient.list_sessions(agent_id="owner")
    assert {s.session_id for s in by_agent.items} == {
        inline.session_id,
        seed.session_id,
        seed_inline.session_id,
    }
    by_workflow = await aclient.list_sessions(workflow_id="waiting", status="running")
    assert {s.session_id for s in by_workflow.items} == {
        started.session_id,
        fresh.session_id,
        seed.session_id,
    }
    assert all(s.tasks is None for s in by_workflow.items)  # listings carry no tasks
    first = await aclient.list_sessions(limit=2)
    assert len(first.items) == 2
    assert first.next_cursor
    every = [s.session_id async for s in aclient.iter_sessions(page_size=2)]
    assert len(every) == len(set(every)) == 5

    with pytest.raises(NotFoundError) as caught:
        await aclient.get_session("no-such-session")
    assert caught.value.code == "session_not_found"
    with pytest.raises(NotFoundError):
        await aclient.trigger("no-such-workflow")


async def test_pause_resume_cancel_and_wait(aclient: AsyncOpsCoreClient) -> None:
    started = await aclient.trigger(definition=workflow("parked", "nobody-has-this"))
    sid = started.session_id

    paused = await aclient.pause_session(sid)
    assert paused.status == "paused"
    with pytest.raises(ConflictError) as caught:
        await aclient.pause_session(sid)
    assert caught.value.status == 409
    assert (await aclient.resume_session(sid)).status == "running"
    with pytest.raises(ConflictError):
        await aclient.resume_session(sid)

    with pytest.raises(WaitTimeoutError) as timed_out:
        await aclient.wait(sid, timeout_s=0.2, poll_interval_s=0.05)
    assert "running" in str(timed_out.value)

    cancelled = await aclient.cancel_session(sid)
    assert cancelled.status == "cancelled"
    with pytest.raises(ConflictError):
        await aclient.cancel_session(sid)
    final = await aclient.wait(sid, timeout_s=5)
    assert final.status == "cancelled"
    assert final.is_final
    assert final.tasks is not None
    assert final.tasks[0].status == "cancelled"


async def test_dead_letters_are_listed_and_retried(
    aclient: AsyncOpsCoreClient, opscore_url: str
) -> None:
    agent = Agent("fragile", capabilities=["fragile"], api_url=opscore_url, api_key=API_KEY)
    healthy = asyncio.Event()

    @agent.task
    async def handle(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        if not healthy.is_set():
            raise RuntimeError("disk full")
        return {"fixed": True}

    async with agent.serving():
        started = await aclient.trigger(definition=workflow("fragile", "fragile", maxRetries=0))
        failed = await aclient.wait(started.session_id, timeout_s=30, poll_interval_s=0.05)
        assert failed.status == "failed"

        dead = await aclient.dead_letters(session_id=started.session_id)
        assert len(dead.items) == 1
        letter = dead.items[0]
        assert (letter.status, letter.task_id, letter.session_id) == (
            "dead",
            "s1",
            started.session_id,
        )
        assert "disk full" in (letter.error or "")
        assert letter.is_final
        assert [t.id for t in (await aclient.list_tasks(status="dead")).items] == [letter.id]
        assert [t.id async for t in aclient.iter_tasks(session_id=started.session_id)] == [
            letter.id
        ]
        task = await aclient.get_task(letter.id)
        assert task.attempts[0].status == "failed"
        assert task.attempts[0].agent_id == agent.agent_id

        healthy.set()
        requeued = await aclient.retry_task(letter.id)
        assert requeued.id == letter.id
        assert requeued.status != "dead"
        done = await aclient.wait(started.session_id, timeout_s=30, poll_interval_s=0.05)
        assert done.status == "completed"
        assert (await aclient.get_task(letter.id)).result == {"fixed": True}
        assert (await aclient.dead_letters()).items == []
        with pytest.raises(ConflictError):
            await aclient.retry_task(letter.id)
        with pytest.raises(NotFoundError):
            await aclient.get_task("no-such:task")


async def test_submit_result_completes_a_task_in_flight(
    aclient: AsyncOpsCoreClient, opscore_url: str
) -> None:
    agent = Agent("slowpoke", capabilities=["slow"], api_url=opscore_url, api_key=API_KEY)
    release = asyncio.Event()

    @agent.task
    async def handle(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        await release.wait()
        return {"late": True}

    async with agent.serving():
        started = await aclient.trigger(definition=workflow("manual", "slow"))
        task = await eventually(
            lambda: aclient.list_tasks(session_id=started.session_id, agent_id=agent.agent_id),
            lambda page: bool(page.items) and page.items[0].status == "running",
            what="the task to run",
        )
        task_id = task.items[0].id
        accepted = await aclient.submit_result(
            task_id, "completed", result={"by": "hand"}, attempt=1
        )
        assert (accepted.status, accepted.task_id) == ("accepted", task_id)
        session = await aclient.wait(started.session_id, timeout_s=30, poll_interval_s=0.05)
        assert session.status == "completed"
        assert session.tasks is not None
        assert session.tasks[0].result == {"by": "hand"}
        with pytest.raises(ConflictError):
            await aclient.submit_result(task_id, "failed", error="too late")
        release.set()  # the helper's own (late) report changes nothing
        await eventually(lambda: asyncio.sleep(0, agent.busy), lambda busy: not busy)
        assert (await aclient.get_task(task_id)).result == {"by": "hand"}
