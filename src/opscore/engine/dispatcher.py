"""Event-driven dispatch: tasks go to agents the moment both are ready.

Nothing polls while work waits. Three things wake the dispatcher:

* a *kick* for an agent (it reported ``idle``, registered, or finished a task) or a
  task (it was queued) - in-process, from the API request that caused it;
* a *timer* coming due (a retry backoff, an attempt's completion deadline) - timers
  live in storage, so any process sharing it fires them after a crash;
* a notification published through storage by another process (shared backends).

Claiming is two compare-and-swaps: the agent's slot (one task in flight per agent),
then the task itself. Whoever loses either backs off, so processes sharing Redis
never send the same attempt twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

import structlog

from opscore.engine.executor import timeout_timer
from opscore.engine.records import Attempt
from opscore.engine.store import (
    SLOT_KIND,
    TIMERS,
    EngineStore,
    free_agents_queue,
    ready_queue_for,
)
from opscore.engine.transports import TaskDelivery, TransportSet, choose_transport_kind
from opscore.errors import DispatchError, OpsCoreError
from opscore.lifecycle import LifecycleService
from opscore.models import Agent, utcnow

__all__ = ["Dispatcher", "reap_timer"]

log = structlog.get_logger("opscore.dispatch")

#: Agents in these (effective) states may be sent a task.
_READY_STATES = frozenset({"idle", "unknown"})
#: A slot whose task does not point back at it is reaped after this long.
_SLOT_GRACE_S = 30.0
_TIMER_BATCH = 200
_FREE_AGENT_BATCH = 20
_WAKE_MESSAGE = "timers"

TimerHandler = Callable[[str], Awaitable[None]]


def reap_timer(agent_id: str) -> str:
    return f"reap|{agent_id}"


FailureHandler = Callable[[str, int, str, str], Awaitable[None]]


class Dispatcher:
    def __init__(
        self,
        *,
        store: EngineStore,
        lifecycle: LifecycleService,
        transports: TransportSet,
        agentkit_url: str | None,
        concurrency: int,
        on_timer: TimerHandler,
        on_delivery_failed: FailureHandler,
        max_idle_sleep_s: float,
        on_sweep: Callable[[], Awaitable[None]] | None = None,
        sweep_interval_s: float = 60.0,
    ) -> None:
        self._store = store
        self._lifecycle = lifecycle
        self._transports = transports
        self._agentkit_url = agentkit_url
        self._on_timer = on_timer
        self._on_delivery_failed = on_delivery_failed
        self._max_idle_sleep_s = max_idle_sleep_s
        self._on_sweep = on_sweep
        self._sweep_interval_s = sweep_interval_s
        self._next_sweep = time.time() + sweep_interval_s
        self._kicks: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._pending_kicks: set[tuple[str, str]] = set()
        self._timer_wake = asyncio.Event()
        # A timer due before this must wake the timer loop: its wake-up time while it
        # sleeps, infinity while it is looking (or has not started).
        self._wake_for_timers_before = math.inf
        self._deliveries: set[asyncio.Task[None]] = set()
        self._delivery_slots = asyncio.Semaphore(concurrency)
        self._loops: list[asyncio.Task[None]] = []
        self._last_dispatch: dict[str, float] = {}

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> None:
        self._loops = [
            asyncio.create_task(self._kick_loop(), name="opscore-dispatch"),
            asyncio.create_task(self._timer_loop(), name="opscore-timers"),
            asyncio.create_task(self._listen_loop(), name="opscore-notifications"),
        ]

    async def stop(self) -> None:
        for task in [*self._loops, *self._deliveries]:
            task.cancel()
        for task in [*self._loops, *self._deliveries]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._loops = []

    # -- kicks ---------------------------------------------------------------------
    def kick_agent(self, agent_id: str) -> None:
        self._kick(("agent", agent_id))

    def kick_task(self, task_id: str) -> None:
        self._kick(("task", task_id))

    def _kick(self, item: tuple[str, str]) -> None:
        if item not in self._pending_kicks:
            self._pending_kicks.add(item)
            self._kicks.put_nowait(item)

    async def schedule(self, member: str, due_epoch_s: float) -> None:
        """Store a timer and make sure a timer loop looks at it in time.

        Most timers are completion deadlines, due long after the loop's next pass, so
        they wake nobody. Other processes poll at least every ``max_idle_sleep_s``; they
        are told only of timers due sooner than that."""
        await self._store.storage.queue_put(TIMERS, member, due_epoch_s)
        if due_epoch_s < self._wake_for_timers_before:
            self._timer_wake.set()
        storage = self._store.storage
        if storage.shared and due_epoch_s < time.time() + self._max_idle_sleep_s:
            await storage.publish(_WAKE_MESSAGE)

    async def idle(self) -> None:
        """Wait until every queued kick was handled (tests and benchmarks)."""
        await self._kicks.join()

    async def _kick_loop(self) -> None:
        while True:
            item = await self._kicks.get()
            self._pending_kicks.discard(item)
            kind, ident = item
            try:
                if kind == "agent":
                    await self.dispatch_to_agent(ident)
                else:
                    await self.place_task(ident)
            except OpsCoreError as exc:
                log.warning("dispatch_pass_failed", kind=kind, id=ident, error=exc.message)
            except Exception:
                log.exception("dispatch_pass_crashed", kind=kind, id=ident)
            finally:
                self._kicks.task_done()

    # -- timers --------------------------------------------------------------------
    async def _timer_loop(self) -> None:
        storage = self._store.storage
        while True:
            # Cleared before looking, so a timer stored while this pass runs wakes the
            # next wait at once instead of being missed.
            self._timer_wake.clear()
            self._wake_for_timers_before = math.inf
            try:
                now = time.time()
                due = await storage.queue_peek(TIMERS, limit=_TIMER_BATCH, max_score=now)
                for member, _ in due:
                    # Only the process that removes the entry handles it.
                    if await storage.queue_remove(TIMERS, member):
                        await self._fire(member)
                if len(due) == _TIMER_BATCH:
                    continue
                await self._sweep_if_due()
                upcoming = await storage.queue_peek(TIMERS, limit=1)
                delay = self._max_idle_sleep_s
                if self._on_sweep is not None:
                    delay = min(delay, max(0.0, self._next_sweep - time.time()))
                if upcoming:
                    delay = max(0.0, min(delay, upcoming[0][1] - time.time()))
            except OpsCoreError as exc:
                log.warning("timer_pass_failed", error=exc.message)
                delay = 1.0
            self._wake_for_timers_before = time.time() + delay
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._timer_wake.wait(), timeout=delay)

    async def _sweep_if_due(self) -> None:
        # With several processes, one may die between two writes (say, after marking a
        # task dispatched but before storing its deadline). The survivors re-run the
        # idempotent recovery now and then, so no such work waits for a restart.
        if self._on_sweep is None or time.time() < self._next_sweep:
            return
        self._next_sweep = time.time() + self._sweep_interval_s
        try:
            await self._on_sweep()
        except OpsCoreError as exc:
            log.warning("sweep_failed", error=exc.message)

    async def _fire(self, member: str) -> None:
        try:
            await self._on_timer(member)
        except Exception as exc:
            if isinstance(exc, OpsCoreError):
                log.warning("timer_failed", timer=member, error=exc.message)
            else:
                log.exception("timer_crashed", timer=member)
            # Put it back so the work is not lost; it is retried shortly.
            await self._store.storage.queue_put(TIMERS, member, time.time() + 1.0)

    async def _listen_loop(self) -> None:
        if not self._store.storage.shared:
            return
        while True:
            try:
                async for message in self._store.storage.subscribe():
                    if message == _WAKE_MESSAGE:
                        self._timer_wake.set()
            except OpsCoreError as exc:
                log.warning("notifications_lost", error=exc.message)
                await asyncio.sleep(1.0)

    # -- placing work ----------------------------------------------------------------
    async def _available(self, agent: Agent) -> bool:
        state = self._lifecycle.effective_state(agent)
        if state in _READY_STATES:
            return True
        if state in {"active", "error"}:
            # An ``active`` left over from an attempt that timed out, or an ``error``
            # that failed the agent's attempt (a task failure, not a broken agent),
            # does not keep the agent from its next task. An ``error`` reported with
            # no task in flight does.
            freed = await self._store.agent_freed_at(agent.agent_id)
            return freed is not None and agent.last_seen_at.timestamp() <= freed
        return False

    async def place_task(self, task_id: str) -> None:
        """A task was queued: hand it to its agent, or to a free capable agent."""
        found = await self._store.get_task(task_id)
        if found is None or found.value.status != "queued":
            return
        task = found.value
        if task.target_agent_id is not None:
            await self.dispatch_to_agent(task.target_agent_id)
            return
        # Free capable agents wait in a per-capability queue ordered by when they last
        # got work (fairness). Entries are hints: each is checked before use.
        queue = free_agents_queue(task.capability or "")
        storage = self._store.storage
        while True:
            candidates = await storage.queue_peek(queue, limit=_FREE_AGENT_BATCH)
            if not candidates:
                return
            for agent_id, _ in candidates:
                if not await self.dispatch_to_agent(agent_id):
                    await storage.queue_remove(queue, agent_id)
                    continue
                again = await self._store.get_task(task_id)
                if again is None or again.value.status != "queued":
                    return
            if len(candidates) < _FREE_AGENT_BATCH:
                return

    async def dispatch_to_agent(self, agent_id: str, *, agent: Agent | None = None) -> bool:
        """Send the agent its best waiting task if it is free. True if one was sent.

        A free agent with nothing to do is recorded in its capabilities' free-agent
        queues, so a task queued later finds it without scanning every agent."""
        agent = agent or await self._lifecycle.find(agent_id)
        if agent is None or not await self._available(agent):
            return False
        slot = await self._store.get_slot(agent_id)
        if slot is not None:
            await self.reap_if_orphaned(agent_id)
            return False
        queues = [ready_queue_for(agent_id=agent_id, capability=None)] + [
            ready_queue_for(agent_id=None, capability=c) for c in agent.capabilities
        ]
        storage = self._store.storage
        listed_free = False
        for _ in range(100):
            best = await self._best_waiting(queues)
            if best is None:
                if listed_free:
                    return False
                # Listed as free, then one more look: a task queued in between (whose
                # own pass found no free agent yet) is seen now, by this pass or by a
                # pass in another process, so it never waits for the next kick.
                last = self._last_dispatch.get(agent_id, 0.0)
                for capability in agent.capabilities:
                    await storage.queue_put(free_agents_queue(capability), agent_id, last)
                listed_free = True
                continue
            outcome = await self._claim_and_send(agent, best[0], best[1])
            if outcome == "sent":
                return True
            if outcome == "busy":
                return False
        self.kick_agent(agent_id)  # many stale entries: carry on in a later pass
        return False

    async def _best_waiting(self, queues: list[str]) -> tuple[str, str] | None:
        """(task id, queue) of the best task waiting in ``queues``: priority, then age."""
        best: tuple[float, str, str] | None = None
        for queue in queues:
            head = await self._store.storage.queue_peek(queue, limit=1)
            if head and (best is None or (head[0][1], head[0][0]) < best[:2]):
                best = (head[0][1], head[0][0], queue)
        return None if best is None else (best[1], best[2])

    async def _claim_and_send(self, agent: Agent, task_id: str, queue: str) -> str:
        storage = self._store.storage
        found = await self._store.get_task(task_id)
        if found is None or found.value.status != "queued":
            await storage.queue_remove(queue, task_id)
            return "stale"
        task = found.value
        session = await self._store.get_session(task.session_id)
        if session is None or session.value.status != "running":
            # Paused or over: resume puts its queued tasks back.
            await storage.queue_remove(queue, task_id)
            return "stale"
        attempt_no = len(task.attempts) + 1
        # Everything that could fail is computed before the agent is claimed.
        now = utcnow()
        completion_timeout = float(task.policy.get("completion_timeout_s", 300.0))
        kind = choose_transport_kind(agent.transport, agent.source, self._agentkit_url)
        if await self._store.claim_slot(agent.agent_id, task.id, attempt_no) is None:
            return "busy"
        attempt = Attempt(
            attempt=attempt_no,
            agent_id=agent.agent_id,
            transport=kind,
            dispatched_at=now,
            deadline_at=now + timedelta(seconds=completion_timeout),
        )
        dispatched = task.model_copy(
            update={
                "status": "dispatched",
                "agent_id": agent.agent_id,
                # Task-level times describe the latest attempt; each attempt keeps its own.
                "dispatched_at": now,
                "started_at": None,
                "next_attempt_at": None,
                "attempts": [*task.attempts, attempt],
            }
        )
        if await self._store.replace_task(dispatched, found.rev) is None:
            await self._store.release_slot(agent.agent_id, task.id, attempt_no)
            return "stale"
        # Independent writes, so one round trip; the deadline is stored before sending.
        await asyncio.gather(
            storage.queue_remove(queue, task_id),
            self.schedule(timeout_timer(task.id, attempt_no), attempt.deadline_at.timestamp()),
            *(
                storage.queue_remove(free_agents_queue(capability), agent.agent_id)
                for capability in agent.capabilities
            ),
        )
        self._last_dispatch[agent.agent_id] = time.time()
        log.info(
            "task_dispatched",
            taskId=task.id,
            sessionId=task.session_id,
            agentId=agent.agent_id,
            attempt=attempt_no,
            transport=kind,
        )
        delivery = TaskDelivery(
            agent_id=agent.agent_id,
            contact_endpoint=agent.contact_endpoint,
            session_id=task.session_id,
            task_id=task.id,
            task_name=task.task_id,
            attempt=attempt_no,
            parameters=task.parameters,
            dispatch_timeout_s=float(task.policy.get("dispatch_timeout_s", 10.0)),
            completion_timeout_s=completion_timeout,
        )
        job = asyncio.create_task(self._deliver(kind, delivery))
        self._deliveries.add(job)
        job.add_done_callback(self._deliveries.discard)
        return "sent"

    async def _deliver(self, kind: str, delivery: TaskDelivery) -> None:
        async def late_failure(error: DispatchError) -> None:
            await self._failed(delivery, error.message)

        async with self._delivery_slots:
            try:
                transport = self._transports.choose(kind)  # type: ignore[arg-type]
                await transport.deliver(delivery, late_failure)
            except DispatchError as exc:
                await self._failed(delivery, exc.message)
            except Exception:
                log.exception("delivery_crashed", taskId=delivery.task_id)
                await self._failed(delivery, "internal error while delivering the task")

    async def _failed(self, delivery: TaskDelivery, message: str) -> None:
        log.warning(
            "task_delivery_failed",
            taskId=delivery.task_id,
            agentId=delivery.agent_id,
            attempt=delivery.attempt,
            error=message,
        )
        try:
            await self._on_delivery_failed(
                delivery.task_id, delivery.attempt, delivery.agent_id, message
            )
        except OpsCoreError as exc:
            # The attempt's deadline timer will still fail it later.
            log.warning("delivery_failure_not_recorded", taskId=delivery.task_id, error=exc.message)

    async def reap_if_orphaned(self, agent_id: str) -> None:
        """Free a slot left by a crash between claiming it and marking the task.

        A claim in progress looks the same for a moment, so a slot is reaped only once
        it is older than the grace period; until then a timer comes back for it (after
        a restart, nothing else might)."""
        slot = await self._store.get_slot(agent_id)
        if slot is None:
            return
        found = await self._store.get_task(slot.value.task_id)
        current = found.value.current if found else None
        if (
            found is not None
            and found.value.status in {"dispatched", "running"}
            and current is not None
            and current.attempt == slot.value.attempt
            and current.agent_id == agent_id
        ):
            return
        if time.time() - slot.value.claimed_at < _SLOT_GRACE_S:
            await self.schedule(reap_timer(agent_id), slot.value.claimed_at + _SLOT_GRACE_S)
            return
        if await self._store.storage.delete(SLOT_KIND, agent_id, expected_rev=slot.rev):
            log.warning("orphaned_slot_reaped", agentId=agent_id, taskId=slot.value.task_id)
            self.kick_agent(agent_id)
