"""Liveness (``GET /health``, the seed's path) and readiness (storage reachable)."""

from __future__ import annotations

from fastapi import APIRouter

from opscore.api.deps import ServicesDep
from opscore.api.schemas import HealthStatus, ReadinessStatus
from opscore.errors import StorageError, StorageUnavailableError

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthStatus, summary="Liveness: the process answers")
async def health() -> HealthStatus:
    return HealthStatus()


@router.get(
    "/health/ready",
    response_model=ReadinessStatus,
    summary="Readiness: the storage backend answers (503 problem if not)",
)
async def ready(services: ServicesDep) -> ReadinessStatus:
    try:
        await services.storage.ping()
    except StorageError:
        raise
    except Exception as exc:  # readiness must answer 503, never 500
        raise StorageUnavailableError(f"storage did not answer the ping: {exc}") from exc
    return ReadinessStatus(storage=services.storage_kind)
