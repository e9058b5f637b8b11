"""The SDK's public surface: names, the two clients' parity, seed names, configuration,
and that the client never imports the server package."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

import opscore_sdk
import opscore_sdk.agent
import opscore_sdk.aio
import opscore_sdk.client
import opscore_sdk.errors
import opscore_sdk.models
from opscore_sdk import AsyncOpsCoreClient, OpsCoreClient

PUBLIC = {
    opscore_sdk: {
        "API_KEY_ENV",
        "API_URL_ENV",
        "DEFAULT_API_URL",
        "Agent",
        "AgentPage",
        "AgentState",
        "AsyncOpsCoreClient",
        "Attempt",
        "AuthenticationError",
        "ConflictError",
        "NotFoundError",
        "OpsCoreClient",
        "OpsCoreClientAsync",
        "OpsCoreClientSync",
        "OpsCoreConnectionError",
        "OpsCoreError",
        "Page",
        "ResultAccepted",
        "ServerError",
        "Session",
        "SessionPage",
        "StateAccepted",
        "StateEntry",
        "Task",
        "TaskPage",
        "TriggerResult",
        "ValidationError",
        "WaitTimeoutError",
        "Workflow",
        "WorkflowPage",
    },
    opscore_sdk.client: {"OpsCoreClient", "OpsCoreClientSync"},
    opscore_sdk.aio: {"AsyncOpsCoreClient", "OpsCoreClientAsync"},
    opscore_sdk.errors: {
        "AuthenticationError",
        "ConflictError",
        "NotFoundError",
        "OpsCoreConnectionError",
        "OpsCoreError",
        "ServerError",
        "ValidationError",
        "WaitTimeoutError",
        "error_from_response",
    },
    opscore_sdk.models: {
        "AGENT_STATES",
        "FINAL_SESSION_STATUSES",
        "FINAL_TASK_STATUSES",
        "Agent",
        "AgentPage",
        "AgentState",
        "ApiModel",
        "Attempt",
        "Page",
        "ResultAccepted",
        "Session",
        "SessionPage",
        "StateAccepted",
        "StateEntry",
        "Task",
        "TaskPage",
        "TriggerResult",
        "Workflow",
        "WorkflowPage",
    },
    opscore_sdk.agent: {"HEARTBEAT", "PROCESSING_ERROR", "Agent", "TaskContext", "TaskHandler"},
}

OPERATIONS = {
    "health",
    "ready",
    "register_agent",
    "list_agents",
    "iter_agents",
    "get_agent",
    "deregister_agent",
    "agent_history",
    "update_state",
    "get_state",
    "create_workflow",
    "create_workflow_from_file",
    "list_workflows",
    "iter_workflows",
    "get_workflow",
    "delete_workflow",
    "workflow_schema",
    "trigger",
    "trigger_workflow",
    "list_sessions",
    "iter_sessions",
    "get_session",
    "cancel_session",
    "pause_session",
    "resume_session",
    "wait",
    "list_tasks",
    "iter_tasks",
    "get_task",
    "dead_letters",
    "retry_task",
    "submit_result",
}


@pytest.mark.parametrize("module", list(PUBLIC), ids=lambda m: m.__name__)
def test_public_names(module: object) -> None:
    names = set(module.__all__)  # type: ignore[attr-defined]
    assert names == PUBLIC[module]  # type: ignore[index]
    for name in names:
        assert getattr(module, name) is not None


def test_both_clients_offer_the_same_operations_with_the_same_signatures() -> None:
    sync = OpsCoreClient("http://x")
    asynchronous = AsyncOpsCoreClient("http://x")
    public = {n for n in dir(OpsCoreClient) if not n.startswith("_")}
    assert public == OPERATIONS | {"base_url", "close"}
    assert {n for n in dir(AsyncOpsCoreClient) if not n.startswith("_")} == (
        OPERATIONS | {"base_url", "close", "aclose"}
    )
    for name in OPERATIONS:
        sync_method = getattr(sync, name)
        async_method = getattr(asynchronous, name)
        assert sync_method.__doc__, name
        assert sync_method.__doc__ == async_method.__doc__
        sync_sig = inspect.signature(sync_method)
        async_sig = inspect.signature(async_method)
        assert sync_sig.parameters == async_sig.parameters, name
        assert "Call[" not in str(sync_sig.return_annotation), name
        if name.startswith("iter_"):
            assert str(async_sig.return_annotation).startswith("AsyncIterator[")
        else:
            assert inspect.iscoroutinefunction(async_method), name
    sync.close()


def test_seed_names_keep_working() -> None:
    assert opscore_sdk.OpsCoreClientSync is OpsCoreClient
    assert opscore_sdk.OpsCoreClientAsync is AsyncOpsCoreClient
    client = OpsCoreClient("http://x")
    assert list(inspect.signature(client.update_state).parameters)[:3] == [
        "agent_id",
        "state",
        "details",
    ]
    assert list(inspect.signature(client.get_state).parameters) == ["agent_id"]
    assert list(inspect.signature(client.trigger_workflow).parameters)[:4] == [
        "agent_id",
        "workflow_definition_id",
        "workflow_definition",
        "initial_payload",
    ]
    client.close()


def test_configuration_from_environment_and_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"status": "ok"})

    with OpsCoreClient() as default:
        assert default.base_url == "http://127.0.0.1:8000"
        assert default.config.api_key is None

    monkeypatch.setenv("OPSCORE_API_URL", "http://from-env:9000/")
    monkeypatch.setenv("OPSCORE_API_KEY", "env-key")
    with OpsCoreClient(transport=httpx.MockTransport(handler)) as client:
        assert client.base_url == "http://from-env:9000"
        client.health()
    assert str(seen[-1].url) == "http://from-env:9000/health"
    assert seen[-1].headers["authorization"] == "Bearer env-key"

    with OpsCoreClient(
        "http://arg:1", "arg-key", headers={"X-Team": "t"}, transport=httpx.MockTransport(handler)
    ) as client:
        client.health()
    assert str(seen[-1].url) == "http://arg:1/health"
    assert seen[-1].headers["authorization"] == "Bearer arg-key"
    assert seen[-1].headers["x-team"] == "t"

    with pytest.raises(ValueError, match="timeout_s"):
        OpsCoreClient(timeout_s=0)


def test_a_local_server_key_file_is_used_only_for_local_servers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".opscore").mkdir()
    (tmp_path / ".opscore" / "api_key").write_text("generated-key\n")
    with OpsCoreClient("http://127.0.0.1:8000") as local:
        assert local.config.api_key == "generated-key"
    with OpsCoreClient("http://localhost:8000", "explicit") as explicit:
        assert explicit.config.api_key == "explicit"
    with OpsCoreClient("https://opscore.example.com") as remote:
        assert remote.config.api_key is None

    elsewhere = tmp_path / "data"
    elsewhere.mkdir()
    (elsewhere / "api_key").write_text("other-key")
    monkeypatch.setenv("OPSCORE_DATA_DIR", str(elsewhere))
    with OpsCoreClient() as relocated:
        assert relocated.config.api_key == "other-key"
    monkeypatch.setenv("OPSCORE_API_KEY", "env-key")
    with OpsCoreClient() as from_env:
        assert from_env.config.api_key == "env-key"


async def test_async_client_context_manager_closes() -> None:
    client = AsyncOpsCoreClient("http://x")
    async with client as entered:
        assert entered is client
    assert client._http.is_closed


def test_the_sdk_does_not_import_the_server_package() -> None:
    code = (
        "import sys, opscore_sdk, opscore_sdk.agent\n"
        "server = sorted(m for m in sys.modules if m == 'opscore' or m.startswith('opscore.'))\n"
        "assert not server, server\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
