"""Per-request plumbing as one pure ASGI middleware (no BaseHTTPMiddleware overhead):

* a request id: ``X-Request-ID`` when it is sane (<= 128 chars of ``[A-Za-z0-9._-]``),
  else a new uuid4 hex; echoed in the response and bound into every log line;
* the body-size limit: a ``Content-Length`` over the limit is refused before the app
  runs; a chunked body is counted as it streams and cut off once over the limit;
* one access log line per request (method, path, status, durationMs, requestId, and
  agentId / sessionId / taskId when the path names one);
* the last line of defence: an unexpected exception becomes a logged 500 problem.
"""

from __future__ import annotations

import re
import time
import uuid

import structlog
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from opscore.api.problems import internal_error_response, problem_response
from opscore.logging import bind_correlation

__all__ = ["REQUEST_ID_HEADER", "RequestContextMiddleware"]

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_HEADER_RAW = REQUEST_ID_HEADER.lower().encode()
_SANE_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._-]{1,128}$")
_ID_IN_PATH = re.compile(r"^/v1/opscore/(agents?|sessions|tasks)/([^/]+)")
_ID_FIELD = {"agent": "agentId", "agents": "agentId", "sessions": "sessionId", "tasks": "taskId"}

access_log = structlog.get_logger("opscore.access")
log = structlog.get_logger("opscore.api")


class BodyTooLargeError(StarletteHTTPException):
    """Raised from ``receive`` when a streamed body passes the limit; it is an
    HTTPException so FastAPI's body parsing re-raises it unchanged (-> 413 problem)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than the limit of {limit} bytes")


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


class RequestContextMiddleware:
    """See the module docstring. ``max_body_bytes``: largest accepted request body."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        raw_id = _header(scope, _REQUEST_ID_HEADER_RAW)
        request_id = (
            raw_id.decode()
            if raw_id is not None and _SANE_REQUEST_ID.match(raw_id)
            else uuid.uuid4().hex
        )
        scope.setdefault("state", {})["request_id"] = request_id
        path: str = scope["path"]
        match = _ID_IN_PATH.match(path)
        path_id = {_ID_FIELD[match.group(1)]: match.group(2)} if match else {}
        # Routes may bind more fields (agentId, sessionId); restore the caller's context
        # afterwards, which matters when the app runs in the caller's task (tests).
        outer_context = structlog.contextvars.get_contextvars()
        bind_correlation(requestId=request_id, **path_id)
        status = 500
        response_started = False
        id_header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        limit = self.max_body_bytes
        received = 0

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLargeError(limit)
            return message

        try:
            declared = _header(scope, b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                response = problem_response(
                    status=413,
                    code="payload_too_large",
                    detail=f"the request body ({int(declared)} bytes) is larger than the "
                    f"limit of {limit} bytes",
                    scope=scope,
                )
                await response(scope, receive, send_with_id)
            else:
                try:
                    await self.app(scope, receive_limited, send_with_id)
                except BodyTooLargeError as exc:  # raised outside the exception handlers
                    if response_started:
                        raise
                    response = problem_response(
                        status=413, code="payload_too_large", detail=str(exc.detail), scope=scope
                    )
                    await response(scope, receive, send_with_id)
        except Exception:
            # A bug. Log it with its traceback, answer a bare 500 problem (never the
            # exception's text), and do not re-raise: the answer is complete.
            log.exception("unhandled_error", method=scope["method"], path=path)
            if response_started:
                raise  # too late for a problem document: let the server drop the connection
            await internal_error_response(scope)(scope, receive, send_with_id)
        finally:
            access_log.info(
                "request",
                method=scope["method"],
                path=path,
                status=status,
                durationMs=round((time.perf_counter() - started) * 1000, 2),
            )
            structlog.contextvars.clear_contextvars()
            if outer_context:
                structlog.contextvars.bind_contextvars(**outer_context)
