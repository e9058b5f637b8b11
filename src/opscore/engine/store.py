"""Typed persistence of the engine's records over the generic storage interface.

Every change to a session or task is a compare-and-swap on its document, so several
processes sharing a backend can apply the same event and only one wins. Queue and
timer entries are hints: whoever pops one re-reads the task and checks it still
holds, so a crash between two writes leaves nothing inconsistent that matters.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from opscore.engine.records import Session, Task
from opscore.errors import ConflictError
from opscore.models import ApiModel
from opscore.storage.base import Storage

__all__ = [
    "SESSION_KIND",
    "SLOT_KIND",
    "TASK_KIND",
    "TIMERS",
    "AgentSlot",
    "EngineStore",
    "Versioned",
    "free_agents_queue",
    "new_time_ordered_id",
    "ready_queue_for",
    "task_score",
]

SESSION_KIND = "session"
TASK_KIND = "task"
SLOT_KIND = "agent-slot"
AGENT_RUNTIME_KIND = "agent-runtime"
IDEMPOTENCY_KIND = "idempotency"
TIMERS = "timers"
_CAS_RETRIES = 50

M = TypeVar("M", bound=ApiModel)
T = TypeVar("T")


def new_time_ordered_id() -> str:
    """32 hex chars whose order follows creation time (ms), then randomness."""
    return f"{int(time.time() * 1000):012x}{os.urandom(10).hex()}"


def ready_queue_for(*, agent_id: str | None, capability: str | None) -> str:
    """The ready queue a queued task waits in: its pinned agent's, else its capability's."""
    if agent_id is not None:
        return f"ready:agent:{agent_id}"
    return f"ready:cap:{capability or ''}"


def free_agents_queue(capability: str) -> str:
    """Agents with ``capability`` that were free with nothing to do (hints)."""
    return f"free:cap:{capability}"


def task_score(priority: int, queued_epoch_s: float) -> float:
    """Queue score: higher priority first, then oldest. Priorities are within +-1000."""
    return -priority * 1e10 + queued_epoch_s


@dataclass(frozen=True, slots=True)
class Versioned(Generic[T]):
    value: T
    rev: int


class AgentSlot(ApiModel):
    """The one task in flight on an agent."""

    agent_id: str
    task_id: str
    attempt: int
    claimed_at: float


class EngineStore:
    """Reads and CAS-writes sessions, tasks, agent slots and idempotency keys."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    # -- sessions ------------------------------------------------------------------
    async def get_session(self, session_id: str) -> Versioned[Session] | None:
        doc = await self.storage.get(SESSION_KIND, session_id)
        return None if doc is None else Versioned(Session.from_doc(doc.data), doc.rev)

    async def create_session(self, session: Session) -> bool:
        created = await self.storage.create(
            SESSION_KIND, session.session_id, session.to_doc(), index=session.index()
        )
        return created is not None

    async def update_session(
        self, session_id: str, change: Callable[[Session], Session | None]
    ) -> tuple[Session, bool] | None:
        """Apply ``change`` with CAS retries; ``change`` returns None to leave it as is.
        Returns (session as stored now, whether this call changed it), None if missing."""
        return await self._update(SESSION_KIND, session_id, Session, change, Session.index)

    # -- tasks ---------------------------------------------------------------------
    async def get_task(self, task_id: str) -> Versioned[Task] | None:
        doc = await self.storage.get(TASK_KIND, task_id)
        return None if doc is None else Versioned(Task.from_doc(doc.data), doc.rev)

    async def create_task(self, task: Task) -> bool:
        created = await self.storage.create(TASK_KIND, task.id, task.to_doc(), index=task.index())
        return created is not None

    async def replace_task(self, task: Task, rev: int) -> int | None:
        stored = await self.storage.replace(
            TASK_KIND, task.id, task.to_doc(), expected_rev=rev, index=task.index()
        )
        return None if stored is None else stored.rev

    async def update_task(
        self, task_id: str, change: Callable[[Task], Task | None]
    ) -> tuple[Task, bool] | None:
        """Like :meth:`update_session`, for a task."""
        return await self._update(TASK_KIND, task_id, Task, change, Task.index)

    async def session_tasks(self, session_id: str) -> list[Task]:
        return await self._all_tasks(("sessionId", session_id))

    async def tasks_with_status(self, status: str) -> list[Task]:
        return await self._all_tasks(("status", status))

    async def _all_tasks(self, where: tuple[str, str]) -> list[Task]:
        tasks: list[Task] = []
        after: str | None = None
        while True:
            batch = await self.storage.scan(TASK_KIND, where=where, after=after, limit=500)
            tasks.extend(Task.from_doc(d.data) for d in batch)
            if len(batch) < 500:
                return tasks
            after = batch[-1].key

    # -- agent slots (one task in flight per agent) ----------------------------------
    async def get_slot(self, agent_id: str) -> Versioned[AgentSlot] | None:
        doc = await self.storage.get(SLOT_KIND, agent_id)
        return None if doc is None else Versioned(AgentSlot.from_doc(doc.data), doc.rev)

    async def claim_slot(self, agent_id: str, task_id: str, attempt: int) -> int | None:
        """Claim the agent for ``task_id``; the slot's revision, or None if it is taken."""
        slot = AgentSlot(
            agent_id=agent_id, task_id=task_id, attempt=attempt, claimed_at=time.time()
        )
        created = await self.storage.create(SLOT_KIND, agent_id, slot.to_doc())
        return None if created is None else created.rev

    async def release_slot(self, agent_id: str, task_id: str, attempt: int | None = None) -> bool:
        """Free the agent if (and only if) it is still held by this task (and attempt)."""
        current = await self.get_slot(agent_id)
        if current is None or current.value.task_id != task_id:
            return False
        if attempt is not None and current.value.attempt != attempt:
            return False
        return await self.storage.delete(SLOT_KIND, agent_id, expected_rev=current.rev)

    async def all_slots(self) -> list[Versioned[AgentSlot]]:
        docs = await self.storage.scan(SLOT_KIND, limit=100_000)
        return [Versioned(AgentSlot.from_doc(d.data), d.rev) for d in docs]

    async def mark_agent_freed(self, agent_id: str, at_epoch_s: float) -> None:
        """Remember that a timed-out attempt freed the agent: an ``active`` reported
        before this moment is stale and must not keep the agent busy."""
        await self.storage.put(AGENT_RUNTIME_KIND, agent_id, {"freedAt": at_epoch_s})

    async def agent_freed_at(self, agent_id: str) -> float | None:
        doc = await self.storage.get(AGENT_RUNTIME_KIND, agent_id)
        return None if doc is None else float(doc.data.get("freedAt", 0.0))

    # -- idempotency ---------------------------------------------------------------
    async def claim_idempotency_key(self, key: str, session_id: str) -> str:
        """The session id bound to ``key``: ``session_id`` if this call bound it first."""
        created = await self.storage.create(IDEMPOTENCY_KIND, key, {"sessionId": session_id})
        if created is not None:
            return session_id
        existing = await self.storage.get(IDEMPOTENCY_KIND, key)
        if existing is None:  # deleted in between; extremely unlikely
            raise ConflictError(f"idempotency key {key!r} is being used concurrently; retry")
        return str(existing.data["sessionId"])

    # -- generic CAS loop -------------------------------------------------------------
    async def _update(
        self,
        kind: str,
        key: str,
        model: type[M],
        change: Callable[[M], M | None],
        index: Callable[[M], dict[str, Any]],
    ) -> tuple[M, bool] | None:
        for _ in range(_CAS_RETRIES):
            doc = await self.storage.get(kind, key)
            if doc is None:
                return None
            current = model.from_doc(doc.data)
            updated = change(current)
            if updated is None:
                return current, False
            stored = await self.storage.replace(
                kind, key, updated.to_doc(), expected_rev=doc.rev, index=index(updated)
            )
            if stored is not None:
                return updated, True
        raise ConflictError(f"{kind} {key!r} is being modified concurrently; retry")
