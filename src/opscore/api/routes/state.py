"""State reports and reads, the AgentKit SDK's paths (contract sections 3 and 4)."""

from __future__ import annotations

from fastapi import APIRouter, status

from opscore.api.deps import LifecycleDep
from opscore.api.routes.agents import AgentIdPath
from opscore.api.schemas import StateAccepted, StateView
from opscore.models import StateReport

__all__ = ["router"]

router = APIRouter(prefix="/v1/opscore/agent", tags=["state"])


@router.post(
    "/{agentId}/state",
    response_model=StateAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Report an agent's state (registers an unknown agent implicitly)",
)
async def report_state(
    agent_id: AgentIdPath, report: StateReport, lifecycle: LifecycleDep
) -> StateAccepted:
    agent, _entry = await lifecycle.report_state(agent_id, report)
    return StateAccepted(agent_id=agent.agent_id, state=agent.state)


@router.get("/{agentId}/state", response_model=StateView, summary="An agent's effective state")
async def read_state(agent_id: AgentIdPath, lifecycle: LifecycleDep) -> StateView:
    agent = await lifecycle.get(agent_id)
    return StateView(
        agent_id=agent.agent_id,
        state=lifecycle.effective_state(agent),
        details=agent.state_details,
        timestamp=agent.state_timestamp or agent.registered_at,
    )
