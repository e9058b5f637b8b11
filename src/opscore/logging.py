"""Structured logs: every line Ops-Core writes is one JSON object.

Our own code logs through structlog (``structlog.get_logger(...)``); the standard
library's loggers (uvicorn, asyncio, ...) are routed through the same processors by
:class:`structlog.stdlib.ProcessorFormatter`, so a line looks the same whoever wrote it::

    {"event": "request", "method": "GET", "path": "/health", "status": 200,
     "durationMs": 0.41, "requestId": "4f0c...", "level": "info",
     "logger": "opscore.access", "timestamp": "2026-11-24T11:23:12.694Z"}

Correlation fields (:data:`CORRELATION_FIELDS`) are bound with
:func:`bind_correlation` (structlog contextvars) and appear on every line logged
while they are bound, e.g. ``requestId`` for the whole of an HTTP request.

Nothing happens at import time: call :func:`configure_logging` (the CLI and the app
factory do).
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog
from structlog.typing import Processor

__all__ = [
    "CORRELATION_FIELDS",
    "LOG_LEVELS",
    "bind_correlation",
    "configure_logging",
    "logging_configured",
]

#: Names of the correlation fields, as they appear in log lines.
CORRELATION_FIELDS = ("requestId", "agentId", "sessionId", "taskId")

LOG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class _JsonLinesHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Our handler on the root logger. Without an explicit stream it writes to the
    *current* ``sys.stderr`` at each record, so a test runner swapping stderr never
    leaves it holding a closed file."""

    def __init__(self, stream: TextIO | None) -> None:
        super().__init__(stream if stream is not None else sys.stderr)
        self._follow_stderr = stream is None

    def emit(self, record: logging.LogRecord) -> None:
        if self._follow_stderr:
            self.stream = sys.stderr
        super().emit(record)


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def configure_logging(level: str = "info", *, stream: TextIO | None = None) -> None:
    """Send every log line, as JSON, to ``stream`` (default: the current stderr).

    ``level`` is one of debug, info, warning, error. Safe to call again: the previous
    Ops-Core handler is replaced, other handlers (a test runner's) are left alone.
    Uvicorn's own access log is silenced because the API writes its own access line.
    """
    levelno = LOG_LEVELS[level.lower()]
    shared = _shared_processors()
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Level and stream live on the stdlib side, so cached loggers stay correct
        # when this function runs again.
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
    )
    handler = _JsonLinesHandler(stream)
    handler.setFormatter(formatter)

    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _JsonLinesHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(levelno)

    # Uvicorn's loggers: no handlers of their own, everything reaches ours.
    for name in ("uvicorn", "uvicorn.error"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
        uvicorn_logger.setLevel(logging.NOTSET)
    # httpx logs every request it sends at info: one line per task dispatched is noise
    # (the engine logs the dispatch itself with its correlation ids).
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(max(levelno, logging.WARNING))
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
    access.disabled = True


def logging_configured() -> bool:
    """True once :func:`configure_logging` has installed its handler."""
    return any(isinstance(h, _JsonLinesHandler) for h in logging.getLogger().handlers)


def bind_correlation(**fields: Any) -> dict[str, Any]:
    """Bind correlation fields (``requestId=...``, ``agentId=...``) to every log line of
    the current context; ``None`` values are skipped. Returns the tokens for
    :func:`structlog.contextvars.reset_contextvars`."""
    return dict(
        structlog.contextvars.bind_contextvars(**{k: v for k, v in fields.items() if v is not None})
    )
