"""The AgentKit wire contract, replayed literally (shared/AGENTKIT-CONTRACT.md)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import pytest
from api_support import API_KEY, BASE_URL, assert_problem, make_settings, running_app, snapshot

from opscore.webhook import sign

SECRET = "whsec-test-1234"
NOTIFY = "/v1/opscore/internal/agent/notify"
AGENT_ID = "0b7f3c52-8a9e-4f7e-9a51-3c2d1e0f4a6b"

# Section 3, byte for byte: what report_state_to_opscore sends.
SDK_STATE_BODY = (
    b'{"agentId":"' + AGENT_ID.encode() + b'","timestamp":"2026-11-24T11:23:12.694+00:00",'
    b'"state":"idle","details":{}}'
)
# Section 1: AgentKit's compact webhook body.
REGISTER_BODY = (
    b'{"event_type":"REGISTER","agent_details":{"agentId":"' + AGENT_ID.encode() + b'",'
    b'"agentName":"a1","version":"1","capabilities":["x"],'
    b'"contactEndpoint":"http://host:9000/path","metadata":{}}}'
)


def _agentkit_headers(body: bytes, *, secret: str = SECRET, timestamp: int | None = None) -> dict:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "Content-Type": "application/json",
        "X-AgentKit-Timestamp": stamp,
        "X-AgentKit-Signature": sign(secret, stamp, body),
    }


@pytest.fixture
async def signed_client(tmp_path: Path):  # type: ignore[no-untyped-def]
    """An app with OPSCORE_WEBHOOK_SECRET set; the client sends no API key."""
    async with running_app(make_settings(tmp_path, webhook_secret=SECRET)) as (_app, client):
        client.headers.pop("Authorization")
        yield client


def test_signature_recipe_matches_the_contract() -> None:
    import hashlib
    import hmac

    expected = hmac.new(SECRET.encode(), b"1700000000." + REGISTER_BODY, hashlib.sha256)
    assert sign(SECRET, "1700000000", REGISTER_BODY) == expected.hexdigest()


async def test_sdk_state_report_exactly_as_sent(client: httpx.AsyncClient) -> None:
    request = httpx.Request(
        "POST",
        f"{BASE_URL}/v1/opscore/agent/{AGENT_ID}/state",
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
        content=SDK_STATE_BODY,
    )
    response = await client.send(request)
    assert response.status_code == 202
    assert response.json() == {"status": "accepted", "agentId": AGENT_ID, "state": "idle"}

    read = await client.get(
        f"/v1/opscore/agent/{AGENT_ID}/state", headers={"Authorization": f"Bearer {API_KEY}"}
    )
    assert read.status_code == 200
    body = read.json()
    assert set(body) == {"agentId", "state", "details", "timestamp"}
    assert body["agentId"] == AGENT_ID
    assert body["state"] == "idle"
    assert body["details"] == {}
    assert re.fullmatch(r"2026-11-24T11:23:12\.694(000)?(Z|\+00:00)", body["timestamp"])


async def test_sdk_sequence_of_a_typical_agent(client: httpx.AsyncClient) -> None:
    for state, details in [
        ("initializing", {}),
        ("idle", {}),
        ("active", {}),
        ("error", {"error_code": "PROCESSING_ERROR", "message": "x"}),
        ("idle", {}),
        ("active", {}),
        ("finished", {}),
    ]:
        body = json.dumps(
            {
                "agentId": AGENT_ID,
                "timestamp": "2026-11-24T11:23:12.694+00:00",
                "state": state,
                "details": details,
            },
            separators=(",", ":"),
        )
        response = await client.post(
            f"/v1/opscore/agent/{AGENT_ID}/state",
            content=body,
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 202, response.text


async def test_signed_register_then_update(signed_client: httpx.AsyncClient) -> None:
    response = await signed_client.post(
        NOTIFY, content=REGISTER_BODY, headers=_agentkit_headers(REGISTER_BODY)
    )
    assert response.status_code == 200
    assert response.json() == {"status": "registered", "agentId": AGENT_ID}
    auth = {"Authorization": f"Bearer {API_KEY}"}
    agent = (await signed_client.get(f"/v1/opscore/agents/{AGENT_ID}", headers=auth)).json()
    assert agent["name"] == "a1"
    assert agent["capabilities"] == ["x"]
    assert agent["contactEndpoint"] == "http://host:9000/path"
    assert agent["source"] == "webhook"

    second = REGISTER_BODY.replace(b'"agentName":"a1"', b'"agentName":"a1-v2"').replace(
        b'"version":"1"', b'"version":"2"'
    )
    response = await signed_client.post(NOTIFY, content=second, headers=_agentkit_headers(second))
    assert response.status_code == 200
    agent = (await signed_client.get(f"/v1/opscore/agents/{AGENT_ID}", headers=auth)).json()
    assert (agent["name"], agent["version"]) == ("a1-v2", "2")
    listed = (await signed_client.get("/v1/opscore/agents", headers=auth)).json()["items"]
    assert len(listed) == 1


async def test_signed_deregister(signed_client: httpx.AsyncClient) -> None:
    await signed_client.post(
        NOTIFY, content=REGISTER_BODY, headers=_agentkit_headers(REGISTER_BODY)
    )
    body = REGISTER_BODY.replace(b"REGISTER", b"DEREGISTER")
    response = await signed_client.post(NOTIFY, content=body, headers=_agentkit_headers(body))
    assert response.status_code == 200
    assert response.json() == {"status": "deregistered", "agentId": AGENT_ID}
    auth = {"Authorization": f"Bearer {API_KEY}"}
    assert_problem(
        await signed_client.get(f"/v1/opscore/agents/{AGENT_ID}", headers=auth),
        404,
        "agent_not_found",
    )
    response = await signed_client.post(NOTIFY, content=body, headers=_agentkit_headers(body))
    assert_problem(response, 404, "agent_not_found")


@pytest.mark.parametrize(
    ("case", "fragment"),
    [
        ("bad_signature", "does not match"),
        ("other_secret", "does not match"),
        ("tampered_body", "does not match"),
        ("stale", "stale"),
        ("future", "stale"),
        ("missing_signature", "missing X-AgentKit-Signature"),
        ("missing_timestamp", "missing X-AgentKit-Timestamp"),
        ("garbage_timestamp", "unix seconds"),
    ],
)
async def test_bad_webhook_signatures_are_401(
    signed_client: httpx.AsyncClient, case: str, fragment: str
) -> None:
    auth = {"Authorization": f"Bearer {API_KEY}"}
    before = await snapshot(signed_client)
    body = REGISTER_BODY
    headers = _agentkit_headers(body)
    if case == "bad_signature":
        headers["X-AgentKit-Signature"] = "0" * 64
    elif case == "other_secret":
        headers = _agentkit_headers(body, secret="not-the-secret")
    elif case == "tampered_body":
        body = body.replace(b'"a1"', b'"evil"')
    elif case == "stale":
        headers = _agentkit_headers(body, timestamp=int(time.time()) - 301 - 60)
    elif case == "future":
        headers = _agentkit_headers(body, timestamp=int(time.time()) + 301 + 60)
    elif case == "missing_signature":
        del headers["X-AgentKit-Signature"]
    elif case == "missing_timestamp":
        del headers["X-AgentKit-Timestamp"]
    elif case == "garbage_timestamp":
        headers["X-AgentKit-Timestamp"] = "noon"
    response = await signed_client.post(NOTIFY, content=body, headers=headers)
    problem = assert_problem(response, 401, "invalid_signature")
    assert fragment in problem["detail"]
    assert "www-authenticate" not in response.headers
    assert await snapshot(signed_client) == before
    assert auth  # the snapshot used the API key; the webhook itself never needs one


async def test_webhook_ignores_api_key_and_needs_none(signed_client: httpx.AsyncClient) -> None:
    headers = {**_agentkit_headers(REGISTER_BODY), "Authorization": "Bearer wrong"}
    response = await signed_client.post(NOTIFY, content=REGISTER_BODY, headers=headers)
    assert response.status_code == 200


async def test_unsigned_webhook_accepted_without_secret(client: httpx.AsyncClient) -> None:
    client.headers.pop("Authorization")
    response = await client.post(
        NOTIFY, content=REGISTER_BODY, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200
    assert response.json()["status"] == "registered"
    # A signature that cannot be checked is ignored, too.
    response = await client.post(NOTIFY, content=REGISTER_BODY, headers=_agentkit_headers(b"x"))
    assert response.status_code == 200


async def test_webhook_bad_bodies(client: httpx.AsyncClient) -> None:
    before = await snapshot(client)
    assert_problem(await client.post(NOTIFY, content=b"{nope"), 400, "malformed_json")
    problem = assert_problem(
        await client.post(NOTIFY, json={"event_type": "EXPLODE", "agent_details": {}}),
        422,
        "validation_error",
    )
    assert {e["field"] for e in problem["errors"]} == {
        "body.event_type",
        "body.agent_details.agentId",
    }
    problem = assert_problem(
        await client.post(
            NOTIFY, json={"event_type": "REGISTER", "agent_details": {"agentId": "a9"}}
        ),
        422,
        "validation_error",
    )
    assert [e["field"] for e in problem["errors"]] == ["body.agent_details.agentName"]
    assert await snapshot(client) == before


async def test_report_from_agent_known_only_by_webhook_keeps_webhook_source(
    signed_client: httpx.AsyncClient,
) -> None:
    await signed_client.post(
        NOTIFY, content=REGISTER_BODY, headers=_agentkit_headers(REGISTER_BODY)
    )
    auth = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    response = await signed_client.post(
        f"/v1/opscore/agent/{AGENT_ID}/state", content=SDK_STATE_BODY, headers=auth
    )
    assert response.status_code == 202
    agent = (await signed_client.get(f"/v1/opscore/agents/{AGENT_ID}", headers=auth)).json()
    assert (agent["source"], agent["state"], agent["name"]) == ("webhook", "idle", "a1")
