"""Every API operation, described once (see :mod:`opscore_sdk._core`).

Each function builds a :class:`Call` (one request), a flow (several requests) or a
:class:`Pager` (a listing walked page by page). Both clients expose these functions as
methods with the same signature and docstring, returning the result (sync) or a
coroutine (async).
"""

from opscore_sdk._operations.agents import (
    agent_history,
    deregister_agent,
    get_agent,
    get_state,
    health,
    iter_agents,
    list_agents,
    ready,
    register_agent,
    update_state,
)
from opscore_sdk._operations.runs import (
    cancel_session,
    dead_letters,
    get_session,
    get_task,
    iter_sessions,
    iter_tasks,
    list_sessions,
    list_tasks,
    pause_session,
    resume_session,
    retry_task,
    submit_result,
    trigger,
    trigger_workflow,
    wait,
)
from opscore_sdk._operations.workflows import (
    create_workflow,
    create_workflow_from_file,
    delete_workflow,
    get_workflow,
    iter_workflows,
    list_workflows,
    workflow_schema,
)

__all__ = [
    "agent_history",
    "cancel_session",
    "create_workflow",
    "create_workflow_from_file",
    "dead_letters",
    "delete_workflow",
    "deregister_agent",
    "get_agent",
    "get_session",
    "get_state",
    "get_task",
    "get_workflow",
    "health",
    "iter_agents",
    "iter_sessions",
    "iter_tasks",
    "iter_workflows",
    "list_agents",
    "list_sessions",
    "list_tasks",
    "list_workflows",
    "pause_session",
    "ready",
    "register_agent",
    "resume_session",
    "retry_task",
    "submit_result",
    "trigger",
    "trigger_workflow",
    "update_state",
    "wait",
    "workflow_schema",
]
