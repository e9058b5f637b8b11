"""Runtime records of the engine: sessions (workflow runs), tasks and attempts.

Session status machine::

    pending  -> running | cancelled
    running  -> paused | completed | failed | cancelled
    paused   -> running | cancelled
    failed   -> running            (a dead task was re-run)

Task status: ``queued`` (ready, waiting for a free agent), ``scheduled`` (waiting for a
retry backoff), ``dispatched`` (sent to an agent), ``running`` (the agent said
``active``), then one of ``completed``, ``dead`` (retries exhausted: a dead letter),
``skipped`` (on a branch not taken), ``cancelled``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from opscore.errors import InvalidSessionTransitionError
from opscore.models import ApiModel, SessionStatus

__all__ = [
    "ACTIVE_TASK_STATUSES",
    "FINAL_SESSION_STATUSES",
    "FINAL_TASK_STATUSES",
    "IN_FLIGHT_TASK_STATUSES",
    "SESSION_TRANSITIONS",
    "Attempt",
    "AttemptStatus",
    "Session",
    "Task",
    "TaskStatus",
    "check_session_transition",
]

TaskStatus = Literal[
    "queued", "scheduled", "dispatched", "running", "completed", "dead", "skipped", "cancelled"
]
AttemptStatus = Literal["dispatched", "running", "completed", "failed"]

IN_FLIGHT_TASK_STATUSES: frozenset[str] = frozenset({"dispatched", "running"})
ACTIVE_TASK_STATUSES: frozenset[str] = frozenset({"queued", "scheduled", "dispatched", "running"})
FINAL_TASK_STATUSES: frozenset[str] = frozenset({"completed", "dead", "skipped", "cancelled"})
FINAL_SESSION_STATUSES: frozenset[str] = frozenset({"completed", "failed", "cancelled"})

SESSION_TRANSITIONS: Mapping[SessionStatus, frozenset[SessionStatus]] = {
    "pending": frozenset({"running", "cancelled"}),
    "running": frozenset({"paused", "completed", "failed", "cancelled"}),
    "paused": frozenset({"running", "cancelled"}),
    "failed": frozenset({"running"}),
    "completed": frozenset(),
    "cancelled": frozenset(),
}


def check_session_transition(session_id: str, current: SessionStatus, new: SessionStatus) -> None:
    """Raise InvalidSessionTransitionError (409) unless ``current -> new`` is allowed."""
    if new not in SESSION_TRANSITIONS[current]:
        allowed = ", ".join(sorted(SESSION_TRANSITIONS[current])) or "nothing (it is final)"
        raise InvalidSessionTransitionError(
            f"session {session_id!r} cannot go from {current!r} to {new!r}; "
            f"from {current!r} it may go to: {allowed}"
        )


class Attempt(ApiModel):
    """One delivery of a task to an agent."""

    attempt: int
    agent_id: str
    transport: str | None = None
    status: AttemptStatus = "dispatched"
    dispatched_at: datetime
    deadline_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result: dict[str, Any] | None = None
    error: str | None = None


class Task(ApiModel):
    """One step of one session. ``id`` is ``<sessionId>:<taskId>``.

    ``queued_at`` is when the task first became ready; ``dispatched_at``,
    ``started_at`` and ``finished_at`` describe its latest attempt (every attempt keeps
    its own times in ``attempts``)."""

    id: str
    task_id: str
    session_id: str
    name: str
    status: TaskStatus
    target_agent_id: str | None = None
    capability: str | None = None
    agent_id: str | None = None
    priority: int = 0
    parameters: dict[str, Any] = Field(default_factory=dict)
    #: The resolved retry/timeout policy (camelCase field names of the definition format).
    policy: dict[str, Any] = Field(default_factory=dict)
    queued_at: datetime
    dispatched_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    next_attempt_at: datetime | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    attempts: list[Attempt] = Field(default_factory=list)
    #: Attempts before this index do not count against maxRetries (a dead letter re-run).
    retry_base: int = 0
    cancel_reason: str | None = None

    @property
    def current(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    def index(self) -> dict[str, Any]:
        return {"status": self.status, "sessionId": self.session_id, "agentId": self.agent_id}


class Session(ApiModel):
    """One run of a workflow definition (the definition is kept as it was at start)."""

    session_id: str
    workflow_id: str
    workflow_version: str
    agent_id: str | None = None
    status: SessionStatus
    input: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    updated_at: datetime
    #: A trigger may ask for a later start; the session is ``pending`` until then.
    scheduled_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    result: dict[str, Any] | None = None
    idempotency_key: str | None = None
    definition: dict[str, Any]

    def index(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "agentId": self.agent_id,
            "workflowId": self.workflow_id,
        }
