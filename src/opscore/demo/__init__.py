"""``opscore demo``: Ops-Core, three sample agents and a sample workflow, all in one process.

* :mod:`opscore.demo.workflow`: the sample workflow (a fan-out and a fan-in).
* :mod:`opscore.demo.agents`: the sample agents, written with :class:`opscore_sdk.agent.Agent`;
  the analyst fails the first attempt of every task, so the run shows a retry.
* :mod:`opscore.demo.stack`: :class:`DemoStack` serves Ops-Core on throwaway storage and
  runs the agents in a background thread, and removes everything when stopped.
"""

from opscore.demo.agents import DemoFailure, build_agents
from opscore.demo.stack import DemoStack
from opscore.demo.workflow import DEMO_INPUT, DEMO_SHAPE, DEMO_WORKFLOW

__all__ = ["DEMO_INPUT", "DEMO_SHAPE", "DEMO_WORKFLOW", "DemoFailure", "DemoStack", "build_agents"]
