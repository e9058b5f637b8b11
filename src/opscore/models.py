"""Domain models shared by the services, the API and storage.

Field names are camelCase on the wire (the contract's spelling) and snake_case in
Python; models accept both. Stored documents are ``model.to_doc()`` (JSON, camelCase).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

__all__ = [
    "AGENT_STATES",
    "SESSION_STATUSES",
    "Agent",
    "AgentSource",
    "AgentState",
    "ApiModel",
    "JsonObject",
    "SessionStatus",
    "StateEntry",
    "StateReport",
    "TransportKind",
    "utcnow",
]

AgentState = Literal["unknown", "initializing", "idle", "active", "error", "finished", "offline"]
AGENT_STATES: tuple[AgentState, ...] = (
    "unknown",
    "initializing",
    "idle",
    "active",
    "error",
    "finished",
    "offline",
)
AgentSource = Literal["api", "webhook", "report"]
TransportKind = Literal["agentkit", "direct"]
SessionStatus = Literal["pending", "running", "paused", "completed", "failed", "cancelled"]
SESSION_STATUSES: tuple[SessionStatus, ...] = (
    "pending",
    "running",
    "paused",
    "completed",
    "failed",
    "cancelled",
)

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$"

#: How deeply free-form JSON (details, metadata, payloads) may nest.
MAX_JSON_DEPTH = 64


def _check_json(value: Any, depth: int = 0) -> None:
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"nested more than {MAX_JSON_DEPTH} levels deep")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(
                "contains text that is not valid Unicode (an unpaired surrogate such as \\ud800)"
            ) from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_json(key, depth + 1)
            _check_json(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_json(item, depth + 1)


def _checked_object(value: dict[str, Any]) -> dict[str, Any]:
    _check_json(value)
    return value


#: A free-form JSON object from a client: bounded nesting, valid Unicode only (so it
#: can be stored and served back by every backend).
JsonObject = Annotated[dict[str, Any], AfterValidator(_checked_object)]


def utcnow() -> datetime:
    """Timezone-aware current time (UTC)."""
    return datetime.now(UTC)


class ApiModel(BaseModel):
    """Base: camelCase aliases, both spellings accepted, unknown fields ignored."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    def to_doc(self) -> dict[str, Any]:
        """The JSON document stored and returned by the API."""
        return self.model_dump(mode="json", by_alias=True)

    @classmethod
    def from_doc(cls, data: dict[str, Any]) -> Self:
        return cls.model_validate(data)


class Agent(ApiModel):
    """A registered agent. ``state`` is the last reported state; see
    :meth:`opscore.lifecycle.LifecycleService.effective_state` for staleness."""

    agent_id: str = Field(pattern=ID_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    version: str = Field(default="1", max_length=64)
    capabilities: list[str] = Field(default_factory=list)
    contact_endpoint: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    transport: TransportKind | None = None
    source: AgentSource
    registered_at: datetime
    last_seen_at: datetime
    state: AgentState = "unknown"
    state_details: dict[str, Any] = Field(default_factory=dict)
    state_timestamp: datetime | None = None


class StateReport(ApiModel):
    """A state report as the AgentKit SDK sends it (contract section 3)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    agent_id: str | None = None
    timestamp: datetime | None = None
    state: AgentState
    details: JsonObject = Field(default_factory=dict)

    @field_validator("state", mode="before")
    @classmethod
    def _lower_state(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("timestamp")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class StateEntry(ApiModel):
    """One accepted state report in an agent's history."""

    state: AgentState
    details: dict[str, Any] = Field(default_factory=dict)
    timestamp: datetime
    received_at: datetime
    previous_state: AgentState
