"""API-key authentication: ``Authorization: Bearer <key>`` on every protected route.

The app factory attaches :func:`require_api_key` to every router not marked public,
so a new router is protected by default. Using FastAPI's :class:`HTTPBearer` scheme
puts the "Authorize" button on ``/docs``.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from opscore.errors import AuthenticationError

__all__ = [
    "authenticate",
    "bearer_scheme",
    "key_matches",
    "require_api_key",
    "route_requires_api_key",
]

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An Ops-Core API key: OPSCORE_API_KEY(S) or the generated <data_dir>/api_key.",
)


def key_matches(presented: str, keys: frozenset[str]) -> bool:
    """True if ``presented`` equals one of ``keys``. Every key is compared, each in
    constant time, so timing reveals neither which key nor how much of it matched."""
    given = presented.encode()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(given, key.encode())
    return matched


def authenticate(request: Request, credentials: HTTPAuthorizationCredentials | None) -> None:
    """Raise AuthenticationError (401) unless ``credentials`` hold a valid key."""
    if credentials is None:
        raise AuthenticationError(
            "this endpoint needs an API key: send 'Authorization: Bearer <key>'"
        )
    if not key_matches(credentials.credentials, request.app.state.services.api_keys):
        raise AuthenticationError("the API key is not valid")


async def require_api_key(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> None:
    """Dependency: raise AuthenticationError (401) unless a valid bearer key is sent."""
    authenticate(request, credentials)


def route_requires_api_key(request: Request) -> bool:
    """True if the route matched for ``request`` is behind the API key: every route
    except those of public routers, whose ids the app factory keeps in
    ``app.state.public_route_ids``."""
    route = request.scope.get("route")
    public: frozenset[int] = getattr(request.app.state, "public_route_ids", frozenset())
    return route is not None and id(route) not in public
