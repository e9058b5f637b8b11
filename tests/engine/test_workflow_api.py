"""Workflow definition routes: create (JSON and YAML), validation errors, versions."""

from __future__ import annotations

from pathlib import Path

import httpx
import yaml

from support.opscore_server import OpsCore, linear_workflow

EXAMPLES = Path(__file__).parents[2] / "examples" / "workflows"


async def test_invalid_definition_lists_each_error_with_task_and_field(opscore: OpsCore) -> None:
    bad_types = linear_workflow(2)
    bad_types["tasks"][0]["maxRetries"] = -1
    bad_types["tasks"][1]["maxRetries"] = "many"
    bad_refs = linear_workflow(3)
    bad_refs["tasks"][0]["nextTaskId"] = "nowhere"
    bad_refs["tasks"][2]["onFailure"] = "missing"
    expected = [
        {("s1", "maxRetries"), ("s2", "maxRetries")},
        {("s1", "nextTaskId"), ("s3", "onFailure")},
    ]
    for bad, errors in zip((bad_types, bad_refs), expected, strict=True):
        response = await opscore.client.post("/v1/opscore/workflows", json=bad)
        assert response.status_code == 422
        assert response.headers["content-type"].startswith("application/problem+json")
        problem = response.json()
        assert problem["code"] == "invalid_workflow"
        assert errors <= {(e["taskId"], e["field"]) for e in problem["errors"]}, problem
    assert (await opscore.client.get("/v1/opscore/workflows")).json()["items"] == []


async def test_yaml_and_json_create_list_get_delete(opscore: OpsCore) -> None:
    yaml_text = (EXAMPLES / "document_review.yaml").read_bytes()
    created = await opscore.client.post(
        "/v1/opscore/workflows", content=yaml_text, headers={"Content-Type": "application/yaml"}
    )
    assert created.status_code == 201, created.text
    workflow_id = created.json()["id"]
    again = await opscore.client.post(
        "/v1/opscore/workflows", content=yaml_text, headers={"Content-Type": "application/yaml"}
    )
    assert again.status_code == 200  # identical content: accepted, nothing new
    seed = (EXAMPLES / "seed_sample.json").read_bytes()
    assert (
        await opscore.client.post(
            "/v1/opscore/workflows", content=seed, headers={"Content-Type": "application/json"}
        )
    ).status_code == 201
    listed = (await opscore.client.get("/v1/opscore/workflows", params={"limit": 1})).json()
    assert len(listed["items"]) == 1
    rest = await opscore.client.get(
        "/v1/opscore/workflows", params={"cursor": listed["nextCursor"]}
    )
    ids = {listed["items"][0]["id"], *(w["id"] for w in rest.json()["items"])}
    assert ids == {workflow_id, "sample_workflow_id"}
    got = (await opscore.client.get(f"/v1/opscore/workflows/{workflow_id}")).json()
    assert got["definition"]["id"] == workflow_id
    assert (await opscore.client.delete(f"/v1/opscore/workflows/{workflow_id}")).status_code == 204
    missing = await opscore.client.get(f"/v1/opscore/workflows/{workflow_id}")
    assert missing.status_code == 404
    assert missing.json()["code"] == "workflow_not_found"


async def test_same_version_with_other_content_conflicts(opscore: OpsCore) -> None:
    first = linear_workflow(1, workflow_id="pinned")
    assert (await opscore.client.post("/v1/opscore/workflows", json=first)).status_code == 201
    changed = linear_workflow(2, workflow_id="pinned")
    response = await opscore.client.post("/v1/opscore/workflows", json=changed)
    assert response.status_code == 409
    got = (await opscore.client.get("/v1/opscore/workflows/pinned")).json()
    assert len(got["definition"]["tasks"]) == 1


async def test_bad_bodies_are_clear_4xx(opscore: OpsCore) -> None:
    malformed = await opscore.client.post(
        "/v1/opscore/workflows",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert malformed.status_code in {400, 422}
    wrong_type = await opscore.client.post(
        "/v1/opscore/workflows", content=b"id: x", headers={"Content-Type": "text/plain"}
    )
    assert wrong_type.status_code == 400
    both = await opscore.client.post(
        "/v1/opscore/sessions",
        json={"workflowDefinitionId": "x", "workflowDefinition": linear_workflow(1)},
    )
    assert both.status_code == 400
    neither = await opscore.client.post("/v1/opscore/sessions", json={})
    assert neither.status_code == 400
    unknown_field = await opscore.client.post(
        "/v1/opscore/sessions", json={"workflowDefinitionId": "x", "surprise": 1}
    )
    assert unknown_field.status_code == 422
    unknown_workflow = await opscore.client.post(
        "/v1/opscore/sessions", json={"workflowDefinitionId": "nope"}
    )
    assert unknown_workflow.status_code == 404
    unknown_agent = await opscore.client.post(
        "/v1/opscore/agent/ghost/workflow", json={"workflowDefinition": linear_workflow(1)}
    )
    assert unknown_agent.status_code == 404
    assert (await opscore.client.get("/v1/opscore/sessions")).json()["items"] == []
    assert (await opscore.client.get("/v1/opscore/sessions/nope")).status_code == 404
    assert (await opscore.client.get("/v1/opscore/tasks/nope")).status_code == 404
    assert (await opscore.client.post("/v1/opscore/tasks/nope/retry")).status_code == 404


async def test_schema_is_served(opscore: OpsCore) -> None:
    schema = (await opscore.client.get("/v1/opscore/schemas/workflow")).json()
    assert "maxRetries" in str(schema)


async def test_workflow_dir_is_loaded_at_start(tmp_path: Path) -> None:
    from opscore.api.app import create_app
    from opscore.storage.memory import MemoryStorage
    from support.opscore_server import API_KEY, engine_settings

    app = create_app(engine_settings(tmp_path, workflow_dir=EXAMPLES), storage=MemoryStorage())
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=transport,
            base_url="http://opscore",
            headers={"Authorization": f"Bearer {API_KEY}"},
        ) as client,
    ):
        listed = (await client.get("/v1/opscore/workflows")).json()["items"]
    expected = {
        "sample_workflow_id",
        *(yaml.safe_load(p.read_text())["id"] for p in EXAMPLES.glob("*.yaml")),
    }
    assert {w["id"] for w in listed} >= expected


async def test_policy_values_beyond_their_bounds_are_rejected(opscore: OpsCore) -> None:
    for field, value in [
        ("completionTimeoutS", 1e12),
        ("retryBackoffS", 1e12),
        ("retryBackoffMaxS", 1e12),
        ("maxRetries", 10**9),
    ]:
        definition = linear_workflow(1)
        definition["tasks"][0][field] = value
        response = await opscore.client.post("/v1/opscore/workflows", json=definition)
        assert response.status_code == 422, (field, response.text)
        assert response.json()["errors"][0]["field"] == field


async def test_hostile_json_gets_a_4xx_and_changes_nothing(opscore: OpsCore) -> None:
    deep: dict[str, object] = {}
    for _ in range(500):
        deep = {"d": deep}
    lone_surrogate = '{"workflowDefinitionId": "x", "initialPayload": {"t": "\\ud800"}}'
    attempts = [
        ("POST", "/v1/opscore/agent/a1/state", {"json": {"state": "idle", "details": deep}}),
        (
            "POST",
            "/v1/opscore/sessions",
            {"json": {"workflowDefinitionId": "x", "initialPayload": deep}},
        ),
        (
            "POST",
            "/v1/opscore/sessions",
            {"content": lone_surrogate, "headers": {"Content-Type": "application/json"}},
        ),
        (
            "POST",
            "/v1/opscore/workflows",
            {"content": "[" * 50_000, "headers": {"Content-Type": "application/json"}},
        ),
        (
            "POST",
            "/v1/opscore/workflows",
            {"content": "- " * 20_000, "headers": {"Content-Type": "application/yaml"}},
        ),
        (
            "POST",
            "/v1/opscore/agent/a1/state",
            {
                "content": '{"state": "idle", "details": {"m": "\\udfff"}}',
                "headers": {"Content-Type": "application/json"},
            },
        ),
    ]
    for method, path, kwargs in attempts:
        response = await opscore.client.request(method, path, **kwargs)  # type: ignore[arg-type]
        assert 400 <= response.status_code < 500, (path, response.status_code, response.text[:200])
    assert (await opscore.client.get("/v1/opscore/agents")).json()["items"] == []
    assert (await opscore.client.get("/v1/opscore/sessions")).json()["items"] == []
    assert (await opscore.client.get("/v1/opscore/workflows")).json()["items"] == []


async def test_null_initial_payload_means_none(opscore: OpsCore) -> None:
    response = await opscore.client.post(
        "/v1/opscore/sessions",
        json={"workflowDefinition": linear_workflow(1), "initialPayload": None},
    )
    assert response.status_code == 202, response.text
