"""Branch conditions: small JSON objects evaluated against a context, never ``eval``.

A condition is either a comparison or a combinator::

    {"path": "result.status", "op": "eq", "value": "ok"}
    {"all": [<condition>, ...]}   {"any": [<condition>, ...]}   {"not": <condition>}

Paths are dotted and resolved by :func:`resolve_path`. Evaluation never raises on data:
a missing path makes every comparison false (``exists``/``not_exists`` test exactly that,
``falsy`` holds for it), and comparing values of incompatible types is false.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeGuard

from opscore.errors import InvalidInputError

__all__ = [
    "COMPARISON_OPS",
    "CONTEXT_ROOTS",
    "UNARY_OPS",
    "condition_problems",
    "evaluate",
    "resolve_path",
]

#: Ops that test the value at ``path`` alone and take no ``value``.
UNARY_OPS: frozenset[str] = frozenset({"exists", "not_exists", "truthy", "falsy"})
#: Ops that compare the value at ``path`` with ``value``.
COMPARISON_OPS: frozenset[str] = frozenset(
    {"eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "contains"}
)
#: First segments a condition path may start with.
CONTEXT_ROOTS: frozenset[str] = frozenset({"result", "input", "tasks", "session"})
_COMBINATORS = ("all", "any", "not")


def resolve_path(context: object, path: str) -> tuple[bool, object]:
    """Look up a dotted ``path`` in ``context``; return ``(found, value)``.

    Numeric segments index lists (``items.0.name``). A key that itself contains dots
    (task ids may) is matched too: at each object the longest run of segments that is a
    key wins. ``found`` is False when any segment is missing; the value is then None.
    """
    segments = path.split(".")
    if not path or any(not segment for segment in segments):
        return False, None
    current = context
    i = 0
    while i < len(segments):
        if isinstance(current, Mapping):
            for end in range(len(segments), i, -1):
                key = ".".join(segments[i:end])
                if key in current:
                    current = current[key]
                    i = end
                    break
            else:
                return False, None
        elif isinstance(current, Sequence) and not isinstance(current, str | bytes):
            segment = segments[i]
            if not segment.isdigit() or int(segment) >= len(current):
                return False, None
            current = current[int(segment)]
            i += 1
        else:
            return False, None
    return True, current


def evaluate(condition: Mapping[str, Any], context: Mapping[str, Any]) -> bool:
    """Whether ``condition`` holds in ``context``.

    Raises InvalidInputError only for a malformed condition (definitions are validated
    with :func:`condition_problems` beforehand, so the engine never sees one).
    """
    problems = _shape_problems(condition)
    if problems:
        where, message = problems[0]
        raise InvalidInputError(f"invalid condition{' at ' + where if where else ''}: {message}")
    return _evaluate(condition, context)


def _evaluate(condition: Mapping[str, Any], context: Mapping[str, Any]) -> bool:
    if "all" in condition:
        return all(_evaluate(c, context) for c in condition["all"])
    if "any" in condition:
        return any(_evaluate(c, context) for c in condition["any"])
    if "not" in condition:
        return not _evaluate(condition["not"], context)
    found, actual = resolve_path(context, condition["path"])
    op = condition["op"]
    if op == "exists":
        return found
    if op == "not_exists":
        return not found
    if op == "truthy":
        return found and bool(actual)
    if op == "falsy":
        return not (found and bool(actual))
    if not found:
        return False
    return _COMPARE[op](actual, condition["value"])


def _json_equal(a: object, b: object) -> bool:
    """Equality as JSON sees it: ``true`` is not ``1``, ``1`` equals ``1.0``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if _is_number(a) and _is_number(b):
        return a == b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if _is_list(a) and _is_list(b):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is not type(b) and not (isinstance(a, str) and isinstance(b, str)):
        return False
    return bool(a == b)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_list(value: object) -> TypeGuard[Sequence[Any]]:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def _ordered(check: Callable[[Any, Any], bool]) -> Callable[[object, object], bool]:
    """Order two numbers or two strings; anything else compares false."""

    def compare(actual: object, expected: object) -> bool:
        if _is_number(actual) and _is_number(expected):
            return check(actual, expected)
        if isinstance(actual, str) and isinstance(expected, str):
            return check(actual, expected)
        return False

    return compare


def _member(actual: object, expected: object) -> bool:
    return _is_list(expected) and any(_json_equal(actual, item) for item in expected)


def _contains(actual: object, expected: object) -> bool:
    if isinstance(actual, str):
        return isinstance(expected, str) and expected in actual
    if isinstance(actual, Mapping):
        return isinstance(expected, str) and expected in actual
    if _is_list(actual):
        return any(_json_equal(item, expected) for item in actual)
    return False


_COMPARE: Mapping[str, Callable[[object, object], bool]] = {
    "eq": _json_equal,
    "ne": lambda a, b: not _json_equal(a, b),
    "gt": _ordered(lambda a, b: a > b),
    "gte": _ordered(lambda a, b: a >= b),
    "lt": _ordered(lambda a, b: a < b),
    "lte": _ordered(lambda a, b: a <= b),
    "in": _member,
    "not_in": lambda a, b: _is_list(b) and not _member(a, b),
    "contains": _contains,
}


def condition_problems(condition: object, *, where: str = "") -> list[tuple[str, str]]:
    """Every problem with a condition's shape, as ``(location, message)`` pairs.

    ``location`` is a dotted/indexed path below the condition (``all[1].op``), prefixed
    with ``where``. An empty list means the condition is well formed.
    """
    return _shape_problems(condition, where)


def _shape_problems(condition: object, where: str = "") -> list[tuple[str, str]]:
    def at(suffix: str) -> str:
        return f"{where}.{suffix}" if where else suffix

    if not isinstance(condition, Mapping):
        return [(where, "a condition must be an object")]
    keys = set(condition)
    combinators = [key for key in _COMBINATORS if key in keys]
    if combinators:
        if len(keys) != 1:
            return [(where, f"'{combinators[0]}' must be the only key of its condition object")]
        key = combinators[0]
        inner = condition[key]
        if key == "not":
            return _shape_problems(inner, at("not"))
        if not isinstance(inner, list) or not inner:
            return [(at(key), f"'{key}' takes a non-empty list of conditions")]
        problems: list[tuple[str, str]] = []
        for index, item in enumerate(inner):
            problems += _shape_problems(item, f"{at(key)}[{index}]")
        return problems
    return _comparison_problems(condition, keys, at)


def _comparison_problems(
    condition: Mapping[str, Any], keys: set[str], at: Callable[[str], str]
) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    unknown = sorted(keys - {"path", "op", "value"})
    if unknown:
        problems.append(
            (at(unknown[0]), f"unknown key {unknown[0]!r} (use path/op/value, all, any or not)")
        )
    path = condition.get("path")
    if not isinstance(path, str) or not path or any(not s for s in path.split(".")):
        problems.append((at("path"), "'path' must be a non-empty dotted string"))
    elif path.split(".")[0] not in CONTEXT_ROOTS:
        roots = ", ".join(sorted(CONTEXT_ROOTS))
        problems.append((at("path"), f"path {path!r} must start with one of: {roots}"))
    op = condition.get("op")
    if op in UNARY_OPS:
        if "value" in condition:
            problems.append((at("value"), f"op {op!r} takes no 'value'"))
    elif op in COMPARISON_OPS:
        if "value" not in condition:
            problems.append((at("value"), f"op {op!r} needs a 'value'"))
        elif op in ("in", "not_in") and not isinstance(condition["value"], list):
            problems.append((at("value"), f"op {op!r} needs a list as 'value'"))
    else:
        ops = ", ".join(sorted(COMPARISON_OPS | UNARY_OPS))
        problems.append((at("op"), f"unknown op {op!r}; use one of: {ops}"))
    return problems
