"""Task and session progress: what happens when an attempt starts, completes, fails or
times out, and how a session advances. Every step is a compare-and-swap that checks
the attempt is still the current one, so a duplicate report, a late delivery failure
or a timer firing in two processes changes nothing twice.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog

from opscore.engine.definition import TaskPolicy, WorkflowDefinition, backoff_delay_s
from opscore.engine.planner import TaskOutcome, plan
from opscore.engine.records import (
    ACTIVE_TASK_STATUSES,
    FINAL_TASK_STATUSES,
    IN_FLIGHT_TASK_STATUSES,
    Session,
    Task,
)
from opscore.engine.store import TIMERS, EngineStore, ready_queue_for, task_score
from opscore.engine.templating import render_parameters
from opscore.errors import OpsCoreError
from opscore.models import utcnow

__all__ = ["Executor", "Kicker", "policy_doc", "retry_timer", "timeout_timer"]

log = structlog.get_logger("opscore.engine")

_DEFINITION_CACHE_SIZE = 1024
# Agents stamp reports coarsely: whole seconds from a coarse clock can read more than
# one second early. Two seconds cover that; an idle older than this is not a completion.
_REPORT_CLOCK_TOLERANCE = timedelta(seconds=2)


class Kicker(Protocol):
    """What the executor asks of the dispatcher."""

    def kick_agent(self, agent_id: str) -> None: ...
    def kick_task(self, task_id: str) -> None: ...
    async def schedule(self, member: str, due_epoch_s: float) -> None: ...


def timeout_timer(task_id: str, attempt: int) -> str:
    return f"timeout|{task_id}|{attempt}"


def retry_timer(task_id: str) -> str:
    return f"retry|{task_id}"


def policy_doc(policy: TaskPolicy) -> dict[str, Any]:
    """A TaskPolicy as stored on a task."""
    return {
        "max_retries": policy.max_retries,
        "retry_backoff_s": policy.retry_backoff_s,
        "retry_backoff_max_s": policy.retry_backoff_max_s,
        "retry_backoff_multiplier": policy.retry_backoff_multiplier,
        "retry_jitter": policy.retry_jitter,
        "dispatch_timeout_s": policy.dispatch_timeout_s,
        "completion_timeout_s": policy.completion_timeout_s,
        "priority": policy.priority,
    }


def _outcome(task: Task) -> TaskOutcome:
    if task.status == "completed":
        return TaskOutcome(status="completed", result=task.result)
    if task.status == "dead":
        return TaskOutcome(status="failed", result=None)
    if task.status == "skipped":
        return TaskOutcome(status="skipped", result=None)
    return TaskOutcome(status="pending", result=None)


class Executor:
    """Applies task events and advances sessions. Holds no state that must survive."""

    def __init__(self, store: EngineStore, kicker: Kicker, *, rand: Callable[[], float]) -> None:
        self._store = store
        self._kicker = kicker
        self._rand = rand
        self._definitions: OrderedDict[str, WorkflowDefinition] = OrderedDict()

    # -- queueing ------------------------------------------------------------------
    async def enqueue(self, task: Task) -> None:
        """Put a queued task in its ready queue and ask the dispatcher to place it."""
        queue = ready_queue_for(agent_id=task.target_agent_id, capability=task.capability)
        await self._store.storage.queue_put(
            queue, task.id, task_score(task.priority, task.queued_at.timestamp())
        )
        self._kicker.kick_task(task.id)

    # -- attempt events ---------------------------------------------------------------
    async def start_attempt(self, task_id: str, attempt: int | None, agent_id: str) -> None:
        """The agent reported ``active`` for its in-flight task."""

        def change(task: Task) -> Task | None:
            current = task.current
            if (
                task.status != "dispatched"
                or current is None
                or current.agent_id != agent_id
                or (attempt is not None and current.attempt != attempt)
            ):
                return None
            now = utcnow()
            started = current.model_copy(update={"status": "running", "started_at": now})
            return task.model_copy(
                update={
                    "status": "running",
                    "started_at": now,
                    "attempts": [*task.attempts[:-1], started],
                }
            )

        await self._store.update_task(task_id, change)

    async def complete_attempt(
        self,
        task_id: str,
        attempt: int | None,
        agent_id: str | None,
        result: dict[str, Any],
        *,
        reported_at: datetime | None = None,
        require_started: bool = False,
    ) -> bool:
        """Record a successful attempt and advance the session. False if the attempt was
        no longer in flight (a duplicate or late report): nothing is applied twice.

        ``reported_at``: when the agent says it sent the report. An ``idle`` stamped
        well before the attempt was dispatched (sent before the agent got the task)
        cannot be its completion while the agent has not said ``active``. Agents stamp
        with coarse precision (AgentKit: milliseconds; some: seconds), hence a tolerance.
        ``require_started``: apply only if the agent said ``active`` for the attempt."""
        applied: dict[str, Any] = {}

        def change(task: Task) -> Task | None:
            current = task.current
            if not _is_current(task, attempt, agent_id):
                return None
            assert current is not None
            if task.status == "dispatched" and (
                require_started
                or (
                    reported_at is not None
                    and reported_at < current.dispatched_at - _REPORT_CLOCK_TOLERANCE
                )
            ):
                return None
            now = utcnow()
            done = current.model_copy(
                update={
                    "status": "completed",
                    "finished_at": now,
                    "started_at": current.started_at or now,
                    "result": result,
                }
            )
            applied["attempt"] = current.attempt
            applied["agent"] = current.agent_id
            return task.model_copy(
                update={
                    "status": "completed",
                    "finished_at": now,
                    "started_at": task.started_at or now,
                    "result": result,
                    "error": None,
                    "attempts": [*task.attempts[:-1], done],
                }
            )

        updated = await self._store.update_task(task_id, change)
        if updated is None or not updated[1]:
            current = updated[0] if updated else None
            log.info(
                "completion_not_applied",
                taskId=task_id,
                agentId=agent_id,
                attempt=attempt,
                taskStatus=current.status if current else None,
                currentAttempt=current.current.attempt if current and current.current else None,
            )
            await self._release_after_report(current, attempt, agent_id)
            return False
        task = updated[0]
        log.info(
            "task_completed",
            taskId=task.id,
            sessionId=task.session_id,
            agentId=applied["agent"],
            attempt=applied["attempt"],
        )
        await self._after_attempt(task, applied["agent"], applied["attempt"])
        await self.advance_session(task.session_id)
        self._kicker.kick_agent(applied["agent"])
        return True

    async def fail_attempt(
        self,
        task_id: str,
        attempt: int | None,
        agent_id: str | None,
        error: str,
        *,
        retryable: bool = True,
    ) -> bool:
        """Record a failed attempt: schedule a retry with backoff, or make the task a dead
        letter once its retries are spent. False if the attempt was no longer current."""
        applied: dict[str, Any] = {}

        def change(task: Task) -> Task | None:
            current = task.current
            if not _is_current(task, attempt, agent_id):
                return None
            assert current is not None
            now = utcnow()
            failed = current.model_copy(
                update={"status": "failed", "finished_at": now, "error": error}
            )
            policy = TaskPolicy(**task.policy)
            used = len(task.attempts) - task.retry_base
            applied["attempt"] = current.attempt
            applied["agent"] = current.agent_id
            if retryable and used <= policy.max_retries:
                delay = backoff_delay_s(policy, used, self._rand)
                applied["retry_at"] = now + timedelta(seconds=delay)
                return task.model_copy(
                    update={
                        "status": "scheduled",
                        "error": error,
                        "next_attempt_at": applied["retry_at"],
                        "attempts": [*task.attempts[:-1], failed],
                    }
                )
            note = f"{error} (attempt {used} of {policy.max_retries + 1})" if retryable else error
            return task.model_copy(
                update={
                    "status": "dead",
                    "error": note,
                    "finished_at": now,
                    "attempts": [*task.attempts[:-1], failed],
                }
            )

        updated = await self._store.update_task(task_id, change)
        if updated is None or not updated[1]:
            await self._release_after_report(updated[0] if updated else None, attempt, agent_id)
            return False
        task = updated[0]
        await self._after_attempt(task, applied["agent"], applied["attempt"])
        if task.status == "scheduled":
            assert task.next_attempt_at is not None
            log.info(
                "task_retry_scheduled",
                taskId=task.id,
                sessionId=task.session_id,
                attempt=applied["attempt"],
                error=error,
                retryAt=task.next_attempt_at.isoformat(),
            )
            await self._kicker.schedule(retry_timer(task.id), task.next_attempt_at.timestamp())
        else:
            log.warning("task_dead", taskId=task.id, sessionId=task.session_id, error=task.error)
            await self.advance_session(task.session_id)
        self._kicker.kick_agent(applied["agent"])
        return True

    async def _after_attempt(self, task: Task, agent_id: str, attempt: int) -> None:
        await self._store.release_slot(agent_id, task.id, attempt)
        await self._store.storage.queue_remove(TIMERS, timeout_timer(task.id, attempt))

    async def _release_after_report(
        self, task: Task | None, attempt: int | None, agent_id: str | None
    ) -> None:
        # A terminal report for a task that is over (cancelled meanwhile) still frees
        # the agent that was working on it. A task that is still queued is being
        # claimed right now (slot taken, task not yet marked): its slot must stay.
        if task is None or agent_id is None or task.status not in FINAL_TASK_STATUSES:
            return
        if await self._store.release_slot(agent_id, task.id, attempt):
            self._kicker.kick_agent(agent_id)

    async def attempt_timed_out(self, task_id: str, attempt: int) -> None:
        """A timer found the attempt still unfinished at its deadline."""
        found = await self._store.get_task(task_id)
        if found is None:
            return
        task = found.value
        current = task.current
        if current is None or current.attempt != attempt:
            return
        if task.status in IN_FLIGHT_TASK_STATUSES:
            timeout = float(task.policy.get("completion_timeout_s", 0))
            await self.fail_attempt(
                task_id,
                attempt,
                current.agent_id,
                f"agent {current.agent_id!r} did not complete the task within "
                f"completionTimeoutS={timeout:g}s",
            )
        elif await self._store.release_slot(current.agent_id, task.id, attempt):
            self._kicker.kick_agent(current.agent_id)
        # Whatever the agent last said (a stale ``active``) no longer keeps it busy.
        await self._store.mark_agent_freed(current.agent_id, time.time())
        self._kicker.kick_agent(current.agent_id)

    async def retry_due(self, task_id: str) -> None:
        """A retry backoff ended: queue the task again."""

        def change(task: Task) -> Task | None:
            if task.status != "scheduled":
                return None
            return task.model_copy(update={"status": "queued", "next_attempt_at": None})

        updated = await self._store.update_task(task_id, change)
        if updated is not None and updated[1]:
            await self.enqueue(updated[0])

    # -- sessions ------------------------------------------------------------------
    def definition_of(self, session: Session) -> WorkflowDefinition:
        """The session's own copy of its definition, parsed once per process."""
        cached = self._definitions.get(session.session_id)
        if cached is not None:
            self._definitions.move_to_end(session.session_id)
            return cached
        # Stored definitions were validated when the session started: check shape only.
        definition = WorkflowDefinition.model_validate(session.definition)
        self._definitions[session.session_id] = definition
        if len(self._definitions) > _DEFINITION_CACHE_SIZE:
            self._definitions.popitem(last=False)
        return definition

    async def advance_session(self, session_id: str) -> None:
        """Create the tasks that are now ready, record dead paths as skipped, and finish
        the session when nothing is left. Idempotent: safe to call at any time."""
        for _ in range(1000):
            found = await self._store.get_session(session_id)
            if found is None or found.value.status != "running":
                return
            session = found.value
            definition = self.definition_of(session)
            tasks = await self._store.session_tasks(session_id)
            outcomes = {t.task_id: _outcome(t) for t in tasks}
            context = _context(session, tasks)
            decided = plan(definition, outcomes, context)
            replan = False
            for step_id in decided.skipped:
                await self._store.create_task(
                    self._new_task(session, definition, step_id, status="skipped", params={})
                )
                replan = True
            for step_id in decided.ready:
                replan |= await self._create_ready_task(session, definition, step_id, context)
            if replan:
                continue
            if decided.failed:
                await self.finish_session(session_id, "failed", error=decided.error)
            elif decided.finished:
                results = {t.task_id: t.result for t in tasks if t.status == "completed"}
                await self.finish_session(session_id, "completed", result=results)
            return

    async def _create_ready_task(
        self,
        session: Session,
        definition: WorkflowDefinition,
        step_id: str,
        context: dict[str, Any],
    ) -> bool:
        """Create and queue a ready task; True when it was created dead (replan)."""
        spec = definition.task(step_id)
        try:
            params = render_parameters(spec.parameters, context)
        except OpsCoreError as exc:
            task = self._new_task(session, definition, step_id, status="dead", params={})
            task = task.model_copy(update={"error": exc.message, "finished_at": utcnow()})
            await self._store.create_task(task)
            return True
        task = self._new_task(session, definition, step_id, status="queued", params=params)
        if task.target_agent_id is None and task.capability is None:
            dead = task.model_copy(
                update={
                    "status": "dead",
                    "finished_at": utcnow(),
                    "error": (
                        f"task {step_id!r} has no agent: the session has no agent and the task "
                        "names no agentCapability"
                    ),
                }
            )
            await self._store.create_task(dead)
            return True
        if await self._store.create_task(task):
            log.info("task_queued", taskId=task.id, sessionId=session.session_id)
            await self.enqueue(task)
        return False

    @staticmethod
    def _new_task(
        session: Session,
        definition: WorkflowDefinition,
        step_id: str,
        *,
        status: str,
        params: dict[str, Any],
    ) -> Task:
        spec = definition.task(step_id)
        policy = definition.policy(step_id)
        pinned = session.agent_id if spec.routing == "session" else None
        now = utcnow()
        return Task.model_validate(
            {
                "id": f"{session.session_id}:{step_id}",
                "task_id": step_id,
                "session_id": session.session_id,
                "name": spec.name,
                "status": status,
                "target_agent_id": pinned,
                "capability": spec.agent_capability,
                "priority": policy.priority,
                "parameters": params,
                "policy": policy_doc(policy),
                "queued_at": now,
                "finished_at": now if status == "skipped" else None,
            }
        )

    async def finish_session(
        self,
        session_id: str,
        status: str,
        *,
        error: str | None = None,
        result: dict[str, Any] | None = None,
    ) -> None:
        def change(session: Session) -> Session | None:
            if session.status != "running":
                return None
            now = utcnow()
            return session.model_copy(
                update={
                    "status": status,
                    "finished_at": now,
                    "updated_at": now,
                    "error": error,
                    "result": result,
                }
            )

        updated = await self._store.update_session(session_id, change)
        if updated is None or not updated[1]:
            return
        log.info("session_finished", sessionId=session_id, status=status, error=error)
        if status == "failed":
            await self.cancel_waiting_tasks(session_id, reason="session_failed")

    async def cancel_waiting_tasks(self, session_id: str, *, reason: str) -> None:
        """Cancel the session's tasks that have not finished. Tasks in flight are marked
        cancelled too; their agent stays claimed until it reports or times out."""
        for task in await self._store.session_tasks(session_id):
            if task.status not in ACTIVE_TASK_STATUSES:
                continue

            def change(t: Task) -> Task | None:
                if t.status not in ACTIVE_TASK_STATUSES:
                    return None
                return t.model_copy(
                    update={"status": "cancelled", "cancel_reason": reason, "finished_at": utcnow()}
                )

            updated = await self._store.update_task(task.id, change)
            if updated is None or not updated[1]:
                continue
            queue = ready_queue_for(agent_id=task.target_agent_id, capability=task.capability)
            await self._store.storage.queue_remove(queue, task.id)
            await self._store.storage.queue_remove(TIMERS, retry_timer(task.id))


def _is_current(task: Task, attempt: int | None, agent_id: str | None) -> bool:
    current = task.current
    return (
        task.status in IN_FLIGHT_TASK_STATUSES
        and current is not None
        and (attempt is None or current.attempt == attempt)
        and (agent_id is None or current.agent_id == agent_id)
    )


def _context(session: Session, tasks: list[Task]) -> dict[str, Any]:
    return {
        "input": session.input,
        "tasks": {t.task_id: {"result": t.result} for t in tasks if t.status == "completed"},
        "session": {"id": session.session_id, "agentId": session.agent_id},
    }
