"""Typed models of the API's answers.

Attributes are snake_case; the wire is camelCase (both spellings are accepted when
building a model). Unknown fields are ignored and status fields are plain strings, so
a newer server that adds fields or statuses does not break an older SDK.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

__all__ = [
    "AGENT_STATES",
    "FINAL_SESSION_STATUSES",
    "FINAL_TASK_STATUSES",
    "Agent",
    "AgentPage",
    "AgentState",
    "ApiModel",
    "Attempt",
    "Page",
    "ResultAccepted",
    "Session",
    "SessionPage",
    "StateAccepted",
    "StateEntry",
    "Task",
    "TaskPage",
    "TriggerResult",
    "Workflow",
    "WorkflowPage",
]

#: States an agent may report (contract section 3) plus ``unknown``.
AGENT_STATES: tuple[str, ...] = (
    "unknown",
    "initializing",
    "idle",
    "active",
    "error",
    "finished",
    "offline",
)
#: A session in one of these statuses will not change by itself any more.
FINAL_SESSION_STATUSES: frozenset[str] = frozenset({"completed", "failed", "cancelled"})
#: A task in one of these statuses is done (``dead`` tasks may be re-run with retry_task).
FINAL_TASK_STATUSES: frozenset[str] = frozenset({"completed", "dead", "skipped", "cancelled"})

ItemT = TypeVar("ItemT")


class ApiModel(BaseModel):
    """Base of every SDK model: camelCase aliases, both spellings in, extras ignored."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    def to_dict(self) -> dict[str, Any]:
        """The model as the API spells it (camelCase JSON types), e.g. for ``--json``."""
        return self.model_dump(mode="json", by_alias=True)


class Page(ApiModel, Generic[ItemT]):
    """One page of a listing; pass ``next_cursor`` back as ``cursor`` for the next."""

    items: list[ItemT] = Field(default_factory=list)
    next_cursor: str | None = None


class Agent(ApiModel):
    """A registered agent with its last reported state."""

    agent_id: str
    name: str = ""
    version: str | None = None
    capabilities: list[str] = Field(default_factory=list)
    contact_endpoint: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    transport: str | None = None
    #: How Ops-Core learned of the agent: ``api``, ``webhook`` or ``report``.
    source: str | None = None
    registered_at: datetime | None = None
    last_seen_at: datetime | None = None
    state: str = "unknown"
    state_details: dict[str, Any] = Field(default_factory=dict)
    state_timestamp: datetime | None = None


class AgentState(ApiModel):
    """An agent's current state (``GET /v1/opscore/agent/{agentId}/state``)."""

    agent_id: str
    state: str
    details: dict[str, Any] = Field(default_factory=dict)
    timestamp: datetime | None = None


class StateAccepted(ApiModel):
    """The answer to a state report."""

    status: str = "accepted"
    agent_id: str | None = None
    state: str | None = None


class StateEntry(ApiModel):
    """One accepted state report in an agent's history (newest first)."""

    state: str
    details: dict[str, Any] = Field(default_factory=dict)
    timestamp: datetime | None = None
    received_at: datetime | None = None
    previous_state: str | None = None


class Workflow(ApiModel):
    """A stored workflow definition (one version) and the list of all its versions."""

    id: str
    version: str
    name: str = ""
    description: str | None = None
    created_at: datetime | None = None
    #: Every stored version, oldest first.
    versions: list[str] = Field(default_factory=list)
    definition: dict[str, Any] = Field(default_factory=dict)


class TriggerResult(ApiModel):
    """The answer to a trigger: the new (or, on an idempotent replay, the same) session."""

    session_id: str
    workflow_id: str | None = None
    workflow_version: str | None = None
    status: str | None = None
    message: str = ""


class Attempt(ApiModel):
    """One delivery of a task to an agent."""

    attempt: int
    agent_id: str | None = None
    transport: str | None = None
    status: str = "dispatched"
    dispatched_at: datetime | None = None
    deadline_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result: dict[str, Any] | None = None
    error: str | None = None


class Task(ApiModel):
    """One step of one session. ``id`` is the runtime id, ``task_id`` the definition's."""

    id: str
    task_id: str
    session_id: str
    name: str = ""
    status: str
    agent_id: str | None = None
    target_agent_id: str | None = None
    capability: str | None = None
    priority: int = 0
    parameters: dict[str, Any] = Field(default_factory=dict)
    queued_at: datetime | None = None
    dispatched_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    next_attempt_at: datetime | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    attempts: list[Attempt] = Field(default_factory=list)

    @property
    def is_final(self) -> bool:
        """True once the task is completed, dead, skipped or cancelled."""
        return self.status in FINAL_TASK_STATUSES


class Session(ApiModel):
    """One run of a workflow. ``tasks`` is filled by ``get_session`` (not by listings)."""

    session_id: str
    workflow_id: str
    workflow_version: str | None = None
    agent_id: str | None = None
    status: str
    input: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    result: dict[str, Any] | None = None
    tasks: list[Task] | None = None

    @property
    def is_final(self) -> bool:
        """True once the session is completed, failed or cancelled."""
        return self.status in FINAL_SESSION_STATUSES


class ResultAccepted(ApiModel):
    """The answer to ``submit_result``."""

    status: str = "accepted"
    task_id: str
    task_status: str | None = None


AgentPage = Page[Agent]
WorkflowPage = Page[Workflow]
SessionPage = Page[Session]
TaskPage = Page[Task]
