"""Operations on agents, their state and history, and the health checks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from opscore_sdk._core import Call, Pager
from opscore_sdk._operations._common import PREFIX, as_dict, none, page_items, params, q
from opscore_sdk.models import Agent, AgentPage, AgentState, StateAccepted, StateEntry

__all__ = [
    "agent_history",
    "deregister_agent",
    "get_agent",
    "get_state",
    "health",
    "iter_agents",
    "list_agents",
    "ready",
    "register_agent",
    "update_state",
]


def _history(data: Any) -> list[StateEntry]:
    return [StateEntry.model_validate(item) for item in as_dict(data).get("items", [])]


# -- health ---------------------------------------------------------------------------


def health() -> Call[dict[str, Any]]:
    """Liveness of the server (``GET /health``, no key needed): ``{"status": "ok"}``."""
    return Call(method="GET", path="/health", parse=as_dict, idempotent=True)


def ready() -> Call[dict[str, Any]]:
    """Readiness (``GET /health/ready``): the server and its storage answer.

    Raises ServerError (503) when storage is down (after the usual retries)."""
    return Call(method="GET", path="/health/ready", parse=as_dict, idempotent=True)


# -- agents ---------------------------------------------------------------------------


def register_agent(
    name: str,
    *,
    agent_id: str | None = None,
    version: str | None = None,
    capabilities: Sequence[str] | None = None,
    contact_endpoint: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    transport: str | None = None,
) -> Call[Agent]:
    """Register an agent, or update it if ``agent_id`` is already registered.

    Args:
        name: display name.
        agent_id: stable id; the server generates one when omitted.
        version: the agent's version string.
        capabilities: what it can do; tasks are routed by ``agentCapability``.
        contact_endpoint: URL that receives tasks (direct dispatch).
        metadata: free-form JSON object.
        transport: ``"direct"`` or ``"agentkit"``.

    Raises ValidationError for invalid fields. Retried on connection errors only when
    ``agent_id`` is given (a re-register with the same id is harmless).
    """
    body: dict[str, Any] = {"name": name}
    optional = {
        "agentId": agent_id,
        "version": version,
        "capabilities": list(capabilities) if capabilities is not None else None,
        "contactEndpoint": contact_endpoint,
        "metadata": dict(metadata) if metadata is not None else None,
        "transport": transport,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    return Call(
        method="POST",
        path=f"{PREFIX}/agents",
        json_body=body,
        parse=Agent.model_validate,
        idempotent=agent_id is not None,
    )


def list_agents(
    *,
    state: str | None = None,
    capability: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Call[AgentPage]:
    """One page of agents, optionally only those in ``state`` or with ``capability``."""
    return Call(
        method="GET",
        path=f"{PREFIX}/agents",
        params=params(state=state, capability=capability, limit=limit, cursor=cursor),
        parse=AgentPage.model_validate,
        idempotent=True,
    )


def iter_agents(
    *, state: str | None = None, capability: str | None = None, page_size: int = 100
) -> Pager[Agent]:
    """Every agent (filtered like ``list_agents``), fetching pages as needed."""
    return Pager(
        fetch=lambda cursor: list_agents(
            state=state, capability=capability, limit=page_size, cursor=cursor
        ),
        items=page_items,
    )


def get_agent(agent_id: str) -> Call[Agent]:
    """One agent. Raises NotFoundError if it is not registered."""
    return Call(
        method="GET",
        path=f"{PREFIX}/agents/{q(agent_id)}",
        parse=Agent.model_validate,
        idempotent=True,
    )


def deregister_agent(agent_id: str) -> Call[None]:
    """Remove an agent (its in-flight task fails and is retried elsewhere).

    Raises NotFoundError if it is not registered."""
    return Call(
        method="DELETE",
        path=f"{PREFIX}/agents/{q(agent_id)}",
        parse=none,
        idempotent=True,
        empty=True,
    )


def agent_history(
    agent_id: str, *, limit: int | None = None, offset: int | None = None
) -> Call[list[StateEntry]]:
    """An agent's accepted state reports, newest first."""
    return Call(
        method="GET",
        path=f"{PREFIX}/agents/{q(agent_id)}/history",
        params=params(limit=limit, offset=offset),
        parse=_history,
        idempotent=True,
    )


# -- state ----------------------------------------------------------------------------


def update_state(
    agent_id: str,
    state: str,
    details: Mapping[str, Any] | None = None,
    *,
    timestamp: datetime | None = None,
) -> Call[StateAccepted]:
    """Report an agent's state (contract section 3), as the AgentKit SDK does.

    Args:
        agent_id: the reporting agent.
        state: ``initializing``, ``idle``, ``active``, ``error``, ``finished`` or ``offline``.
        details: JSON object; for ``idle`` it is the in-flight task's result.
        timestamp: when the state was entered (default: now, UTC).

    Raises ConflictError if the lifecycle forbids the transition. Not retried
    automatically: a late duplicate could be read as the next task's result.
    """
    when = timestamp or datetime.now(UTC)
    body = {
        "agentId": agent_id,
        "timestamp": when.isoformat(),
        "state": state,
        "details": dict(details or {}),
    }
    return Call(
        method="POST",
        path=f"{PREFIX}/agent/{q(agent_id)}/state",
        json_body=body,
        parse=StateAccepted.model_validate,
    )


def get_state(agent_id: str) -> Call[AgentState]:
    """An agent's current state. Raises NotFoundError if the agent is unknown."""
    return Call(
        method="GET",
        path=f"{PREFIX}/agent/{q(agent_id)}/state",
        parse=AgentState.model_validate,
        idempotent=True,
    )
