"""Workflow definitions through the async client against the real app in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sdk_support import workflow

from opscore_sdk import AsyncOpsCoreClient, ConflictError, NotFoundError, ValidationError

YAML_DEFINITION = """\
id: from-yaml
name: From YAML
version: "2"
# comments survive nowhere, but the text is sent as written
tasks:
  - taskId: fetch
    agentCapability: fetch
    nextTaskId: summarize
  - taskId: summarize
    agentCapability: summarize
"""


async def test_create_from_dict_is_idempotent_and_conflicts_on_changed_content(
    aclient: AsyncOpsCoreClient,
) -> None:
    definition = workflow("wf-dict", "cap", steps=2)
    record = await aclient.create_workflow(definition)
    assert (record.id, record.version, record.name) == ("wf-dict", "1", "wf-dict workflow")
    assert record.versions == ["1"]
    assert [t["taskId"] for t in record.definition["tasks"]] == ["s1", "s2"]
    assert record.created_at is not None

    again = await aclient.create_workflow(definition)
    assert again.created_at == record.created_at

    changed = {**definition, "name": "something else"}
    with pytest.raises(ConflictError) as caught:
        await aclient.create_workflow(changed)
    assert caught.value.status == 409

    v2 = await aclient.create_workflow({**changed, "version": "2"})
    assert v2.versions == ["1", "2"]


async def test_create_from_json_and_yaml_files(aclient: AsyncOpsCoreClient, tmp_path: Path) -> None:
    json_file = tmp_path / "flow.json"
    json_file.write_text(json.dumps(workflow("from-json", "cap")))
    assert (await aclient.create_workflow_from_file(json_file)).id == "from-json"

    yaml_file = tmp_path / "flow.yaml"
    yaml_file.write_text(YAML_DEFINITION)
    record = await aclient.create_workflow_from_file(str(yaml_file))
    assert (record.id, record.version, record.name) == ("from-yaml", "2", "From YAML")
    assert [t["taskId"] for t in record.definition["tasks"]] == ["fetch", "summarize"]

    # Without a telling suffix, YAML is recognised by its text.
    odd = tmp_path / "flow.workflow"
    odd.write_text(YAML_DEFINITION.replace("from-yaml", "odd-suffix"))
    assert (await aclient.create_workflow_from_file(odd)).id == "odd-suffix"

    with pytest.raises(FileNotFoundError):
        await aclient.create_workflow_from_file(tmp_path / "missing.yaml")


async def test_invalid_definitions_name_the_task_and_field(
    aclient: AsyncOpsCoreClient, tmp_path: Path
) -> None:
    broken = workflow("broken", "cap", steps=2)
    broken["tasks"][0]["nextTaskId"] = "nowhere"
    with pytest.raises(ValidationError) as caught:
        await aclient.create_workflow(broken)
    error = caught.value
    assert error.status == 422
    assert error.code == "invalid_workflow"
    assert any(e.get("taskId") == "s1" and e.get("field") for e in error.errors), error.errors
    assert "\n" not in str(error)

    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("id: [unclosed\n")
    with pytest.raises(ValidationError) as yaml_error:
        await aclient.create_workflow_from_file(bad_yaml)
    assert yaml_error.value.status in (400, 422)


async def test_list_iterate_get_versions_and_delete(aclient: AsyncOpsCoreClient) -> None:
    for i in range(3):
        await aclient.create_workflow(workflow(f"wf{i}", "cap"))
    await aclient.create_workflow({**workflow("wf0", "cap"), "version": "2"})

    page = await aclient.list_workflows(limit=2)
    assert len(page.items) == 2
    assert page.next_cursor
    ids = [w.id async for w in aclient.iter_workflows(page_size=2)]
    assert sorted(ids) == ["wf0", "wf1", "wf2"]
    latest = {w.id: w.version async for w in aclient.iter_workflows()}
    assert latest["wf0"] == "2"

    assert (await aclient.get_workflow("wf0")).version == "2"
    assert (await aclient.get_workflow("wf0", version="1")).version == "1"
    with pytest.raises(NotFoundError):
        await aclient.get_workflow("wf0", version="9")

    await aclient.delete_workflow("wf0", version="2")
    assert (await aclient.get_workflow("wf0")).versions == ["1"]
    await aclient.delete_workflow("wf0")
    with pytest.raises(NotFoundError) as caught:
        await aclient.get_workflow("wf0")
    assert caught.value.code == "workflow_not_found"
    with pytest.raises(NotFoundError):
        await aclient.delete_workflow("wf0")


async def test_workflow_schema(aclient: AsyncOpsCoreClient) -> None:
    schema = await aclient.workflow_schema()
    assert schema["type"] == "object"
    assert "tasks" in schema["properties"]
