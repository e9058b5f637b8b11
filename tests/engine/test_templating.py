"""``${...}`` parameter templating and branch conditions (the two small expression parts)."""

from __future__ import annotations

from typing import Any

import pytest

from opscore.engine.conditions import condition_problems, evaluate, resolve_path
from opscore.engine.templating import render_parameters, template_references
from opscore.errors import InvalidInputError, TemplateError

CONTEXT: dict[str, Any] = {
    "input": {"url": "http://x", "count": 3, "flags": {"fast": True}, "tags": ["a", "b"]},
    "tasks": {
        "fetch": {"result": {"text": "hello", "size": 5, "items": [{"id": 7}], "none": None}},
        "step.1": {"result": {"v": 1.5}},
    },
    "session": {"id": "s-1", "agentId": "agent-9"},
}


# -- templating -----------------------------------------------------------------------------


def test_exact_reference_keeps_the_json_type() -> None:
    rendered = render_parameters(
        {
            "count": "${input.count}",
            "flags": "${input.flags}",
            "tags": "${input.tags}",
            "first": "${tasks.fetch.result.items.0.id}",
            "none": "${tasks.fetch.result.none}",
            "all": "${input}",
            "spaced": "${ input.count }",
        },
        CONTEXT,
    )
    assert rendered == {
        "count": 3,
        "flags": {"fast": True},
        "tags": ["a", "b"],
        "first": 7,
        "none": None,
        "all": CONTEXT["input"],
        "spaced": 3,
    }


def test_rendered_values_are_copies() -> None:
    rendered = render_parameters({"flags": "${input.flags}"}, CONTEXT)
    rendered["flags"]["fast"] = False
    assert CONTEXT["input"]["flags"] == {"fast": True}


def test_interpolation_inside_longer_strings() -> None:
    rendered = render_parameters(
        {
            "s": "url=${input.url}",
            "n": "n=${input.count}!",
            "obj": "f=${input.flags}",
            "list": "${input.tags}${input.count}",
            "null": "v:${tasks.fetch.result.none}",
            "session": "${session.id}/${session.agentId}",
        },
        CONTEXT,
    )
    assert rendered == {
        "s": "url=http://x",
        "n": "n=3!",
        "obj": 'f={"fast":true}',
        "list": '["a","b"]3',
        "null": "v:null",
        "session": "s-1/agent-9",
    }


def test_nested_structures_and_non_strings() -> None:
    params = {"a": [{"b": "${input.count}"}, 4, None, True], "c": {"d": {"e": "${input.url}"}}}
    assert render_parameters(params, CONTEXT) == {
        "a": [{"b": 3}, 4, None, True],
        "c": {"d": {"e": "http://x"}},
    }


def test_task_ids_with_dots() -> None:
    assert render_parameters({"v": "${tasks.step.1.result.v}"}, CONTEXT) == {"v": 1.5}


def test_escape_gives_a_literal_dollar_brace() -> None:
    rendered = render_parameters(
        {"a": "$${input.url}", "b": "cost: $5 and $${x} ${input.count}", "c": "$${"}, CONTEXT
    )
    assert rendered == {"a": "${input.url}", "b": "cost: $5 and ${x} 3", "c": "${"}


def test_strings_without_references_are_untouched() -> None:
    params = {"a": "plain", "b": "$ {x}", "c": "}", "d": "${"[:1]}
    assert render_parameters(params, CONTEXT) == params


@pytest.mark.parametrize(
    ("value", "reference"),
    [
        ("${input.missing}", "input.missing"),
        ("x ${tasks.fetch.result.items.3.id}", "tasks.fetch.result.items.3.id"),
        ("${tasks.other.result}", "tasks.other.result"),
        ("${input.url.deeper}", "input.url.deeper"),
    ],
)
def test_missing_value_names_parameter_and_reference(value: str, reference: str) -> None:
    with pytest.raises(TemplateError) as caught:
        render_parameters({"outer": {"p": [value]}}, CONTEXT)
    assert f"${{{reference}}}" in caught.value.message
    assert "outer.p[0]" in caught.value.message
    assert caught.value.code == "template_error"
    assert isinstance(caught.value, InvalidInputError)


@pytest.mark.parametrize("value", ["${", "a ${input.x", "${}", "${input..x}", "${bad root}"])
def test_malformed_references_raise(value: str) -> None:
    with pytest.raises(TemplateError):
        render_parameters({"p": value}, CONTEXT)
    with pytest.raises(TemplateError):
        template_references({"p": value})


def test_template_references_lists_each_once_in_order() -> None:
    value = {
        "a": "${input.x} and ${tasks.t.result.y}",
        "b": ["${input.x}", {"c": "${session.id}"}, 3],
        "d": "$${input.not_a_ref}",
    }
    assert template_references(value) == ["input.x", "tasks.t.result.y", "session.id"]
    assert template_references("no refs") == []


# -- paths -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("input.count", (True, 3)),
        ("input.tags.1", (True, "b")),
        ("input.tags.2", (False, None)),
        ("input.tags.x", (False, None)),
        ("input.count.x", (False, None)),
        ("tasks.fetch.result.none", (True, None)),
        ("tasks.step.1.result.v", (True, 1.5)),
        ("nothing", (False, None)),
        ("", (False, None)),
        ("input..count", (False, None)),
    ],
)
def test_resolve_path(path: str, expected: tuple[bool, object]) -> None:
    assert resolve_path(CONTEXT, path) == expected


# -- conditions --------------------------------------------------------------------------------

RESULT: dict[str, Any] = {
    "status": "ok",
    "n": 5,
    "ratio": 0.5,
    "flag": False,
    "zero": 0,
    "empty": [],
    "tags": ["x", "y"],
    "meta": {"k": 1},
    "text": "hello world",
    "nothing": None,
}
SCOPE = {**CONTEXT, "result": RESULT}


@pytest.mark.parametrize(
    ("path", "op", "value", "expected"),
    [
        ("result.status", "eq", "ok", True),
        ("result.status", "eq", "OK", False),
        ("result.n", "eq", 5.0, True),
        ("result.zero", "eq", False, False),  # JSON: 0 is not false
        ("result.flag", "eq", False, True),
        ("result.tags", "eq", ["x", "y"], True),
        ("result.meta", "eq", {"k": 1}, True),
        ("result.meta", "eq", {"k": True}, False),
        ("result.nothing", "eq", None, True),
        ("result.status", "ne", "bad", True),
        ("result.status", "ne", "ok", False),
        ("result.n", "ne", "5", True),
        ("result.n", "gt", 4, True),
        ("result.n", "gt", 5, False),
        ("result.n", "gte", 5, True),
        ("result.ratio", "lt", 1, True),
        ("result.ratio", "lte", 0.5, True),
        ("result.status", "gt", "a", True),  # strings order too
        ("result.n", "gt", "4", False),  # incompatible types: false, no exception
        ("result.status", "lt", 10, False),
        ("result.flag", "lt", 1, False),  # booleans are not numbers
        ("result.meta", "gte", {"k": 0}, False),
        ("result.status", "in", ["ok", "fine"], True),
        ("result.status", "in", ["bad"], False),
        ("result.n", "in", [True, 5], True),
        ("result.status", "not_in", ["bad"], True),
        ("result.status", "not_in", ["ok"], False),
        ("result.tags", "contains", "x", True),
        ("result.tags", "contains", "z", False),
        ("result.text", "contains", "world", True),
        ("result.text", "contains", 3, False),
        ("result.meta", "contains", "k", True),
        ("result.n", "contains", 5, False),
        ("input.flags.fast", "eq", True, True),
        ("tasks.fetch.result.size", "gte", 5, True),
        ("session.agentId", "eq", "agent-9", True),
    ],
)
def test_comparison_ops(path: str, op: str, value: object, expected: bool) -> None:
    assert evaluate({"path": path, "op": op, "value": value}, SCOPE) is expected


@pytest.mark.parametrize("op", ["eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "contains"])
def test_missing_path_makes_every_comparison_false(op: str) -> None:
    value: object = [1] if op in ("in", "not_in") else 1
    assert evaluate({"path": "result.absent.deep", "op": op, "value": value}, SCOPE) is False


@pytest.mark.parametrize(
    ("path", "op", "expected"),
    [
        ("result.status", "exists", True),
        ("result.nothing", "exists", True),  # present with a null value
        ("result.absent", "exists", False),
        ("result.absent", "not_exists", True),
        ("result.status", "not_exists", False),
        ("result.status", "truthy", True),
        ("result.zero", "truthy", False),
        ("result.empty", "truthy", False),
        ("result.absent", "truthy", False),
        ("result.flag", "falsy", True),
        ("result.nothing", "falsy", True),
        ("result.absent", "falsy", True),
        ("result.tags", "falsy", False),
    ],
)
def test_unary_ops(path: str, op: str, expected: bool) -> None:
    assert evaluate({"path": path, "op": op}, SCOPE) is expected


def test_combinators() -> None:
    ok = {"path": "result.status", "op": "eq", "value": "ok"}
    bad = {"path": "result.status", "op": "eq", "value": "bad"}
    assert evaluate({"all": [ok, ok]}, SCOPE) is True
    assert evaluate({"all": [ok, bad]}, SCOPE) is False
    assert evaluate({"any": [bad, ok]}, SCOPE) is True
    assert evaluate({"any": [bad, bad]}, SCOPE) is False
    assert evaluate({"not": bad}, SCOPE) is True
    assert evaluate({"not": {"all": [ok, {"not": ok}]}}, SCOPE) is True


def test_malformed_condition_raises_a_domain_error() -> None:
    with pytest.raises(InvalidInputError, match="unknown op"):
        evaluate({"path": "result.x", "op": "approx", "value": 1}, SCOPE)


@pytest.mark.parametrize(
    ("condition", "where"),
    [
        ("x", ""),
        ({"all": []}, "all"),
        ({"any": "x"}, "any"),
        ({"all": [{"path": "result.a", "op": "exists"}], "any": []}, ""),
        ({"not": {"path": "", "op": "exists"}}, "not.path"),
        ({"path": "result.a", "op": "exists", "value": 1}, "value"),
        ({"path": "result.a", "op": "eq", "valu": 1}, "valu"),
        ({"path": "foo.a", "op": "truthy"}, "path"),
        ({"path": "result.a", "op": "not_in", "value": "ab"}, "value"),
    ],
)
def test_condition_problems_locate_the_fault(condition: object, where: str) -> None:
    problems = condition_problems(condition)
    assert problems
    assert where in [location for location, _ in problems]


def test_well_formed_condition_has_no_problems() -> None:
    condition = {
        "any": [
            {"path": "result.a", "op": "in", "value": [1, 2]},
            {"not": {"path": "input.b", "op": "falsy"}},
        ]
    }
    assert condition_problems(condition) == []
