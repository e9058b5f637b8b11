"""``opscore session ...``: follow and control workflow runs."""

from __future__ import annotations

import click
from rich.markup import escape

from opscore_sdk import Session

from .context import ApiGroup, api_options, json_option, open_client, paging_options
from .output import (
    console,
    fetch_listing,
    print_json,
    sessions_table,
    show_listing,
    stamp,
    styled,
    timeline_table,
)
from .progress import DEFAULT_POLL_S, final_line, poll_until_final, result_text, watch_session

__all__ = ["session"]

SESSION_STATUSES = ["pending", "running", "paused", "completed", "failed", "cancelled"]


@click.group(cls=ApiGroup)
def session() -> None:
    """Follow and control workflow runs (sessions).

    \b
    Examples:
      opscore session list --status running
      opscore session watch 01a2...e5       # live progress; exit 1 unless completed
      opscore session show 01a2...e5        # the task timeline
      opscore session pause 01a2...e5
    """


@session.command("list")
@click.option("--status", type=click.Choice(SESSION_STATUSES), help="Only sessions in this status.")
@click.option("--agent", "agent_id", help="Only sessions of this agent.")
@click.option("--workflow", "workflow_id", help="Only runs of this workflow.")
@paging_options
@json_option
@api_options
def list_sessions(
    status: str | None,
    agent_id: str | None,
    workflow_id: str | None,
    limit: int,
    cursor: str | None,
    fetch_all: bool,
    as_json: bool,
) -> None:
    """List sessions, oldest first (session ids follow creation time)."""
    filters = {"status": status, "agent_id": agent_id, "workflow_id": workflow_id}
    with open_client() as client:
        items, next_cursor = fetch_listing(
            fetch_all,
            lambda: client.iter_sessions(**filters, page_size=limit),
            lambda: client.list_sessions(**filters, limit=limit, cursor=cursor),
        )
    show_listing(items, next_cursor, as_json=as_json, noun="sessions", table=sessions_table)


@session.command(short_help="Show a session and its task timeline.")
@click.argument("session_id")
@json_option
@api_options
def show(session_id: str, as_json: bool) -> None:
    """Show a session and its task timeline (status, agent, attempts, times, errors)."""
    with open_client() as client:
        found = client.get_session(session_id)
    if as_json:
        print_json(found)
        return
    _print_session(found)


def _print_session(found: Session) -> None:
    out = console()
    out.print(timeline_table(found, out.width))
    facts = [
        f"created {stamp(found.created_at)}",
        f"started {stamp(found.started_at)}",
        f"finished {stamp(found.finished_at)}",
    ]
    if found.agent_id:
        facts.insert(0, f"agent {escape(found.agent_id)}")
    out.print(" · ".join(facts))
    if found.error:
        out.print(f"[red]error:[/] {escape(found.error)}")
    result = result_text(found)
    if result is not None and found.status == "completed":
        out.print("result:")
        out.print(escape(result))


@session.command()
@click.argument("session_id")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.05),
    default=DEFAULT_POLL_S,
    show_default=True,
    help="Seconds between polls.",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0, min_open=True),
    help="Give up (exit 1) after this many seconds. Default: wait as long as it takes.",
)
@json_option
@api_options
def watch(session_id: str, interval: float, timeout_s: float | None, as_json: bool) -> None:
    """Show live progress until the session ends.

    Exit code 0 if it completed, 1 if it failed or was cancelled. With --json, wait
    quietly and print the final session.
    """
    with open_client() as client:
        if as_json:
            final = poll_until_final(client, session_id, poll_s=interval, timeout_s=timeout_s)
            print_json(final)
        else:
            out = console()
            final = watch_session(client, session_id, out, poll_s=interval, timeout_s=timeout_s)
            out.print(final_line(final))
    if final.status != "completed":
        click.get_current_context().exit(1)


def _control(action: str, session_id: str, as_json: bool) -> None:
    with open_client() as client:
        if action == "cancel":
            changed = client.cancel_session(session_id)
        elif action == "pause":
            changed = client.pause_session(session_id)
        else:
            changed = client.resume_session(session_id)
    if as_json:
        print_json(changed)
        return
    console().print(f"session {escape(changed.session_id)} is {styled(changed.status)}")


@session.command(short_help="Cancel a session.")
@click.argument("session_id")
@json_option
@api_options
def cancel(session_id: str, as_json: bool) -> None:
    """Cancel a session: queued tasks are dropped, running ones are not waited for."""
    _control("cancel", session_id, as_json)


@session.command(short_help="Pause a running session.")
@click.argument("session_id")
@json_option
@api_options
def pause(session_id: str, as_json: bool) -> None:
    """Pause a running session: no new task starts until it is resumed."""
    _control("pause", session_id, as_json)


@session.command()
@click.argument("session_id")
@json_option
@api_options
def resume(session_id: str, as_json: bool) -> None:
    """Resume a paused session."""
    _control("resume", session_id, as_json)
