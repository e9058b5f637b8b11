"""``opscore session ...`` and ``opscore task ...`` against the real app and a real agent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cli_support import Cli, error_lines, eventually, workflow

from opscore_sdk.agent import Agent


def start(cli: Cli, tmp_path: Path, definition: dict[str, Any], *extra: str) -> str:
    """Trigger ``definition`` (from a file) through the CLI; the new session's id."""
    path = tmp_path / f"{definition['id']}.json"
    path.write_text(json.dumps(definition), encoding="utf-8")
    started = cli.json("workflow", "trigger", str(path), *extra)
    return str(started["sessionId"])


def finished(cli: Cli, session_id: str) -> dict[str, Any]:
    result = cli("session", "watch", session_id, "--json", "--interval", "0.05")
    session: dict[str, Any] = json.loads(result.stdout)
    return session


def test_show_is_a_task_timeline(cli: Cli, tmp_path: Path, worker: Agent) -> None:
    session_id = start(cli, tmp_path, workflow("tl", {"n": 1}, {"failFirst": True}))
    assert finished(cli, session_id)["status"] == "completed"

    result = cli("session", "show", session_id)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"session {session_id} · tl v1 · completed" in out
    for header in ("task", "status", "agent", "tries", "queued", "dispatched", "started"):
        assert header in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith(" s")}
    assert rows["s1"][1:4] == ["completed", "worker-1", "1"]
    assert rows["s2"][1:4] == ["completed", "worker-1", "2"]
    assert "attempt 1 failed" in out
    assert "retried" in out
    assert "result:" in out
    assert '"echo"' in out

    shown = cli.json("session", "show", session_id)
    assert [t["taskId"] for t in shown["tasks"]] == ["s1", "s2"]
    assert shown["result"]["s2"]["step"] == "s2"


def test_watch_completed_and_failed(cli: Cli, tmp_path: Path, worker: Agent) -> None:
    ok = start(cli, tmp_path, workflow("ok", {"sleep": 0.2}, {"failFirst": True}))
    result = cli("session", "watch", ok, "--interval", "0.05")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "s1 completed on worker-1" in out
    assert "s2 attempt 1 failed on worker-1: " in out
    assert "s2 completed on worker-1 (attempt 2)" in out
    assert out.index("s1 completed") < out.index("s2 attempt 1 failed")
    assert out.splitlines()[-1].startswith(f"✓ session {ok} completed in ")

    bad = start(cli, tmp_path, workflow("bad", {"fail": True}, maxRetries=0))
    result = cli("session", "watch", bad, "--interval", "0.05")
    assert result.exit_code == 1
    assert "s1 failed for good" in result.stdout
    assert result.stdout.splitlines()[-1].startswith(f"✗ session {bad} failed")

    as_json = cli("session", "watch", bad, "--json")
    assert as_json.exit_code == 1
    assert json.loads(as_json.stdout)["status"] == "failed"


def test_list_filters(cli: Cli, tmp_path: Path, worker: Agent) -> None:
    done = start(cli, tmp_path, workflow("first", {"n": 1}), "--agent", "worker-1")
    failed = start(cli, tmp_path, workflow("second", {"fail": True}, maxRetries=0))
    finished(cli, done)
    finished(cli, failed)

    everything = cli.json("session", "list")
    assert {s["sessionId"] for s in everything["items"]} == {done, failed}
    assert "tasks" not in everything["items"][0] or everything["items"][0]["tasks"] is None
    assert [s["sessionId"] for s in cli.json("session", "list", "--status", "failed")["items"]] == [
        failed
    ]
    by_agent = cli.json("session", "list", "--agent", "worker-1")
    assert [s["sessionId"] for s in by_agent["items"]] == [done]
    by_workflow = cli.json("session", "list", "--workflow", "second")
    assert [s["sessionId"] for s in by_workflow["items"]] == [failed]
    page = cli.json("session", "list", "--limit", "1")
    assert len(page["items"]) == 1
    assert page["nextCursor"]
    assert len(cli.json("session", "list", "--limit", "1", "--all")["items"]) == 2

    table = cli("session", "list")
    assert done in table.stdout
    assert failed in table.stdout
    assert "first v1" in table.stdout
    assert "task 's1' failed" in table.stdout
    assert cli("session", "list", "--status", "paused").stdout == "no sessions\n"


def test_pause_resume_cancel(cli: Cli, tmp_path: Path) -> None:
    # No agent has capability "work" here: the task waits, the session stays running.
    session_id = start(cli, tmp_path, workflow("waits", {"n": 1}))
    eventually(lambda: cli.json("session", "show", session_id)["status"], lambda s: s == "running")

    for args in (("--timeout", "0.2"), ("--timeout", "0.2", "--json")):
        gave_up = cli("session", "watch", session_id, "--interval", "0.05", *args)
        assert gave_up.exit_code == 1
        assert error_lines(gave_up) == [
            f"Error: session {session_id} is still running after 0.2s (wait_timeout)"
        ]

    result = cli("session", "pause", session_id)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"session {session_id} is paused\n"
    assert cli.json("session", "resume", session_id)["status"] == "running"
    cancelled = cli("session", "cancel", session_id)
    assert cancelled.stdout == f"session {session_id} is cancelled\n"
    assert cli.json("session", "show", session_id)["status"] == "cancelled"

    # Not allowed from its status: one line, exit 1.
    again = cli("session", "resume", session_id)
    assert again.exit_code == 1
    lines = error_lines(again)
    assert len(lines) == 1
    assert "409" in lines[0]

    watch = cli("session", "watch", session_id)
    assert watch.exit_code == 1  # a cancelled session is not a success
    assert "cancelled" in watch.stdout.splitlines()[-1]


def test_unknown_session(cli: Cli) -> None:
    for command in ("show", "watch", "cancel", "pause", "resume"):
        result = cli("session", command, "nope")
        assert result.exit_code == 1, command
        lines = error_lines(result)
        assert len(lines) == 1
        assert "404" in lines[0]
    assert cli("session", "list", "--status", "sleeping").exit_code == 2


def test_tasks_dead_letters_and_retry(cli: Cli, tmp_path: Path, worker: Agent) -> None:
    session_id = start(cli, tmp_path, workflow("dl", {"failFirst": True}, maxRetries=0))
    assert finished(cli, session_id)["status"] == "failed"
    task_id = f"{session_id}:s1"

    dead = cli.json("task", "list", "--status", "dead")
    assert [t["id"] for t in dead["items"]] == [task_id]
    table = cli("task", "list", "--status", "dead")
    assert task_id in table.stdout
    assert "asked to fail attempt 1" in table.stdout

    shown = cli("task", "show", task_id)
    assert shown.exit_code == 0
    assert f"task {task_id} (step s1, session {session_id}): dead" in shown.stdout
    assert "asked to fail attempt 1" in shown.stdout
    assert "attempt" in shown.stdout
    assert "worker-1" in shown.stdout

    retried = cli("task", "retry", task_id)
    assert retried.exit_code == 0, retried.output
    assert retried.stdout.startswith(f"task {task_id} is ")
    final = finished(cli, session_id)
    assert final["status"] == "completed"

    task = cli.json("task", "show", task_id)
    assert task["status"] == "completed"
    assert [a["status"] for a in task["attempts"]] == ["failed", "completed"]
    assert cli.json("task", "list", "--status", "dead")["items"] == []

    # Only dead tasks re-run.
    conflict = cli("task", "retry", task_id)
    assert conflict.exit_code == 1
    assert len(error_lines(conflict)) == 1
    assert "409" in error_lines(conflict)[0]


def test_task_list_filters(cli: Cli, tmp_path: Path, worker: Agent) -> None:
    one = start(cli, tmp_path, workflow("one", {"n": 1}, {"n": 2}))
    finished(cli, one)
    by_session = cli.json("task", "list", "--session", one)
    assert sorted(t["taskId"] for t in by_session["items"]) == ["s1", "s2"]
    assert len(cli.json("task", "list", "--agent", "worker-1")["items"]) == 2
    assert cli.json("task", "list", "--agent", "someone-else")["items"] == []
    page = cli.json("task", "list", "--limit", "1")
    assert len(page["items"]) == 1
    assert page["nextCursor"]
    assert len(cli.json("task", "list", "--limit", "1", "--all")["items"]) == 2
    assert cli("task", "list", "--status", "done").exit_code == 2

    missing = cli("task", "show", f"{one}:zz")
    assert missing.exit_code == 1
    assert len(error_lines(missing)) == 1
    assert cli("task", "retry", f"{one}:zz").exit_code == 1
