"""Operations on sessions (workflow runs) and their tasks."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

from opscore_sdk._core import Call, Flow, Pager, Sleep
from opscore_sdk._operations._common import PREFIX, page_items, params, q
from opscore_sdk.errors import WaitTimeoutError
from opscore_sdk.models import ResultAccepted, Session, SessionPage, Task, TaskPage, TriggerResult

__all__ = [
    "cancel_session",
    "dead_letters",
    "get_session",
    "get_task",
    "iter_sessions",
    "iter_tasks",
    "list_sessions",
    "list_tasks",
    "pause_session",
    "resume_session",
    "retry_task",
    "submit_result",
    "trigger",
    "trigger_workflow",
    "wait",
]


# -- sessions -------------------------------------------------------------------------


def _trigger_body(
    workflow_id: str | None,
    definition: Mapping[str, Any] | None,
    version: str | None,
    initial_payload: Mapping[str, Any] | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if workflow_id is not None:
        body["workflowDefinitionId"] = workflow_id
    if definition is not None:
        body["workflowDefinition"] = dict(definition)
    if version is not None:
        body["workflowVersion"] = version
    if initial_payload is not None:
        body["initialPayload"] = dict(initial_payload)
    return body


def trigger(
    workflow_id: str | None = None,
    *,
    definition: Mapping[str, Any] | None = None,
    version: str | None = None,
    initial_payload: Mapping[str, Any] | None = None,
    agent_id: str | None = None,
    idempotency_key: str | None = None,
) -> Call[TriggerResult]:
    """Start a workflow run (a session).

    Args:
        workflow_id: id of a stored workflow (or give ``definition``; exactly one).
        definition: an inline workflow definition.
        version: the stored version to run (default: the latest).
        initial_payload: the run's input, available to task parameters.
        agent_id: run the tasks on this agent (``routing: session``).
        idempotency_key: a retry with the same key returns the same session. A fresh
            uuid4 is generated when omitted, which makes the trigger safe to retry.
    """
    body = _trigger_body(workflow_id, definition, version, initial_payload)
    if agent_id is not None:
        body["agentId"] = agent_id
    return Call(
        method="POST",
        path=f"{PREFIX}/sessions",
        json_body=body,
        headers={"Idempotency-Key": idempotency_key or str(uuid.uuid4())},
        parse=TriggerResult.model_validate,
        idempotent=True,
    )


def trigger_workflow(
    agent_id: str,
    workflow_definition_id: str | None = None,
    workflow_definition: Mapping[str, Any] | None = None,
    initial_payload: Mapping[str, Any] | None = None,
    *,
    workflow_version: str | None = None,
    idempotency_key: str | None = None,
) -> Call[TriggerResult]:
    """Start a workflow on an agent: the seed's call (``POST /agent/{agentId}/workflow``).

    Same as ``trigger(workflow_definition_id, definition=workflow_definition,
    initial_payload=..., agent_id=agent_id)``; also sends an Idempotency-Key.
    """
    body = _trigger_body(
        workflow_definition_id, workflow_definition, workflow_version, initial_payload
    )
    return Call(
        method="POST",
        path=f"{PREFIX}/agent/{q(agent_id)}/workflow",
        json_body=body,
        headers={"Idempotency-Key": idempotency_key or str(uuid.uuid4())},
        parse=TriggerResult.model_validate,
        idempotent=True,
    )


def list_sessions(
    *,
    status: str | None = None,
    agent_id: str | None = None,
    workflow_id: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Call[SessionPage]:
    """One page of sessions (newest first), optionally filtered. Without tasks."""
    return Call(
        method="GET",
        path=f"{PREFIX}/sessions",
        params=params(
            status=status, agent_id=agent_id, workflow_id=workflow_id, limit=limit, cursor=cursor
        ),
        parse=SessionPage.model_validate,
        idempotent=True,
    )


def iter_sessions(
    *,
    status: str | None = None,
    agent_id: str | None = None,
    workflow_id: str | None = None,
    page_size: int = 100,
) -> Pager[Session]:
    """Every session (filtered like ``list_sessions``), fetching pages as needed."""
    return Pager(
        fetch=lambda cursor: list_sessions(
            status=status,
            agent_id=agent_id,
            workflow_id=workflow_id,
            limit=page_size,
            cursor=cursor,
        ),
        items=page_items,
    )


def get_session(session_id: str) -> Call[Session]:
    """A session with every task and attempt. Raises NotFoundError."""
    return Call(
        method="GET",
        path=f"{PREFIX}/sessions/{q(session_id)}",
        parse=Session.model_validate,
        idempotent=True,
    )


def _control(session_id: str, action: str) -> Call[Session]:
    return Call(
        method="POST",
        path=f"{PREFIX}/sessions/{q(session_id)}/{action}",
        parse=Session.model_validate,
    )


def cancel_session(session_id: str) -> Call[Session]:
    """Cancel a session. Raises ConflictError if it already ended."""
    return _control(session_id, "cancel")


def pause_session(session_id: str) -> Call[Session]:
    """Pause a running session (tasks in flight finish; no new ones start).

    Raises ConflictError unless it is running."""
    return _control(session_id, "pause")


def resume_session(session_id: str) -> Call[Session]:
    """Resume a paused session. Raises ConflictError unless it is paused."""
    return _control(session_id, "resume")


def wait(session_id: str, timeout_s: float = 300.0, poll_interval_s: float = 1.0) -> Flow[Session]:
    """Poll a session until it is completed, failed or cancelled, and return it.

    Args:
        session_id: the session to watch.
        timeout_s: give up after this many seconds (raises WaitTimeoutError).
        poll_interval_s: seconds between polls.

    Returns the final session with its tasks. A ``failed`` session is returned, not
    raised: inspect ``session.status`` and ``session.error``.
    """
    if timeout_s < 0 or poll_interval_s <= 0:
        raise ValueError("timeout_s must not be negative and poll_interval_s must be positive")
    deadline = time.monotonic() + timeout_s
    while True:
        session: Session = yield get_session(session_id)
        if session.is_final:
            return session
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WaitTimeoutError(
                f"session {session_id} is still {session.status!r} after {timeout_s:g}s"
            )
        yield Sleep(min(poll_interval_s, remaining))


# -- tasks ----------------------------------------------------------------------------


def list_tasks(
    *,
    status: str | None = None,
    session_id: str | None = None,
    agent_id: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Call[TaskPage]:
    """One page of tasks, optionally filtered (``status="dead"``: dead letters)."""
    return Call(
        method="GET",
        path=f"{PREFIX}/tasks",
        params=params(
            status=status, session_id=session_id, agent_id=agent_id, limit=limit, cursor=cursor
        ),
        parse=TaskPage.model_validate,
        idempotent=True,
    )


def iter_tasks(
    *,
    status: str | None = None,
    session_id: str | None = None,
    agent_id: str | None = None,
    page_size: int = 100,
) -> Pager[Task]:
    """Every task (filtered like ``list_tasks``), fetching pages as needed."""
    return Pager(
        fetch=lambda cursor: list_tasks(
            status=status,
            session_id=session_id,
            agent_id=agent_id,
            limit=page_size,
            cursor=cursor,
        ),
        items=page_items,
    )


def get_task(task_id: str) -> Call[Task]:
    """A task with its attempts, by runtime id (``<sessionId>:<taskId>``). NotFoundError."""
    return Call(
        method="GET",
        path=f"{PREFIX}/tasks/{q(task_id)}",
        parse=Task.model_validate,
        idempotent=True,
    )


def dead_letters(
    *,
    session_id: str | None = None,
    agent_id: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Call[TaskPage]:
    """One page of dead letters: tasks whose retries are exhausted (status ``dead``)."""
    return list_tasks(
        status="dead", session_id=session_id, agent_id=agent_id, limit=limit, cursor=cursor
    )


def retry_task(task_id: str) -> Call[Task]:
    """Re-run a dead task (its session resumes). Raises ConflictError unless it is dead."""
    return Call(method="POST", path=f"{PREFIX}/tasks/{q(task_id)}/retry", parse=Task.model_validate)


def submit_result(
    task_id: str,
    status: str,
    *,
    result: Mapping[str, Any] | None = None,
    error: str | None = None,
    attempt: int | None = None,
) -> Call[ResultAccepted]:
    """Report a task's outcome directly instead of through state reports.

    Args:
        task_id: runtime task id.
        status: ``"completed"`` or ``"failed"``.
        result: the result object (completed).
        error: what went wrong (failed).
        attempt: the attempt this outcome belongs to (ignored if it is stale).

    Raises ConflictError if the task is not in flight.
    """
    body: dict[str, Any] = {"status": status}
    if result is not None:
        body["result"] = dict(result)
    if error is not None:
        body["error"] = error
    if attempt is not None:
        body["attempt"] = attempt
    return Call(
        method="POST",
        path=f"{PREFIX}/tasks/{q(task_id)}/result",
        json_body=body,
        parse=ResultAccepted.model_validate,
    )
