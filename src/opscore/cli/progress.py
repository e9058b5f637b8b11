"""Live progress of a session: ``opscore session watch``, ``workflow trigger --wait``, the demo.

The session is polled; each new snapshot redraws the task timeline (a rich ``Live``
table on a terminal) and prints one line per event since the last snapshot (a task
started, an attempt failed and will be retried, a task completed...). When the output
is not a terminal only the event lines and the final table are printed.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from rich.console import Console
from rich.live import Live
from rich.markup import escape

from opscore_sdk import OpsCoreClient, Session, Task, WaitTimeoutError

from .output import clock, styled, timeline_table

__all__ = ["EventTracker", "final_line", "poll_until_final", "watch_session"]

DEFAULT_POLL_S = 0.25


@dataclass
class EventTracker:
    """Turns successive snapshots of one session into human-readable event lines."""

    _status: dict[str, str] = field(default_factory=dict)
    _failed_attempts: dict[str, set[int]] = field(default_factory=dict)
    _session_status: str | None = None

    def events(self, session: Session) -> list[str]:
        """The lines describing what changed since the previous snapshot."""
        lines: list[str] = []
        previous = self._session_status
        if previous is not None and session.status != previous and not session.is_final:
            lines.append(f"session is now {styled(session.status)}")
        self._session_status = session.status
        for task in sorted(session.tasks or [], key=_queue_order):
            lines.extend(self._task_events(task))
        return lines

    def _task_events(self, task: Task) -> list[str]:
        lines = []
        step = f"[bold]{escape(task.task_id)}[/]"
        reported = self._failed_attempts.setdefault(task.id, set())
        for attempt in task.attempts:
            if attempt.status == "failed" and attempt.attempt not in reported:
                reported.add(attempt.attempt)
                on = f" on {escape(attempt.agent_id)}" if attempt.agent_id else ""
                error = escape(" ".join((attempt.error or "unknown error").split()))
                line = f"[red]✗[/] {step} attempt {attempt.attempt} failed{on}: {error}"
                if task.status in {"scheduled", "queued", "dispatched", "running"}:
                    when = f" at {clock(task.next_attempt_at)}" if task.next_attempt_at else ""
                    line += f" [magenta]→ retry{when}[/]"
                lines.append(line)
        previous = self._status.get(task.id)
        self._status[task.id] = task.status
        if task.status == previous:
            return lines
        agent = f" on {escape(task.agent_id)}" if task.agent_id else ""
        tries = f" (attempt {len(task.attempts)})" if len(task.attempts) > 1 else ""
        if task.status == "running":
            lines.append(f"[yellow]▶[/] {step} running{agent}{tries}")
        elif task.status == "completed":
            lines.append(f"[green]✓[/] {step} completed{agent}{tries}")
        elif task.status == "dead":
            error = escape(" ".join((task.error or "").split()))
            lines.append(f"[red]✗[/] {step} failed for good: {error}")
        elif task.status in {"skipped", "cancelled"}:
            lines.append(f"[dim]-[/] {step} {task.status}")
        return lines


def _queue_order(task: Task) -> tuple[bool, float]:
    return (task.queued_at is None, task.queued_at.timestamp() if task.queued_at else 0.0)


def watch_session(
    client: OpsCoreClient,
    session_id: str,
    out: Console,
    *,
    poll_s: float = DEFAULT_POLL_S,
    timeout_s: float | None = None,
) -> Session:
    """Show the session's progress until it is completed, failed or cancelled; return it.

    Raises the SDK's errors (e.g. NotFoundError for an unknown session), and
    WaitTimeoutError if ``timeout_s`` (seconds; ``None``: no limit) passes first.
    """
    deadline = _Deadline(session_id, timeout_s)
    session = client.get_session(session_id)
    tracker = EventTracker()
    try:
        with Live(timeline_table(session, out.width), console=out, auto_refresh=False) as live:
            while True:
                for line in tracker.events(session):
                    live.console.print(line)
                live.update(timeline_table(session, out.width), refresh=True)
                if session.is_final:
                    break
                deadline.check(session)
                time.sleep(poll_s)
                session = client.get_session(session_id)
    finally:
        if not out.is_terminal:
            out.line()  # Live ends its last render with a newline only on a terminal
    return session


def poll_until_final(
    client: OpsCoreClient,
    session_id: str,
    *,
    poll_s: float = DEFAULT_POLL_S,
    timeout_s: float | None = None,
) -> Session:
    """Wait quietly (``--json``) until the session is final; return it.

    Raises WaitTimeoutError if ``timeout_s`` passes first.
    """
    deadline = _Deadline(session_id, timeout_s)
    while True:
        session = client.get_session(session_id)
        if session.is_final:
            return session
        deadline.check(session)
        time.sleep(poll_s)


class _Deadline:
    def __init__(self, session_id: str, timeout_s: float | None) -> None:
        self._session_id = session_id
        self._timeout_s = timeout_s
        self._end = None if timeout_s is None else time.monotonic() + timeout_s

    def check(self, session: Session) -> None:
        if self._end is not None and time.monotonic() > self._end:
            raise WaitTimeoutError(
                f"session {self._session_id} is still {session.status} after {self._timeout_s:g}s"
            )


def final_line(session: Session) -> str:
    """One line saying how the session ended (rich markup)."""
    took = ""
    if session.started_at and session.finished_at:
        took = f" in {(session.finished_at - session.started_at).total_seconds():.1f}s"
    head = f"session {escape(session.session_id)} {styled(session.status)}{took}"
    if session.status == "completed":
        return f"[green]✓[/] {head}"
    reason = f": {escape(session.error)}" if session.error else ""
    return f"[red]✗[/] {head}{reason}"


def result_text(session: Session) -> str | None:
    """The session's result as indented JSON, if it has one."""
    if session.result is None:
        return None
    return json.dumps(session.result, indent=2, ensure_ascii=False)
