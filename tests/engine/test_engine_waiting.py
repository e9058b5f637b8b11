"""Waiting costs nothing, and delayed work becomes due on time."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from opscore.api.app import create_app
from opscore.engine.store import free_agents_queue
from opscore.storage import Document, Storage
from opscore.storage.base import IndexValues
from support.agents import ContractAgent
from support.opscore_server import API_KEY, OpsCore, engine_settings, linear_workflow
from support.servers import serve_app


class CountingStorage(Storage):
    """Delegates to a real backend and counts every call (to prove nothing polls)."""

    def __init__(self, inner: Storage) -> None:
        super().__init__()
        self.inner = inner
        self.durable, self.shared = inner.durable, inner.shared
        self.calls: Counter[str] = Counter()

    async def get(self, kind: str, key: str) -> Document | None:
        self.calls["get"] += 1
        return await self.inner.get(kind, key)

    async def get_many(self, kind: str, keys: Sequence[str]) -> list[Document]:
        self.calls["get_many"] += 1
        return await self.inner.get_many(kind, keys)

    async def create(
        self, kind: str, key: str, data: dict[str, Any], *, index: IndexValues | None = None
    ) -> Document | None:
        self.calls["create"] += 1
        return await self.inner.create(kind, key, data, index=index)

    async def put(
        self, kind: str, key: str, data: dict[str, Any], *, index: IndexValues | None = None
    ) -> Document:
        self.calls["put"] += 1
        return await self.inner.put(kind, key, data, index=index)

    async def replace(
        self,
        kind: str,
        key: str,
        data: dict[str, Any],
        *,
        expected_rev: int,
        index: IndexValues | None = None,
    ) -> Document | None:
        self.calls["replace"] += 1
        return await self.inner.replace(kind, key, data, expected_rev=expected_rev, index=index)

    async def delete(self, kind: str, key: str, *, expected_rev: int | None = None) -> bool:
        self.calls["delete"] += 1
        return await self.inner.delete(kind, key, expected_rev=expected_rev)

    async def scan(
        self,
        kind: str,
        *,
        where: tuple[str, str] | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> list[Document]:
        self.calls["scan"] += 1
        return await self.inner.scan(kind, where=where, after=after, limit=limit)

    async def count(self, kind: str, *, where: tuple[str, str] | None = None) -> int:
        self.calls["count"] += 1
        return await self.inner.count(kind, where=where)

    async def log_append(self, log: str, entry: dict[str, Any], *, max_len: int) -> None:
        self.calls["log_append"] += 1
        await self.inner.log_append(log, entry, max_len=max_len)

    async def log_read(
        self, log: str, *, offset: int = 0, limit: int = 100
    ) -> list[dict[str, Any]]:
        self.calls["log_read"] += 1
        return await self.inner.log_read(log, offset=offset, limit=limit)

    async def log_delete(self, log: str) -> None:
        self.calls["log_delete"] += 1
        await self.inner.log_delete(log)

    async def queue_put(self, queue: str, member: str, score: float) -> None:
        self.calls["queue_put"] += 1
        await self.inner.queue_put(queue, member, score)

    async def queue_remove(self, queue: str, member: str) -> bool:
        self.calls["queue_remove"] += 1
        return await self.inner.queue_remove(queue, member)

    async def queue_peek(
        self, queue: str, *, limit: int = 1, max_score: float | None = None
    ) -> list[tuple[str, float]]:
        self.calls["queue_peek"] += 1
        return await self.inner.queue_peek(queue, limit=limit, max_score=max_score)

    async def queue_size(self, queue: str) -> int:
        self.calls["queue_size"] += 1
        return await self.inner.queue_size(queue)

    async def publish(self, message: str) -> None:
        await self.inner.publish(message)

    async def subscribe(self) -> AsyncIterator[str]:
        async for message in self.inner.subscribe():
            yield message

    async def ping(self) -> None:
        await self.inner.ping()

    async def clear(self) -> None:
        await self.inner.clear()


async def test_tasks_waiting_for_a_busy_agent_cost_nothing(
    storage: Storage, tmp_path: Path
) -> None:
    counting = CountingStorage(storage)
    app = create_app(engine_settings(tmp_path), storage=counting)
    async with serve_app(app) as url, ContractAgent(behaviour="silent") as agent:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with httpx.AsyncClient(base_url=url, headers=headers) as client:
            ops = OpsCore(url=url, api_key=API_KEY, app=app, client=client)
            await agent.register(url, API_KEY)
            await agent.report("idle")
            workflow = linear_workflow(1, completionTimeoutS=120)
            for _ in range(5):  # one runs, four wait for the busy agent
                await ops.trigger(workflow, agent_id=agent.agent_id)
            await agent.wait_for_tasks(1)
            await ops.engine.settle()
            before = sum(counting.calls.values())
            await asyncio.sleep(1.0)
            during = sum(counting.calls.values()) - before
            queued = (await client.get("/v1/opscore/tasks", params={"status": "queued"})).json()
    assert len(agent.received) == 1
    assert len(queued["items"]) == 4
    # Shared backends look at their timers every couple of seconds (other processes
    # may add some); nothing else touches storage while the work waits.
    assert during <= (2 if storage.shared else 0), counting.calls


async def test_scheduled_start_waits_then_runs(opscore: OpsCore) -> None:
    async with ContractAgent() as agent:
        await agent.register(opscore.url, opscore.api_key)
        await agent.report("idle")
        start_at = datetime.now(UTC) + timedelta(seconds=0.6)
        response = await opscore.client.post(
            "/v1/opscore/sessions",
            json={
                "workflowDefinition": linear_workflow(1),
                "agentId": agent.agent_id,
                "startAt": start_at.isoformat(),
            },
        )
        assert response.status_code == 202, response.text
        session_id = response.json()["sessionId"]
        assert "scheduled" in response.json()["message"]
        assert (await opscore.session(session_id))["status"] == "pending"
        assert agent.received == []
        session = await opscore.wait_session(session_id)
    assert session["status"] == "completed"
    started = datetime.fromisoformat(session["startedAt"])
    assert started >= start_at


async def test_naive_start_at_is_rejected(opscore: OpsCore) -> None:
    response = await opscore.client.post(
        "/v1/opscore/sessions",
        json={"workflowDefinition": linear_workflow(1), "startAt": "2030-01-01T00:00:00"},
    )
    assert response.status_code == 422
    assert (await opscore.client.get("/v1/opscore/sessions")).json()["items"] == []


class StallingStorage(CountingStorage):
    """Runs ``before_listing_free`` once, just before an agent is listed as free."""

    def __init__(self, inner: Storage, before_listing_free: Callable[[], Awaitable[None]]):
        super().__init__(inner)
        self._hook: Callable[[], Awaitable[None]] | None = before_listing_free

    async def queue_put(self, queue: str, member: str, score: float) -> None:
        hook, self._hook = self._hook, None
        if hook is not None and queue == free_agents_queue("test_capability"):
            await hook()
        await super().queue_put(queue, member, score)


async def test_a_task_queued_while_its_agent_is_being_listed_free_is_not_stranded(
    storage: Storage, tmp_path: Path
) -> None:
    """Two processes (two apps on one storage): one finds nothing for a free agent,
    the other queues a task and finds no free agent, then the first lists the agent
    as free. The first must look again, or the task waits for some later kick."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    settings = engine_settings(tmp_path)
    app_b = create_app(settings, storage=storage)
    async with (
        serve_app(app_b) as url_b,
        httpx.AsyncClient(base_url=url_b, headers=headers) as client_b,
    ):
        other = OpsCore(url=url_b, api_key=API_KEY, app=app_b, client=client_b)

        async def other_process_queues_a_task() -> None:
            await other.trigger(linear_workflow(1))  # no agent: any with the capability
            await other.engine.settle()

        app_a = create_app(settings, storage=StallingStorage(storage, other_process_queues_a_task))
        async with serve_app(app_a) as url_a, ContractAgent() as agent:
            await agent.register(url_a, API_KEY)
            received = await agent.wait_for_tasks(1, timeout_s=10)
    assert len(received) == 1
