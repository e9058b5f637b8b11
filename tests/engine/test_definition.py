"""Workflow definitions: parsing, every validation rule, defaults, schema and backoff."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

from opscore.engine.definition import (
    DEFAULT_POLICY,
    TaskPolicy,
    WorkflowDefinition,
    backoff_delay_s,
    load_definition_text,
    parse_definition,
    parse_definition_text,
    workflow_json_schema,
)
from opscore.errors import InvalidInputError, WorkflowValidationError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "workflows"
SCHEMA_FILE = ROOT / "docs" / "workflow.schema.json"
REGENERATE = (
    'python -c "import json; from opscore.engine.definition import workflow_json_schema as s; '
    'print(json.dumps(s(), indent=2))" > docs/workflow.schema.json'
)

# The seed's sample, exactly as the contract (section 5) gives it.
SEED_SAMPLE: dict[str, Any] = {
    "id": "sample_workflow_id",
    "name": "Sample Load Test Workflow",
    "description": "...",
    "version": "1.0",
    "tasks": [
        {
            "taskId": "step_1",
            "name": "First Step",
            "agentCapability": "test_capability",
            "parameters": {"message": "..."},
            "nextTaskId": "step_2",
        },
        {
            "taskId": "step_2",
            "name": "Second Step",
            "agentCapability": "another_capability",
            "parameters": {"value": 123},
            "nextTaskId": None,
        },
    ],
}


def workflow(*tasks: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"id": "wf", "name": "Test workflow", "tasks": list(tasks), **top}


def problems_of(data: object) -> list[dict[str, Any]]:
    with pytest.raises(WorkflowValidationError) as caught:
        parse_definition(data)
    assert caught.value.errors, "a validation error must list its problems"
    for problem in caught.value.errors:
        assert set(problem) == {"taskId", "field", "message"}
    return caught.value.errors


def has_problem(problems: list[dict[str, Any]], task_id: str | None, field: str, text: str) -> bool:
    return any(
        p["taskId"] == task_id and p["field"] == field and text in p["message"] for p in problems
    )


# -- the seed format ----------------------------------------------------------------------


def test_seed_sample_parses_unchanged() -> None:
    definition = parse_definition(copy.deepcopy(SEED_SAMPLE))
    assert definition.id == "sample_workflow_id"
    assert definition.version == "1.0"
    assert [t.task_id for t in definition.tasks] == ["step_1", "step_2"]
    step_1, step_2 = definition.tasks
    assert step_1.name == "First Step"
    assert step_1.agent_capability == "test_capability"
    assert step_1.parameters == {"message": "..."}
    assert step_1.next_task_id == ["step_2"]
    assert step_2.next_task_id == []
    assert step_1.routing == "session"
    assert definition.start_task_id == ["step_1"]
    assert definition.policy("step_1") == DEFAULT_POLICY
    assert definition.policy("step_1").max_retries == 3


def test_seed_sample_example_file_is_the_contract_sample() -> None:
    assert json.loads((EXAMPLES / "seed_sample.json").read_text()) == SEED_SAMPLE


def test_to_doc_round_trips_and_keeps_the_seed_shape() -> None:
    definition = parse_definition(copy.deepcopy(SEED_SAMPLE))
    doc = definition.to_doc()
    json.dumps(doc)  # JSON-able
    for raw, out in zip(SEED_SAMPLE["tasks"], doc["tasks"], strict=True):
        assert {k: out[k] for k in raw} == raw
    assert parse_definition(doc) == definition


@pytest.mark.parametrize("path", sorted(EXAMPLES.iterdir()), ids=lambda p: p.name)
def test_examples_parse_round_trip_and_match_the_schema(path: Path) -> None:
    fmt: Literal["json", "yaml"] = "yaml" if path.suffix in (".yaml", ".yml") else "json"
    definition = parse_definition_text(path.read_bytes(), fmt=fmt)
    assert parse_definition(definition.to_doc()) == definition
    validator = jsonschema.Draft202012Validator(workflow_json_schema())
    assert list(validator.iter_errors(load_definition_text(path.read_text(), fmt=fmt))) == []
    assert list(validator.iter_errors(definition.to_doc())) == []


def test_yaml_and_json_are_equivalent() -> None:
    text = (EXAMPLES / "document_review.yaml").read_text()
    from_yaml = parse_definition_text(text, fmt="yaml")
    from_json = parse_definition_text(json.dumps(yaml.safe_load(text)), fmt="json")
    assert from_yaml == from_json
    assert from_yaml.to_doc() == from_json.to_doc()


def test_yaml_numeric_version_and_dates_stay_json_compatible() -> None:
    text = "id: wf\nname: n\nversion: 1.0\ntasks:\n- taskId: a\n  parameters: {day: 2024-01-02}\n"
    definition = parse_definition_text(text, fmt="yaml")
    assert definition.version == "1.0"
    assert definition.tasks[0].parameters == {"day": "2024-01-02"}


def test_snake_case_keys_are_accepted_too() -> None:
    definition = parse_definition(
        workflow({"task_id": "a", "next_task_id": "b", "max_retries": 1}, {"task_id": "b"})
    )
    assert definition.task("a").next_task_id == ["b"]
    assert definition.policy("a").max_retries == 1


# -- normalisation and defaults -------------------------------------------------------------


def test_normalisation_of_ids_and_names() -> None:
    definition = parse_definition(
        workflow(
            {"taskId": "a", "nextTaskId": ["b", "c"]},
            {"taskId": "b"},
            {"taskId": "c", "dependsOn": ["b"]},
            {"taskId": "d"},
            startTaskId=["a", "d"],
        )
    )
    assert definition.version == "1"
    assert definition.task("a").name == "a"
    assert definition.task("a").next_task_id == ["b", "c"]
    assert definition.start_task_id == ["a", "d"]
    assert parse_definition(workflow({"taskId": "x"}, startTaskId="x")).start_task_id == ["x"]


def test_policy_precedence_task_over_workflow_over_builtin() -> None:
    definition = parse_definition(
        workflow(
            {"taskId": "a", "nextTaskId": "b", "maxRetries": 0, "priority": 5},
            {"taskId": "b", "retryJitter": True},
            taskDefaults={"maxRetries": 7, "retryJitter": False, "completionTimeoutS": 30},
        )
    )
    a, b = definition.policy("a"), definition.policy("b")
    assert (a.max_retries, a.priority, a.retry_jitter, a.completion_timeout_s) == (0, 5, False, 30)
    assert (b.max_retries, b.priority, b.retry_jitter, b.completion_timeout_s) == (7, 0, True, 30)
    assert (b.retry_backoff_s, b.retry_backoff_max_s) == (1, 60)
    assert (b.retry_backoff_multiplier, b.dispatch_timeout_s) == (2, 10)


def test_task_lookup_raises_a_domain_error() -> None:
    definition = parse_definition(copy.deepcopy(SEED_SAMPLE))
    with pytest.raises(InvalidInputError, match="no task 'nope'"):
        definition.task("nope")
    with pytest.raises(InvalidInputError):
        definition.policy("nope")


# -- validation -----------------------------------------------------------------------------


def test_shape_errors_name_task_and_field() -> None:
    problems = problems_of(
        workflow(
            {"taskId": "a", "maxRetry": 3, "nextTaskId": "b", "priority": 5000},
            {"taskId": "b", "retryBackoffMultiplier": 0.5, "routing": "anywhere"},
            {"taskId": "bad id!"},
            taskDefaults={"dispatchTimeoutS": 0},
            colour="red",
        )
    )
    assert has_problem(problems, "a", "maxRetry", "did you mean 'maxRetries'")
    assert has_problem(problems, "a", "priority", "less than or equal to 1000")
    assert has_problem(problems, "b", "retryBackoffMultiplier", "greater than or equal to 1")
    assert has_problem(problems, "b", "routing", "")
    assert has_problem(problems, None, "tasks[2].taskId", "pattern")
    assert has_problem(problems, None, "taskDefaults.dispatchTimeoutS", "greater than 0")
    assert has_problem(problems, None, "colour", "unknown field 'colour'")
    assert len(problems) == 7


@pytest.mark.parametrize(
    "data",
    [
        workflow(),
        {"name": "no id", "tasks": [{"taskId": "a"}]},
        workflow({"taskId": "a", "nextTaskId": 5}),
        workflow({"taskId": "a", "branches": [{"when": {}, "next": []}]}),
        workflow({"taskId": "a", "unknownField": 1}),
        workflow({"taskId": "a"}, id="has space"),
        [1, 2],
    ],
    ids=["no-tasks", "no-id", "bad-next", "empty-branch-next", "unknown", "bad-id", "not-object"],
)
def test_malformed_shapes_are_rejected(data: object) -> None:
    problems_of(data)


Mutation = Callable[[list[dict[str, Any]]], object]


def chain() -> list[dict[str, Any]]:
    return [
        {"taskId": "a", "nextTaskId": "b"},
        {"taskId": "b", "nextTaskId": "c"},
        {"taskId": "c"},
    ]


RULES: list[tuple[str, Mutation, str | None, str, str]] = [
    ("duplicate-id", lambda t: t.append({"taskId": "b"}), "b", "taskId", "used by another"),
    ("unknown-next", lambda t: t[2].update(nextTaskId="zz"), "c", "nextTaskId", "unknown task"),
    (
        "unknown-branch",
        lambda t: t[2].update(
            branches=[{"when": {"path": "result.ok", "op": "truthy"}, "next": "bb"}]
        ),
        "c",
        "branches[0].next",
        "did you mean 'b'",
    ),
    ("unknown-depends", lambda t: t[2].update(dependsOn=["q"]), "c", "dependsOn", "unknown"),
    ("unknown-fallback", lambda t: t[0].update(onFailure="q"), "a", "onFailure", "unknown"),
    ("self-next", lambda t: t[2].update(nextTaskId="c"), "c", "nextTaskId", "itself"),
    ("self-depends", lambda t: t[1].update(dependsOn=["b"]), "b", "dependsOn", "itself"),
    ("self-fallback", lambda t: t[1].update(onFailure="b"), "b", "onFailure", "itself"),
    (
        "self-branch",
        lambda t: t[1].update(branches=[{"when": {"path": "result", "op": "exists"}, "next": "b"}]),
        "b",
        "branches[0].next",
        "itself",
    ),
    (
        "listed-twice",
        lambda t: t[0].update(nextTaskId=["b", "b"]),
        "a",
        "nextTaskId",
        "more than once",
    ),
    ("cycle", lambda t: t[2].update(nextTaskId="a"), "c", "nextTaskId", "cycle: a -> b -> c -> a"),
    (
        "cycle-via-depends",
        lambda t: t[0].update(dependsOn=["c"]),
        "a",
        "dependsOn",
        "cycle: a -> b -> c -> a",
    ),
    ("unreachable", lambda t: t.append({"taskId": "lost"}), "lost", "taskId", "not reachable"),
    (
        "fallback-and-next",
        lambda t: t[0].update(onFailure="b"),
        "a",
        "onFailure",
        "both the fallback and a next task",
    ),
    (
        "fallback-depends-on-its-task",
        lambda t: (t[1].update(onFailure="c"), t[2].update(dependsOn=["b"])),
        "c",
        "dependsOn",
        "could never run",
    ),
    (
        "capability-routing-needs-capability",
        lambda t: t[1].update(routing="capability"),
        "b",
        "agentCapability",
        "needs an agentCapability",
    ),
    (
        "bad-condition-op",
        lambda t: t[0].update(
            branches=[{"when": {"path": "result.x", "op": "equals"}, "next": "c"}]
        ),
        "a",
        "branches[0].when.op",
        "unknown op 'equals'",
    ),
    (
        "bad-condition-root",
        lambda t: t[0].update(
            branches=[{"when": {"any": [{"path": "x.y", "op": "exists"}]}, "next": "c"}]
        ),
        "a",
        "branches[0].when.any[0].path",
        "must start with",
    ),
    (
        "condition-in-needs-list",
        lambda t: t[0].update(
            branches=[{"when": {"path": "result.x", "op": "in", "value": 3}, "next": "c"}]
        ),
        "a",
        "branches[0].when.value",
        "needs a list",
    ),
    (
        "condition-missing-value",
        lambda t: t[0].update(
            branches=[{"when": {"not": {"path": "result.x", "op": "eq"}}, "next": "c"}]
        ),
        "a",
        "branches[0].when.not.value",
        "needs a 'value'",
    ),
    (
        "template-unknown-task",
        lambda t: t[2].update(parameters={"x": "${tasks.nope.result}"}),
        "c",
        "parameters.x",
        "unknown task 'nope'",
    ),
    (
        "template-not-an-ancestor",
        lambda t: t[0].update(parameters={"x": ["${tasks.c.result.y}"]}),
        "a",
        "parameters.x[0]",
        "does not run before 'a'",
    ),
    (
        "template-own-result",
        lambda t: t[1].update(parameters={"x": "${tasks.b.result}"}),
        "b",
        "parameters.x",
        "its own result",
    ),
    (
        "template-malformed",
        lambda t: t[1].update(parameters={"deep": {"x": "value ${input.a"}}),
        "b",
        "parameters.deep.x",
        "unclosed",
    ),
    (
        "template-unknown-root",
        lambda t: t[1].update(parameters={"x": "${env.HOME}"}),
        "b",
        "parameters.x",
        "must start with input, tasks or session",
    ),
    (
        "template-task-field",
        lambda t: t[1].update(parameters={"x": "${tasks.a.status}"}),
        "b",
        "parameters.x",
        "only ${tasks.a.result",
    ),
    (
        "template-session-field",
        lambda t: t[1].update(parameters={"x": "${session.secret}"}),
        "b",
        "parameters.x",
        "session.agentId",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "task_id", "field", "text"),
    [rule[1:] for rule in RULES],
    ids=[rule[0] for rule in RULES],
)
def test_each_rule_names_task_and_field(
    mutate: Mutation, task_id: str | None, field: str, text: str
) -> None:
    tasks = chain()
    mutate(tasks)
    problems = problems_of(workflow(*tasks))
    assert has_problem(problems, task_id, field, text), problems


def test_unknown_start_task_is_a_top_level_problem() -> None:
    problems = problems_of(workflow(*chain(), startTaskId=["a", "zz"]))
    assert has_problem(problems, None, "startTaskId", "unknown task 'zz'")


def test_all_problems_are_collected_not_just_the_first() -> None:
    tasks = chain()
    tasks[0]["nextTaskId"] = ["b", "zz"]
    tasks[1]["dependsOn"] = ["b"]
    tasks[2]["nextTaskId"] = "a"
    tasks[2]["parameters"] = {"p": "${tasks.ghost.result}"}
    tasks.append({"taskId": "island"})
    with pytest.raises(WorkflowValidationError) as caught:
        parse_definition(workflow(*tasks))
    fields = {(p["taskId"], p["field"]) for p in caught.value.errors}
    assert fields >= {
        ("a", "nextTaskId"),
        ("b", "dependsOn"),
        ("c", "nextTaskId"),
        ("c", "parameters.p"),
        ("island", "taskId"),
    }
    assert "invalid workflow definition 'wf'" in caught.value.message
    assert caught.value.code == "invalid_workflow"


def test_valid_references_pass() -> None:
    definition = parse_definition(
        workflow(
            {"taskId": "a", "nextTaskId": ["b", "c"], "parameters": {"i": "${input}"}},
            {"taskId": "b", "parameters": {"x": "${tasks.a.result.items.0}"}},
            {"taskId": "c", "parameters": {"x": "${tasks.a}", "s": "${session.agentId}"}},
            {
                "taskId": "d",
                "dependsOn": ["b", "c"],
                "parameters": {"x": "${tasks.b.result} and ${tasks.a.result.y}"},
            },
        )
    )
    assert definition.task("d").depends_on == ["b", "c"]


def test_task_ids_with_dots_in_references() -> None:
    definition = parse_definition(
        workflow(
            {"taskId": "step.1", "nextTaskId": "step.2"},
            {"taskId": "step.2", "parameters": {"x": "${tasks.step.1.result.v}"}},
        )
    )
    assert definition.task("step.2").parameters == {"x": "${tasks.step.1.result.v}"}


# -- text loading ----------------------------------------------------------------------------


def test_json_syntax_error_gives_line_and_column() -> None:
    with pytest.raises(WorkflowValidationError, match="line 2 column 10") as caught:
        load_definition_text('{"id": "x",\n "name": }', fmt="json")
    assert caught.value.errors[0]["taskId"] is None


def test_yaml_syntax_error_gives_line_and_column() -> None:
    with pytest.raises(WorkflowValidationError, match="line 2 column 7"):
        load_definition_text("id: x\nname: : y: z\n", fmt="yaml")


def test_non_utf8_bytes_are_a_validation_error() -> None:
    with pytest.raises(WorkflowValidationError, match="not UTF-8"):
        load_definition_text(b"\xff\xfe\x00", fmt="json")


# -- JSON Schema -------------------------------------------------------------------------------


def test_checked_in_schema_matches_the_code() -> None:
    checked_in = json.loads(SCHEMA_FILE.read_text())
    assert checked_in == workflow_json_schema(), f"regenerate it: {REGENERATE}"


def test_schema_is_valid_and_strict() -> None:
    schema = workflow_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid(SEED_SAMPLE)
    assert not validator.is_valid(workflow({"taskId": "a", "maxRetry": 1}))
    bad_condition = {"taskId": "a", "branches": [{"when": {"path": "x", "op": "?"}, "next": "a"}]}
    assert not validator.is_valid(workflow(bad_condition))
    good_condition = {"all": [{"path": "result.a", "op": "exists"}, {"not": {"any": []}}]}
    assert not validator.is_valid(
        workflow({"taskId": "a", "branches": [{"when": good_condition, "next": "a"}]})
    )
    good_condition["all"][1] = {"not": {"path": "input.b", "op": "eq", "value": 1}}
    assert validator.is_valid(
        workflow({"taskId": "a", "branches": [{"when": good_condition, "next": "a"}]})
    )
    props = schema["$defs"]["TaskSpec"]["properties"]
    assert props["maxRetries"]["default"] == 3
    assert all("description" in spec for spec in props.values())


# -- backoff ---------------------------------------------------------------------------------


def test_backoff_without_jitter_grows_then_caps() -> None:
    policy = TaskPolicy(
        retry_backoff_s=1, retry_backoff_multiplier=2, retry_backoff_max_s=10, retry_jitter=False
    )
    delays = [backoff_delay_s(policy, n, lambda: 0.0) for n in range(1, 7)]
    assert delays == [1, 2, 4, 8, 10, 10]
    assert backoff_delay_s(policy, 10_000, lambda: 0.0) == 10  # no overflow


def test_backoff_jitter_stays_within_half_and_full_nominal() -> None:
    policy = TaskPolicy(retry_backoff_s=2, retry_backoff_multiplier=3, retry_backoff_max_s=60)
    assert backoff_delay_s(policy, 1, lambda: 0.0) == 1.0
    assert backoff_delay_s(policy, 1, lambda: 0.5) == 1.5
    assert backoff_delay_s(policy, 1, lambda: 0.999999) == pytest.approx(2.0)
    assert backoff_delay_s(policy, 2, lambda: 0.0) == 3.0
    assert backoff_delay_s(policy, 5, lambda: 1.0) == 60.0
    assert backoff_delay_s(policy, 5, lambda: 0.0) == 30.0
    assert backoff_delay_s(policy, 1, lambda: -5.0) == 1.0  # a bad rand cannot go below half
    assert backoff_delay_s(policy, 0, lambda: 0.0) == 1.0  # treated as the first retry


def test_zero_backoff_is_allowed() -> None:
    definition = parse_definition(workflow({"taskId": "a", "retryBackoffS": 0}))
    assert backoff_delay_s(definition.policy("a"), 3, lambda: 0.7) == 0


def test_model_validate_alone_checks_shape_only() -> None:
    # Stored definitions reload without re-running the graph rules.
    data = workflow({"taskId": "a", "nextTaskId": "zz"})
    assert WorkflowDefinition.model_validate(data).task("a").next_task_id == ["zz"]


def test_workflow_examples_in_the_docs_are_valid() -> None:
    text = (ROOT / "docs" / "workflows.md").read_text()
    checked = 0
    for fmt, block in re.findall(r"```(json|yaml)\n(.*?)```", text, flags=re.DOTALL):
        try:
            data = load_definition_text(block, fmt="json" if fmt == "json" else "yaml")
        except WorkflowValidationError:
            continue  # a fragment (a single condition, an error answer)
        if isinstance(data, dict) and "tasks" in data:
            parse_definition({"id": "doc", "name": "doc", **data})
            checked += 1
    assert checked >= 7
