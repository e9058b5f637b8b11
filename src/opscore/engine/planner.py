"""Pure workflow semantics: given what happened so far, what must happen next.

The engine calls :func:`plan` after every task change. It is a pure, idempotent function
of the definition, the outcomes recorded so far and the rendering context, so replaying
it after a crash gives the same answer.

Every task T has incoming edges, each *active*, *dead* or *pending*:

- start: T is a start task -> always active;
- next (P.nextTaskId or a P branch names T): active if P completed and T is in P's chosen
  set (the first branch whose condition holds, else nextTaskId); dead if P completed
  without choosing T, or P failed or was skipped; pending otherwise;
- dependsOn (T.dependsOn names P): active if P completed; dead if P failed or was
  skipped; pending otherwise;
- fallback (P.onFailure is T): active if P failed; dead if P completed or was skipped.

T is ready when no edge is pending, every dependsOn edge is active and at least one edge
is active: dependsOn is an AND-join, next edges are an OR-join. T is skipped when no edge
is pending and it is not ready. Skips propagate to a fixpoint within one call; a ready
task is not finished yet, so nothing propagates past it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from opscore.engine.conditions import evaluate
from opscore.engine.definition import TaskSpec, WorkflowDefinition

__all__ = ["Plan", "TaskOutcome", "TaskStatusForPlan", "chosen_next", "plan"]

#: ``pending`` = the task exists but has not finished (queued, dispatched, running,
#: waiting for a retry).
TaskStatusForPlan = Literal["pending", "completed", "failed", "skipped"]
_EdgeState = Literal["active", "dead", "pending"]


@dataclass(frozen=True, slots=True)
class TaskOutcome:
    """What is known of one created task."""

    status: TaskStatusForPlan
    result: Any = None


@dataclass(slots=True)
class Plan:
    """What the engine must do now; see :func:`plan`."""

    #: Task ids to create and queue now (none of them in ``outcomes``), definition order.
    ready: list[str] = field(default_factory=list)
    #: Task ids not in ``outcomes`` that can never run; record them as skipped.
    skipped: list[str] = field(default_factory=list)
    #: No task is pending or ready any more.
    finished: bool = False
    #: A failure is not handled by a fallback; the engine cancels whatever is left.
    failed: bool = False
    #: Why the run failed, naming the task.
    error: str | None = None


def chosen_next(spec: TaskSpec, context: Mapping[str, Any], result: Any) -> list[str]:
    """The task ids a completed task leads to: the first branch whose condition holds
    (evaluated with ``result`` added to ``context``), else its nextTaskId."""
    if spec.branches:
        scope = {**context, "result": result}
        for branch in spec.branches:
            if evaluate(branch.when, scope):
                return branch.next
    return spec.next_task_id


def plan(
    definition: WorkflowDefinition,
    outcomes: Mapping[str, TaskOutcome],
    context: Mapping[str, Any],
) -> Plan:
    """Decide which tasks become ready or skipped, and whether the run finished or failed.

    ``outcomes`` maps each created task to its outcome; absent tasks were not created.
    ``context`` is the engine's rendering context (``input``, ``tasks``, ``session``);
    branch conditions see it plus ``result``, the finished task's result.
    """
    incoming = _incoming_edges(definition)
    status: dict[str, TaskStatusForPlan] = {
        tid: outcome.status for tid, outcome in outcomes.items() if definition.has_task(tid)
    }
    chosen: dict[str, frozenset[str]] = {}

    def next_set(source: str) -> frozenset[str]:
        if source not in chosen:
            spec = definition.task(source)
            chosen[source] = frozenset(chosen_next(spec, context, outcomes[source].result))
        return chosen[source]

    def edge_state(kind: str, source: str, target: str) -> _EdgeState:
        if kind == "start":
            return "active"
        state = status.get(source, "pending")
        if state == "pending":
            return "pending"
        if kind == "fallback":
            return "active" if state == "failed" else "dead"
        if state != "completed":
            return "dead"
        if kind == "dependsOn":
            return "active"
        return "active" if target in next_set(source) else "dead"

    ready: list[str] = []
    skipped: list[str] = []
    decided: set[str] = set(status)
    changed = True
    while changed:
        changed = False
        for spec in definition.tasks:
            tid = spec.task_id
            if tid in decided:
                continue
            states = [(kind, edge_state(kind, source, tid)) for kind, source in incoming[tid]]
            if any(state == "pending" for _, state in states):
                continue
            decided.add(tid)
            runs = any(state == "active" for _, state in states) and all(
                state == "active" for kind, state in states if kind == "dependsOn"
            )
            if runs:
                ready.append(tid)  # stays "pending" for its successors
            else:
                skipped.append(tid)
                status[tid] = "skipped"
                changed = True

    order = {spec.task_id: i for i, spec in enumerate(definition.tasks)}
    ready.sort(key=order.__getitem__)
    skipped.sort(key=order.__getitem__)
    error = _unhandled_failure(definition, status)
    pending = any(state == "pending" for state in status.values())
    undecided = len(decided) < len(definition.tasks)
    return Plan(
        ready=ready,
        skipped=skipped,
        finished=not (ready or pending or undecided),
        failed=error is not None,
        error=error,
    )


def _incoming_edges(definition: WorkflowDefinition) -> dict[str, list[tuple[str, str]]]:
    """``{target: [(kind, source), ...]}`` with kinds start, next, dependsOn, fallback."""
    incoming: dict[str, list[tuple[str, str]]] = {spec.task_id: [] for spec in definition.tasks}
    for start in definition.start_task_id:
        incoming[start].append(("start", ""))
    for spec in definition.tasks:
        targets = dict.fromkeys(spec.next_task_id)
        for branch in spec.branches:
            targets.update(dict.fromkeys(branch.next))
        for target in targets:
            incoming[target].append(("next", spec.task_id))
        for source in dict.fromkeys(spec.depends_on):
            incoming[spec.task_id].append(("dependsOn", source))
        if spec.on_failure is not None:
            incoming[spec.on_failure].append(("fallback", spec.task_id))
    return incoming


def _unhandled_failure(
    definition: WorkflowDefinition, status: Mapping[str, TaskStatusForPlan]
) -> str | None:
    """Why the run failed: the first failed task whose failure no fallback takes over."""
    fallback_of = {s.on_failure: s.task_id for s in definition.tasks if s.on_failure}
    for spec in definition.tasks:
        if status.get(spec.task_id) != "failed":
            continue
        fallback = spec.on_failure
        if fallback is None:
            if spec.task_id in fallback_of:
                return (
                    f"task {spec.task_id!r} failed "
                    f"(it was the onFailure task of {fallback_of[spec.task_id]!r})"
                )
            return f"task {spec.task_id!r} failed"
        if status.get(fallback) == "skipped":
            return (
                f"task {spec.task_id!r} failed and its onFailure task {fallback!r} "
                "could not run (skipped)"
            )
    return None
