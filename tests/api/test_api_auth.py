"""API-key auth on every protected route, found by walking the OpenAPI document."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from api_support import API_KEY, assert_problem, make_settings, running_app, snapshot
from fastapi import FastAPI

from opscore.api.auth import key_matches

PUBLIC = {
    ("get", "/health"),
    ("get", "/health/ready"),
    ("post", "/v1/opscore/internal/agent/notify"),
}
METHODS = {"get", "post", "put", "patch", "delete"}


def _operations(app: FastAPI) -> list[tuple[str, str]]:
    ops = []
    for path, item in app.openapi()["paths"].items():
        for method in item:
            if method in METHODS:
                ops.append((method, path))
    return sorted(ops)


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "p1", path)


async def test_openapi_lists_the_routes_and_security(
    app_client: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = app_client
    ops = set(_operations(app))
    assert ops >= PUBLIC
    for op in [
        ("post", "/v1/opscore/agents"),
        ("get", "/v1/opscore/agents"),
        ("get", "/v1/opscore/agents/{agentId}"),
        ("delete", "/v1/opscore/agents/{agentId}"),
        ("get", "/v1/opscore/agents/{agentId}/history"),
        ("post", "/v1/opscore/agent/{agentId}/state"),
        ("get", "/v1/opscore/agent/{agentId}/state"),
    ]:
        assert op in ops
    doc = (await client.get("/openapi.json")).json()
    assert doc["info"]["title"] == "Ops-Core"
    assert doc["components"]["securitySchemes"]["ApiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["ApiKey"]["description"],
    }
    for method, path in ops:
        secured = "security" in doc["paths"][path][method]
        assert secured == ((method, path) not in PUBLIC), (method, path)
    assert (await client.get("/docs")).status_code == 200


@pytest.mark.parametrize(
    ("case", "header"),
    [
        ("missing", None),
        ("wrong_key", f"Bearer {API_KEY}x"),
        ("wrong_scheme", f"Basic {API_KEY}"),
        ("bare_key", API_KEY),
        ("empty_bearer", "Bearer "),
        ("non_ascii", "Bearer kéy".encode("latin-1")),
    ],
)
async def test_every_protected_route_needs_the_key(
    app_client: tuple[FastAPI, httpx.AsyncClient], case: str, header: str | bytes | None
) -> None:
    app, client = app_client
    await client.post("/v1/opscore/agent/p1/state", json={"state": "idle"})
    before = await snapshot(client)
    protected = [op for op in _operations(app) if op not in PUBLIC]
    assert len(protected) >= 7
    for method, path in protected:
        headers: dict[str, str | bytes] = {"Authorization": header} if header is not None else {}
        request = client.build_request(
            method.upper(), _concrete(path), json={"state": "active", "name": "x"}
        )
        request.headers.pop("Authorization")
        request.headers.update(headers)
        request.headers.encoding = "latin-1"  # lets httpx read back the non-ASCII case
        response = await client.send(request)
        problem = assert_problem(response, 401, "unauthenticated")
        assert response.headers["www-authenticate"] == "Bearer", (method, path)
        assert API_KEY not in problem["detail"]
    # Malformed JSON does not get past the key check either.
    request = client.build_request(
        "POST",
        "/v1/opscore/agents",
        content=b"{oops",
        headers={"Content-Type": "application/json"},
    )
    request.headers.pop("Authorization")
    if header is not None:
        request.headers.update({"Authorization": header})
        request.headers.encoding = "latin-1"
    assert_problem(await client.send(request), 401, "unauthenticated")
    assert await snapshot(client) == before


async def test_public_routes_need_no_key(client: httpx.AsyncClient) -> None:
    client.headers.pop("Authorization")
    assert (await client.get("/health")).status_code == 200
    assert (await client.get("/health/ready")).status_code == 200
    response = await client.post(
        "/v1/opscore/internal/agent/notify",
        json={"event_type": "REGISTER", "agent_details": {"agentId": "w1", "agentName": "w"}},
    )
    assert response.status_code == 200


async def test_several_configured_keys_all_work(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, api_key="first", api_keys="second, third")
    async with running_app(settings) as (_app, client):
        for key in ["first", "second", "third"]:
            response = await client.get(
                "/v1/opscore/agents", headers={"Authorization": f"Bearer {key}"}
            )
            assert response.status_code == 200, key
        response = await client.get("/v1/opscore/agents", headers={"Authorization": "Bearer 4"})
        assert response.status_code == 401


def test_key_matches() -> None:
    keys = frozenset({"alpha", "beta"})
    assert key_matches("alpha", keys)
    assert key_matches("beta", keys)
    assert not key_matches("alph", keys)
    assert not key_matches("", keys)
    assert not key_matches("kéy", keys)
    assert not key_matches("alpha", frozenset())
