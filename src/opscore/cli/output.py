"""Printing for the CLI: JSON for scripts, rich tables for people, one-line errors.

Everything the commands print goes through here, so ``--json`` output stays pure JSON
on stdout and every error is rendered the same way.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from types import MappingProxyType
from typing import Any, TypeVar

import click
from rich import box
from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.table import Table

from opscore_sdk import (
    Agent,
    AuthenticationError,
    OpsCoreConnectionError,
    OpsCoreError,
    Session,
    Task,
    ValidationError,
    Workflow,
)
from opscore_sdk.models import ApiModel

T = TypeVar("T")

__all__ = [
    "STATUS_STYLES",
    "agents_table",
    "clock",
    "console",
    "error_message",
    "more_hint",
    "offset",
    "plain_table",
    "print_json",
    "problem_lines",
    "sessions_table",
    "stamp",
    "styled",
    "task_note",
    "tasks_table",
    "timeline_table",
    "workflows_table",
]

#: Colours of agent states and session/task/attempt statuses.
STATUS_STYLES: Mapping[str, str] = MappingProxyType(
    {
        "completed": "green",
        "idle": "green",
        "finished": "green",
        "running": "yellow",
        "active": "yellow",
        "dispatched": "cyan",
        "queued": "cyan",
        "pending": "cyan",
        "initializing": "cyan",
        "scheduled": "magenta",
        "paused": "magenta",
        "failed": "red",
        "dead": "red",
        "error": "red",
        "cancelled": "dim",
        "skipped": "dim",
        "offline": "dim",
        "unknown": "dim",
    }
)


#: Width of output that goes to a file or pipe (no terminal to ask), unless $COLUMNS is set.
PIPE_WIDTH = 160


def console(*, stderr: bool = False) -> Console:
    """A rich console on the current stdout (or stderr); no colour when not a terminal,
    and wide lines then (a log file or a pipe has no width to wrap at)."""
    out = Console(stderr=stderr, highlight=False, soft_wrap=False)
    if not out.is_terminal and not os.environ.get("COLUMNS"):
        out.width = PIPE_WIDTH
    return out


def print_json(data: Any) -> None:
    """Print ``data`` (models become the API's camelCase JSON) as indented JSON."""
    click.echo(json.dumps(_jsonable(data), indent=2, ensure_ascii=False))


def _jsonable(data: Any) -> Any:
    if isinstance(data, ApiModel):
        return data.to_dict()
    if isinstance(data, dict):
        return {key: _jsonable(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [_jsonable(item) for item in data]
    return data


def fetch_listing(
    fetch_all: bool,
    every: Callable[[], Iterable[T]],
    one_page: Callable[[], Any],
) -> tuple[list[T], str | None]:
    """Every item (``--all``), or one page: ``(items, next cursor)``."""
    if fetch_all:
        return list(every()), None
    page = one_page()
    return list(page.items), page.next_cursor


def show_listing(
    items: Sequence[Any],
    next_cursor: str | None,
    *,
    as_json: bool,
    noun: str,
    table: Callable[[Sequence[Any]], Any],
) -> None:
    """Print a listing: JSON ``{"items", "nextCursor"}``, or a table and a paging hint."""
    if as_json:
        print_json({"items": items, "nextCursor": next_cursor})
        return
    if not items:
        click.echo(f"no {noun}")
    else:
        console().print(table(items))
    more_hint(next_cursor)


def more_hint(next_cursor: str | None) -> None:
    """Tell a person (on stderr) how to get the next page of a listing."""
    if next_cursor:
        click.echo(f"more: --cursor {next_cursor} (or --all)", err=True)


# -- errors -------------------------------------------------------------------------------


def problem_lines(errors: Iterable[dict[str, Any]]) -> list[str]:
    """Per-field problems as ``task 'a', field 'nextTaskId': message`` lines."""
    lines = []
    for problem in errors:
        where = []
        if problem.get("taskId"):
            where.append(f"task {problem['taskId']!r}")
        if problem.get("field"):
            where.append(f"field {problem['field']!r}")
        message = str(problem.get("message", problem))
        lines.append(f"{', '.join(where)}: {message}" if where else message)
    return lines


def error_message(exc: OpsCoreError, url: str) -> str:
    """What the CLI prints for an SDK error: one line (plus one line per field problem)."""
    if isinstance(exc, OpsCoreConnectionError):
        if exc.code == "timeout":
            return f"Error: Ops-Core at {url} did not answer in time ({_cause(exc)})"
        return f"Error: cannot reach Ops-Core at {url}: {_cause(exc)}"
    if isinstance(exc, AuthenticationError):
        return (
            f"Error: Ops-Core at {url} refused the API key ({exc.detail}); "
            "pass --api-key or set OPSCORE_API_KEY"
        )
    detail = exc.detail
    if isinstance(exc, ValidationError) and exc.errors:
        # The detail repeats the problems listed below it: keep only its summary.
        first = str(exc.errors[0].get("message", ""))
        if first and first in detail and ":" in detail:
            detail = detail.split(":", 1)[0]
    head = f"Error: {detail}"
    status = f"{exc.status} {exc.code}" if exc.status is not None else exc.code
    head += f" ({status}" + (f", request {exc.request_id})" if exc.request_id else ")")
    if isinstance(exc, ValidationError) and exc.errors:
        return "\n".join([head, *(f"  - {line}" for line in problem_lines(exc.errors))])
    return head


def _cause(exc: OpsCoreError) -> str:
    # The httpx error says it best ("[Errno 111] Connection refused"); the SDK's detail
    # repeats the request line.
    cause = exc.__cause__
    text = str(cause) if cause is not None and str(cause) else exc.detail
    return " ".join(text.split())


# -- small formatters -----------------------------------------------------------------------


def stamp(value: datetime | None) -> str:
    """A timestamp in local time, to the second; ``-`` when absent."""
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def clock(value: datetime | None) -> str:
    """Only the local time of day (timelines: everything happens on one day)."""
    return value.astimezone().strftime("%H:%M:%S") if value else "-"


def styled(status: str | None) -> str:
    """``status`` as rich markup in its colour."""
    text = escape(status or "-")
    style = STATUS_STYLES.get(status or "")
    return f"[{style}]{text}[/]" if style else text


def _short(value: Any, width: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def task_note(task: Task, width: int = 160) -> str:
    """The error column of a task: its error, else why an earlier attempt failed."""
    if task.error:
        return _short(task.error, width)
    failed = [a for a in task.attempts if a.status == "failed"]
    if failed:
        last = failed[-1]
        note = f"attempt {last.attempt} failed: {_short(last.error or 'unknown error', width)}"
        if task.status == "scheduled" and task.next_attempt_at:
            note += f"; retry at {clock(task.next_attempt_at)}"
        elif task.status == "completed":
            note += "; retried"
        return note
    return ""


# -- tables ---------------------------------------------------------------------------------


def plain_table(*columns: str, title: str | None = None, wrap: Sequence[str] = ()) -> Table:
    """A compact table; only the columns named in ``wrap`` (and an "error" column) wrap."""
    table = Table(
        title=title,
        title_justify="left",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        expand=False,
    )
    for column in columns:
        wraps = column in wrap or column == "error"
        table.add_column(column, overflow="fold", no_wrap=not wraps)
    return table


def agents_table(agents: Sequence[Agent]) -> Table:
    table = plain_table(
        "agent",
        "name",
        "state",
        "capabilities",
        "transport",
        "last seen",
        wrap=("agent", "name", "capabilities"),
    )
    for agent in agents:
        table.add_row(
            escape(agent.agent_id),
            escape(agent.name),
            styled(agent.state),
            escape(", ".join(agent.capabilities) or "-"),
            escape(agent.transport or "-"),
            stamp(agent.last_seen_at),
        )
    return table


def workflows_table(workflows: Sequence[Workflow]) -> Table:
    table = plain_table(
        "workflow",
        "version",
        "name",
        "tasks",
        "versions",
        "created",
        wrap=("workflow", "name", "versions"),
    )
    for workflow in workflows:
        table.add_row(
            escape(workflow.id),
            escape(workflow.version),
            escape(workflow.name),
            str(len(workflow.definition.get("tasks") or [])),
            escape(", ".join(workflow.versions) or workflow.version),
            stamp(workflow.created_at),
        )
    return table


def sessions_table(sessions: Sequence[Session]) -> Table:
    table = plain_table(
        "session",
        "workflow",
        "status",
        "agent",
        "created",
        "finished",
        "error",
        wrap=("workflow", "agent"),
    )
    for session in sessions:
        table.add_row(
            escape(session.session_id),
            escape(f"{session.workflow_id} v{session.workflow_version or '?'}"),
            styled(session.status),
            escape(session.agent_id or "-"),
            stamp(session.created_at),
            stamp(session.finished_at),
            escape(_short(session.error or "")),
        )
    return table


def tasks_table(tasks: Sequence[Task]) -> Table:
    table = plain_table(
        "task id",
        "step",
        "status",
        "agent",
        "attempts",
        "finished",
        "error",
        wrap=("task id", "step", "agent"),
    )
    for task in tasks:
        table.add_row(
            escape(task.id),
            escape(task.task_id),
            styled(task.status),
            escape(task.agent_id or "-"),
            str(len(task.attempts)),
            stamp(task.finished_at),
            escape(task_note(task)),
        )
    return table


def _queue_order(task: Task) -> tuple[bool, float]:
    return (task.queued_at is None, task.queued_at.timestamp() if task.queued_at else 0.0)


def offset(value: datetime | None, since: datetime | None) -> str:
    """``value`` as time since ``since``: ``+0.4s``, ``+12m05s``, ``+3h12m``; ``-`` if absent."""
    if value is None or since is None:
        return "-"
    seconds = max(0.0, (value - since).total_seconds())
    if seconds < 60:
        return f"+{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"+{minutes}m{secs:02d}s"
    return f"+{minutes // 60}h{minutes % 60:02d}m"


#: Below this console width the timeline's errors go under the table, not in a column.
WIDE_TIMELINE = 120


def timeline_table(session: Session, width: int = WIDE_TIMELINE) -> RenderableType:
    """A session's tasks in order of queueing: who ran them, when, how often, why not.

    Times are offsets from the session's start (the title says when that was). On a
    console narrower than :data:`WIDE_TIMELINE` the errors are listed under the table.
    """
    since = session.started_at or session.created_at
    wide = width >= WIDE_TIMELINE
    title = (
        f"session {escape(session.session_id)} · {escape(session.workflow_id)} "
        f"v{escape(session.workflow_version or '?')} · {styled(session.status)}"
        f" · started {clock(since)}"
    )
    columns = ["task", "status", "agent", "tries", "queued", "dispatched", "started", "finished"]
    table = plain_table(*columns, *(["error"] if wide else []), title=title, wrap=("task", "agent"))
    notes = []
    for task in sorted(session.tasks or [], key=_queue_order):
        cells = [
            escape(task.task_id),
            styled(task.status),
            escape(task.agent_id or "-"),
            str(len(task.attempts)),
            offset(task.queued_at, since),
            offset(task.dispatched_at, since),
            offset(task.started_at, since),
            offset(task.finished_at, since),
        ]
        note = task_note(task)
        if wide:
            cells.append(escape(note))
        elif note:
            notes.append(f"  [bold]{escape(task.task_id)}[/]: {escape(note)}")
        table.add_row(*cells)
    return Group(table, *notes) if notes else table
