"""FastAPI dependencies giving routes the app's services (built by the lifespan)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from opscore.lifecycle import LifecycleService
from opscore.services import Services

__all__ = ["LifecycleDep", "ServicesDep", "get_lifecycle", "get_services"]


def get_services(request: Request) -> Services:
    """The :class:`~opscore.services.Services` of the running app."""
    services: Services = request.app.state.services
    return services


def get_lifecycle(request: Request) -> LifecycleService:
    lifecycle: LifecycleService = request.app.state.services.lifecycle
    return lifecycle


ServicesDep = Annotated[Services, Depends(get_services)]
LifecycleDep = Annotated[LifecycleService, Depends(get_lifecycle)]
