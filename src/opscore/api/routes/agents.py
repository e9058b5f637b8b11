"""The agent registry: ``/v1/opscore/agents`` (register, list, get, deregister, history)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from opscore.api.deps import LifecycleDep
from opscore.api.schemas import AgentList, HistoryList, RegisterAgentRequest
from opscore.models import ID_PATTERN, Agent, AgentState

__all__ = ["AgentIdPath", "router"]

router = APIRouter(prefix="/v1/opscore/agents", tags=["agents"])

AgentIdPath = Annotated[str, Path(alias="agentId", pattern=ID_PATTERN)]


@router.post(
    "",
    response_model=Agent,
    status_code=status.HTTP_201_CREATED,
    summary="Register an agent (201), or update a known agentId (200)",
    responses={200: {"model": Agent, "description": "An existing agent was updated."}},
)
async def register_agent(
    body: RegisterAgentRequest, response: Response, lifecycle: LifecycleDep
) -> Agent:
    agent, created = await lifecycle.register(body.to_registration(), source="api")
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    response.headers["Location"] = f"/v1/opscore/agents/{agent.agent_id}"
    return lifecycle.present(agent)


@router.get("", response_model=AgentList, summary="List agents (filtered, paginated)")
async def list_agents(
    lifecycle: LifecycleDep,
    state: Annotated[AgentState | None, Query(description="Effective state.")] = None,
    capability: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> AgentList:
    page = await lifecycle.list_agents(
        state=state, capability=capability, limit=limit, cursor=cursor
    )
    return AgentList(items=page.items, next_cursor=page.next_cursor)


@router.get("/{agentId}", response_model=Agent, summary="One agent, with its effective state")
async def get_agent(agent_id: AgentIdPath, lifecycle: LifecycleDep) -> Agent:
    return lifecycle.present(await lifecycle.get(agent_id))


@router.delete(
    "/{agentId}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Deregister an agent and drop its history",
)
async def deregister_agent(agent_id: AgentIdPath, lifecycle: LifecycleDep) -> Response:
    await lifecycle.deregister(agent_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{agentId}/history",
    response_model=HistoryList,
    summary="Accepted state reports, newest first",
)
async def agent_history(
    agent_id: AgentIdPath,
    lifecycle: LifecycleDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> HistoryList:
    return HistoryList(items=await lifecycle.history(agent_id, limit=limit, offset=offset))
