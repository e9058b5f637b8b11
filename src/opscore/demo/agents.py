"""The demo's sample agents, each a few lines with the SDK's agent helper.

* ``fetcher`` (``fetch``): returns canned notes on the topic.
* ``analyst`` (``analyze``): counts words and sentences; it **fails the first attempt of
  every task** it receives (a simulated model timeout), so Ops-Core retries it.
* ``writer`` (``keywords``, ``summarize``): picks keywords and writes the summary.

Each handler sleeps a moment so the progress is visible. Nothing here is shared
between agents or kept at module level: each :func:`build_agents` call starts afresh.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from typing import Any

from opscore_sdk.agent import Agent, TaskContext

__all__ = ["DemoFailure", "build_agents"]

#: How long each sample task "works", seconds: enough to see it run, short enough for a demo.
WORK_S = 0.6

_NOTES = (
    "Agent fleets need a control plane that knows which agent is idle and which is busy.",
    "Workflows hand tasks to agents by capability and retry the tasks that fail.",
    "A dead letter keeps a task whose retries ran out, so an operator can run it again.",
)
_STOP_WORDS = frozenset(
    {"a", "an", "and", "the", "that", "which", "is", "are", "to", "of", "by", "so", "can"}
    | {"it", "its", "run", "again", "keeps", "out"}
)


class DemoFailure(RuntimeError):
    """The analyst's simulated failure on a task's first attempt."""


def build_agents(api_url: str, api_key: str, *, work_s: float = WORK_S) -> list[Agent]:
    """The three sample agents, configured for the Ops-Core at ``api_url`` (not started)."""
    common: dict[str, Any] = {
        "api_url": api_url,
        "api_key": api_key,
        "report_backoff_s": 0.2,
        "report_backoff_max_s": 1.0,
        "stop_grace_s": 2.0,
    }
    fetcher = Agent("fetcher", capabilities=["fetch"], agent_id="demo-fetcher", **common)
    analyst = Agent("analyst", capabilities=["analyze"], agent_id="demo-analyst", **common)
    writer = Agent(
        "writer", capabilities=["keywords", "summarize"], agent_id="demo-writer", **common
    )

    @fetcher.task
    async def fetch(payload: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(work_s)
        return {"topic": payload.get("topic"), "notes": list(_NOTES)}

    failed_once: set[str] = set()

    @analyst.task
    async def analyze(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        await asyncio.sleep(work_s / 2)
        task_key = str(ctx.task_id)
        if task_key not in failed_once:
            failed_once.add(task_key)
            raise DemoFailure("model timed out (simulated: the first attempt always fails)")
        await asyncio.sleep(work_s / 2)
        notes = [str(note) for note in payload.get("notes", [])]
        words = sum(len(note.split()) for note in notes)
        return {"notes": len(notes), "words": words, "tone": "practical"}

    @writer.task
    async def write(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        await asyncio.sleep(work_s)
        if ctx.task_name == "keywords":
            return {"keywords": _keywords(payload.get("notes", []), int(payload.get("count", 3)))}
        analysis = payload.get("analysis") or {}
        keywords = ", ".join(payload.get("keywords") or [])
        summary = (
            f"{analysis.get('notes', 0)} notes ({analysis.get('words', 0)} words) on "
            f"{payload.get('topic')}: {analysis.get('tone', 'neutral')} in tone; "
            f"keywords: {keywords}."
        )
        return {"summary": summary}

    return [fetcher, analyst, writer]


def _keywords(notes: list[Any], count: int) -> list[str]:
    words = re.findall(r"[a-z]+", " ".join(str(note) for note in notes).lower())
    counted = Counter(w for w in words if w not in _STOP_WORDS and len(w) > 3)
    return [word for word, _ in counted.most_common(count)]
