"""Errors become one clear line and exit code 1 (API, connection) or 2 (usage); the key
and URL come from options, the environment or a local server's key file; help is useful."""

from __future__ import annotations

import re
from pathlib import Path

import click
import httpx
import pytest
from cli_support import API_KEY, Cli, error_lines
from click.testing import CliRunner

from opscore.cli.context import ClientHooks
from opscore.cli.main import main
from support.servers import unused_url


def test_down_server(tmp_path: Path) -> None:
    url = unused_url(path="")
    result = Cli(url)("agent", "list", obj=ClientHooks(max_retries=0))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert error_lines(result) == [
        f"Error: cannot reach Ops-Core at {url}: [Errno 111] Connection refused"
    ]


def test_down_server_after_the_sdk_retries() -> None:
    url = unused_url(path="")
    result = CliRunner().invoke(main, ["session", "list", "--url", url, "--api-key", "k", "--json"])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"Error: cannot reach Ops-Core at {url}: ")
    assert len(result.stderr.splitlines()) == 1


def test_wrong_key_and_no_key(cli: Cli) -> None:
    wrong = cli("agent", "list", "--api-key", "not-the-key")
    assert wrong.exit_code == 1
    assert wrong.stdout == ""
    assert error_lines(wrong) == [
        f"Error: Ops-Core at {cli.url} refused the API key (the API key is not valid); "
        "pass --api-key or set OPSCORE_API_KEY"
    ]
    missing = cli("agent", "list", env={"OPSCORE_API_KEY": None})
    assert missing.exit_code == 1
    lines = error_lines(missing)
    assert len(lines) == 1
    assert "refused the API key" in lines[0]


def test_key_from_a_local_server_key_file(cli: Cli, tmp_path: Path) -> None:
    # What a local `opscore serve` leaves behind: <data dir>/api_key.
    (tmp_path / ".opscore").mkdir()
    (tmp_path / ".opscore" / "api_key").write_text(API_KEY + "\n", encoding="utf-8")
    result = cli("agent", "list", "--json", env={"OPSCORE_API_KEY": None})
    assert result.exit_code == 0, result.output

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "api_key").write_text(API_KEY, encoding="utf-8")
    env = {"OPSCORE_API_KEY": None, "OPSCORE_DATA_DIR": str(elsewhere)}
    (tmp_path / ".opscore" / "api_key").unlink()
    assert cli("agent", "list", "--json", env=env).exit_code == 0


def test_url_option_wins_over_the_environment(cli: Cli) -> None:
    env = {"OPSCORE_API_URL": unused_url(path="")}
    assert cli("agent", "list", env=env, obj=ClientHooks(max_retries=0)).exit_code == 1
    assert cli("agent", "list", "--url", cli.url, env=env).exit_code == 0


def _answer(status: int, body: object) -> ClientHooks:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body, headers={"X-Request-ID": "req-1"})

    return ClientHooks(transport=httpx.MockTransport(handler), max_retries=0)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            500,
            {"status": 500, "code": "internal_error", "detail": "internal server error"},
            "Error: internal server error (500 internal_error, request req-1)",
        ),
        (
            503,
            {"status": 503, "code": "storage_unavailable", "detail": "storage is unavailable"},
            "Error: storage is unavailable (503 storage_unavailable, request req-1)",
        ),
        (200, ["not", "an", "agent"], "Error: unexpected answer to GET /v1/opscore/agents/a"),
    ],
)
def test_server_faults(status: int, body: object, expected: str) -> None:
    result = Cli("http://opscore.test")("agent", "show", "a", obj=_answer(status, body))
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = error_lines(result)
    assert len(lines) == 1
    assert lines[0].startswith(expected)


def test_timeout_is_one_line() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    hooks = ClientHooks(transport=httpx.MockTransport(handler), max_retries=0)
    result = Cli("http://opscore.test")("agent", "show", "a", obj=hooks)
    assert result.exit_code == 1
    assert error_lines(result) == [
        "Error: Ops-Core at http://opscore.test did not answer in time (timed out)"
    ]


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in group.commands.items():
        found.append((*prefix, name))
        if isinstance(command, click.Group):
            found.extend(_commands(command, (*prefix, name)))
    return found


COMMANDS = _commands(main)

#: Commands that print something a script may want, so they take --json.
JSON_COMMANDS = {
    ("agent", name) for name in ("register", "list", "show", "state", "set-state", "history")
} | {("workflow", name) for name in ("create", "list", "show", "validate", "trigger")}
JSON_COMMANDS |= {
    ("session", name) for name in ("list", "show", "watch", "cancel", "pause", "resume")
}
JSON_COMMANDS |= {("task", name) for name in ("list", "show", "retry")}


def test_every_command_is_there() -> None:
    expected = {
        ("serve",),
        ("demo",),
        ("agent",),
        ("workflow",),
        ("session",),
        ("task",),
        ("workflow", "delete"),
        ("agent", "deregister"),
        *JSON_COMMANDS,
    }
    assert set(COMMANDS) == expected


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help(command: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*command, "--help"], prog_name="opscore")
    assert result.exit_code == 0
    assert f"Usage: opscore {' '.join(command)}" in result.stdout
    has_json = re.search(r"^  --json ", result.stdout, re.MULTILINE) is not None
    assert has_json == (command in JSON_COMMANDS)
    if command in JSON_COMMANDS - {("workflow", "validate")}:
        assert "--url" in result.stdout
        assert "OPSCORE_API_URL" in result.stdout
        assert "--api-key" in result.stdout
        assert "OPSCORE_API_KEY" in result.stdout


def test_top_level_help_lists_every_group() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in ("serve", "demo", "agent", "workflow", "session", "task"):
        assert f"  {name} " in result.stdout
    for line in result.stdout.splitlines():
        if line.startswith("  ") and not line.startswith("  serve"):
            assert not line.endswith("..."), line  # our short help lines fit


def test_unknown_command_is_a_usage_error() -> None:
    assert CliRunner().invoke(main, ["frobnicate"]).exit_code == 2
    assert CliRunner().invoke(main, ["session", "show", "a", "--bogus"]).exit_code == 2


def test_docs_show_every_command() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "cli.md").read_text(encoding="utf-8")
    for command in COMMANDS:
        if len(command) == 2 or command in {("serve",), ("demo",)}:
            assert re.search(rf"^opscore {' '.join(command)}\b", docs, re.MULTILINE), command
