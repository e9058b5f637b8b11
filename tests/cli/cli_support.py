"""Helpers of the CLI tests: the in-process command runner, test workflows, polling."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from click.testing import CliRunner, Result

from opscore.cli.main import main

T = TypeVar("T")

API_KEY = "cli-test-key-5b1f"
WORK = "work"
#: Fast retries for test workflows.
FAST = {"retryBackoffS": 0.05, "retryJitter": False}


class Cli:
    """Runs ``opscore`` commands in-process against one server."""

    def __init__(self, url: str) -> None:
        self.url = url
        # A wide "terminal" so tables never wrap the ids the tests look for.
        self.env = {"OPSCORE_API_URL": url, "OPSCORE_API_KEY": API_KEY, "COLUMNS": "250"}

    def __call__(
        self, *args: str, env: Mapping[str, str | None] | None = None, obj: Any = None
    ) -> Result:
        runner = CliRunner(env={**self.env, **(env or {})})
        return runner.invoke(main, list(args), obj=obj, prog_name="opscore", catch_exceptions=False)

    def json(self, *args: str) -> Any:
        """Run a command with ``--json``; assert success; the parsed stdout."""
        result = self(*args, "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)


def workflow(workflow_id: str, *steps: Mapping[str, Any], **defaults: Any) -> dict[str, Any]:
    """A chain of tasks on capability ``work``, one per ``steps`` item (its parameters)."""
    tasks = []
    for i, parameters in enumerate(steps, start=1):
        tasks.append(
            {
                "taskId": f"s{i}",
                "routing": "capability",
                "agentCapability": WORK,
                "parameters": dict(parameters),
                "nextTaskId": f"s{i + 1}" if i < len(steps) else None,
            }
        )
    return {
        "id": workflow_id,
        "name": f"{workflow_id} workflow",
        "version": "1",
        "taskDefaults": {**FAST, **defaults},
        "tasks": tasks,
    }


def error_lines(result: Result) -> list[str]:
    """What the command itself wrote on stderr: the server thread's JSON log lines,
    which land in the same captured stderr, are left out."""
    return [line for line in result.stderr.splitlines() if line and not line.startswith("{")]


def eventually(probe: Callable[[], T], check: Callable[[T], bool], timeout_s: float = 30.0) -> T:
    """Poll ``probe`` until ``check`` accepts its value; fail after a generous timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if check(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s: {value!r}")
        time.sleep(0.02)
