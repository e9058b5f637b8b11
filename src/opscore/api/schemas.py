"""Request and response bodies of the agent, state, health and webhook routes.

camelCase on the wire (``ApiModel``), except where the AgentKit contract spells a
field otherwise (the webhook's ``event_type`` and ``agent_details``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from opscore.lifecycle import AgentRegistration
from opscore.models import (
    ID_PATTERN,
    Agent,
    AgentState,
    ApiModel,
    JsonObject,
    StateEntry,
    TransportKind,
)

__all__ = [
    "AgentList",
    "HealthStatus",
    "HistoryList",
    "ReadinessStatus",
    "RegisterAgentRequest",
    "StateAccepted",
    "StateView",
    "WebhookAgentDetails",
    "WebhookNotification",
    "WebhookResult",
]

_NAME = Field(min_length=1, max_length=200)


class RegisterAgentRequest(ApiModel):
    """``POST /v1/opscore/agents``: omit ``agentId`` to get a server-generated id."""

    agent_id: str | None = Field(default=None, pattern=ID_PATTERN)
    name: str = _NAME
    version: str = Field(default="1", max_length=64)
    capabilities: list[str] = Field(default_factory=list)
    contact_endpoint: str | None = None
    metadata: JsonObject = Field(default_factory=dict)
    transport: TransportKind | None = None

    def to_registration(self) -> AgentRegistration:
        return AgentRegistration(
            name=self.name,
            agent_id=self.agent_id,
            version=self.version,
            capabilities=tuple(self.capabilities),
            contact_endpoint=self.contact_endpoint,
            metadata=self.metadata,
            transport=self.transport,
        )


class AgentList(ApiModel):
    items: list[Agent]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null: last.")


class HistoryList(ApiModel):
    items: list[StateEntry] = Field(description="Accepted state reports, newest first.")


class StateAccepted(ApiModel):
    status: Literal["accepted"] = "accepted"
    agent_id: str
    state: AgentState


class StateView(ApiModel):
    """Contract section 4: the agent's effective state and its last report."""

    agent_id: str
    state: AgentState
    details: dict[str, Any]
    timestamp: datetime


class HealthStatus(ApiModel):
    status: Literal["ok"] = "ok"


class ReadinessStatus(ApiModel):
    status: Literal["ok"] = "ok"
    storage: str = Field(examples=["sqlite"])


class WebhookAgentDetails(ApiModel):
    """``agent_details`` of AgentKit's webhook (contract section 1)."""

    agent_id: str = Field(pattern=ID_PATTERN)
    agent_name: str | None = Field(default=None, min_length=1, max_length=200)
    version: str = Field(default="1", max_length=64)
    capabilities: list[str] = Field(default_factory=list)
    contact_endpoint: str | None = None
    metadata: JsonObject = Field(default_factory=dict)

    @field_validator("metadata", mode="before")
    @classmethod
    def _null_metadata(cls, value: object) -> object:
        return {} if value is None else value

    @field_validator("version", mode="before")
    @classmethod
    def _numeric_version(cls, value: object) -> object:
        return (
            str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
        )


class WebhookNotification(BaseModel):
    """The webhook body: ``{"event_type": "REGISTER"|"DEREGISTER", "agent_details": {...}}``
    (snake_case keys on the wire, as AgentKit sends them)."""

    event_type: Literal["REGISTER", "DEREGISTER"]
    agent_details: WebhookAgentDetails

    @field_validator("event_type", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value


class WebhookResult(ApiModel):
    status: Literal["registered", "deregistered"]
    agent_id: str
