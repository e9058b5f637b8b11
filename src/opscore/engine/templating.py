"""``${...}`` references in task parameters, rendered just before a task is queued.

Syntax (strings only, anywhere inside nested objects and lists)::

    ${input.a.b}                  the workflow's input (initialPayload)
    ${tasks.step_1.result.x}      an earlier task's result
    ${session.id} ${session.agentId}
    $${                           a literal "${"

A string that is exactly one reference becomes the referenced value with its JSON type;
inside a longer string the value is interpolated (strings as they are, anything else as
compact JSON). A reference to a missing value raises :class:`~opscore.errors.TemplateError`.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from opscore.engine.conditions import resolve_path
from opscore.errors import TemplateError

__all__ = [
    "TEMPLATE_ROOTS",
    "iter_strings",
    "render_parameters",
    "render_value",
    "template_references",
]

#: What a reference may start with: the keys of the engine's rendering context.
TEMPLATE_ROOTS: frozenset[str] = frozenset({"input", "tasks", "session"})
# `$${` (escape), `${...}` (reference) or a `${` that is never closed.
_TOKEN = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_REFERENCE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_-]+)*")


@dataclass(frozen=True, slots=True)
class _Ref:
    path: str


def _scan(text: str) -> list[str | _Ref]:
    """Split ``text`` into literal strings and references; raise on a malformed one."""
    parts: list[str | _Ref] = []
    literal: list[str] = []
    position = 0
    for match in _TOKEN.finditer(text):
        literal.append(text[position : match.start()])
        position = match.end()
        token = match.group(0)
        if token == "$${":
            literal.append("${")
            continue
        if token == "${":
            raise TemplateError(f"unclosed '${{' in {text!r} (write '$${{' for a literal '${{')")
        path = (match.group(1) or "").strip()
        _check_reference(path, text)
        if any(literal):
            parts.append("".join(literal))
        literal = []
        parts.append(_Ref(path))
    literal.append(text[position:])
    if any(literal):
        parts.append("".join(literal))
    return parts


def _check_reference(path: str, text: str) -> None:
    if not path:
        raise TemplateError(f"empty reference '${{}}' in {text!r}")
    if not _REFERENCE.fullmatch(path):
        raise TemplateError(
            f"malformed reference '${{{path}}}' in {text!r}: use dotted names such as "
            "${input.a.b} or ${tasks.step_1.result.x}"
        )
    root = path.split(".")[0]
    if root not in TEMPLATE_ROOTS:
        raise TemplateError(
            f"reference '${{{path}}}' in {text!r} must start with input, tasks or session"
        )


def iter_strings(value: object, location: str = "") -> Iterator[tuple[str, str]]:
    """Yield ``(location, string)`` for every string inside nested dicts and lists.

    Locations read like ``message`` or ``items[0].name``, prefixed with ``location``.
    """
    if isinstance(value, str):
        yield location, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from iter_strings(item, f"{location}.{key}" if location else str(key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from iter_strings(item, f"{location}[{index}]")


def template_references(value: object) -> list[str]:
    """The dotted references (``input.a``, ``tasks.x.result``) found in ``value``.

    Walks nested dicts and lists; each reference is listed once, in order of appearance.
    Raises TemplateError for a malformed ``${...}``.
    """
    found: dict[str, None] = {}
    for _, text in iter_strings(value):
        if "${" in text:
            for part in _scan(text):
                if isinstance(part, _Ref):
                    found.setdefault(part.path)
    return list(found)


def render_parameters(parameters: Mapping[str, Any], context: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``parameters`` with every reference replaced from ``context``.

    ``context`` is ``{"input": ..., "tasks": {taskId: {"result": ...}}, "session": {...}}``.
    Raises TemplateError naming the parameter and the reference when a value is missing
    or a reference is malformed.
    """
    return {key: render_value(item, context, str(key)) for key, item in parameters.items()}


def render_value(value: object, context: Mapping[str, Any], location: str = "") -> Any:
    """Render one parameter value (see :func:`render_parameters`)."""
    if isinstance(value, str):
        return _render_string(value, context, location)
    if isinstance(value, Mapping):
        return {
            key: render_value(item, context, f"{location}.{key}" if location else str(key))
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [render_value(item, context, f"{location}[{i}]") for i, item in enumerate(value)]
    return value


def _render_string(text: str, context: Mapping[str, Any], location: str) -> Any:
    if "${" not in text:
        return text
    try:
        parts = _scan(text)
    except TemplateError as exc:
        raise TemplateError(f"parameter {location!r}: {exc.message}") from exc
    values = [part if isinstance(part, str) else _lookup(part, context, location) for part in parts]
    if len(parts) == 1 and isinstance(parts[0], _Ref):
        return copy.deepcopy(values[0])
    return "".join(v if isinstance(v, str) else _compact_json(v) for v in values)


def _lookup(ref: _Ref, context: Mapping[str, Any], location: str) -> Any:
    found, value = resolve_path(context, ref.path)
    if not found:
        hint = ""
        if ref.path.startswith("tasks."):
            hint = " (has that task completed, and does its result have that field?)"
        raise TemplateError(f"parameter {location!r}: reference ${{{ref.path}}} has no value{hint}")
    return value


def _compact_json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
