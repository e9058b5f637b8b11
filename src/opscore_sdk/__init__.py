"""Python SDK for the Ops-Core API.

* :class:`OpsCoreClient` (sync) and :class:`AsyncOpsCoreClient` (async) cover every
  endpoint; they share one description of the API (``opscore_sdk._operations``).
* :mod:`opscore_sdk.errors`: one exception tree rooted at :class:`OpsCoreError`.
* :mod:`opscore_sdk.models`: typed answers.
* :mod:`opscore_sdk.agent`: write an Ops-Core-managed agent in a few lines.

This package is a client: it never imports the server package ``opscore``.
"""

from opscore_sdk._core import API_KEY_ENV, API_URL_ENV, DEFAULT_API_URL
from opscore_sdk.aio import AsyncOpsCoreClient, OpsCoreClientAsync
from opscore_sdk.client import OpsCoreClient, OpsCoreClientSync
from opscore_sdk.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    OpsCoreConnectionError,
    OpsCoreError,
    ServerError,
    ValidationError,
    WaitTimeoutError,
)
from opscore_sdk.models import (
    Agent,
    AgentPage,
    AgentState,
    Attempt,
    Page,
    ResultAccepted,
    Session,
    SessionPage,
    StateAccepted,
    StateEntry,
    Task,
    TaskPage,
    TriggerResult,
    Workflow,
    WorkflowPage,
)

__all__ = [
    "API_KEY_ENV",
    "API_URL_ENV",
    "DEFAULT_API_URL",
    "Agent",
    "AgentPage",
    "AgentState",
    "AsyncOpsCoreClient",
    "Attempt",
    "AuthenticationError",
    "ConflictError",
    "NotFoundError",
    "OpsCoreClient",
    "OpsCoreClientAsync",
    "OpsCoreClientSync",
    "OpsCoreConnectionError",
    "OpsCoreError",
    "Page",
    "ResultAccepted",
    "ServerError",
    "Session",
    "SessionPage",
    "StateAccepted",
    "StateEntry",
    "Task",
    "TaskPage",
    "TriggerResult",
    "ValidationError",
    "WaitTimeoutError",
    "Workflow",
    "WorkflowPage",
]
