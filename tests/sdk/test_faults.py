"""Faults the real server cannot be made to produce on demand, through httpx.MockTransport:
connection errors, timeouts, 503s, odd bodies. Each runs on both clients, whose retry
loops are separate executors over the same core."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from opscore_sdk import (
    AsyncOpsCoreClient,
    AuthenticationError,
    ConflictError,
    NotFoundError,
    OpsCoreClient,
    OpsCoreConnectionError,
    OpsCoreError,
    ServerError,
    ValidationError,
)

Handler = Callable[[httpx.Request], httpx.Response]
STATE = {"agentId": "a", "state": "idle", "details": {}, "timestamp": "2026-01-01T00:00:00Z"}
TRIGGERED = {"sessionId": "s-1", "workflowId": "w", "workflowVersion": "1", "status": "running"}


class Script:
    """A MockTransport handler: answers (or raises) from a list, records requests."""

    def __init__(self, *steps: httpx.Response | Exception) -> None:
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, Exception):
            raise step
        return step


def problem(status: int, code: str, detail: str, **extra: Any) -> httpx.Response:
    body = {"type": f"https://opscore.dev/problems/{code}", "title": "t", "status": status}
    body.update({"detail": detail, "code": code, "requestId": "req-1", **extra})
    return httpx.Response(status, json=body, headers={"content-type": "application/problem+json"})


def refused() -> httpx.ConnectError:
    return httpx.ConnectError("[Errno 111] Connection refused")


@pytest.fixture(params=["sync", "async"])
def call(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """``call(script, "method", *args, **kwargs)`` on a fresh client of either kind."""

    def run(script: Script, method: str, *args: Any, **kwargs: Any) -> Any:
        options: dict[str, Any] = {"max_retries": 3, "backoff_s": 0.001, "backoff_max_s": 0.01}
        if request.param == "sync":
            with OpsCoreClient(
                "http://opscore.test", "k", transport=httpx.MockTransport(script), **options
            ) as client:
                return getattr(client, method)(*args, **kwargs)

        async def go() -> Any:
            async with AsyncOpsCoreClient(
                "http://opscore.test", "k", transport=httpx.MockTransport(script), **options
            ) as client:
                result = getattr(client, method)(*args, **kwargs)
                return await result if inspect.isawaitable(result) else result

        return asyncio.run(go())

    return run


def test_connection_errors_are_retried_for_idempotent_calls(call: Callable[..., Any]) -> None:
    script = Script(refused(), refused(), httpx.Response(200, json=STATE))
    state = call(script, "get_state", "a")
    assert state.state == "idle"
    assert len(script.requests) == 3


def test_retries_give_up_with_a_connection_error(call: Callable[..., Any]) -> None:
    script = Script(refused())
    with pytest.raises(OpsCoreConnectionError) as caught:
        call(script, "get_agent", "a")
    assert len(script.requests) == 4  # the call and max_retries=3 retries
    error = caught.value
    assert error.status is None
    assert error.code == "connection_error"
    assert "http://opscore.test/v1/opscore/agents/a" in str(error)
    assert "\n" not in str(error)
    assert isinstance(error.__cause__, httpx.ConnectError)


@pytest.mark.parametrize(
    ("method", "args", "kwargs"),
    [
        ("update_state", ("a", "idle"), {}),
        ("register_agent", ("no id given",), {}),
        ("submit_result", ("t", "completed"), {}),
        ("cancel_session", ("s",), {}),
        ("retry_task", ("t",), {}),
    ],
)
def test_connection_errors_are_not_retried_for_unsafe_calls(
    call: Callable[..., Any], method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    script = Script(refused(), httpx.Response(200, json={}))
    with pytest.raises(OpsCoreConnectionError):
        call(script, method, *args, **kwargs)
    assert len(script.requests) == 1


def test_register_with_an_id_is_safe_to_retry(call: Callable[..., Any]) -> None:
    script = Script(refused(), httpx.Response(200, json={"agentId": "a", "name": "n"}))
    assert call(script, "register_agent", "n", agent_id="a").agent_id == "a"
    assert len(script.requests) == 2


def test_triggers_carry_one_idempotency_key_across_retries(call: Callable[..., Any]) -> None:
    script = Script(
        refused(), problem(503, "storage_unavailable", "down"), httpx.Response(202, json=TRIGGERED)
    )
    assert call(script, "trigger", "w").session_id == "s-1"
    keys = {r.headers["idempotency-key"] for r in script.requests}
    assert len(script.requests) == 3
    assert len(keys) == 1

    mine = Script(refused(), httpx.Response(202, json=TRIGGERED))
    call(mine, "trigger_workflow", "agent-1", "w", idempotency_key="my-key")
    assert [r.headers["idempotency-key"] for r in mine.requests] == ["my-key", "my-key"]
    assert mine.requests[0].url.path == "/v1/opscore/agent/agent-1/workflow"
    assert json.loads(mine.requests[0].content) == {"workflowDefinitionId": "w"}

    separate = Script(httpx.Response(202, json=TRIGGERED))
    call(separate, "trigger", "w")
    call(separate, "trigger", "w")
    first, second = (r.headers["idempotency-key"] for r in separate.requests)
    assert first != second


def test_503_is_retried_then_raised_as_server_error(call: Callable[..., Any]) -> None:
    script = Script(
        problem(503, "storage_unavailable", "redis is down"), httpx.Response(200, json=STATE)
    )
    assert call(script, "get_state", "a").state == "idle"
    assert len(script.requests) == 2

    always = Script(problem(503, "storage_unavailable", "redis is down"))
    with pytest.raises(ServerError) as caught:
        call(always, "list_tasks")
    assert len(always.requests) == 4
    assert (caught.value.status, caught.value.code) == (503, "storage_unavailable")
    assert str(caught.value) == "503 storage_unavailable: redis is down [request req-1]"


def test_503_is_not_retried_for_unsafe_calls_nor_other_5xx(call: Callable[..., Any]) -> None:
    script = Script(problem(503, "storage_unavailable", "down"))
    with pytest.raises(ServerError):
        call(script, "update_state", "a", "idle")
    assert len(script.requests) == 1

    internal = Script(problem(500, "internal_error", "bug"))
    with pytest.raises(ServerError):
        call(internal, "get_agent", "a")
    assert len(internal.requests) == 1


def test_retry_after_is_honoured_within_the_backoff_cap(call: Callable[..., Any]) -> None:
    busy = httpx.Response(503, json={"detail": "busy"}, headers={"Retry-After": "120"})
    script = Script(busy, httpx.Response(200, json=STATE))
    assert call(script, "get_state", "a").state == "idle"  # capped at backoff_max_s


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, "invalid_input", ValidationError),
        (401, "unauthenticated", AuthenticationError),
        (404, "task_not_found", NotFoundError),
        (409, "invalid_session_transition", ConflictError),
        (413, "payload_too_large", ValidationError),
        (422, "invalid_workflow", ValidationError),
        (500, "internal_error", ServerError),
        (501, "not_implemented", ServerError),
        (418, "teapot", OpsCoreError),
    ],
)
def test_problem_documents_become_the_right_exception(
    call: Callable[..., Any], status: int, code: str, cls: type[OpsCoreError]
) -> None:
    errors = [{"taskId": "s1", "field": "nextTaskId", "message": "unknown task 'x'"}]
    script = Script(problem(status, code, "it went wrong", errors=errors))
    with pytest.raises(OpsCoreError) as caught:
        call(script, "get_task", "t")
    error = caught.value
    assert type(error) is cls
    assert (error.status, error.code, error.detail, error.request_id) == (
        status,
        code,
        "it went wrong",
        "req-1",
    )
    assert error.errors == errors
    assert str(error) == (
        f"{status} {code}: it went wrong (s1.nextTaskId: unknown task 'x') [request req-1]"
    )


def test_bodies_that_are_not_problem_documents(call: Callable[..., Any]) -> None:
    html = httpx.Response(
        502, text="<html>\nBad Gateway\n</html>", headers={"X-Request-ID": "gw-9"}
    )
    with pytest.raises(ServerError) as caught:
        call(Script(html), "get_agent", "a")
    assert caught.value.request_id == "gw-9"
    assert caught.value.code == "server_error"
    assert "\n" not in str(caught.value)

    fastapi = httpx.Response(
        422,
        json={"detail": [{"loc": ["body", "name"], "msg": "Field required", "type": "missing"}]},
    )
    with pytest.raises(ValidationError) as invalid:
        call(Script(fastapi), "register_agent", "x")
    assert invalid.value.errors == [{"field": "name", "message": "Field required"}]

    garbage = httpx.Response(200, text="not json")
    with pytest.raises(OpsCoreError) as unexpected:
        call(Script(garbage), "get_agent", "a")
    assert unexpected.value.code == "invalid_response"


def test_timeouts_are_connection_errors(call: Callable[..., Any]) -> None:
    script = Script(httpx.ReadTimeout("timed out"))
    with pytest.raises(OpsCoreConnectionError) as caught:
        call(script, "update_state", "a", "idle")
    assert caught.value.code == "timeout"
    assert "timed out" in str(caught.value)
    assert len(script.requests) == 1


def test_wait_keeps_polling_until_final(call: Callable[..., Any]) -> None:
    def session(status: str) -> httpx.Response:
        return httpx.Response(200, json={"sessionId": "s", "workflowId": "w", "status": status})

    script = Script(session("pending"), refused(), session("running"), session("completed"))
    final = call(script, "wait", "s", timeout_s=30, poll_interval_s=0.001)
    assert final.status == "completed"
    assert len(script.requests) == 4


def test_requests_carry_key_agent_and_encoded_ids(call: Callable[..., Any]) -> None:
    script = Script(
        httpx.Response(200, json={"id": "a:b", "taskId": "b", "sessionId": "a", "status": "queued"})
    )
    call(script, "get_task", "a:b/c")
    request = script.requests[0]
    assert request.headers["authorization"] == "Bearer k"
    assert request.headers["user-agent"].startswith("opscore-sdk/")
    assert request.url.raw_path == b"/v1/opscore/tasks/a%3Ab%2Fc"
