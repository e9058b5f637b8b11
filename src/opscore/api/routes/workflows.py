"""Workflow definitions: create (JSON or YAML), list, get, delete, and the format's schema."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status

from opscore.api.deps import EngineDep
from opscore.api.engine_schemas import WorkflowList, WorkflowRecord
from opscore.engine.definition import load_definition_text, parse_definition, workflow_json_schema
from opscore.engine.registry import StoredWorkflow
from opscore.errors import InvalidInputError

__all__ = ["router"]

router = APIRouter(prefix="/v1/opscore", tags=["workflows"])

_YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


def _record(stored: StoredWorkflow) -> WorkflowRecord:
    return WorkflowRecord.model_validate(stored.to_doc())


@router.post(
    "/workflows",
    status_code=status.HTTP_201_CREATED,
    response_model=WorkflowRecord,
    summary="Store a workflow definition (JSON, or YAML by Content-Type)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "application/yaml": {"schema": {"type": "string"}},
            },
        }
    },
)
async def create_workflow(
    request: Request, response: Response, engine: EngineDep
) -> WorkflowRecord:
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip()
    body = await request.body()
    if content_type.lower() in _YAML_TYPES:
        data: Any = load_definition_text(body, fmt="yaml")
    elif content_type.lower() in ("application/json", "") or content_type.endswith("+json"):
        data = load_definition_text(body, fmt="json")
    else:
        raise InvalidInputError(
            f"unsupported Content-Type {content_type!r}: send application/json or application/yaml"
        )
    stored, created = await engine.registry.store(parse_definition(data))
    if not created:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = f"/v1/opscore/workflows/{stored.definition.id}"
    return _record(stored)


@router.get("/workflows", response_model=WorkflowList, summary="List workflows (latest versions)")
async def list_workflows(
    engine: EngineDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: str | None = None,
) -> WorkflowList:
    page = await engine.registry.list(limit=limit, cursor=cursor)
    return WorkflowList(items=[_record(s) for s in page.items], next_cursor=page.next_cursor)


@router.get("/workflows/{workflowId}", response_model=WorkflowRecord, summary="Get a workflow")
async def get_workflow(
    workflowId: str,
    engine: EngineDep,
    version: str | None = None,
) -> WorkflowRecord:
    return _record(await engine.registry.get(workflowId, version))


@router.delete(
    "/workflows/{workflowId}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a workflow (all versions, or one)",
)
async def delete_workflow(
    workflowId: str,
    engine: EngineDep,
    version: str | None = None,
) -> Response:
    await engine.registry.delete(workflowId, version)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/schemas/workflow", summary="JSON Schema of the workflow definition format")
async def workflow_schema() -> dict[str, Any]:
    return workflow_json_schema()
