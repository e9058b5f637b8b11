"""Triggering workflows (the seed endpoint and /sessions) and controlling sessions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response, status

from opscore.api.deps import EngineDep
from opscore.api.engine_schemas import (
    SeedTriggerRequest,
    SessionDetail,
    SessionList,
    SessionSummary,
    TriggerRequest,
    TriggerResponse,
)
from opscore.engine.records import Session
from opscore.engine.service import WorkflowEngine
from opscore.models import SessionStatus

__all__ = ["router"]

router = APIRouter(prefix="/v1/opscore", tags=["sessions"])

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Retrying a trigger with the same key returns the same session.",
        max_length=200,
    ),
]


async def _trigger(
    engine: WorkflowEngine,
    body: SeedTriggerRequest,
    agent_id: str | None,
    idempotency_key: str | None,
    response: Response,
) -> TriggerResponse:
    session, created = await engine.trigger(
        workflow_id=body.workflow_definition_id,
        workflow_version=body.workflow_version,
        definition=body.workflow_definition,
        initial_payload=body.initial_payload,
        agent_id=agent_id,
        idempotency_key=idempotency_key,
        start_at=body.start_at,
    )
    response.headers["Location"] = f"/v1/opscore/sessions/{session.session_id}"
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return TriggerResponse(
        session_id=session.session_id,
        workflow_id=session.workflow_id,
        workflow_version=session.workflow_version,
        status=session.status,
        message=_message(session, created),
    )


def _message(session: Session, created: bool) -> str:
    if not created:
        return f"session {session.session_id} was already started with this Idempotency-Key"
    if session.scheduled_at is not None:
        return (
            f"workflow {session.workflow_id!r} scheduled as session {session.session_id}, "
            f"starting at {session.scheduled_at.isoformat()}"
        )
    return f"workflow {session.workflow_id!r} started as session {session.session_id}"


@router.post(
    "/agent/{agentId}/workflow",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TriggerResponse,
    summary="Start a workflow on an agent (contract section 5)",
)
async def trigger_for_agent(
    agentId: str,
    body: SeedTriggerRequest,
    response: Response,
    engine: EngineDep,
    idempotency_key: IdempotencyKey = None,
) -> TriggerResponse:
    return await _trigger(engine, body, agentId, idempotency_key, response)


@router.post(
    "/sessions",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TriggerResponse,
    summary="Start a workflow (optionally on a given agent)",
)
async def create_session(
    body: TriggerRequest,
    response: Response,
    engine: EngineDep,
    idempotency_key: IdempotencyKey = None,
) -> TriggerResponse:
    return await _trigger(engine, body, body.agent_id, idempotency_key, response)


@router.get("/sessions", response_model=SessionList, summary="List sessions")
async def list_sessions(
    engine: EngineDep,
    status_: Annotated[SessionStatus | None, Query(alias="status")] = None,
    agent_id: Annotated[str | None, Query(alias="agentId")] = None,
    workflow_id: Annotated[str | None, Query(alias="workflowId")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: str | None = None,
) -> SessionList:
    page = await engine.list_sessions(
        status=status_, agent_id=agent_id, workflow_id=workflow_id, limit=limit, cursor=cursor
    )
    return SessionList(
        items=[SessionSummary.of(s) for s in page.items], next_cursor=page.next_cursor
    )


@router.get(
    "/sessions/{sessionId}",
    response_model=SessionDetail,
    summary="A session with every task and attempt",
)
async def get_session(sessionId: str, engine: EngineDep) -> SessionDetail:
    session, tasks = await engine.get_session(sessionId)
    return SessionDetail.with_tasks(session, tasks)


def _summary(session: Session) -> SessionSummary:
    return SessionSummary.of(session)


@router.post("/sessions/{sessionId}/cancel", response_model=SessionSummary, summary="Cancel")
async def cancel_session(sessionId: str, engine: EngineDep) -> SessionSummary:
    return _summary(await engine.cancel(sessionId))


@router.post("/sessions/{sessionId}/pause", response_model=SessionSummary, summary="Pause")
async def pause_session(sessionId: str, engine: EngineDep) -> SessionSummary:
    return _summary(await engine.pause(sessionId))


@router.post("/sessions/{sessionId}/resume", response_model=SessionSummary, summary="Resume")
async def resume_session(sessionId: str, engine: EngineDep) -> SessionSummary:
    return _summary(await engine.resume(sessionId))
