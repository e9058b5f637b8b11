"""FastAPI dependency giving routes the app's workflow engine."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from opscore.engine.service import WorkflowEngine

__all__ = ["EngineDep", "get_engine"]


def get_engine(request: Request) -> WorkflowEngine:
    engine: WorkflowEngine = request.app.state.services.engine
    return engine


EngineDep = Annotated[WorkflowEngine, Depends(get_engine)]
