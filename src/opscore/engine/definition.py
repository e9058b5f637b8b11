"""Workflow definitions: the format, its validation, its JSON Schema and retry policy math.

The format is documented for users in ``docs/workflows.md``; the JSON Schema served by the
API and checked in as ``docs/workflow.schema.json`` is :func:`workflow_json_schema`. Use
:func:`parse_definition` to accept a definition from outside: it runs every rule and
raises one :class:`~opscore.errors.WorkflowValidationError` listing all problems.
``WorkflowDefinition.model_validate`` checks the shape only; it is for reloading a stored
definition that was validated when it was created.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    PrivateAttr,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from opscore.engine.conditions import COMPARISON_OPS, UNARY_OPS
from opscore.engine.validation import format_field, semantic_problems
from opscore.errors import InvalidInputError, WorkflowValidationError
from opscore.models import ID_PATTERN, ApiModel, JsonObject

__all__ = [
    "DEFAULT_POLICY",
    "TASK_ID_PATTERN",
    "Branch",
    "PolicyFields",
    "Routing",
    "TaskDefaults",
    "TaskPolicy",
    "TaskSpec",
    "WorkflowDefinition",
    "backoff_delay_s",
    "load_definition_text",
    "parse_definition",
    "parse_definition_text",
    "workflow_json_schema",
]

TASK_ID_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
VERSION_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
Routing = Literal["session", "capability"]


@dataclass(frozen=True, slots=True)
class TaskPolicy:
    """A task's retry, timeout and priority settings after applying defaults."""

    max_retries: int = 3
    retry_backoff_s: float = 1.0
    retry_backoff_max_s: float = 60.0
    retry_backoff_multiplier: float = 2.0
    retry_jitter: bool = True
    dispatch_timeout_s: float = 10.0
    completion_timeout_s: float = 300.0
    priority: int = 0


DEFAULT_POLICY = TaskPolicy()


def backoff_delay_s(policy: TaskPolicy, failed_attempts: int, rand: Callable[[], float]) -> float:
    """Seconds to wait before retry number ``failed_attempts`` (counted from 1).

    Nominal delay: ``min(retryBackoffMaxS, retryBackoffS * retryBackoffMultiplier**(n-1))``.
    With jitter the delay is uniform in ``[nominal/2, nominal]`` using ``rand()`` in [0, 1),
    so jitter never shortens a delay below half its nominal value.
    """
    n = max(1, failed_attempts)
    try:
        nominal = policy.retry_backoff_s * policy.retry_backoff_multiplier ** (n - 1)
    except OverflowError:
        nominal = policy.retry_backoff_max_s
    nominal = min(policy.retry_backoff_max_s, nominal)
    if not policy.retry_jitter:
        return nominal
    fraction = min(1.0, max(0.0, rand()))
    return nominal / 2 + fraction * nominal / 2


def _to_id_list(value: object) -> object:
    """``nextTaskId``/``startTaskId`` accept a taskId, a list of taskIds or null."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    raise ValueError("must be a taskId, a list of taskIds or null")


_ID_OR_LIST_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string"},
        {"type": "array", "items": {"type": "string"}},
        {"type": "null"},
    ]
}
TaskIdList = Annotated[list[str], BeforeValidator(_to_id_list), WithJsonSchema(_ID_OR_LIST_SCHEMA)]
# The schema generator cannot point at a hand-written $def; a marker is swapped for the
# $ref in workflow_json_schema().
_CONDITION_MARKER = "x-opscore-condition"
Condition = Annotated[dict[str, Any], WithJsonSchema({"type": "object", _CONDITION_MARKER: True})]


class _FormatModel(ApiModel):
    """Unknown fields are errors: a misspelled setting must not pass silently."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


def _policy_field(default: int | float | bool, description: str, **constraints: Any) -> Any:
    extra: dict[str, JsonValue] = {"default": default}
    return Field(
        default=None,
        description=f"{description} Default: {json.dumps(default)}, or taskDefaults.",
        json_schema_extra=extra,
        **constraints,
    )


#: Upper bounds keep every computed time representable (and catch unit mistakes).
MAX_DELAY_S = 30 * 24 * 3600  # 30 days
MAX_RETRIES = 10_000


class PolicyFields(_FormatModel):
    """Retry, timeout and priority settings; unset (null) means "inherit"."""

    max_retries: int | None = _policy_field(
        3, "Retries after the first failed attempt; 0 never retries.", ge=0, le=MAX_RETRIES
    )
    retry_backoff_s: float | None = _policy_field(
        1, "Delay before the first retry, s.", ge=0, le=MAX_DELAY_S
    )
    retry_backoff_max_s: float | None = _policy_field(
        60, "Upper bound of any delay, s.", ge=0, le=MAX_DELAY_S
    )
    retry_backoff_multiplier: float | None = _policy_field(
        2, "Each further delay is the previous one times this.", ge=1, le=1000
    )
    retry_jitter: bool | None = _policy_field(True, "Randomise each delay within [delay/2, delay].")
    dispatch_timeout_s: float | None = _policy_field(
        10, "Time allowed to hand the task to its agent, s.", gt=0, le=MAX_DELAY_S
    )
    completion_timeout_s: float | None = _policy_field(
        300, "Time allowed from dispatch to the agent's completion report, s.", gt=0, le=MAX_DELAY_S
    )
    priority: int | None = _policy_field(
        0, "Higher runs first among tasks waiting for an agent.", ge=-1000, le=1000
    )


class TaskDefaults(PolicyFields):
    """Policy values applied to every task that does not set them itself."""


class Branch(_FormatModel):
    """A conditional next step: after the task completes, the first branch whose "when"
    holds decides which task(s) run next; if none holds, nextTaskId does."""

    when: Condition = Field(
        description="Condition, evaluated with `result` = the finished task's result."
    )
    next: Annotated[
        list[str],
        BeforeValidator(_to_id_list),
        WithJsonSchema(
            {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
        ),
    ] = Field(min_length=1, description="taskId, or list of taskIds (fan-out), to run.")


def _no_default(schema: dict[str, JsonValue]) -> None:
    schema.pop("default", None)


class _TaskCore(_FormatModel):
    task_id: str = Field(pattern=TASK_ID_PATTERN, description="Unique within the workflow.")
    name: str = Field(
        default="",
        description="Display name; defaults to taskId.",
        json_schema_extra=_no_default,
    )
    agent_capability: str | None = Field(
        default=None,
        description="Capability the agent must have (required for routing=capability).",
    )
    routing: Routing = Field(
        default="session",
        description="session: run on the session's agent (capability if it has none); "
        "capability: any idle agent having agentCapability.",
    )
    parameters: JsonObject = Field(
        default_factory=dict, description="Sent to the agent as the payload; ${...} templated."
    )
    next_task_id: TaskIdList = Field(
        default_factory=list, description="Task(s) to run after this one; a list fans out."
    )
    branches: list[Branch] = Field(
        default_factory=list, description="First branch whose condition holds wins."
    )
    depends_on: list[str] = Field(
        default_factory=list, description="Run only after all of these completed (fan-in)."
    )
    on_failure: str | None = Field(
        default=None, description="taskId of the fallback run when this task fails for good."
    )

    @model_validator(mode="after")
    def _default_name(self) -> Self:
        if not self.name:
            self.name = self.task_id
        return self


class TaskSpec(PolicyFields, _TaskCore):
    """One task: what to run (agentCapability, parameters), where to go next (nextTaskId,
    branches, dependsOn, onFailure) and its retry/timeout/priority policy."""


def _version_to_str(value: object) -> object:
    # YAML reads `version: 1.0` as a float; keep the spelling a user means.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


class WorkflowDefinition(_FormatModel):
    """An Ops-Core workflow: tasks forming a directed acyclic graph, each sent to an agent.
    Definitions are versioned by id + version."""

    id: str = Field(pattern=ID_PATTERN, description="Workflow id, used to trigger it.")
    name: str = Field(min_length=1, max_length=200, description="Display name.")
    description: str | None = Field(default=None, description="Free text.")
    version: Annotated[str, BeforeValidator(_version_to_str)] = Field(
        default="1",
        pattern=VERSION_PATTERN,
        description="Version label; id + version identifies a definition.",
    )
    tasks: list[TaskSpec] = Field(min_length=1, description="The tasks, at least one.")
    task_defaults: TaskDefaults = Field(
        default_factory=TaskDefaults, description="Policy defaults for every task."
    )
    start_task_id: TaskIdList = Field(
        default_factory=list, description="Task(s) run first; default: the first task."
    )
    _by_id: dict[str, TaskSpec] = PrivateAttr(default_factory=dict)

    @field_validator("start_task_id")
    @classmethod
    def _dedupe(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    def model_post_init(self, context: Any, /) -> None:
        if not self.start_task_id:
            self.start_task_id = [self.tasks[0].task_id]
        for spec in self.tasks:
            self._by_id.setdefault(spec.task_id, spec)

    def task(self, task_id: str) -> TaskSpec:
        """The task ``task_id``; raises InvalidInputError if the workflow has none."""
        try:
            return self._by_id[task_id]
        except KeyError:
            raise InvalidInputError(
                f"workflow {self.id!r} version {self.version!r} has no task {task_id!r}"
            ) from None

    def has_task(self, task_id: str) -> bool:
        return task_id in self._by_id

    def policy(self, task_id: str) -> TaskPolicy:
        """The task's policy: task field, else the workflow's taskDefaults, else built-in."""
        spec = self.task(task_id)
        values: dict[str, Any] = {}
        for name in PolicyFields.model_fields:
            own, inherited = getattr(spec, name), getattr(self.task_defaults, name)
            values[name] = own if own is not None else inherited
        return TaskPolicy(**{k: v for k, v in values.items() if v is not None})

    def to_doc(self) -> dict[str, Any]:
        """JSON-able camelCase document; ``parse_definition(d.to_doc())`` gives ``d`` back."""
        doc = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        if not doc["taskDefaults"]:
            del doc["taskDefaults"]
        doc["startTaskId"] = _compact_ids(doc["startTaskId"])
        for task in doc["tasks"]:
            task["nextTaskId"] = _compact_ids(task["nextTaskId"])
            for key in ("branches", "dependsOn"):
                if not task[key]:
                    del task[key]
            for branch in task.get("branches", ()):
                branch["next"] = _compact_ids(branch["next"])
        return doc


def _compact_ids(ids: list[str]) -> str | list[str] | None:
    return None if not ids else ids[0] if len(ids) == 1 else ids


# -- parsing ------------------------------------------------------------------------------


class _JsonCompatibleLoader(yaml.SafeLoader):
    """Safe YAML without implicit timestamps, so every value is JSON-compatible."""


_JsonCompatibleLoader.yaml_implicit_resolvers = {
    first: [r for r in resolvers if r[0] != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_definition_text(text: str | bytes, *, fmt: Literal["json", "yaml"]) -> object:
    """Decode a JSON or YAML document; syntax errors become WorkflowValidationError
    (with the line and column when the parser gives them)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise _syntax_error(fmt, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    if fmt == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise _syntax_error(fmt, f"{exc.msg} at line {exc.lineno} column {exc.colno}") from exc
        except RecursionError as exc:
            raise _syntax_error(fmt, "nested too deeply") from exc
    try:
        return yaml.load(text, Loader=_JsonCompatibleLoader)
    except RecursionError as exc:
        raise _syntax_error(fmt, "nested too deeply") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        raise _syntax_error(fmt, f"{problem}{where}") from exc


def _syntax_error(fmt: str, detail: str) -> WorkflowValidationError:
    message = f"workflow definition is not valid {fmt.upper()}: {detail}"
    return WorkflowValidationError(
        message, errors=[{"taskId": None, "field": None, "message": message}]
    )


def parse_definition_text(text: str | bytes, *, fmt: Literal["json", "yaml"]) -> WorkflowDefinition:
    """:func:`load_definition_text` then :func:`parse_definition`."""
    return parse_definition(load_definition_text(text, fmt=fmt))


def parse_definition(data: object) -> WorkflowDefinition:
    """Validate ``data`` against every rule of the format and return the definition.

    Raises WorkflowValidationError whose ``errors`` lists every problem found as
    ``{"taskId": <task or null>, "field": <camelCase field path>, "message": ...}``.
    """
    if not isinstance(data, dict):
        problem = {"taskId": None, "field": None, "message": "a workflow must be an object"}
        raise WorkflowValidationError("invalid workflow definition", errors=[problem])
    try:
        definition = WorkflowDefinition.model_validate(data)
    except ValidationError as exc:
        raise _invalid(data, [_pydantic_problem(error, data) for error in exc.errors()]) from None
    problems = semantic_problems(definition)
    if problems:
        raise _invalid(data, problems)
    return definition


def _invalid(data: dict[str, Any], problems: list[dict[str, Any]]) -> WorkflowValidationError:
    def describe(problem: dict[str, Any]) -> str:
        where = [f"task {problem['taskId']!r}"] if problem["taskId"] else []
        where += [f"field {problem['field']!r}"] if problem["field"] else []
        return f"{', '.join(where)}: {problem['message']}" if where else problem["message"]

    shown = "; ".join(describe(p) for p in problems[:5])
    more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
    workflow = f" {data['id']!r}" if isinstance(data.get("id"), str) else ""
    count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
    return WorkflowValidationError(
        f"invalid workflow definition{workflow} ({count}): {shown}{more}", errors=problems
    )


_MODEL_AT_DEPTH: dict[tuple[str, ...], type[_FormatModel]] = {
    (): WorkflowDefinition,
    ("tasks",): TaskSpec,
    ("tasks", "branches"): Branch,
    ("taskDefaults",): TaskDefaults,
}


def _pydantic_problem(error: Any, data: dict[str, Any]) -> dict[str, Any]:
    loc = list(error["loc"])
    message = str(error["msg"])
    if error["type"] == "extra_forbidden":
        unknown = str(loc[-1])
        parent = tuple(to_camel(p) for p in loc[:-1] if isinstance(p, str))
        model = _MODEL_AT_DEPTH.get(parent)
        message = f"unknown field {unknown!r}"
        if model is not None:
            known = [f.alias or n for n, f in model.model_fields.items()]
            close = difflib.get_close_matches(unknown, known, n=1, cutoff=0.6)
            message += f" (did you mean {close[0]!r}?)" if close else ""
        loc = [*(to_camel(p) if isinstance(p, str) else p for p in loc[:-1]), unknown]
    else:
        loc = [to_camel(p) if isinstance(p, str) else p for p in loc]
    task_id = None
    if len(loc) >= 2 and loc[0] == "tasks" and isinstance(loc[1], int):
        tasks = data.get("tasks")
        raw = tasks[loc[1]] if isinstance(tasks, list) and loc[1] < len(tasks) else None
        raw_id = raw.get("taskId", raw.get("task_id")) if isinstance(raw, dict) else None
        if isinstance(raw_id, str) and raw_id and loc[2:] != ["taskId"]:
            task_id, loc = raw_id, loc[2:]
    return {"taskId": task_id, "field": format_field(loc) or None, "message": message}


# -- JSON Schema ---------------------------------------------------------------------------

_CONDITION_SCHEMA: dict[str, Any] = {
    "description": "A condition: a comparison on a dotted path, or all/any/not of conditions.",
    "oneOf": [
        {
            "type": "object",
            "properties": {
                "path": {
                    "type": "string",
                    "minLength": 1,
                    "description": "Dotted path from result, input, tasks or session.",
                },
                "op": {"enum": sorted(COMPARISON_OPS | UNARY_OPS)},
                "value": {"description": "Compared with; not used by the unary ops."},
            },
            "required": ["path", "op"],
            "additionalProperties": False,
        },
        *(
            {
                "type": "object",
                "properties": {
                    key: {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/Condition"}}
                },
                "required": [key],
                "additionalProperties": False,
            }
            for key in ("all", "any")
        ),
        {
            "type": "object",
            "properties": {"not": {"$ref": "#/$defs/Condition"}},
            "required": ["not"],
            "additionalProperties": False,
        },
    ],
}


def workflow_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the workflow format, with descriptions.

    ``docs/workflow.schema.json`` is this, written with ``json.dumps(..., indent=2)``.
    """
    schema = WorkflowDefinition.model_json_schema(by_alias=True, mode="validation")
    _tidy(schema)
    schema["$defs"]["Condition"] = _CONDITION_SCHEMA
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Ops-Core workflow definition",
        **{k: v for k, v in schema.items() if k != "title"},
    }


def _tidy(node: object) -> None:
    """Drop generated titles ("Maxretries": the descriptions say more); link conditions."""
    if isinstance(node, dict):
        if isinstance(node.get("title"), str):
            del node["title"]
        if node.pop(_CONDITION_MARKER, False):
            del node["type"]
            node["$ref"] = "#/$defs/Condition"
        for value in node.values():
            _tidy(value)
    elif isinstance(node, list):
        for value in node:
            _tidy(value)
