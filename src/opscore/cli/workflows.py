"""``opscore workflow ...``: store, inspect, validate (offline) and trigger workflows."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import click
from rich.markup import escape

from opscore.errors import WorkflowValidationError

from .context import ApiGroup, JsonObject, api_options, json_option, open_client, paging_options
from .output import (
    console,
    fetch_listing,
    plain_table,
    print_json,
    problem_lines,
    show_listing,
    stamp,
    workflows_table,
)
from .progress import DEFAULT_POLL_S, final_line, poll_until_final, watch_session

__all__ = ["load_definition_file", "workflow"]

_YAML_SUFFIXES = {".yaml", ".yml"}
_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


def _format_of(path: Path, raw: bytes) -> Literal["json", "yaml"]:
    # The same rule as the SDK's create_workflow_from_file.
    suffix = path.suffix.lower()
    if suffix in _YAML_SUFFIXES:
        return "yaml"
    if suffix == ".json" or raw.lstrip().startswith(b"{"):
        return "json"
    return "yaml"


def load_definition_file(path: Path) -> object:
    """The decoded JSON/YAML document in ``path`` (not yet validated).

    Raises WorkflowValidationError on a syntax error, OSError if unreadable.
    """
    from opscore.engine.definition import load_definition_text

    raw = path.read_bytes()
    return load_definition_text(raw, fmt=_format_of(path, raw))


@click.group(cls=ApiGroup)
def workflow() -> None:
    """Store, validate and trigger workflows (JSON or YAML).

    \b
    Examples:
      opscore workflow validate review.yaml        # offline, no server needed
      opscore workflow create review.yaml
      opscore workflow trigger review --input '{"doc": "a.txt"}' --wait
      opscore workflow trigger review.yaml --wait  # run a file without storing it
    """


@workflow.command()
@click.argument("file", type=_FILE)
@json_option
@api_options
def create(file: Path, as_json: bool) -> None:
    """Store the workflow definition in FILE (.json, .yaml or .yml).

    Storing the same id and version with identical content again is harmless; other
    content under an existing id and version is refused: bump "version".
    """
    with open_client() as client:
        try:
            stored = client.create_workflow_from_file(file)
        except OSError as exc:
            raise click.FileError(str(file), hint=exc.strerror or str(exc)) from exc
    if as_json:
        print_json(stored)
        return
    tasks = len(stored.definition.get("tasks") or [])
    click.echo(f"stored workflow {stored.id} version {stored.version} ({tasks} tasks)")


@workflow.command("list")
@paging_options
@json_option
@api_options
def list_workflows(limit: int, cursor: str | None, fetch_all: bool, as_json: bool) -> None:
    """List stored workflows (the latest version of each)."""
    with open_client() as client:
        items, next_cursor = fetch_listing(
            fetch_all,
            lambda: client.iter_workflows(page_size=limit),
            lambda: client.list_workflows(limit=limit, cursor=cursor),
        )
    show_listing(items, next_cursor, as_json=as_json, noun="workflows", table=workflows_table)


@workflow.command(short_help="Show a stored workflow and its tasks.")
@click.argument("workflow_id")
@click.option("--version", "version", help="A stored version (default: the latest).")
@json_option
@api_options
def show(workflow_id: str, version: str | None, as_json: bool) -> None:
    """Show a stored workflow and its tasks (--json: the whole record with its definition)."""
    with open_client() as client:
        found = client.get_workflow(workflow_id, version=version)
    if as_json:
        print_json(found)
        return
    out = console()
    out.print(
        f"[bold]{escape(found.id)}[/] version {escape(found.version)}: {escape(found.name)}"
        f"  (versions: {escape(', '.join(found.versions) or found.version)};"
        f" created {stamp(found.created_at)})"
    )
    if found.description:
        out.print(escape(found.description))
    table = plain_table(
        "task",
        "name",
        "capability",
        "routing",
        "next",
        "depends on",
        "on failure",
        wrap=("task", "name", "next", "depends on", "on failure"),
    )
    for task in found.definition.get("tasks") or []:
        table.add_row(
            escape(str(task.get("taskId"))),
            escape(str(task.get("name") or "")),
            escape(str(task.get("agentCapability") or "-")),
            escape(str(task.get("routing") or "session")),
            escape(_ids(task.get("nextTaskId"))),
            escape(_ids(task.get("dependsOn"))),
            escape(_ids(task.get("onFailure"))),
        )
    out.print(table)


def _ids(value: Any) -> str:
    if not value:
        return "-"
    return ", ".join(value) if isinstance(value, list) else str(value)


@workflow.command()
@click.argument("workflow_id")
@click.option("--version", "version", help="Delete only this version (default: all of them).")
@api_options
def delete(workflow_id: str, version: str | None) -> None:
    """Delete a stored workflow (every version, unless --version)."""
    with open_client() as client:
        client.delete_workflow(workflow_id, version=version)
    which = f"version {version}" if version else "all versions"
    click.echo(f"deleted workflow {workflow_id} ({which})")


@workflow.command()
@click.argument("file", type=_FILE)
@json_option
def validate(file: Path, as_json: bool) -> None:
    """Check the definition in FILE offline, without a server.

    Runs every rule the server applies and prints each problem with its task and
    field. Exit code 0 when valid, 1 when not.
    """
    from opscore.engine.definition import parse_definition

    try:
        definition = parse_definition(load_definition_file(file))
    except WorkflowValidationError as exc:
        errors = list(exc.errors or [{"taskId": None, "field": None, "message": str(exc)}])
        if as_json:
            print_json({"valid": False, "file": str(file), "errors": errors})
        else:
            count = f"{len(errors)} problem{'s' if len(errors) != 1 else ''}"
            click.echo(f"{file}: invalid ({count})")
            for line in problem_lines(errors):
                click.echo(f"  - {line}")
        click.get_current_context().exit(1)
    except OSError as exc:
        raise click.FileError(str(file), hint=exc.strerror or str(exc)) from exc
    if as_json:
        print_json(
            {
                "valid": True,
                "file": str(file),
                "id": definition.id,
                "version": definition.version,
                "tasks": [task.task_id for task in definition.tasks],
                "errors": [],
            }
        )
        return
    tasks = len(definition.tasks)
    click.echo(
        f"{file}: valid: workflow {definition.id} version {definition.version} ({tasks} tasks)"
    )


@workflow.command()
@click.argument("workflow", metavar="ID_OR_FILE")
@click.option(
    "--agent", "agent_id", help="The session's agent (tasks with routing: session run on it)."
)
@click.option(
    "--input",
    "initial_payload",
    type=JsonObject(),
    help="The run's input: a JSON object or @file.json.",
)
@click.option("--version", "version", help="Stored version to run (default: the latest).")
@click.option(
    "--idempotency-key", help="Triggering again with the same key returns the same session."
)
@click.option(
    "--wait", is_flag=True, help="Show progress until the session ends; exit 1 unless it completed."
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.05),
    default=DEFAULT_POLL_S,
    show_default=True,
    help="Seconds between polls with --wait.",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0, min_open=True),
    help="With --wait: give up (exit 1) after this many seconds (default: no limit).",
)
@json_option
@api_options
def trigger(
    workflow: str,
    agent_id: str | None,
    initial_payload: dict[str, Any] | None,
    version: str | None,
    idempotency_key: str | None,
    wait: bool,
    interval: float,
    timeout_s: float | None,
    as_json: bool,
) -> None:
    """Start a run (session) of a workflow.

    ID_OR_FILE is a stored workflow's id, or a definition file (.json/.yaml) to run
    as it is, without storing it. Prints the new session id.
    """
    path = Path(workflow)
    definition: dict[str, Any] | None = None
    if path.is_file():
        if version is not None:
            raise click.UsageError("--version applies to a stored workflow, not to a file")
        definition = _definition_from(path)
    with open_client() as client:
        if definition is not None:
            started = client.trigger(
                definition=definition,
                initial_payload=initial_payload,
                agent_id=agent_id,
                idempotency_key=idempotency_key,
            )
        else:
            started = client.trigger(
                workflow,
                version=version,
                initial_payload=initial_payload,
                agent_id=agent_id,
                idempotency_key=idempotency_key,
            )
        if not wait:
            if as_json:
                print_json(started)
            else:
                click.echo(
                    f"started session {started.session_id} "
                    f"(workflow {started.workflow_id} v{started.workflow_version})"
                )
                click.echo(f"watch it: opscore session watch {started.session_id}")
            return
        if as_json:
            session = poll_until_final(
                client, started.session_id, poll_s=interval, timeout_s=timeout_s
            )
            print_json(session)
        else:
            out = console()
            out.print(f"started session {escape(started.session_id)}")
            session = watch_session(
                client, started.session_id, out, poll_s=interval, timeout_s=timeout_s
            )
            out.print(final_line(session))
    if session.status != "completed":
        click.get_current_context().exit(1)


def _definition_from(path: Path) -> dict[str, Any]:
    try:
        data = load_definition_file(path)
    except WorkflowValidationError as exc:
        raise click.ClickException(f"{path}: {exc}") from exc
    except OSError as exc:
        raise click.FileError(str(path), hint=exc.strerror or str(exc)) from exc
    if not isinstance(data, dict):
        raise click.ClickException(f"{path}: a workflow definition must be an object")
    return data
