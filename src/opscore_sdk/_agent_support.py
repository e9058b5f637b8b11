"""The pieces of the agent helper that do not need the Agent itself: the task context,
reading a MessagePayload, shaping answers and report details."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import JSONResponse

__all__ = [
    "Job",
    "TaskContext",
    "TaskHandler",
    "answer",
    "correlation",
    "generated_id",
    "job_from_message",
    "positional_arity",
    "result_details",
    "url_host",
]

#: A task handler: ``(payload, ctx) -> result`` or ``(payload) -> result``, sync or async.
TaskHandler = Callable[..., Any]

_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.:@-]+")


@dataclass(frozen=True)
class TaskContext:
    """What a handler knows about the task it runs.

    Attributes:
        task_id: Ops-Core's runtime task id (``opscore_task_id``), if sent.
        attempt: the attempt number (``opscore_attempt``; AgentKit drops it).
        session_id: the workflow run (``opscore_session_id`` or ``sessionContext``).
        task_name: the definition's step id (``task_name``).
        agent_id: this agent.
        message: the whole MessagePayload as received.
        logger: a logger whose records carry agent, task and attempt.
    """

    task_id: str | None
    attempt: int | None
    session_id: str | None
    task_name: str | None
    agent_id: str
    message: dict[str, Any] = field(repr=False)
    logger: logging.LoggerAdapter[logging.Logger] = field(repr=False)


@dataclass
class Job:
    """The task being worked on."""

    key: tuple[str, int | None] | None
    context: TaskContext
    payload: dict[str, Any]
    runner: asyncio.Task[None] | None = None


def job_from_message(body: dict[str, Any], agent_id: str, log: logging.Logger) -> Job:
    """The job for a MessagePayload (contract section 2) whose ``payload`` is an object."""
    task_id = body.get("opscore_task_id")
    task_id = task_id if isinstance(task_id, str) and task_id else None
    attempt = body.get("opscore_attempt")
    attempt = attempt if isinstance(attempt, int) and not isinstance(attempt, bool) else None
    session_id = body.get("opscore_session_id")
    context = body.get("sessionContext")
    if not isinstance(session_id, str) and isinstance(context, dict):
        session_id = context.get("sessionId")
    task_name = body.get("task_name")
    ctx = TaskContext(
        task_id=task_id,
        attempt=attempt,
        session_id=session_id if isinstance(session_id, str) else None,
        task_name=task_name if isinstance(task_name, str) else None,
        agent_id=agent_id,
        message=body,
        logger=logging.LoggerAdapter(
            log, {"agent_id": agent_id, "task_id": task_id, "attempt": attempt}
        ),
    )
    key = (task_id, attempt) if task_id is not None else None
    return Job(key=key, context=ctx, payload=body["payload"])


def answer(status: int, outcome: str, detail: str, job: Job | None = None) -> JSONResponse:
    body: dict[str, Any] = {"status": outcome, "detail": detail}
    if job is not None:
        body["agentId"] = job.context.agent_id
        body["opscore_task_id"] = job.context.task_id
    return JSONResponse(body, status_code=status)


def correlation(ctx: TaskContext) -> dict[str, Any]:
    values = {"opscore_task_id": ctx.task_id, "opscore_attempt": ctx.attempt}
    return {k: v for k, v in values.items() if v is not None}


def result_details(value: Any) -> dict[str, Any]:
    """The handler's return value as report details; raises if it is not JSON."""
    details = dict(value) if isinstance(value, Mapping) else {"result": value}
    try:
        json.dumps(details)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"the handler's result is not JSON-serialisable: {exc}") from exc
    return details


def positional_arity(handler: TaskHandler) -> int:
    try:
        parameters = inspect.signature(handler).parameters.values()
    except (TypeError, ValueError):
        return 2
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters):
        return 2
    return sum(1 for p in parameters if p.kind in kinds)


def generated_id(name: str) -> str:
    slug = _ID_UNSAFE.sub("-", name).strip("-._:@")[:100] or "agent"
    return f"{slug}-{uuid.uuid4().hex[:8]}"


def url_host(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host
