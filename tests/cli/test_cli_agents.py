"""``opscore agent ...`` against the real app."""

from __future__ import annotations

import json

from cli_support import Cli, error_lines


def test_register_with_every_option(cli: Cli) -> None:
    result = cli(
        "agent",
        "register",
        "--name",
        "Summarizer",
        "--id",
        "sum-1",
        "--capability",
        "summarize",
        "--capability",
        "translate",
        "--endpoint",
        "http://127.0.0.1:9/task",
        "--transport",
        "direct",
        "--version",
        "2.1",
        "--metadata",
        '{"team": "docs"}',
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "registered agent sum-1 (Summarizer)\n"

    agent = cli.json("agent", "show", "sum-1")
    assert agent["agentId"] == "sum-1"
    assert agent["name"] == "Summarizer"
    assert agent["capabilities"] == ["summarize", "translate"]
    assert agent["contactEndpoint"] == "http://127.0.0.1:9/task"
    assert agent["transport"] == "direct"
    assert agent["version"] == "2.1"
    assert agent["metadata"] == {"team": "docs"}


def test_register_json_and_a_server_generated_id(cli: Cli) -> None:
    created = cli.json("agent", "register", "--name", "anon")
    assert created["name"] == "anon"
    assert created["agentId"]
    shown = cli("agent", "show", created["agentId"])
    assert shown.exit_code == 0
    assert created["agentId"] in shown.stdout
    assert "anon" in shown.stdout


def test_metadata_from_a_file(cli: Cli, tmp_path: object) -> None:
    with open("meta.json", "w", encoding="utf-8") as file:
        json.dump({"owner": "ops"}, file)
    created = cli.json("agent", "register", "--name", "m", "--metadata", "@meta.json")
    assert created["metadata"] == {"owner": "ops"}


def test_list_filters_and_output(cli: Cli) -> None:
    cli.json("agent", "register", "--name", "alpha", "--id", "a-1", "--capability", "x")
    cli.json("agent", "register", "--name", "beta", "--id", "b-1", "--capability", "y")
    cli("agent", "set-state", "b-1", "idle")

    table = cli("agent", "list")
    assert table.exit_code == 0
    assert "a-1" in table.stdout
    assert "b-1" in table.stdout
    assert "capabilities" in table.stdout  # the header

    by_capability = cli.json("agent", "list", "--capability", "x")
    assert [a["agentId"] for a in by_capability["items"]] == ["a-1"]
    by_state = cli.json("agent", "list", "--state", "idle")
    assert [a["agentId"] for a in by_state["items"]] == ["b-1"]
    assert by_state["nextCursor"] is None


def test_list_pages(cli: Cli) -> None:
    for i in range(3):
        cli.json("agent", "register", "--name", f"n{i}", "--id", f"p-{i}")
    first = cli("agent", "list", "--limit", "2", "--json")
    page = json.loads(first.stdout)
    assert len(page["items"]) == 2
    assert page["nextCursor"]
    rest = cli.json("agent", "list", "--limit", "2", "--cursor", page["nextCursor"])
    assert len(rest["items"]) == 1

    # A person is told how to go on, on stderr (stdout stays the table).
    human = cli("agent", "list", "--limit", "2")
    assert f"--cursor {page['nextCursor']}" in human.stderr

    everything = cli.json("agent", "list", "--limit", "1", "--all")
    assert sorted(a["agentId"] for a in everything["items"]) == ["p-0", "p-1", "p-2"]
    assert everything["nextCursor"] is None


def test_empty_list(cli: Cli) -> None:
    result = cli("agent", "list")
    assert result.exit_code == 0
    assert result.stdout == "no agents\n"
    assert cli.json("agent", "list") == {"items": [], "nextCursor": None}


def test_state_set_state_and_history(cli: Cli) -> None:
    cli.json("agent", "register", "--name", "s", "--id", "s-1")
    result = cli("agent", "set-state", "s-1", "active", "--details", '{"job": 7}')
    assert result.exit_code == 0, result.output
    assert result.stdout == "s-1: state active accepted\n"
    accepted = cli.json("agent", "set-state", "s-1", "error", "--details", '{"why": "x"}')
    assert accepted == {"status": "accepted", "agentId": "s-1", "state": "error"}

    state = cli.json("agent", "state", "s-1")
    assert state["state"] == "error"
    assert state["details"] == {"why": "x"}
    human = cli("agent", "state", "s-1")
    assert human.stdout.startswith("s-1: error since ")

    history = cli.json("agent", "history", "s-1")
    assert [e["state"] for e in history["items"]] == ["error", "active"]
    assert history["items"][1]["details"] == {"job": 7}
    assert [e["state"] for e in cli.json("agent", "history", "s-1", "--limit", "1")["items"]] == [
        "error"
    ]
    assert [e["state"] for e in cli.json("agent", "history", "s-1", "--offset", "1")["items"]] == [
        "active"
    ]
    table = cli("agent", "history", "s-1")
    assert "active" in table.stdout
    assert '{"job": 7}' in table.stdout


def test_deregister(cli: Cli) -> None:
    cli.json("agent", "register", "--name", "d", "--id", "d-1")
    result = cli("agent", "deregister", "d-1")
    assert result.exit_code == 0
    assert result.stdout == "deregistered agent d-1\n"
    assert cli("agent", "show", "d-1").exit_code == 1


def test_unknown_agent_is_one_line_and_exit_1(cli: Cli) -> None:
    for command in (
        ["agent", "show", "ghost"],
        ["agent", "state", "ghost"],
        ["agent", "history", "ghost"],
        ["agent", "deregister", "ghost"],
        ["agent", "show", "ghost", "--json"],
    ):
        result = cli(*command)
        assert result.exit_code == 1, command
        assert result.stdout == ""
        lines = error_lines(result)
        assert len(lines) == 1, lines
        assert "ghost" in lines[0]
        assert "404" in lines[0]
        assert "Traceback" not in result.output


def test_usage_errors_exit_2(cli: Cli) -> None:
    for command in (
        ["agent", "register"],  # --name is required
        ["agent", "register", "--name", "x", "--metadata", "[1, 2]"],
        ["agent", "register", "--name", "x", "--metadata", "{not json"],
        ["agent", "register", "--name", "x", "--transport", "pigeon"],
        ["agent", "set-state", "a", "sleepy"],
        ["agent", "set-state", "a", "idle", "--details", '"text"'],
        ["agent", "list", "--limit", "0"],
        ["agent", "list", "--state", "bored"],
        ["agent", "show"],
        ["agent", "frobnicate"],
    ):
        result = cli(*command)
        assert result.exit_code == 2, (command, result.output)
        assert "Traceback" not in result.output
