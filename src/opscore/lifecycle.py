"""Agent registry and lifecycle rules: the one place they live, above any backend.

State transition table (rows: current stored state, columns: reported state).
Repeating the current state is always accepted. ``unknown`` is never reported;
``offline`` is also what an agent *reads as* after ``agent_stale_s`` without a report.

=============  =====================================================
current        may move to
=============  =====================================================
unknown        initializing, idle, active, error, finished, offline
initializing   idle, active, error, finished, offline
idle           initializing, active, error, finished, offline
active         initializing, idle, error, finished, offline
error          initializing, idle, active, finished, offline
finished       initializing, idle, offline
offline        initializing, idle, error, finished
=============  =====================================================

Why: an agent that is ``finished`` must announce it is ready again
(``idle``/``initializing``) before it may claim to be working; an agent that went
``offline`` must come back before it works. ``error -> active`` is allowed because a
contract agent reports ``error`` when a task fails and ``active`` when it starts the
retry, with nothing in between. A restart (``initializing``) is allowed from
anywhere, since agents crash.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from opscore.errors import (
    AgentIdMismatchError,
    AgentNotFoundError,
    ConflictError,
    InvalidInputError,
    InvalidTransitionError,
)
from opscore.models import (
    Agent,
    AgentSource,
    AgentState,
    StateEntry,
    StateReport,
    TransportKind,
    utcnow,
)
from opscore.storage.base import Storage

__all__ = [
    "AGENT_KIND",
    "TRANSITIONS",
    "AgentChange",
    "AgentListener",
    "AgentPage",
    "AgentRegistration",
    "LifecycleService",
    "decode_cursor",
    "encode_cursor",
    "is_allowed_transition",
]

AGENT_KIND = "agent"
_CAS_RETRIES = 20

TRANSITIONS: Mapping[AgentState, frozenset[AgentState]] = {
    "unknown": frozenset({"initializing", "idle", "active", "error", "finished", "offline"}),
    "initializing": frozenset({"idle", "active", "error", "finished", "offline"}),
    "idle": frozenset({"initializing", "active", "error", "finished", "offline"}),
    "active": frozenset({"initializing", "idle", "error", "finished", "offline"}),
    "error": frozenset({"initializing", "idle", "active", "finished", "offline"}),
    "finished": frozenset({"initializing", "idle", "offline"}),
    "offline": frozenset({"initializing", "idle", "error", "finished"}),
}


def is_allowed_transition(current: AgentState, new: AgentState) -> bool:
    """True if an agent whose stored state is ``current`` may report ``new``."""
    return new == current or new in TRANSITIONS[current]


def encode_cursor(key: str) -> str:
    """Opaque pagination cursor for the last key of a page."""
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    """Inverse of :func:`encode_cursor`; raises InvalidInputError for garbage."""
    if not cursor:
        return None
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidInputError(f"cursor {cursor!r} is not a valid page cursor") from exc


@dataclass(frozen=True, slots=True)
class AgentRegistration:
    """What a caller may say about an agent when registering it."""

    name: str
    agent_id: str | None = None
    version: str = "1"
    capabilities: tuple[str, ...] = ()
    contact_endpoint: str | None = None
    metadata: Mapping[str, Any] | None = None
    transport: TransportKind | None = None


@dataclass(frozen=True, slots=True)
class AgentPage:
    items: list[Agent]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class AgentChange:
    """What listeners (the workflow engine) hear after a change was stored."""

    kind: Literal["registered", "state", "deregistered"]
    agent: Agent
    entry: StateEntry | None = None


AgentListener = Callable[[AgentChange], Awaitable[None]]


class LifecycleService:
    """Registers agents, validates and records their state reports."""

    def __init__(
        self,
        storage: Storage,
        *,
        stale_after_s: float,
        history_max: int,
        new_id: Callable[[], str],
    ) -> None:
        self._storage = storage
        self._stale_after = timedelta(seconds=stale_after_s) if stale_after_s > 0 else None
        self._history_max = history_max
        self._new_id = new_id
        self._listeners: list[AgentListener] = []

    def add_listener(self, listener: AgentListener) -> None:
        """Call ``listener`` after every stored registration, state change or removal."""
        self._listeners.append(listener)

    async def _notify(self, change: AgentChange) -> None:
        for listener in self._listeners:
            await listener(change)

    # -- reading -------------------------------------------------------------------
    def effective_state(self, agent: Agent, *, now: datetime | None = None) -> AgentState:
        """The state as seen now: ``offline`` once no report came for the stale period."""
        if self._stale_after is None or agent.state == "offline":
            return agent.state
        if (now or utcnow()) - agent.last_seen_at > self._stale_after:
            return "offline"
        return agent.state

    def present(self, agent: Agent) -> Agent:
        """A copy of ``agent`` whose ``state`` is the effective one."""
        state = self.effective_state(agent)
        return agent if state == agent.state else agent.model_copy(update={"state": state})

    async def find(self, agent_id: str) -> Agent | None:
        doc = await self._storage.get(AGENT_KIND, agent_id)
        return None if doc is None else Agent.from_doc(doc.data)

    async def get(self, agent_id: str) -> Agent:
        """The stored agent (state as last reported); AgentNotFoundError if unknown."""
        agent = await self.find(agent_id)
        if agent is None:
            raise AgentNotFoundError(f"agent {agent_id!r} is not registered")
        return agent

    async def list_agents(
        self,
        *,
        state: AgentState | None = None,
        capability: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> AgentPage:
        """Agents in id order, filtered by effective state and capability."""
        last_key = decode_cursor(cursor)
        where = ("capability", capability) if capability else None
        items: list[Agent] = []
        now = utcnow()
        while True:
            # One row more than a page: tells whether anything follows the page.
            batch = await self._storage.scan(
                AGENT_KIND, where=where, after=last_key, limit=limit + 1
            )
            for position, doc in enumerate(batch):
                agent = Agent.from_doc(doc.data)
                effective = self.effective_state(agent, now=now)
                if state is None or effective == state:
                    items.append(agent.model_copy(update={"state": effective}))
                last_key = doc.key
                if len(items) == limit:
                    follows = position < len(batch) - 1
                    next_cursor = encode_cursor(doc.key) if follows else None
                    return AgentPage(items=items, next_cursor=next_cursor)
            if len(batch) <= limit:
                next_cursor = None
                break
        return AgentPage(items=items, next_cursor=next_cursor)

    async def history(self, agent_id: str, *, limit: int = 50, offset: int = 0) -> list[StateEntry]:
        """Accepted state reports, newest first."""
        await self.get(agent_id)
        entries = await self._storage.log_read(_history_log(agent_id), offset=offset, limit=limit)
        return [StateEntry.from_doc(e) for e in entries]

    # -- writing -------------------------------------------------------------------
    @staticmethod
    def _index(agent: Agent) -> dict[str, Any]:
        return {"capability": list(agent.capabilities), "state": agent.state}

    async def register(self, reg: AgentRegistration, *, source: AgentSource) -> tuple[Agent, bool]:
        """Create the agent, or update the descriptive fields of an existing one.

        Returns ``(agent, created)``. Lifecycle state and history are kept on update.
        """
        agent_id = reg.agent_id or self._new_id()
        for _ in range(_CAS_RETRIES):
            now = utcnow()
            current = await self._storage.get(AGENT_KIND, agent_id)
            if current is None:
                agent = Agent(
                    agent_id=agent_id,
                    name=reg.name,
                    version=reg.version,
                    capabilities=list(dict.fromkeys(reg.capabilities)),
                    contact_endpoint=reg.contact_endpoint,
                    metadata=dict(reg.metadata or {}),
                    transport=reg.transport,
                    source=source,
                    registered_at=now,
                    last_seen_at=now,
                )
                if await self._storage.create(
                    AGENT_KIND, agent_id, agent.to_doc(), index=self._index(agent)
                ):
                    await self._notify(AgentChange("registered", agent))
                    return agent, True
                continue
            existing = Agent.from_doc(current.data)
            agent = existing.model_copy(
                update={
                    "name": reg.name,
                    "version": reg.version,
                    "capabilities": list(dict.fromkeys(reg.capabilities)),
                    "contact_endpoint": reg.contact_endpoint,
                    "metadata": dict(reg.metadata or {}),
                    "transport": reg.transport,
                    # Promote an implicitly known agent to how it was properly announced.
                    "source": source if existing.source == "report" else existing.source,
                    "last_seen_at": now,
                }
            )
            if await self._storage.replace(
                AGENT_KIND,
                agent_id,
                agent.to_doc(),
                expected_rev=current.rev,
                index=self._index(agent),
            ):
                await self._notify(AgentChange("registered", agent))
                return agent, False
        raise ConflictError(f"agent {agent_id!r} is being modified concurrently; retry")

    async def deregister(self, agent_id: str) -> Agent:
        """Remove the agent and its history; AgentNotFoundError if unknown."""
        agent = await self.get(agent_id)
        await self._storage.delete(AGENT_KIND, agent_id)
        await self._storage.log_delete(_history_log(agent_id))
        await self._notify(AgentChange("deregistered", agent))
        return agent

    async def report_state(self, agent_id: str, report: StateReport) -> tuple[Agent, StateEntry]:
        """Validate and record a state report.

        Registers an agent never seen before (contract section 1). Raises
        AgentIdMismatchError, InvalidInputError or InvalidTransitionError (409).
        """
        if report.agent_id is not None and report.agent_id != agent_id:
            raise AgentIdMismatchError(
                f"body agentId {report.agent_id!r} does not match path agentId {agent_id!r}"
            )
        if report.state == "unknown":
            raise InvalidInputError("'unknown' is not a state an agent can report")
        for _ in range(_CAS_RETRIES):
            current = await self._storage.get(AGENT_KIND, agent_id)
            now = utcnow()
            if current is None:
                agent = Agent(
                    agent_id=agent_id,
                    name=agent_id,
                    source="report",
                    registered_at=now,
                    last_seen_at=now,
                )
                rev = None
            else:
                agent = Agent.from_doc(current.data)
                rev = current.rev
            if not is_allowed_transition(agent.state, report.state):
                allowed = ", ".join(sorted(TRANSITIONS[agent.state]))
                raise InvalidTransitionError(
                    f"agent {agent_id!r} cannot go from {agent.state!r} to {report.state!r}; "
                    f"from {agent.state!r} it may go to: {allowed}"
                )
            entry = StateEntry(
                state=report.state,
                details=report.details,
                timestamp=report.timestamp or now,
                received_at=now,
                previous_state=agent.state,
            )
            updated = agent.model_copy(
                update={
                    "state": report.state,
                    "state_details": report.details,
                    "state_timestamp": entry.timestamp,
                    "last_seen_at": now,
                }
            )
            index = self._index(updated)
            if rev is None:
                stored = await self._storage.create(
                    AGENT_KIND, agent_id, updated.to_doc(), index=index
                )
            else:
                stored = await self._storage.replace(
                    AGENT_KIND, agent_id, updated.to_doc(), expected_rev=rev, index=index
                )
            if stored is None:
                continue
            await self._storage.log_append(
                _history_log(agent_id), entry.to_doc(), max_len=self._history_max
            )
            if rev is None:
                await self._notify(AgentChange("registered", updated))
            await self._notify(AgentChange("state", updated, entry))
            return updated, entry
        raise ConflictError(f"agent {agent_id!r} is being modified concurrently; retry")


def _history_log(agent_id: str) -> str:
    return f"agent-history:{agent_id}"
