"""``opscore task ...``: tasks across sessions, their attempts, and dead letters."""

from __future__ import annotations

import json

import click
from rich.markup import escape

from .context import ApiGroup, api_options, json_option, open_client, paging_options
from .output import (
    clock,
    console,
    fetch_listing,
    plain_table,
    print_json,
    show_listing,
    stamp,
    styled,
    task_note,
    tasks_table,
)

__all__ = ["task"]

TASK_STATUSES = [
    "queued",
    "scheduled",
    "dispatched",
    "running",
    "completed",
    "dead",
    "skipped",
    "cancelled",
]


@click.group(cls=ApiGroup)
def task() -> None:
    """Inspect tasks and their attempts; retry dead letters.

    A task's id is SESSION_ID:STEP (the session's id, a colon, the step's taskId).

    \b
    Examples:
      opscore task list --status dead       # the dead letters
      opscore task show 01a2...e5:analyze   # every attempt, with its error
      opscore task retry 01a2...e5:analyze
    """


@task.command("list")
@click.option(
    "--status",
    type=click.Choice(TASK_STATUSES),
    help="Only tasks in this status ('dead': the dead letters, retries used up).",
)
@click.option("--session", "session_id", help="Only tasks of this session.")
@click.option("--agent", "agent_id", help="Only tasks of this agent.")
@paging_options
@json_option
@api_options
def list_tasks(
    status: str | None,
    session_id: str | None,
    agent_id: str | None,
    limit: int,
    cursor: str | None,
    fetch_all: bool,
    as_json: bool,
) -> None:
    """List tasks; --status dead lists the dead letters."""
    filters = {"status": status, "session_id": session_id, "agent_id": agent_id}
    with open_client() as client:
        items, next_cursor = fetch_listing(
            fetch_all,
            lambda: client.iter_tasks(**filters, page_size=limit),
            lambda: client.list_tasks(**filters, limit=limit, cursor=cursor),
        )
    show_listing(items, next_cursor, as_json=as_json, noun="tasks", table=tasks_table)


@task.command()
@click.argument("task_id")
@json_option
@api_options
def show(task_id: str, as_json: bool) -> None:
    """Show a task (id SESSION_ID:STEP) with every attempt."""
    with open_client() as client:
        found = client.get_task(task_id)
    if as_json:
        print_json(found)
        return
    out = console()
    out.print(
        f"task [bold]{escape(found.id)}[/] (step {escape(found.task_id)}, "
        f"session {escape(found.session_id)}): {styled(found.status)}"
    )
    route = found.target_agent_id or (f"capability {found.capability}" if found.capability else "-")
    out.print(
        f"runs on {escape(route)} · priority {found.priority} · queued {stamp(found.queued_at)}"
        f" · finished {stamp(found.finished_at)}"
    )
    if found.parameters:
        out.print(f"parameters: {escape(json.dumps(found.parameters))}")
    note = task_note(found, width=1000)
    if note and not found.attempts:
        out.print(f"[red]error:[/] {escape(note)}")
    if found.result is not None:
        out.print(f"result: {escape(json.dumps(found.result))}")
    if found.attempts:
        table = plain_table(
            "attempt",
            "agent",
            "transport",
            "status",
            "dispatched",
            "started",
            "finished",
            "error",
            wrap=("agent",),
        )
        for attempt in found.attempts:
            table.add_row(
                str(attempt.attempt),
                escape(attempt.agent_id or "-"),
                escape(attempt.transport or "-"),
                styled(attempt.status),
                clock(attempt.dispatched_at),
                clock(attempt.started_at),
                clock(attempt.finished_at),
                escape(attempt.error or ""),
            )
        out.print(table)


@task.command(short_help="Re-run a dead task (a dead letter).")
@click.argument("task_id")
@json_option
@api_options
def retry(task_id: str, as_json: bool) -> None:
    """Run a dead task (a dead letter) again; its failed session resumes running."""
    with open_client() as client:
        queued = client.retry_task(task_id)
    if as_json:
        print_json(queued)
        return
    console().print(f"task {escape(queued.id)} is {styled(queued.status)} again")
