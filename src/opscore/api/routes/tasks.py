"""Tasks: listing (dead letters included), detail, results posted by agents, re-runs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, status

from opscore.api.deps import EngineDep
from opscore.api.engine_schemas import TaskList, TaskResultRequest
from opscore.engine.records import Task, TaskStatus

__all__ = ["router"]

router = APIRouter(prefix="/v1/opscore", tags=["tasks"])


@router.get("/tasks", response_model=TaskList, summary="List tasks (status=dead: dead letters)")
async def list_tasks(
    engine: EngineDep,
    status_: Annotated[TaskStatus | None, Query(alias="status")] = None,
    session_id: Annotated[str | None, Query(alias="sessionId")] = None,
    agent_id: Annotated[str | None, Query(alias="agentId")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: str | None = None,
) -> TaskList:
    page = await engine.list_tasks(
        status=status_, session_id=session_id, agent_id=agent_id, limit=limit, cursor=cursor
    )
    return TaskList(items=page.items, next_cursor=page.next_cursor)


@router.get("/tasks/{taskId}", response_model=Task, summary="A task with its attempts")
async def get_task(taskId: str, engine: EngineDep) -> Task:
    return await engine.get_task(taskId)


@router.post(
    "/tasks/{taskId}/result",
    status_code=status.HTTP_202_ACCEPTED,
    summary="An agent reports its task's outcome",
)
async def submit_result(
    taskId: str,
    body: TaskResultRequest,
    engine: EngineDep,
) -> dict[str, Any]:
    task = await engine.submit_result(
        taskId, status=body.status, result=body.result, error=body.error, attempt=body.attempt
    )
    return {"status": "accepted", "taskId": task.id, "taskStatus": task.status}


@router.post(
    "/tasks/{taskId}/retry",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Task,
    summary="Re-run a dead letter",
)
async def retry_task(taskId: str, engine: EngineDep) -> Task:
    return await engine.retry_dead(taskId)
