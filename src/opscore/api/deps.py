"""FastAPI dependencies giving routes the app's services (built by the lifespan)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from opscore.engine.service import WorkflowEngine
from opscore.lifecycle import LifecycleService
from opscore.services import Services

__all__ = [
    "EngineDep",
    "LifecycleDep",
    "ServicesDep",
    "get_engine",
    "get_lifecycle",
    "get_services",
]


# Async on purpose: FastAPI runs plain ``def`` dependencies in a thread pool, a
# costly hop on every request.
async def get_services(request: Request) -> Services:
    """The :class:`~opscore.services.Services` of the running app."""
    services: Services = request.app.state.services
    return services


async def get_lifecycle(request: Request) -> LifecycleService:
    lifecycle: LifecycleService = request.app.state.services.lifecycle
    return lifecycle


async def get_engine(request: Request) -> WorkflowEngine:
    engine: WorkflowEngine = request.app.state.services.engine
    return engine


ServicesDep = Annotated[Services, Depends(get_services)]
LifecycleDep = Annotated[LifecycleService, Depends(get_lifecycle)]
EngineDep = Annotated[WorkflowEngine, Depends(get_engine)]
