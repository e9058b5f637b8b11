"""The planner: which tasks become ready or skipped, and when a run finishes or fails.

Each scenario drives :func:`plan` like the engine does: create what is ready, record
skips, let tasks finish one by one, and plan again.
"""

from __future__ import annotations

from typing import Any

import pytest

from opscore.engine.definition import WorkflowDefinition, parse_definition
from opscore.engine.planner import Plan, TaskOutcome, chosen_next, plan


def define(*tasks: dict[str, Any], **top: Any) -> WorkflowDefinition:
    return parse_definition({"id": "wf", "name": "wf", "tasks": list(tasks), **top})


class Run:
    """A workflow run as the engine keeps it: outcomes plus the rendering context."""

    def __init__(self, definition: WorkflowDefinition, run_input: dict[str, Any] | None = None):
        self.definition = definition
        self.outcomes: dict[str, TaskOutcome] = {}
        self.input = run_input or {}

    def context(self) -> dict[str, Any]:
        tasks = {
            tid: {"result": o.result} for tid, o in self.outcomes.items() if o.status == "completed"
        }
        return {"input": self.input, "tasks": tasks, "session": {"id": "s", "agentId": None}}

    def step(self) -> Plan:
        """Plan, then apply it as the engine would (ready -> pending, skipped recorded)."""
        result = plan(self.definition, self.outcomes, self.context())
        assert not set(result.ready) & set(self.outcomes)
        assert not set(result.skipped) & set(self.outcomes)
        for tid in result.ready:
            self.outcomes[tid] = TaskOutcome("pending")
        for tid in result.skipped:
            self.outcomes[tid] = TaskOutcome("skipped")
        again = plan(self.definition, self.outcomes, self.context())
        assert (again.ready, again.skipped) == ([], []), "plan must be idempotent"
        assert (again.finished, again.failed, again.error) == (
            result.finished,
            result.failed,
            result.error,
        )
        return result

    def complete(self, tid: str, result: Any = None) -> Plan:
        assert self.outcomes[tid].status == "pending"
        self.outcomes[tid] = TaskOutcome("completed", result)
        return self.step()

    def fail(self, tid: str) -> Plan:
        assert self.outcomes[tid].status == "pending"
        self.outcomes[tid] = TaskOutcome("failed")
        return self.step()

    def statuses(self) -> dict[str, str]:
        return {tid: o.status for tid, o in self.outcomes.items()}


def test_linear_chain() -> None:
    run = Run(
        define(
            {"taskId": "a", "nextTaskId": "b"}, {"taskId": "b", "nextTaskId": "c"}, {"taskId": "c"}
        )
    )
    first = run.step()
    assert first.ready == ["a"]
    assert not first.finished
    assert run.complete("a", {"x": 1}).ready == ["b"]
    assert run.complete("b").ready == ["c"]
    last = run.complete("c")
    assert (last.ready, last.skipped, last.finished, last.failed, last.error) == (
        [],
        [],
        True,
        False,
        None,
    )


def test_seed_sample_runs_step_by_step() -> None:
    definition = define(
        {"taskId": "step_1", "nextTaskId": "step_2", "parameters": {"message": "..."}},
        {"taskId": "step_2", "nextTaskId": None},
    )
    run = Run(definition)
    assert run.step().ready == ["step_1"]
    assert run.complete("step_1").ready == ["step_2"]
    assert run.complete("step_2").finished


def test_fan_out_and_fan_in() -> None:
    run = Run(
        define(
            {"taskId": "split", "nextTaskId": ["left", "right", "middle"]},
            {"taskId": "left"},
            {"taskId": "middle"},
            {"taskId": "right"},
            {"taskId": "join", "dependsOn": ["left", "right", "middle"]},
        )
    )
    run.step()
    assert run.complete("split").ready == ["left", "middle", "right"]  # definition order
    assert run.complete("right").ready == []
    assert run.complete("left").ready == []
    partial = run.complete("middle")
    assert partial.ready == ["join"]
    assert not partial.finished
    assert run.complete("join").finished


IF_ELSE: list[dict[str, Any]] = [
    {
        "taskId": "check",
        "branches": [{"when": {"path": "result.ok", "op": "truthy"}, "next": "yes"}],
        "nextTaskId": "no",
    },
    {"taskId": "yes", "nextTaskId": "join"},
    {"taskId": "no", "nextTaskId": "join"},
    {"taskId": "join"},
]


@pytest.mark.parametrize(("ok", "taken", "not_taken"), [(True, "yes", "no"), (False, "no", "yes")])
def test_if_else_with_or_join(ok: bool, taken: str, not_taken: str) -> None:
    run = Run(define(*IF_ELSE))
    run.step()
    after_check = run.complete("check", {"ok": ok})
    assert after_check.ready == [taken]
    assert after_check.skipped == [not_taken]
    assert run.complete(taken).ready == ["join"]  # OR-join: one active edge is enough
    assert run.complete("join").finished
    assert run.statuses()[not_taken] == "skipped"


def test_join_waits_while_an_incoming_edge_is_pending() -> None:
    run = Run(
        define(
            {"taskId": "a", "nextTaskId": ["b", "c"]},
            {"taskId": "b", "nextTaskId": "join"},
            {"taskId": "c", "nextTaskId": "join"},
            {"taskId": "join"},
        )
    )
    run.step()
    run.complete("a")
    assert run.complete("b").ready == []  # c may still lead to join
    assert run.complete("c").ready == ["join"]


def test_first_matching_branch_wins_and_branches_can_fan_out() -> None:
    definition = define(
        {
            "taskId": "route",
            "branches": [
                {"when": {"path": "result.n", "op": "gt", "value": 10}, "next": "big"},
                {"when": {"path": "result.n", "op": "gt", "value": 0}, "next": ["small", "log"]},
            ],
            "nextTaskId": "zero",
        },
        {"taskId": "big"},
        {"taskId": "small"},
        {"taskId": "log"},
        {"taskId": "zero"},
    )
    spec = definition.task("route")
    assert chosen_next(spec, {}, {"n": 50}) == ["big"]
    assert chosen_next(spec, {}, {"n": 5}) == ["small", "log"]
    assert chosen_next(spec, {}, {"n": 0}) == ["zero"]
    assert chosen_next(spec, {}, "not an object") == ["zero"]
    run = Run(definition)
    run.step()
    fanned = run.complete("route", {"n": 5})
    assert (fanned.ready, fanned.skipped) == (["small", "log"], ["big", "zero"])


def test_branch_conditions_see_input_and_earlier_results() -> None:
    run = Run(
        define(
            {"taskId": "a", "nextTaskId": "b"},
            {
                "taskId": "b",
                "branches": [
                    {
                        "when": {
                            "all": [
                                {"path": "input.mode", "op": "eq", "value": "full"},
                                {"path": "tasks.a.result.size", "op": "gte", "value": 3},
                            ]
                        },
                        "next": "full",
                    }
                ],
                "nextTaskId": "quick",
            },
            {"taskId": "full"},
            {"taskId": "quick"},
        ),
        run_input={"mode": "full"},
    )
    run.step()
    run.complete("a", {"size": 3})
    assert run.complete("b").ready == ["full"]


def test_depends_on_skips_when_a_dependency_is_skipped() -> None:
    run = Run(
        define(
            {
                "taskId": "check",
                "branches": [{"when": {"path": "result.ok", "op": "truthy"}, "next": "extra"}],
                "nextTaskId": "main",
            },
            {"taskId": "extra"},
            {"taskId": "main"},
            {"taskId": "both", "dependsOn": ["main", "extra"]},
            {"taskId": "after_both", "nextTaskId": "end", "dependsOn": ["both"]},
            {"taskId": "end"},
        )
    )
    run.step()
    after = run.complete("check", {"ok": False})
    assert (after.ready, after.skipped) == (["main"], ["extra"])
    final = run.complete("main")
    # One call propagates the skip down the whole chain.
    assert final.skipped == ["both", "after_both", "end"]
    assert final.finished
    assert not final.failed


def test_skip_propagation_stops_at_a_ready_task() -> None:
    run = Run(
        define(
            {"taskId": "a", "nextTaskId": ["b", "c"]},
            {
                "taskId": "b",
                "branches": [{"when": {"path": "result", "op": "exists"}, "next": "x"}],
            },
            {"taskId": "c", "nextTaskId": "y"},
            {"taskId": "x", "nextTaskId": "y"},
            {"taskId": "y", "nextTaskId": "z"},
            {"taskId": "z"},
        )
    )
    run.step()
    run.complete("a")
    after_b = run.complete("b")  # result None exists -> x chosen
    assert after_b.ready == ["x"]
    assert run.complete("c").ready == []  # y waits for x (pending)
    assert run.complete("x").ready == ["y"]


def test_skip_chains_reach_the_end_in_one_call() -> None:
    definition = define(
        {
            "taskId": "gate",
            "branches": [{"when": {"path": "result.go", "op": "truthy"}, "next": "s1"}],
            "nextTaskId": "done",
        },
        {"taskId": "s4"},
        {"taskId": "s3", "nextTaskId": "s4"},
        {"taskId": "s2", "nextTaskId": "s3"},
        {"taskId": "s1", "nextTaskId": "s2"},
        {"taskId": "done"},
    )
    run = Run(definition)
    run.step()
    after = run.complete("gate", {"go": False})
    assert after.ready == ["done"]
    assert after.skipped == ["s4", "s3", "s2", "s1"]  # definition order, despite reverse chain


def test_fallback_taken_when_the_task_fails() -> None:
    run = Run(
        define(
            {"taskId": "work", "nextTaskId": "publish", "onFailure": "repair"},
            {"taskId": "publish", "nextTaskId": "end"},
            {"taskId": "repair", "nextTaskId": "end"},
            {"taskId": "end"},
        )
    )
    run.step()
    after = run.fail("work")
    assert (after.ready, after.skipped) == (["repair"], ["publish"])
    assert not after.failed  # handled by the fallback
    assert run.complete("repair").ready == ["end"]
    final = run.complete("end")
    assert final.finished
    assert not final.failed
    assert final.error is None


def test_fallback_not_taken_when_the_task_completes() -> None:
    run = Run(
        define(
            {"taskId": "work", "nextTaskId": "publish", "onFailure": "repair"},
            {"taskId": "publish"},
            {"taskId": "repair", "nextTaskId": "notify"},
            {"taskId": "notify"},
        )
    )
    run.step()
    after = run.complete("work")
    assert (after.ready, after.skipped) == (["publish"], ["repair", "notify"])
    assert run.complete("publish").finished


def test_failure_without_fallback_fails_the_run() -> None:
    run = Run(
        define(
            {"taskId": "step_1", "nextTaskId": ["step_2", "side"]},
            {"taskId": "step_2", "nextTaskId": "step_3"},
            {"taskId": "side"},
            {"taskId": "step_3"},
        )
    )
    run.step()
    run.complete("step_1")
    failed = run.fail("step_2")
    assert failed.failed
    assert failed.error is not None
    assert "'step_2'" in failed.error
    assert failed.skipped == ["step_3"]
    assert not failed.finished  # "side" is still pending: the engine cancels it
    assert run.complete("side").finished


def test_failing_fallback_fails_the_run() -> None:
    run = Run(
        define(
            {"taskId": "work", "onFailure": "repair"},
            {"taskId": "repair"},
        )
    )
    run.step()
    assert not run.fail("work").failed
    final = run.fail("repair")
    assert final.failed
    assert final.finished
    assert final.error is not None
    assert "'repair'" in final.error
    assert "'work'" in final.error


def test_fallback_with_its_own_fallback() -> None:
    run = Run(
        define(
            {"taskId": "work", "onFailure": "repair"},
            {"taskId": "repair", "onFailure": "page_human"},
            {"taskId": "page_human"},
        )
    )
    run.step()
    run.fail("work")
    after = run.fail("repair")
    assert after.ready == ["page_human"]
    assert not after.failed
    final = run.complete("page_human")
    assert final.finished
    assert not final.failed


def test_fallback_that_cannot_run_leaves_the_failure_unhandled() -> None:
    run = Run(
        define(
            {
                "taskId": "check",
                "branches": [{"when": {"path": "result.a", "op": "truthy"}, "next": "opt"}],
                "nextTaskId": "work",
            },
            {"taskId": "opt"},
            {"taskId": "work", "onFailure": "repair"},
            {"taskId": "repair", "dependsOn": ["opt"]},
        )
    )
    run.step()
    run.complete("check", {"a": False})
    failed = run.fail("work")
    assert failed.skipped == ["repair"]
    assert failed.failed
    assert failed.error is not None
    assert "'work'" in failed.error
    assert "'repair'" in failed.error


def test_multiple_start_tasks() -> None:
    run = Run(
        define(
            {"taskId": "a", "nextTaskId": "c"},
            {"taskId": "b", "nextTaskId": "c"},
            {"taskId": "c"},
            {"taskId": "solo"},
            startTaskId=["a", "b", "solo"],
        )
    )
    assert run.step().ready == ["a", "b", "solo"]
    assert run.complete("a").ready == []
    assert run.complete("b").ready == ["c"]
    run.complete("solo")
    assert run.complete("c").finished


def test_a_failed_branch_of_a_fan_out_fails_the_run_but_others_keep_their_state() -> None:
    run = Run(
        define(
            {"taskId": "a", "nextTaskId": ["b", "c"]},
            {"taskId": "b"},
            {"taskId": "c"},
            {"taskId": "d", "dependsOn": ["b", "c"]},
        )
    )
    run.step()
    run.complete("a")
    result = run.fail("b")
    assert result.failed
    assert result.skipped == []  # d waits for c: no edge may be pending
    assert run.complete("c").skipped == ["d"]


def test_unknown_outcomes_are_ignored_and_empty_outcomes_start_the_run() -> None:
    definition = define({"taskId": "a"})
    result = plan(definition, {"ghost": TaskOutcome("completed")}, {})
    assert result.ready == ["a"]
    assert not result.finished
