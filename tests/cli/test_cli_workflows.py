"""``opscore workflow ...``: create, list, show, delete, validate (offline), trigger."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_support import Cli, error_lines, workflow
from click.testing import CliRunner

from opscore.cli.main import main
from opscore_sdk.agent import Agent

INVALID = {
    "id": "broken",
    "name": "broken",
    "tasks": [
        {"taskId": "a", "nextTaskId": "b"},
        {"taskId": "b", "nextTaskId": "a"},
        {"taskId": "c", "dependsOn": ["nowhere"]},
    ],
}


def write(path: Path, data: dict[str, Any]) -> Path:
    if path.suffix in {".yaml", ".yml"}:
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    else:
        path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_create_list_show_delete(cli: Cli, tmp_path: Path) -> None:
    json_file = write(tmp_path / "one.json", workflow("one", {"n": 1}, {"n": 2}))
    yaml_file = write(tmp_path / "two.yaml", workflow("two", {"n": 1}))

    result = cli("workflow", "create", str(json_file))
    assert result.exit_code == 0, result.output
    assert result.stdout == "stored workflow one version 1 (2 tasks)\n"
    stored = cli.json("workflow", "create", str(yaml_file))
    assert stored["id"] == "two"
    assert stored["definition"]["tasks"][0]["taskId"] == "s1"

    listed = cli.json("workflow", "list")
    assert sorted(w["id"] for w in listed["items"]) == ["one", "two"]
    table = cli("workflow", "list")
    assert "one" in table.stdout
    assert "two workflow" in table.stdout

    shown = cli("workflow", "show", "one")
    assert shown.exit_code == 0
    assert "one version 1" in shown.stdout
    assert "s1" in shown.stdout
    assert "s2" in shown.stdout

    # A second version; show --version picks one, show alone the latest.
    write(json_file, {**workflow("one", {"n": 1}), "version": "2"})
    cli.json("workflow", "create", str(json_file))
    assert cli.json("workflow", "show", "one")["version"] == "2"
    old = cli.json("workflow", "show", "one", "--version", "1")
    assert old["version"] == "1"
    assert old["versions"] == ["1", "2"]
    assert len(old["definition"]["tasks"]) == 2

    result = cli("workflow", "delete", "one", "--version", "1")
    assert result.exit_code == 0
    assert result.stdout == "deleted workflow one (version 1)\n"
    assert cli.json("workflow", "show", "one")["versions"] == ["2"]
    assert cli("workflow", "delete", "one").stdout == "deleted workflow one (all versions)\n"
    missing = cli("workflow", "show", "one")
    assert missing.exit_code == 1
    assert len(error_lines(missing)) == 1


def test_list_pages(cli: Cli, tmp_path: Path) -> None:
    for name in ("w1", "w2", "w3"):
        cli.json("workflow", "create", str(write(tmp_path / f"{name}.json", workflow(name, {}))))
    page = cli.json("workflow", "list", "--limit", "2")
    assert len(page["items"]) == 2
    assert page["nextCursor"]
    everything = cli.json("workflow", "list", "--limit", "2", "--all")
    assert sorted(w["id"] for w in everything["items"]) == ["w1", "w2", "w3"]


def test_create_an_invalid_file_lists_every_problem(cli: Cli, tmp_path: Path) -> None:
    result = cli("workflow", "create", str(write(tmp_path / "broken.json", INVALID)))
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = error_lines(result)
    assert lines[0].startswith("Error: invalid workflow definition 'broken'")
    assert "422 invalid_workflow" in lines[0]
    problems = "\n".join(lines[1:])
    assert "cycle" in problems
    assert "task 'c', field 'dependsOn'" in problems
    assert "nowhere" in problems


def test_create_a_conflicting_version(cli: Cli, tmp_path: Path) -> None:
    path = write(tmp_path / "w.json", workflow("w", {"n": 1}))
    cli.json("workflow", "create", str(path))
    write(path, workflow("w", {"n": 2}))
    result = cli("workflow", "create", str(path))
    assert result.exit_code == 1
    assert len(error_lines(result)) == 1
    assert "409" in error_lines(result)[0]


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml", ".wf"])
def test_validate_offline_valid(tmp_path: Path, suffix: str) -> None:
    path = write(tmp_path / f"ok{suffix}", workflow("ok", {"n": 1}, {"n": 2}))
    # No server at all: validation is local.
    runner = CliRunner(env={"OPSCORE_API_URL": "http://127.0.0.1:9"})
    result = runner.invoke(main, ["workflow", "validate", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{path}: valid: workflow ok version 1 (2 tasks)\n"
    report = json.loads(runner.invoke(main, ["workflow", "validate", str(path), "--json"]).stdout)
    assert report == {
        "valid": True,
        "file": str(path),
        "id": "ok",
        "version": "1",
        "tasks": ["s1", "s2"],
        "errors": [],
    }


def test_validate_offline_invalid(tmp_path: Path) -> None:
    path = write(tmp_path / "broken.yaml", INVALID)
    runner = CliRunner()
    result = runner.invoke(main, ["workflow", "validate", str(path)])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0] == f"{path}: invalid (3 problems)"  # cycle, unknown task, unreachable
    assert any(line.startswith("  - task 'c', field 'dependsOn': ") for line in lines)
    assert any("cycle" in line for line in lines)

    as_json = runner.invoke(main, ["workflow", "validate", str(path), "--json"])
    assert as_json.exit_code == 1
    report = json.loads(as_json.stdout)
    assert report["valid"] is False
    fields = {(e["taskId"], e["field"]) for e in report["errors"]}
    assert ("c", "dependsOn") in fields


def test_validate_reports_syntax_errors_and_unknown_fields(tmp_path: Path) -> None:
    runner = CliRunner()
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"id": "x",', encoding="utf-8")
    result = runner.invoke(main, ["workflow", "validate", str(bad_json)])
    assert result.exit_code == 1
    assert "not valid JSON" in result.stdout
    assert "line 1" in result.stdout

    typo = write(
        tmp_path / "typo.json", {**workflow("t", {}), "tasks": [{"taskId": "a", "maxRetry": 1}]}
    )
    result = runner.invoke(main, ["workflow", "validate", str(typo)])
    assert result.exit_code == 1
    assert "task 'a', field 'maxRetry': unknown field 'maxRetry' (did you mean 'maxRetries'?)" in (
        result.stdout
    )


def test_an_unreadable_file_is_one_line(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "secret.json", workflow("secret", {}))
    path.chmod(0)
    if os.access(path, os.R_OK):  # root reads anything: produce the fault by hand
        read_bytes = Path.read_bytes

        def refuse(self: Path) -> bytes:
            if self.name == "secret.json":
                raise PermissionError(13, "Permission denied", str(self))
            return read_bytes(self)

        monkeypatch.setattr(Path, "read_bytes", refuse)
    try:
        for command in ("create", "validate", "trigger"):
            result = cli("workflow", command, str(path))
            assert result.exit_code == 1, command
            assert "Traceback" not in result.output
            assert len(error_lines(result)) == 1
            assert "Permission denied" in result.stderr
    finally:
        path.chmod(0o600)


def test_validate_usage_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["workflow", "validate", str(tmp_path / "nope.json")]).exit_code == 2
    assert runner.invoke(main, ["workflow", "validate"]).exit_code == 2
    assert runner.invoke(main, ["workflow", "validate", str(tmp_path)]).exit_code == 2


def test_trigger_a_stored_workflow(cli: Cli, tmp_path: Path, worker: Agent) -> None:
    cli.json("workflow", "create", str(write(tmp_path / "w.json", workflow("w", {"n": 1}))))
    result = cli("workflow", "trigger", "w", "--input", '{"x": 1}')
    assert result.exit_code == 0, result.output
    first, second = result.stdout.splitlines()
    assert first.startswith("started session ")
    assert first.endswith("(workflow w v1)")
    session_id = first.split()[2]
    assert second == f"watch it: opscore session watch {session_id}"

    final = cli.json("session", "watch", session_id)
    assert final["status"] == "completed"
    assert final["input"] == {"x": 1}


def test_trigger_json_idempotency_and_agent(cli: Cli, tmp_path: Path, worker: Agent) -> None:
    cli.json("workflow", "create", str(write(tmp_path / "w.json", workflow("w", {"n": 1}))))
    args = ("workflow", "trigger", "w", "--idempotency-key", "k-1", "--agent", "worker-1")
    started = cli.json(*args)
    assert started["workflowId"] == "w"
    assert started["sessionId"]
    assert cli.json(*args)["sessionId"] == started["sessionId"]  # same key, same session
    session = cli.json("session", "show", started["sessionId"])
    assert session["agentId"] == "worker-1"


def test_trigger_a_file_and_wait(cli: Cli, tmp_path: Path, worker: Agent) -> None:
    path = write(tmp_path / "inline.yaml", workflow("inline", {"n": 1}, {"failFirst": True}))
    result = cli("workflow", "trigger", str(path), "--wait", "--interval", "0.05")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "s1 completed on worker-1" in out
    assert "s2 attempt 1 failed on worker-1" in out
    assert "asked to fail attempt 1" in out
    assert "s2 completed on worker-1 (attempt 2)" in out
    assert "completed in" in out.splitlines()[-1]
    # The workflow ran inline: it was not stored.
    assert cli.json("workflow", "list")["items"] == []


def test_trigger_wait_json_and_a_failing_run(cli: Cli, tmp_path: Path, worker: Agent) -> None:
    path = write(tmp_path / "fails.json", workflow("fails", {"fail": True}, maxRetries=1))
    result = cli("workflow", "trigger", str(path), "--wait", "--json")
    assert result.exit_code == 1
    final = json.loads(result.stdout)
    assert final["status"] == "failed"
    assert [t["status"] for t in final["tasks"]] == ["dead"]
    assert len(final["tasks"][0]["attempts"]) == 2

    human = cli("workflow", "trigger", str(path), "--wait")
    assert human.exit_code == 1
    assert "s1 failed for good" in human.stdout
    assert "failed" in human.stdout.splitlines()[-1]


def test_trigger_errors(cli: Cli, tmp_path: Path) -> None:
    missing = cli("workflow", "trigger", "no_such_workflow")
    assert missing.exit_code == 1
    assert len(error_lines(missing)) == 1
    assert "404" in error_lines(missing)[0]

    broken = cli("workflow", "trigger", str(write(tmp_path / "broken.json", INVALID)))
    assert broken.exit_code == 1
    assert "422 invalid_workflow" in error_lines(broken)[0]

    syntax = tmp_path / "syntax.json"
    syntax.write_text("{", encoding="utf-8")
    result = cli("workflow", "trigger", str(syntax))
    assert result.exit_code == 1
    assert "not valid JSON" in result.stderr

    path = write(tmp_path / "w.json", workflow("w", {}))
    assert cli("workflow", "trigger", str(path), "--version", "1").exit_code == 2
    assert cli("workflow", "trigger", "w", "--input", "[]").exit_code == 2
    assert cli("workflow", "trigger").exit_code == 2
