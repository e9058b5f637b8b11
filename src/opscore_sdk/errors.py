"""The one exception hierarchy of the Ops-Core SDK.

Every error the SDK raises derives from :class:`OpsCoreError`. Errors answered by the
API are built from its RFC 9457 problem documents; transport failures of httpx are
translated at the boundary (``raise ... from exc``)::

    OpsCoreError                 any SDK error (also: an unexpected status or body)
    ├── AuthenticationError      401: missing or wrong API key
    ├── NotFoundError            404: no such agent, workflow, session or task
    ├── ConflictError            409: the request clashes with the current state
    ├── ValidationError          400, 413, 422: invalid input (see ``errors``)
    ├── ServerError              5xx: the server failed (503: storage unavailable)
    ├── OpsCoreConnectionError   the server could not be reached, or timed out
    └── WaitTimeoutError         ``wait()`` gave up before the session finished

Each error carries ``status`` (HTTP status or ``None``), ``code`` (the problem's stable
machine-readable code), ``detail`` (human text), ``request_id`` (from the problem
document or the ``X-Request-ID`` header) and ``errors`` (per-field problems).
"""

from __future__ import annotations

import json
from typing import Any

import httpx

__all__ = [
    "AuthenticationError",
    "ConflictError",
    "NotFoundError",
    "OpsCoreConnectionError",
    "OpsCoreError",
    "ServerError",
    "ValidationError",
    "WaitTimeoutError",
    "error_from_response",
]


class OpsCoreError(Exception):
    """Root of every SDK error.

    Attributes:
        status: HTTP status of the answer, or ``None`` when there was none.
        code: stable snake_case error code (e.g. ``agent_not_found``).
        detail: human-readable explanation.
        request_id: the server's request id, for finding its log lines.
        errors: per-field problems, e.g. ``[{"field": "tasks.0.taskId", "message": ...}]``.
    """

    default_code = "opscore_error"

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.code = code or self.default_code
        self.request_id = request_id
        self.errors: list[dict[str, Any]] = errors or []

    def __str__(self) -> str:
        head = f"{self.status} {self.code}" if self.status is not None else self.code
        line = f"{head}: {self.detail}"
        if self.errors and str(self.errors[0].get("message", "")) not in self.detail:
            line += f" ({_summarise(self.errors)})"
        if self.request_id:
            line += f" [request {self.request_id}]"
        return " ".join(line.split())  # always one line

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, "
            f"detail={self.detail!r}, request_id={self.request_id!r})"
        )


class AuthenticationError(OpsCoreError):
    """401: the API key is missing or wrong."""

    default_code = "unauthenticated"


class NotFoundError(OpsCoreError):
    """404: the agent, workflow, session or task does not exist."""

    default_code = "not_found"


class ConflictError(OpsCoreError):
    """409: the request clashes with the current state (e.g. resume a running session)."""

    default_code = "conflict"


class ValidationError(OpsCoreError):
    """400, 413 or 422: the request was invalid; ``errors`` lists the fields."""

    default_code = "invalid_input"


class ServerError(OpsCoreError):
    """5xx: the server failed; 503 means its storage is unavailable (retried when safe)."""

    default_code = "server_error"


class OpsCoreConnectionError(OpsCoreError):
    """The server could not be reached, the connection broke, or the request timed out."""

    default_code = "connection_error"


class WaitTimeoutError(OpsCoreError):
    """``wait()`` gave up: the session had not finished within ``timeout_s``."""

    default_code = "wait_timeout"


_BY_STATUS: dict[int, type[OpsCoreError]] = {
    400: ValidationError,
    401: AuthenticationError,
    404: NotFoundError,
    409: ConflictError,
    413: ValidationError,
    422: ValidationError,
}


def _error_class(status: int) -> type[OpsCoreError]:
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return ServerError if status >= 500 else OpsCoreError


def _summarise(errors: list[dict[str, Any]], limit: int = 3) -> str:
    parts = []
    for item in errors[:limit]:
        where = ".".join(str(item[k]) for k in ("taskId", "field") if item.get(k) is not None)
        message = str(item.get("message", item))
        parts.append(f"{where}: {message}" if where else message)
    more = len(errors) - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _fastapi_errors(items: list[Any]) -> list[dict[str, Any]]:
    """FastAPI's own ``{"detail": [{"loc": [...], "msg": ...}]}`` as ``{field, message}``."""
    out = []
    for item in items:
        if isinstance(item, dict):
            loc = item.get("loc") or []
            field = ".".join(str(p) for p in loc if p != "body")
            out.append({"field": field, "message": str(item.get("msg", item))})
    return out


def error_from_response(response: httpx.Response) -> OpsCoreError:
    """The SDK error for an error answer, read from its problem document when it has one."""
    status = response.status_code
    try:
        body: Any = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    code: str | None = None
    detail: str | None = None
    errors: list[dict[str, Any]] = []
    request_id = response.headers.get("x-request-id")
    if isinstance(body, dict):
        code = body.get("code") if isinstance(body.get("code"), str) else None
        raw_detail = body.get("detail")
        if isinstance(raw_detail, str):
            detail = raw_detail
        elif isinstance(raw_detail, list):
            errors = _fastapi_errors(raw_detail)
            detail = "request validation failed"
        if detail is None and isinstance(body.get("title"), str):
            detail = body["title"]
        if isinstance(body.get("errors"), list):
            errors = [e for e in body["errors"] if isinstance(e, dict)]
        if isinstance(body.get("requestId"), str):
            request_id = body["requestId"]
    if detail is None:
        text = response.text.strip()[:200] if not isinstance(body, dict) else ""
        detail = text or response.reason_phrase or f"HTTP {status}"
    return _error_class(status)(
        detail, status=status, code=code, request_id=request_id, errors=errors
    )
