"""Request and response bodies of the workflow, session and task routes."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from opscore.engine.records import Session, Task
from opscore.models import ApiModel, JsonObject, SessionStatus

__all__ = [
    "SeedTriggerRequest",
    "SessionDetail",
    "SessionList",
    "SessionSummary",
    "TaskList",
    "TaskResultRequest",
    "TriggerRequest",
    "TriggerResponse",
    "WorkflowList",
    "WorkflowRecord",
]


class _Strict(ApiModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class SeedTriggerRequest(_Strict):
    """Contract section 5: exactly one of the two definition fields."""

    workflow_definition_id: str | None = Field(default=None, min_length=1, max_length=200)
    workflow_definition: JsonObject | None = None
    workflow_version: str | None = Field(default=None, min_length=1, max_length=64)
    initial_payload: JsonObject = Field(default_factory=dict)
    start_at: AwareDatetime | None = Field(
        default=None, description="Start later: the session stays pending until then."
    )

    @field_validator("initial_payload", mode="before")
    @classmethod
    def _null_payload(cls, value: object) -> object:
        # Seed-era clients send "initialPayload": null for "no payload".
        return {} if value is None else value


class TriggerRequest(SeedTriggerRequest):
    agent_id: str | None = Field(default=None, min_length=1, max_length=128)


class TriggerResponse(ApiModel):
    session_id: str
    workflow_id: str
    workflow_version: str
    status: SessionStatus
    message: str


class SessionSummary(ApiModel):
    session_id: str
    workflow_id: str
    workflow_version: str
    agent_id: str | None
    status: SessionStatus
    input: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    scheduled_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    result: dict[str, Any] | None

    @classmethod
    def of(cls, session: Session) -> SessionSummary:
        return cls.model_validate(session.model_dump(exclude={"definition", "idempotency_key"}))


class SessionDetail(SessionSummary):
    tasks: list[Task]

    @classmethod
    def with_tasks(cls, session: Session, tasks: list[Task]) -> SessionDetail:
        data = session.model_dump(exclude={"definition", "idempotency_key"})
        return cls.model_validate({**data, "tasks": tasks})


class SessionList(ApiModel):
    items: list[SessionSummary]
    next_cursor: str | None


class TaskList(ApiModel):
    items: list[Task]
    next_cursor: str | None


class TaskResultRequest(_Strict):
    status: Literal["completed", "failed"]
    result: JsonObject | None = None
    error: str | None = Field(default=None, max_length=10_000)
    attempt: int | None = Field(default=None, ge=1)


class WorkflowRecord(ApiModel):
    id: str
    version: str
    name: str
    description: str | None
    created_at: datetime
    versions: list[str]
    definition: dict[str, Any]


class WorkflowList(ApiModel):
    items: list[WorkflowRecord]
    next_cursor: str | None
