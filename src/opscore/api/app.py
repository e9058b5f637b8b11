"""The app factory. There is no module-level app: uvicorn calls :func:`create_app`
(``factory=True``), tests call it with their own settings and storage.

Routers are included from :data:`ROUTERS`; to add one, append one line::

    RouterSpec(sessions.router),               # protected by the API key
    RouterSpec(health.router, public=True),    # open
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, FastAPI

from opscore import __version__
from opscore.api.auth import require_api_key
from opscore.api.middleware import RequestContextMiddleware
from opscore.api.problems import Problem, install_problem_handlers
from opscore.api.routes import agents, health, sessions, state, tasks, webhook, workflows
from opscore.logging import configure_logging, logging_configured
from opscore.services import start_services, stop_services
from opscore.settings import Settings
from opscore.storage import Storage

__all__ = ["ROUTERS", "RouterSpec", "create_app"]


@dataclass(frozen=True, slots=True)
class RouterSpec:
    """A router to include; ``public`` routers skip the API-key check."""

    router: APIRouter
    public: bool = False


ROUTERS: tuple[RouterSpec, ...] = (
    RouterSpec(health.router, public=True),
    RouterSpec(webhook.router, public=True),
    RouterSpec(agents.router),
    RouterSpec(state.router),
    RouterSpec(workflows.router),
    RouterSpec(sessions.router),
    RouterSpec(tasks.router),
)

_PROBLEM = {"model": Problem, "content": {"application/problem+json": {}}}
_COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {**_PROBLEM, "description": "Bad input (malformed JSON, agentId mismatch)"},
    413: {**_PROBLEM, "description": "Body larger than OPSCORE_MAX_BODY_BYTES"},
    422: {**_PROBLEM, "description": "Invalid fields, listed in `errors`"},
}
_PROTECTED_RESPONSES: dict[int | str, dict[str, Any]] = {
    **_COMMON_RESPONSES,
    401: {**_PROBLEM, "description": "Missing or invalid API key"},
    404: {**_PROBLEM, "description": "Not found"},
    409: {**_PROBLEM, "description": "Conflicts with the current state"},
}


def create_app(settings: Settings | None = None, *, storage: Storage | None = None) -> FastAPI:
    """Build the Ops-Core API.

    ``settings``: defaults to ``Settings()`` (environment and ``.env``). ``storage``:
    an already opened backend to use instead of the configured one (the caller closes
    it). Services start in the app's lifespan and live on ``app.state.services``.
    Configures JSON logging at ``settings.log_level`` unless it is configured already.
    """
    settings = settings if settings is not None else Settings()
    if not logging_configured():
        configure_logging(settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await start_services(settings, storage=storage)
        app.state.services = services
        try:
            yield
        finally:
            await stop_services(services)

    app = FastAPI(
        title="Ops-Core",
        version=__version__,
        description="Control plane for fleets of AI agents. Errors are RFC 9457 problem "
        "documents (application/problem+json).",
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
        lifespan=lifespan,
    )
    install_problem_handlers(app)
    app.add_middleware(RequestContextMiddleware, max_body_bytes=settings.max_body_bytes)
    # Identities of the public routes (routes are unhashable), for auth.route_requires_api_key.
    app.state.public_route_ids = frozenset(
        id(route) for spec in ROUTERS if spec.public for route in spec.router.routes
    )
    for spec in ROUTERS:
        if spec.public:
            app.include_router(spec.router, responses=_COMMON_RESPONSES)
        else:
            app.include_router(
                spec.router,
                dependencies=[Depends(require_api_key)],
                responses=_PROTECTED_RESPONSES,
            )
    return app
