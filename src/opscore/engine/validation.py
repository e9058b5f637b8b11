"""The rules a well-shaped workflow definition must also satisfy (beyond its JSON shape).

:func:`semantic_problems` collects every problem instead of stopping at the first, each
as ``{"taskId": <task or None>, "field": <camelCase path>, "message": ...}``: unique task
ids, references that resolve, no self-references, no cycles, every task reachable, sound
branch conditions, and ``${...}`` references that can have a value when the task runs.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from opscore.engine.conditions import condition_problems
from opscore.engine.templating import iter_strings, template_references
from opscore.errors import TemplateError

if TYPE_CHECKING:
    from opscore.engine.definition import TaskSpec, WorkflowDefinition

__all__ = ["Edge", "EdgeKind", "definition_edges", "format_field", "semantic_problems"]

EdgeKind = Literal["next", "branch", "dependsOn", "onFailure"]
Problem = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Edge:
    """``source`` may lead to ``target``; ``owner``'s ``field`` declares it."""

    source: str
    target: str
    kind: EdgeKind
    owner: str
    field: str


def format_field(loc: Iterable[Any]) -> str:
    """``["branches", 0, "when"]`` -> ``"branches[0].when"``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _problem(task_id: str | None, field: str | None, message: str) -> Problem:
    return {"taskId": task_id, "field": field, "message": message}


def _references(spec: TaskSpec) -> Iterator[tuple[EdgeKind, str, list[str]]]:
    """Every task reference a task declares: ``(kind, field, ids)``."""
    yield "next", "nextTaskId", spec.next_task_id
    for index, branch in enumerate(spec.branches):
        yield "branch", f"branches[{index}].next", branch.next
    yield "dependsOn", "dependsOn", spec.depends_on
    if spec.on_failure is not None:
        yield "onFailure", "onFailure", [spec.on_failure]


def definition_edges(definition: WorkflowDefinition) -> list[Edge]:
    """All edges between existing, distinct tasks, in definition order.

    ``B.dependsOn = [A]`` is the edge A -> B (owned by B); the others point from the task
    that declares them.
    """
    edges: list[Edge] = []
    for spec in definition.tasks:
        for kind, field, ids in _references(spec):
            for ref in ids:
                if ref == spec.task_id or not definition.has_task(ref):
                    continue
                if kind == "dependsOn":
                    edges.append(Edge(ref, spec.task_id, kind, spec.task_id, field))
                else:
                    edges.append(Edge(spec.task_id, ref, kind, spec.task_id, field))
    return edges


def semantic_problems(definition: WorkflowDefinition) -> list[Problem]:
    """Every rule violation in a definition whose shape is already valid."""
    ids = [spec.task_id for spec in definition.tasks]
    problems: list[Problem] = []
    seen: set[str] = set()
    for spec in definition.tasks:
        if spec.task_id in seen:
            problems.append(_problem(spec.task_id, "taskId", "taskId is used by another task"))
        seen.add(spec.task_id)
        problems += _task_problems(spec, ids)
    for spec in definition.tasks:
        fallback = spec.on_failure
        if (
            fallback
            and definition.has_task(fallback)
            and spec.task_id in definition.task(fallback).depends_on
        ):
            problems.append(
                _problem(
                    fallback,
                    "dependsOn",
                    f"depends on {spec.task_id!r} but is its onFailure fallback, which "
                    f"runs only when {spec.task_id!r} fails: it could never run",
                )
            )
    for ref in definition.start_task_id:
        if ref not in seen:
            problems.append(_problem(None, "startTaskId", _unknown(ref, ids)))
    edges = definition_edges(definition)
    problems += _cycle_problems(ids, edges)
    problems += _reachability_problems(definition, edges)
    problems += _template_problems(definition, edges)
    return problems


def _unknown(ref: str, ids: list[str]) -> str:
    close = difflib.get_close_matches(ref, ids, n=1, cutoff=0.6)
    return f"unknown task {ref!r}" + (f" (did you mean {close[0]!r}?)" if close else "")


def _task_problems(spec: TaskSpec, ids: list[str]) -> list[Problem]:
    tid = spec.task_id
    problems: list[Problem] = []
    if spec.routing == "capability" and not spec.agent_capability:
        problems.append(
            _problem(tid, "agentCapability", "routing 'capability' needs an agentCapability")
        )
    for kind, field, refs in _references(spec):
        for ref in {ref for ref in refs if refs.count(ref) > 1}:
            problems.append(_problem(tid, field, f"lists {ref!r} more than once"))
        for ref in dict.fromkeys(refs):
            if ref == tid:
                what = "depend on" if kind == "dependsOn" else "lead to"
                problems.append(_problem(tid, field, f"a task cannot {what} itself"))
            elif ref not in ids:
                problems.append(_problem(tid, field, _unknown(ref, ids)))
    nexts = set(spec.next_task_id).union(*(b.next for b in spec.branches))
    if spec.on_failure is not None and spec.on_failure in nexts:
        problems.append(
            _problem(
                tid,
                "onFailure",
                f"{spec.on_failure!r} is both the fallback and a next task; a fallback runs "
                "only when this task fails",
            )
        )
    for index, branch in enumerate(spec.branches):
        for where, message in condition_problems(branch.when, where=f"branches[{index}].when"):
            problems.append(_problem(tid, where, message))
    return problems


def _cycle_problems(ids: list[str], edges: list[Edge]) -> list[Problem]:
    successors: dict[str, list[str]] = {tid: [] for tid in ids}
    declared: dict[tuple[str, str], Edge] = {}
    for edge in edges:
        successors[edge.source].append(edge.target)
        declared.setdefault((edge.source, edge.target), edge)
    state = dict.fromkeys(ids, 0)  # 0 unseen, 1 on the current path, 2 done
    problems: list[Problem] = []
    reported: set[frozenset[str]] = set()
    for root in ids:
        if state[root]:
            continue
        state[root] = 1
        path = [root]
        stack = [iter(successors[root])]
        while stack:
            target = next(stack[-1], None)
            if target is None:
                state[path.pop()] = 2
                stack.pop()
            elif state[target] == 0:
                state[target] = 1
                path.append(target)
                stack.append(iter(successors[target]))
            elif state[target] == 1:
                cycle = path[path.index(target) :]
                if frozenset(cycle) not in reported:
                    reported.add(frozenset(cycle))
                    edge = declared[(cycle[-1], target)]
                    chain = " -> ".join([*cycle, target])
                    problems.append(_problem(edge.owner, edge.field, f"cycle: {chain}"))
    return problems


def _reachability_problems(definition: WorkflowDefinition, edges: list[Edge]) -> list[Problem]:
    successors: dict[str, list[str]] = {}
    for edge in edges:
        successors.setdefault(edge.source, []).append(edge.target)
    reached = {ref for ref in definition.start_task_id if definition.has_task(ref)}
    frontier = list(reached)
    while frontier:
        for target in successors.get(frontier.pop(), ()):
            if target not in reached:
                reached.add(target)
                frontier.append(target)
    starts = ", ".join(repr(ref) for ref in definition.start_task_id)
    return [
        _problem(
            spec.task_id,
            "taskId",
            f"not reachable from the start task(s) {starts}: no nextTaskId, branch, "
            "dependsOn or onFailure leads to it",
        )
        for spec in definition.tasks
        if spec.task_id not in reached
    ]


def _template_problems(definition: WorkflowDefinition, edges: list[Edge]) -> list[Problem]:
    predecessors: dict[str, set[str]] = {}
    for edge in edges:
        predecessors.setdefault(edge.target, set()).add(edge.source)
    ids = [spec.task_id for spec in definition.tasks]
    problems: list[Problem] = []
    for spec in definition.tasks:
        ancestors: set[str] | None = None
        for field, text in iter_strings(spec.parameters, "parameters"):
            try:
                refs = template_references(text)
            except TemplateError as exc:
                problems.append(_problem(spec.task_id, field, exc.message))
                continue
            for ref in refs:
                if ref.startswith("tasks") and ancestors is None:
                    ancestors = _ancestors(spec.task_id, predecessors)
                message = _reference_problem(ref, spec.task_id, ids, ancestors or set())
                if message:
                    problems.append(_problem(spec.task_id, field, message))
    return problems


def _ancestors(task_id: str, predecessors: Mapping[str, set[str]]) -> set[str]:
    found: set[str] = set()
    frontier = [task_id]
    while frontier:
        for source in predecessors.get(frontier.pop(), ()):
            if source not in found:
                found.add(source)
                frontier.append(source)
    return found


def _reference_problem(ref: str, task_id: str, ids: list[str], ancestors: set[str]) -> str | None:
    """Why ``${ref}`` in ``task_id``'s parameters can never have a value, if it cannot."""
    root, *rest = ref.split(".")
    if root == "session":
        if len(rest) > 1 or (rest and rest[0] not in ("id", "agentId")):
            return f"${{{ref}}}: a session offers only ${{session.id}} and ${{session.agentId}}"
        return None
    if root != "tasks":
        return None  # input.* is only known when the workflow is triggered
    # Task ids may contain dots: the longest run of segments naming a task wins.
    for end in range(len(rest), 0, -1):
        target = ".".join(rest[:end])
        if target in ids:
            after = rest[end:]
            break
    else:
        return f"${{{ref}}}: {_unknown(rest[0] if rest else '', ids)}"
    if after and after[0] != "result":
        return f"${{{ref}}}: only ${{tasks.{target}.result...}} is available of a task"
    if target == task_id:
        return f"${{{ref}}}: a task cannot use its own result"
    if target not in ancestors:
        return (
            f"${{{ref}}}: task {target!r} does not run before {task_id!r} "
            "(it is not an ancestor via nextTaskId, branches, dependsOn or onFailure)"
        )
    return None
