"""The demo's workflow: fetch, then analyse and extract keywords in parallel, then summarise.

::

    fetch ──┬── analyze ───┬── summarize
            └── keywords ──┘

Tasks are routed by capability, so each step finds the agent that can do it. Retries
are quick (half a second, no jitter) so the retried step shows within the demo.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DEMO_INPUT", "DEMO_SHAPE", "DEMO_WORKFLOW"]

DEMO_WORKFLOW: dict[str, Any] = {
    "id": "demo_report",
    "name": "Demo: research report",
    "description": "Fetch notes on a topic, analyse them and pick keywords in parallel, "
    "then write a summary. The analyst fails its first attempt; the retry succeeds.",
    "version": "1",
    "taskDefaults": {
        "maxRetries": 2,
        "retryBackoffS": 0.5,
        "retryJitter": False,
        "dispatchTimeoutS": 5,
        "completionTimeoutS": 30,
    },
    "tasks": [
        {
            "taskId": "fetch",
            "name": "Fetch notes",
            "routing": "capability",
            "agentCapability": "fetch",
            "parameters": {"topic": "${input.topic}"},
            "nextTaskId": ["analyze", "keywords"],
        },
        {
            "taskId": "analyze",
            "name": "Analyse the notes",
            "routing": "capability",
            "agentCapability": "analyze",
            "parameters": {"notes": "${tasks.fetch.result.notes}"},
        },
        {
            "taskId": "keywords",
            "name": "Pick keywords",
            "routing": "capability",
            "agentCapability": "keywords",
            "parameters": {"notes": "${tasks.fetch.result.notes}", "count": 3},
        },
        {
            "taskId": "summarize",
            "name": "Write the summary",
            "routing": "capability",
            "agentCapability": "summarize",
            "dependsOn": ["analyze", "keywords"],
            "parameters": {
                "topic": "${input.topic}",
                "analysis": "${tasks.analyze.result}",
                "keywords": "${tasks.keywords.result.keywords}",
            },
        },
    ],
}

#: The run's input (``initialPayload``).
DEMO_INPUT: dict[str, Any] = {"topic": "agent fleets"}

#: The workflow's shape in one line, for people.
DEMO_SHAPE = "fetch → analyze + keywords (in parallel) → summarize"
