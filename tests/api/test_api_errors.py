"""Problem documents: shape, status mapping, and every bad input leaving data unchanged."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from api_support import assert_problem, make_settings, running_app, snapshot

from opscore.api.problems import status_for
from opscore.errors import (
    AgentIdMismatchError,
    AgentNotFoundError,
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    InvalidInputError,
    InvalidTransitionError,
    NotImplementedFeatureError,
    PayloadTooLargeError,
    StorageUnavailableError,
    WebhookSignatureError,
    WorkflowValidationError,
)

STATE = "/v1/opscore/agent/a1/state"
JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (InvalidInputError, 400),
        (AgentIdMismatchError, 400),
        (WorkflowValidationError, 422),
        (AuthenticationError, 401),
        (WebhookSignatureError, 401),
        (AgentNotFoundError, 404),
        (ConflictError, 409),
        (InvalidTransitionError, 409),
        (PayloadTooLargeError, 413),
        (NotImplementedFeatureError, 501),
        (StorageUnavailableError, 503),
        (ConfigurationError, 500),
    ],
)
def test_status_mapping(error: type[Exception], status: int) -> None:
    assert status_for(error("x")) == status  # type: ignore[arg-type]


async def test_unknown_route_and_method(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.get("/v1/opscore/nothing"), 404, "not_found")
    assert "/v1/opscore/nothing" in body["detail"]
    response = await client.put("/v1/opscore/agents")
    assert_problem(response, 405, "method_not_allowed")
    assert response.headers["allow"]


async def test_malformed_json_is_400_and_changes_nothing(client: httpx.AsyncClient) -> None:
    await client.post(STATE, json={"state": "idle"})
    before = await snapshot(client)
    for path, body in [
        (STATE, b'{"state": "active"'),
        (STATE, b"\xff\xfe"),
        ("/v1/opscore/agents", b'{"name": "x",}'),
    ]:
        problem = assert_problem(
            await client.post(path, content=body, headers=JSON), 400, "malformed_json"
        )
        assert "errors" not in problem
    assert await snapshot(client) == before


async def test_wrong_types_list_each_field(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/opscore/agents",
        json={"name": 7, "capabilities": ["a", {"b": 1}], "metadata": "m", "version": None},
    )
    problem = assert_problem(response, 422, "validation_error")
    fields = [e["field"] for e in problem["errors"]]
    assert fields == ["body.name", "body.version", "body.capabilities[1]", "body.metadata"]
    assert all(set(e) >= {"field", "message"} for e in problem["errors"])
    assert "body.name" in problem["detail"]
    response = await client.post("/v1/opscore/agents", content=b"[1, 2]", headers=JSON)
    assert_problem(response, 422, "validation_error")


async def test_body_over_limit_is_413_and_changes_nothing(tmp_path: Path) -> None:
    async with running_app(make_settings(tmp_path, max_body_bytes=200)) as (_app, client):
        await client.post(STATE, json={"state": "idle"})
        before = await snapshot(client)
        big = json.dumps({"state": "active", "details": {"pad": "x" * 300}}).encode()

        # Declared with Content-Length: refused before the app reads it.
        response = await client.post(STATE, content=big, headers=JSON)
        assert_problem(response, 413, "payload_too_large")

        # Chunked (no Content-Length): counted while it streams.
        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(big), 64):
                yield big[start : start + 64]

        for path in [STATE, "/v1/opscore/agents", "/v1/opscore/internal/agent/notify"]:
            response = await client.post(path, content=chunks(), headers=JSON)
            assert "content-length" not in response.request.headers
            problem = assert_problem(response, 413, "payload_too_large")
            assert "200 bytes" in problem["detail"]
        assert await snapshot(client) == before

        # At the limit is fine.
        small = json.dumps({"state": "active", "details": {"pad": "x" * 100}}).encode()
        assert len(small) <= 200
        assert (await client.post(STATE, content=small, headers=JSON)).status_code == 202


async def test_unexpected_error_is_a_logged_500_without_internals(
    tmp_path: Path, log_stream: io.StringIO
) -> None:
    async with running_app(make_settings(tmp_path)) as (app, client):

        async def explode() -> None:
            raise RuntimeError("secret-internal-detail")

        app.add_api_route("/boom", explode)
        response = await client.get("/boom", headers={"X-Request-ID": "boom-1"})
        problem = assert_problem(response, 500, "internal_error")
        assert "secret-internal-detail" not in response.text
        assert problem["requestId"] == "boom-1"
    lines = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    errors = [line for line in lines if line["event"] == "unhandled_error"]
    assert len(errors) == 1
    assert errors[0]["requestId"] == "boom-1"
    assert errors[0]["level"] == "error"
    assert "RuntimeError: secret-internal-detail" in errors[0]["exception"]
    access = [line for line in lines if line["event"] == "request" and line["path"] == "/boom"]
    assert access[0]["status"] == 500
