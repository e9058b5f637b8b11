"""Request ids, JSON log lines, and the access log."""

from __future__ import annotations

import io
import json
import re
from typing import Any

import httpx
import pytest
import structlog


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    # Every line is JSON, whoever wrote it.
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def test_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    response = await client.get("/health", headers={"X-Request-ID": "abc.DEF_123-x"})
    assert response.headers["x-request-id"] == "abc.DEF_123-x"


@pytest.mark.parametrize(
    "sent", [None, "", "has space", "semi;colon", "x" * 129, "ünïcode".encode()]
)
async def test_request_id_is_generated_when_missing_or_insane(
    client: httpx.AsyncClient, sent: str | bytes | None
) -> None:
    headers = {} if sent is None else {"X-Request-ID": sent}
    response = await client.get("/health", headers=headers)
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])


async def test_request_ids_differ(client: httpx.AsyncClient) -> None:
    ids = {(await client.get("/health")).headers["x-request-id"] for _ in range(5)}
    assert len(ids) == 5


async def test_one_json_access_line_per_request(
    client: httpx.AsyncClient, log_stream: io.StringIO
) -> None:
    await client.post("/v1/opscore/agent/agent-7/state", json={"state": "idle"})
    await client.get("/v1/opscore/agents/agent-7", headers={"X-Request-ID": "rid-2"})
    await client.get("/v1/opscore/agents", headers={"X-Request-ID": "rid-3"})
    await client.get("/health", headers={"Authorization": ""})
    await client.get("/nowhere")
    await client.get("/v1/opscore/sessions/s-1")
    await client.get("/v1/opscore/tasks/s-1:t1")
    lines = _lines(log_stream)
    access = [line for line in lines if line["event"] == "request"]
    assert [(a["method"], a["path"], a["status"]) for a in access] == [
        ("POST", "/v1/opscore/agent/agent-7/state", 202),
        ("GET", "/v1/opscore/agents/agent-7", 200),
        ("GET", "/v1/opscore/agents", 200),
        ("GET", "/health", 200),
        ("GET", "/nowhere", 404),
        ("GET", "/v1/opscore/sessions/s-1", 404),
        ("GET", "/v1/opscore/tasks/s-1:t1", 404),
    ]
    for line in access:
        assert line["level"] == "info"
        assert line["logger"] == "opscore.access"
        assert isinstance(line["durationMs"], float | int)
        assert line["durationMs"] >= 0
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", line["timestamp"])
        assert line["requestId"]
    assert access[0]["agentId"] == "agent-7"
    assert access[1]["agentId"] == "agent-7"
    assert access[1]["requestId"] == "rid-2"
    assert "agentId" not in access[2]
    assert access[5]["sessionId"] == "s-1"
    assert access[6]["taskId"] == "s-1:t1"
    # Nothing stays bound once the request is over.
    assert structlog.contextvars.get_contextvars() == {}


async def test_webhook_access_line_names_the_agent(
    client: httpx.AsyncClient, log_stream: io.StringIO
) -> None:
    await client.post(
        "/v1/opscore/internal/agent/notify",
        json={"event_type": "REGISTER", "agent_details": {"agentId": "w-1", "agentName": "w"}},
    )
    access = [line for line in _lines(log_stream) if line["event"] == "request"]
    assert access[-1]["agentId"] == "w-1"
    assert structlog.contextvars.get_contextvars() == {}


async def test_log_lines_inside_a_request_carry_its_id(
    client: httpx.AsyncClient, log_stream: io.StringIO
) -> None:
    # A 409 is logged by nobody but the access line; a 503 is logged as a warning.
    await client.post("/v1/opscore/agent/a1/state", json={"state": "finished"})
    await client.post(
        "/v1/opscore/agent/a1/state", json={"state": "active"}, headers={"X-Request-ID": "r409"}
    )
    access = [line for line in _lines(log_stream) if line.get("requestId") == "r409"]
    assert [line["status"] for line in access] == [409]
