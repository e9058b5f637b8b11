"""The one place where errors become HTTP responses: RFC 9457 problem documents.

Every error answer has ``Content-Type: application/problem+json`` and a body like::

    {"type": "https://opscore.dev/problems/agent_not_found", "title": "Not Found",
     "status": 404, "detail": "agent 'a1' is not registered", "code": "agent_not_found",
     "requestId": "4f0c...", "errors": [{"field": "body.state", "message": "..."}]}

``type`` is always :data:`PROBLEM_BASE` + ``code``; ``code`` is the stable identifier
clients switch on (``OpsCoreError.code``); ``errors`` appears only when there are
per-field problems. Status codes follow the exception tree in :mod:`opscore.errors`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope

from opscore.api.auth import authenticate, bearer_scheme, route_requires_api_key
from opscore.errors import (
    AuthenticationError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    NotImplementedFeatureError,
    OpsCoreError,
    PayloadTooLargeError,
    StorageError,
    WebhookSignatureError,
    WorkflowValidationError,
)

__all__ = [
    "PROBLEM_BASE",
    "PROBLEM_MEDIA_TYPE",
    "FieldError",
    "Problem",
    "ProblemResponse",
    "install_problem_handlers",
    "internal_error_response",
    "problem_response",
    "status_for",
]

log = structlog.get_logger("opscore.api")

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE = "https://opscore.dev/problems/"

# Most specific first: the first class in an exception's MRO found here wins.
_STATUS_BY_ERROR: dict[type[OpsCoreError], int] = {
    WorkflowValidationError: 422,
    InvalidInputError: 400,
    AuthenticationError: 401,
    NotFoundError: 404,
    ConflictError: 409,
    PayloadTooLargeError: 413,
    NotImplementedFeatureError: 501,
    StorageError: 503,
}

# Codes for Starlette's own HTTP errors (routing, and the body-size guard).
_CODE_BY_STATUS = {
    400: "bad_request",
    401: "unauthenticated",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


class FieldError(BaseModel):
    """One bad field: where (``body.capabilities[0]``, ``query.limit``) and why.
    Workflow definition errors also name the task (``taskId``; null when the problem
    is not about one task, and then ``field`` may be null too)."""

    field: str | None
    message: str
    taskId: str | None = None


class Problem(BaseModel):
    """An RFC 9457 problem document (OpenAPI schema of every error answer)."""

    type: str = Field(examples=[PROBLEM_BASE + "agent_not_found"])
    title: str = Field(examples=["Not Found"])
    status: int = Field(examples=[404])
    detail: str = Field(examples=["agent 'a1' is not registered"])
    code: str = Field(examples=["agent_not_found"])
    requestId: str | None = None  # the wire spelling
    errors: list[FieldError] | None = None


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_MEDIA_TYPE


def status_for(exc: OpsCoreError) -> int:
    """HTTP status for a domain error (500 for classes the API does not expect)."""
    for cls in type(exc).__mro__:
        status = _STATUS_BY_ERROR.get(cls)
        if status is not None:
            return status
    return 500


def _request_id(scope: Scope) -> str | None:
    state = scope.get("state")
    return state.get("request_id") if isinstance(state, dict) else None


def problem_response(
    *,
    status: int,
    code: str,
    detail: str,
    scope: Scope | None = None,
    errors: Sequence[Mapping[str, Any]] = (),
    headers: Mapping[str, str] | None = None,
) -> ProblemResponse:
    """Build a problem document response."""
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + code,
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
        "requestId": _request_id(scope) if scope is not None else None,
    }
    if errors:
        body["errors"] = [dict(e) for e in errors]
    return ProblemResponse(body, status_code=status, headers=dict(headers or {}))


def internal_error_response(scope: Scope | None = None) -> ProblemResponse:
    """The 500 answer for a bug; the detail never reveals internals."""
    return problem_response(
        status=500,
        code="internal_error",
        detail="the server hit an unexpected error; it has been logged with this requestId",
        scope=scope,
    )


def _field_path(loc: Sequence[int | str]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


async def _opscore_error(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, OpsCoreError)
    status = status_for(exc)
    headers = None
    if isinstance(exc, AuthenticationError) and not isinstance(exc, WebhookSignatureError):
        headers = {"WWW-Authenticate": "Bearer"}
    if status >= 500:
        log.warning("request_failed", code=exc.code, detail=exc.message)
    return problem_response(
        status=status,
        code=exc.code,
        detail=exc.message,
        scope=request.scope,
        errors=exc.errors,
        headers=headers,
    )


async def _validation_error(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, RequestValidationError)
    raw = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in raw):
        # FastAPI parses the body before running dependencies; an unauthenticated caller
        # must still get the 401 and learn nothing about the body.
        if route_requires_api_key(request):
            try:
                authenticate(request, await bearer_scheme(request))
            except AuthenticationError as auth_error:
                return await _opscore_error(request, auth_error)
        first = next(e for e in raw if e.get("type") == "json_invalid")
        reason = (first.get("ctx") or {}).get("error") or first.get("msg", "")
        return problem_response(
            status=400,
            code="malformed_json",
            detail=f"the request body is not valid JSON: {reason}",
            scope=request.scope,
        )
    errors = [{"field": _field_path(e.get("loc", ())), "message": e.get("msg", "")} for e in raw]
    fields = ", ".join(dict.fromkeys(e["field"] for e in errors))
    return problem_response(
        status=422,
        code="validation_error",
        detail=f"the request has invalid fields: {fields}",
        scope=request.scope,
        errors=errors,
    )


async def _http_error(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(status).phrase
    if status == 404 and detail == "Not Found":
        detail = f"no route matches {request.method} {request.url.path}"
    elif status == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
    return problem_response(
        status=status,
        code=_CODE_BY_STATUS.get(status, "http_error"),
        detail=detail,
        scope=request.scope,
        headers=exc.headers,
    )


def install_problem_handlers(app: FastAPI) -> None:
    """Register the handlers turning OpsCoreError, request validation errors and
    Starlette's HTTP errors into problem documents. Unexpected exceptions are turned
    into a 500 problem by :class:`opscore.api.middleware.RequestContextMiddleware`."""
    app.add_exception_handler(OpsCoreError, _opscore_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
