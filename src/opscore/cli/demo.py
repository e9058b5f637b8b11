"""``opscore demo``: see Ops-Core run a workflow with a retried step, in one command."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.markup import escape

from opscore_sdk import OpsCoreClient, OpsCoreError, Session

from .output import console, error_message

if TYPE_CHECKING:
    from opscore.demo import DemoStack
from .progress import final_line, watch_session

__all__ = ["demo"]

#: The demo's run takes a few seconds; past this something is wrong: stop, never hang.
DEMO_TIMEOUT_S = 60.0


@click.command(short_help="See it work: server, agents, a workflow, in one go.")
@click.option(
    "--storage",
    type=click.Choice(["sqlite", "memory"]),
    default="sqlite",
    show_default=True,
    help="Throwaway storage: a SQLite file in a temporary directory, or memory.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Port of the demo API on 127.0.0.1 (0: a free port).",
)
@click.option(
    "--keep-running",
    is_flag=True,
    help="Keep the server and agents up after the run, to try other commands; Ctrl-C stops.",
)
def demo(storage: str, port: int, keep_running: bool) -> None:
    """Run Ops-Core, three sample agents and a sample workflow, then clean up.

    Starts the API on throwaway storage, starts three agents written with the SDK's
    agent helper, stores and triggers a four-step workflow (one step fails once and
    is retried), shows live progress and the result, and stops everything. Works
    offline; exit code 0 when the workflow completed.
    """
    from opscore.demo import DemoStack

    out = console()
    stack = DemoStack(storage="memory" if storage == "memory" else "sqlite", port=port)
    out.print(f"[bold]Ops-Core demo[/] · starting the API on throwaway {storage} storage…")
    with _terminate_as_interrupt():
        session = _run(out, stack, keep_running)
    if session is None or session.status != "completed":
        click.get_current_context().exit(1)


def _run(out: Console, stack: DemoStack, keep_running: bool) -> Session | None:
    """Start the stack, run the workflow, stop everything; the final session."""
    from opscore.demo import DEMO_INPUT, DEMO_SHAPE, DEMO_WORKFLOW

    session: Session | None = None
    try:
        stack.start()
    except (OSError, RuntimeError, OpsCoreError) as exc:
        raise click.ClickException(f"the demo could not start: {exc}") from exc
    try:
        with OpsCoreClient(stack.url, stack.api_key) as client:
            out.print(f"API ready at {stack.url} (storage in {escape(str(stack.data_dir))})")
            for agent in client.list_agents(limit=10).items:
                caps = ", ".join(agent.capabilities)
                flaky = (
                    " [dim](fails each task's first attempt)[/]" if agent.name == "analyst" else ""
                )
                name = f"[bold]{escape(agent.agent_id)}[/]"
                out.print(f"  agent {name} ({escape(caps)}) is {agent.state}{flaky}")
            stored = client.create_workflow(DEMO_WORKFLOW)
            out.print(f"stored workflow [bold]{stored.id}[/] v{stored.version}: {DEMO_SHAPE}")
            started = client.trigger(stored.id, initial_payload=DEMO_INPUT)
            payload = escape(json.dumps(DEMO_INPUT))
            out.print(f"triggered session [bold]{started.session_id}[/] with input {payload}\n")
            session = watch_session(
                client, started.session_id, out, poll_s=0.2, timeout_s=DEMO_TIMEOUT_S
            )
            out.print(final_line(session))
            _print_result(out, session)
            _print_next_steps(out, stack.url, stack.api_key, session, keep_running)
            if keep_running:
                out.print("\n[bold]Running[/]: press Ctrl-C to stop the demo.")
                _sleep_until_interrupted()
    except OpsCoreError as exc:
        click.echo(error_message(exc, stack.url), err=True)
        click.get_current_context().exit(1)
    finally:
        stack.stop()
        out.print("stopped the demo agents and server; the temporary storage is removed.")
    return session


def _print_result(out: Console, session: Session) -> None:
    results = session.result or {}
    summary = (results.get("summarize") or {}).get("summary")
    if summary:
        out.print(f"\n[bold]Result[/] (task summarize): {escape(str(summary))}")
    retried = [t.task_id for t in session.tasks or [] if len(t.attempts) > 1]
    if retried:
        out.print(f"Retried and completed: {escape(', '.join(retried))}")


def _print_next_steps(
    out: Console, url: str, api_key: str, session: Session, keep_running: bool
) -> None:
    sid = session.session_id
    out.print("\n[bold]Where to look next[/]")
    out.print(f"  API docs (OpenAPI):  {url}/docs")
    out.print(f"  this session (JSON): {url}/v1/opscore/sessions/{sid}")
    out.print("  CLI commands to try:")
    for command in (
        f"opscore session show {sid}",
        f"opscore task show {sid}:analyze",
        "opscore agent list",
        "opscore workflow show demo_report",
        "opscore session list --json",
    ):
        out.print(f"    {escape(command)}")
    if keep_running:
        out.print(
            f"  in another shell first: export OPSCORE_API_URL={url} OPSCORE_API_KEY={api_key}"
        )
    else:
        out.print(
            "  (the demo server stops now: run 'opscore demo --keep-running' to try them here,"
            " or start your own with 'opscore serve')"
        )


def _sleep_until_interrupted() -> None:
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C while the demo runs, so it still cleans up."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set signal handlers
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
