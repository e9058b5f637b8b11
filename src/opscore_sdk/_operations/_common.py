"""Helpers shared by the operation modules."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from opscore_sdk.errors import OpsCoreError

__all__ = ["PREFIX", "as_dict", "camel", "none", "page_items", "params", "q"]

PREFIX = "/v1/opscore"


def q(segment: str) -> str:
    """One path segment, percent-encoded (ids may hold ':' or '@')."""
    return quote(segment, safe="")


def params(**values: str | int | None) -> dict[str, str | int]:
    """Query parameters in camelCase, without the ones left at ``None``."""
    return {camel(k): v for k, v in values.items() if v is not None}


def camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part.title() for part in rest)


def as_dict(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise OpsCoreError(f"expected a JSON object, got {type(data).__name__}")
    return data


def none(_: Any) -> None:
    return None


def page_items(page: Any) -> tuple[list[Any], str | None]:
    return list(page.items), page.next_cursor
