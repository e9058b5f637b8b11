"""The workflow engine's public face: triggering, session control, task queries, and
the glue from agents' state reports to task progress. Built once per app."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

import structlog

from opscore.engine.definition import WorkflowDefinition, parse_definition
from opscore.engine.dispatcher import Dispatcher
from opscore.engine.executor import Executor, retry_timer, timeout_timer
from opscore.engine.records import (
    IN_FLIGHT_TASK_STATUSES,
    Session,
    Task,
    check_session_transition,
)
from opscore.engine.registry import WorkflowRegistry
from opscore.engine.store import (
    SESSION_KIND,
    TASK_KIND,
    TIMERS,
    EngineStore,
    new_time_ordered_id,
)
from opscore.engine.transports import TransportSet
from opscore.errors import (
    AgentNotFoundError,
    ConflictError,
    InvalidInputError,
    InvalidSessionTransitionError,
    SessionNotFoundError,
    TaskNotFoundError,
)
from opscore.lifecycle import AgentChange, LifecycleService, decode_cursor, encode_cursor
from opscore.models import SessionStatus, utcnow
from opscore.settings import Settings

__all__ = ["Page", "WorkflowEngine"]

log = structlog.get_logger("opscore.engine")

#: Keys of a state report's ``details`` that carry correlation, not results.
_CORRELATION_PREFIX = "opscore_"


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def start_timer(session_id: str) -> str:
    return f"start|{session_id}"


def _correlated(details: dict[str, Any]) -> bool:
    return isinstance(details.get("opscore_task_id"), str)


def _strip_correlation(details: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in details.items() if not k.startswith(_CORRELATION_PREFIX)}


def _describe_error(details: dict[str, Any]) -> str:
    message = details.get("message") or details.get("error") or details.get("detail")
    code = details.get("error_code")
    if message and code:
        return f"agent reported error {code}: {message}"
    if message:
        return f"agent reported error: {message}"
    if code:
        return f"agent reported error {code}"
    return "agent reported error"


class WorkflowEngine:
    def __init__(
        self,
        *,
        settings: Settings,
        lifecycle: LifecycleService,
        store: EngineStore,
        transports: TransportSet,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self.store = store
        self.lifecycle = lifecycle
        self.registry = WorkflowRegistry(store.storage)
        self.transports = transports
        self.dispatcher = Dispatcher(
            store=store,
            lifecycle=lifecycle,
            transports=transports,
            agentkit_url=settings.agentkit_url,
            concurrency=settings.dispatch_concurrency,
            on_timer=self._on_timer,
            on_delivery_failed=self._on_delivery_failed,
            max_idle_sleep_s=2.0 if store.storage.shared else 60.0,
            on_sweep=self.recover if store.storage.shared else None,
            sweep_interval_s=settings.recovery_sweep_s,
        )
        self.executor = Executor(store, self.dispatcher, rand=rand)
        lifecycle.add_listener(self._on_agent_change)

    # -- start / stop ----------------------------------------------------------------
    async def start(self) -> None:
        """Load the workflow directory, resume unfinished work, start dispatching."""
        if self.settings.workflow_dir is not None:
            count = await self.registry.load_directory(self.settings.workflow_dir)
            log.info("workflows_loaded", count=count, directory=str(self.settings.workflow_dir))
        await self.recover()
        self.dispatcher.start()

    async def stop(self) -> None:
        await self.dispatcher.stop()
        await self.transports.aclose()

    async def recover(self) -> None:
        """Re-arm everything a crash may have left half done. Idempotent, and harmless
        while other processes sharing the backend are running."""
        storage = self.store.storage
        for task in await self.store.tasks_with_status("queued"):
            await self.executor.enqueue(task)
        for task in await self.store.tasks_with_status("scheduled"):
            due = (task.next_attempt_at or utcnow()).timestamp()
            await storage.queue_put(TIMERS, retry_timer(task.id), due)
        for status in IN_FLIGHT_TASK_STATUSES:
            for task in await self.store.tasks_with_status(status):
                current = task.current
                if current is not None:
                    member = timeout_timer(task.id, current.attempt)
                    await storage.queue_put(TIMERS, member, current.deadline_at.timestamp())
        for status in ("pending", "running"):
            after: str | None = None
            while True:
                batch = await storage.scan(
                    SESSION_KIND, where=("status", status), after=after, limit=500
                )
                for doc in batch:
                    scheduled = doc.data.get("scheduledAt")
                    if status == "pending" and scheduled is not None:
                        due = datetime.fromisoformat(scheduled).timestamp()
                        await storage.queue_put(TIMERS, start_timer(doc.key), due)
                    elif status == "pending":
                        await self._start_session(doc.key)
                    else:
                        await self.executor.advance_session(doc.key)
                if len(batch) < 500:
                    break
                after = batch[-1].key
        page_cursor: str | None = None
        while True:
            page = await self.lifecycle.list_agents(limit=500, cursor=page_cursor)
            for agent in page.items:
                self.dispatcher.kick_agent(agent.agent_id)
            if page.next_cursor is None:
                break
            page_cursor = page.next_cursor

    # -- triggering ------------------------------------------------------------------
    async def trigger(
        self,
        *,
        workflow_id: str | None = None,
        workflow_version: str | None = None,
        definition: dict[str, Any] | None = None,
        initial_payload: dict[str, Any] | None = None,
        agent_id: str | None = None,
        idempotency_key: str | None = None,
        start_at: datetime | None = None,
    ) -> tuple[Session, bool]:
        """Start a session; returns (session, created). With ``idempotency_key`` a repeat
        returns the first session instead of starting another. With ``start_at`` in the
        future the session stays ``pending`` until then (a durable timer starts it)."""
        if (workflow_id is None) == (definition is None):
            raise InvalidInputError(
                "give exactly one of workflowDefinitionId and workflowDefinition"
            )
        if idempotency_key is not None and not 1 <= len(idempotency_key) <= 200:
            raise InvalidInputError("Idempotency-Key must be 1 to 200 characters")
        parsed: WorkflowDefinition
        if definition is not None:
            parsed = parse_definition(definition)
        else:
            assert workflow_id is not None
            parsed = (await self.registry.get(workflow_id, workflow_version)).definition
        if agent_id is not None and await self.lifecycle.find(agent_id) is None:
            raise AgentNotFoundError(f"agent {agent_id!r} is not registered")
        session_id = new_time_ordered_id()
        if idempotency_key is not None:
            bound = await self.store.claim_idempotency_key(idempotency_key, session_id)
            if bound != session_id:
                existing = await self.store.get_session(bound)
                if existing is not None:
                    return existing.value, False
                session_id = bound  # the first caller crashed before storing its session
        now = utcnow()
        session = Session(
            session_id=session_id,
            workflow_id=parsed.id,
            workflow_version=parsed.version,
            agent_id=agent_id,
            status="pending",
            input=dict(initial_payload or {}),
            created_at=now,
            updated_at=now,
            idempotency_key=idempotency_key,
            scheduled_at=start_at if start_at is not None and start_at > now else None,
            definition=parsed.to_doc(),
        )
        if not await self.store.create_session(session):
            existing = await self.store.get_session(session_id)
            assert existing is not None
            return existing.value, False
        log.info(
            "session_created",
            sessionId=session_id,
            workflowId=parsed.id,
            workflowVersion=parsed.version,
            agentId=agent_id,
        )
        if session.scheduled_at is not None:
            await self.dispatcher.schedule(
                start_timer(session_id), session.scheduled_at.timestamp()
            )
            return session, True
        started = await self._start_session(session_id)
        return started or session, True

    async def _start_session(self, session_id: str) -> Session | None:
        def change(session: Session) -> Session | None:
            if session.status != "pending":
                return None
            now = utcnow()
            return session.model_copy(
                update={"status": "running", "started_at": now, "updated_at": now}
            )

        updated = await self.store.update_session(session_id, change)
        await self.executor.advance_session(session_id)
        found = await self.store.get_session(session_id)
        return found.value if found else (updated[0] if updated else None)

    # -- session queries and control -------------------------------------------------
    async def get_session(self, session_id: str) -> tuple[Session, list[Task]]:
        found = await self.store.get_session(session_id)
        if found is None:
            raise SessionNotFoundError(f"session {session_id!r} does not exist")
        tasks = await self.store.session_tasks(session_id)
        tasks.sort(key=lambda t: (t.queued_at, t.id))
        return found.value, tasks

    async def list_sessions(
        self,
        *,
        status: SessionStatus | None = None,
        agent_id: str | None = None,
        workflow_id: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[Session]:
        filters = {"status": status, "agentId": agent_id, "workflowId": workflow_id}
        items, next_cursor = await self._filtered_scan(SESSION_KIND, filters, limit, cursor)
        return Page([Session.from_doc(d) for d in items], next_cursor)

    async def _filtered_scan(
        self, kind: str, filters: dict[str, str | None], limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Scan by the first given filter's index; check the others on each document."""
        active = {k: v for k, v in filters.items() if v is not None}
        where = next(iter(active.items()), None)
        after = decode_cursor(cursor)
        found: list[dict[str, Any]] = []
        while True:
            batch = await self.store.storage.scan(kind, where=where, after=after, limit=limit)
            for doc in batch:
                after = doc.key
                if all(doc.data.get(k) == v for k, v in active.items()):
                    found.append(doc.data)
                    if len(found) == limit:
                        return found, encode_cursor(after)
            if len(batch) < limit:
                return found, None

    async def cancel(self, session_id: str) -> Session:
        session = await self._transition(session_id, "cancelled")
        await self.executor.cancel_waiting_tasks(session_id, reason="session_cancelled")
        return session

    async def pause(self, session_id: str) -> Session:
        return await self._transition(session_id, "paused")

    async def resume(self, session_id: str) -> Session:
        session = await self._transition(session_id, "running", allowed_from={"paused"})
        for task in await self.store.session_tasks(session_id):
            if task.status == "queued":
                await self.executor.enqueue(task)
        await self.executor.advance_session(session_id)
        return session

    async def _transition(
        self,
        session_id: str,
        new: SessionStatus,
        *,
        allowed_from: frozenset[SessionStatus] | set[SessionStatus] | None = None,
    ) -> Session:
        """Move a session to ``new``; with ``allowed_from``, only from those statuses
        (a narrower rule than the status machine, e.g. resume only from paused)."""

        def change(session: Session) -> Session | None:
            if allowed_from is not None and session.status not in allowed_from:
                raise InvalidSessionTransitionError(
                    f"session {session_id!r} is {session.status}; "
                    f"only a {' or '.join(sorted(allowed_from))} session can go to {new!r}"
                )
            check_session_transition(session_id, session.status, new)
            now = utcnow()
            update: dict[str, Any] = {"status": new, "updated_at": now}
            if new == "cancelled":
                update["finished_at"] = now
            if new == "running":
                update["finished_at"] = None
                update["error"] = None
            return session.model_copy(update=update)

        updated = await self.store.update_session(session_id, change)
        if updated is None:
            raise SessionNotFoundError(f"session {session_id!r} does not exist")
        log.info("session_" + new, sessionId=session_id)
        return updated[0]

    # -- tasks ---------------------------------------------------------------------
    async def get_task(self, task_id: str) -> Task:
        found = await self.store.get_task(task_id)
        if found is None:
            raise TaskNotFoundError(f"task {task_id!r} does not exist")
        return found.value

    async def list_tasks(
        self,
        *,
        status: str | None = None,
        session_id: str | None = None,
        agent_id: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[Task]:
        filters = {"status": status, "sessionId": session_id, "agentId": agent_id}
        items, next_cursor = await self._filtered_scan(TASK_KIND, filters, limit, cursor)
        return Page([Task.from_doc(d) for d in items], next_cursor)

    async def submit_result(
        self,
        task_id: str,
        *,
        status: Literal["completed", "failed"],
        result: dict[str, Any] | None,
        error: str | None,
        attempt: int | None,
    ) -> Task:
        """An agent posts its task's outcome directly (instead of a state report)."""
        task = await self.get_task(task_id)
        current = task.current
        if task.status not in IN_FLIGHT_TASK_STATUSES or current is None:
            raise ConflictError(f"task {task_id!r} is {task.status}, not in flight")
        if attempt is not None and attempt != current.attempt:
            raise ConflictError(
                f"task {task_id!r} is on attempt {current.attempt}, not attempt {attempt}"
            )
        if status == "completed":
            applied = await self.executor.complete_attempt(
                task_id, current.attempt, current.agent_id, result or {}
            )
        else:
            applied = await self.executor.fail_attempt(
                task_id, current.attempt, current.agent_id, error or "agent reported failure"
            )
        if not applied:
            raise ConflictError(f"task {task_id!r} changed meanwhile; it is no longer in flight")
        return await self.get_task(task_id)

    async def retry_dead(self, task_id: str) -> Task:
        """Re-run a dead letter with a fresh retry budget; reopens its failed session.

        ConflictError (409) unless the task is dead, its session can still run (failed,
        running or paused) and no fallback already took its place."""
        task = await self.get_task(task_id)
        if task.status != "dead":
            raise ConflictError(f"task {task_id!r} is {task.status}; only dead tasks re-run")
        found = await self.store.get_session(task.session_id)
        if found is None:
            raise SessionNotFoundError(f"session {task.session_id!r} does not exist")
        session = found.value
        if session.status in {"completed", "cancelled", "pending"}:
            raise ConflictError(
                f"session {session.session_id!r} is {session.status}; "
                f"task {task_id!r} cannot re-run in it"
            )
        fallback = self.executor.definition_of(session).task(task.task_id).on_failure
        siblings = await self.store.session_tasks(task.session_id)
        if fallback and any(t.task_id == fallback and t.status != "skipped" for t in siblings):
            raise ConflictError(
                f"task {task_id!r} already handed over to its fallback {fallback!r}"
            )
        # Reopen the session first: a crash right after leaves a running session with a
        # dead task, which simply fails again (and may be retried again).
        reopened = session.status == "failed"
        if reopened:
            await self._transition(task.session_id, "running", allowed_from={"failed"})

        def change(current: Task) -> Task | None:
            if current.status != "dead":
                raise ConflictError(f"task {task_id!r} is {current.status}; only dead tasks re-run")
            return current.model_copy(
                update={
                    "status": "queued",
                    "error": None,
                    "finished_at": None,
                    "retry_base": len(current.attempts),
                }
            )

        updated = await self.store.update_task(task_id, change)
        if updated is None:
            raise TaskNotFoundError(f"task {task_id!r} does not exist")
        task = updated[0]
        # Paths marked dead because this task failed may be live again: forget them,
        # the planner records whatever is still unreachable.
        for sibling in siblings:
            if sibling.status == "skipped":
                await self.store.storage.delete(TASK_KIND, sibling.id)
            elif reopened and sibling.cancel_reason == "session_failed":
                await self._requeue_cancelled(sibling.id)
        log.info("task_requeued", taskId=task_id, sessionId=task.session_id)
        await self.executor.enqueue(task)
        return task

    async def _requeue_cancelled(self, task_id: str) -> None:
        def change(task: Task) -> Task | None:
            if task.status != "cancelled":
                return None
            return task.model_copy(
                update={"status": "queued", "cancel_reason": None, "finished_at": None}
            )

        updated = await self.store.update_task(task_id, change)
        if updated is not None and updated[1]:
            await self.executor.enqueue(updated[0])

    # -- events ----------------------------------------------------------------------
    async def _on_timer(self, member: str) -> None:
        kind, _, rest = member.partition("|")
        if kind == "retry":
            await self.executor.retry_due(rest)
        elif kind == "start":
            await self._start_session(rest)
        elif kind == "reap":
            await self.dispatcher.reap_if_orphaned(rest)
        elif kind == "timeout":
            task_id, _, attempt = rest.rpartition("|")
            await self.executor.attempt_timed_out(task_id, int(attempt))
        else:
            log.warning("unknown_timer", timer=member)

    async def _on_delivery_failed(
        self, task_id: str, attempt: int, agent_id: str, message: str
    ) -> None:
        await self.executor.fail_attempt(task_id, attempt, agent_id, message)

    async def _on_agent_change(self, change: AgentChange) -> None:
        agent_id = change.agent.agent_id
        if change.kind == "deregistered":
            await self._fail_in_flight(agent_id, f"agent {agent_id!r} was deregistered")
            return
        if change.kind == "registered" or change.entry is None:
            self.dispatcher.kick_agent(agent_id)
            return
        entry = change.entry
        details = entry.details
        task_id, attempt = await self._task_in_flight(agent_id, details)
        log.debug(
            "state_report_matched",
            agentId=agent_id,
            state=entry.state,
            taskId=task_id,
            attempt=attempt,
        )
        if task_id is not None:
            if entry.state == "active":
                await self.executor.start_attempt(task_id, attempt, agent_id)
            elif entry.state in {"idle", "finished"}:
                # An uncorrelated idle right after an error is the agent saying it is
                # ready again: it may complete a task it started, never one it was
                # merely sent (the retry of the task that just failed, most likely).
                ready_again = entry.previous_state == "error" and not _correlated(details)
                if details.get("opscore_heartbeat") is not True:
                    await self.executor.complete_attempt(
                        task_id,
                        attempt,
                        agent_id,
                        _strip_correlation(details),
                        reported_at=entry.timestamp,
                        require_started=ready_again,
                    )
            elif entry.state == "error":
                failed = await self.executor.fail_attempt(
                    task_id, attempt, agent_id, _describe_error(details)
                )
                if failed:
                    # The task failed, not the agent: it may take the retry.
                    await self.store.mark_agent_freed(agent_id, time.time())
            elif entry.state in {"initializing", "offline"}:
                await self.executor.fail_attempt(
                    task_id,
                    attempt,
                    agent_id,
                    f"agent {agent_id!r} reported {entry.state!r} while the task was in flight",
                )
        self.dispatcher.kick_agent(agent_id)

    async def _task_in_flight(
        self, agent_id: str, details: dict[str, Any]
    ) -> tuple[str | None, int | None]:
        explicit = details.get("opscore_task_id")
        explicit_attempt = details.get("opscore_attempt")
        attempt = explicit_attempt if isinstance(explicit_attempt, int) else None
        if isinstance(explicit, str) and explicit:
            return explicit, attempt
        slot = await self.store.get_slot(agent_id)
        if slot is None:
            return None, None
        return slot.value.task_id, slot.value.attempt

    async def _fail_in_flight(self, agent_id: str, message: str) -> None:
        slot = await self.store.get_slot(agent_id)
        if slot is None:
            return
        applied = await self.executor.fail_attempt(
            slot.value.task_id, slot.value.attempt, agent_id, message
        )
        if not applied:
            await self.store.release_slot(agent_id, slot.value.task_id, slot.value.attempt)

    # -- for tests and benchmarks ----------------------------------------------------
    async def settle(self) -> None:
        """Wait until queued dispatch work has been handled."""
        await self.dispatcher.idle()
