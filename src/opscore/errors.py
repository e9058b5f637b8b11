"""The one exception hierarchy of the Ops-Core server.

Every error the service raises on purpose derives from :class:`OpsCoreError`.
Driver errors (SQLite, Redis, HTTP to agents) are translated where they arise,
with ``raise ... from exc``. The API maps this tree to HTTP status codes in one
place (``opscore.api.problems``)::

    OpsCoreError
    ├── InvalidInputError          bad request content            (400)
    │   ├── AgentIdMismatchError   path and body agentId differ   (400)
    │   ├── WorkflowValidationError  a definition breaks a rule   (422)
    │   └── TemplateError          a ${...} parameter reference cannot be rendered
    ├── AuthenticationError        missing or wrong API key       (401)
    ├── WebhookSignatureError      bad or stale webhook signature (401)
    ├── NotFoundError                                             (404)
    │   ├── AgentNotFoundError
    │   ├── SessionNotFoundError
    │   ├── WorkflowNotFoundError
    │   └── TaskNotFoundError
    ├── ConflictError              request clashes with state     (409)
    │   ├── InvalidTransitionError  lifecycle table forbids it
    │   └── InvalidSessionTransitionError
    ├── PayloadTooLargeError                                      (413)
    ├── NotImplementedFeatureError                                (501)
    ├── StorageError               the backend failed             (503)
    │   └── StorageUnavailableError
    ├── DispatchError              a task could not be delivered (engine-internal)
    └── ConfigurationError         settings that cannot work (start-up)
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AgentIdMismatchError",
    "AgentNotFoundError",
    "AuthenticationError",
    "ConfigurationError",
    "ConflictError",
    "DispatchError",
    "InvalidInputError",
    "InvalidSessionTransitionError",
    "InvalidTransitionError",
    "NotFoundError",
    "NotImplementedFeatureError",
    "OpsCoreError",
    "PayloadTooLargeError",
    "SessionNotFoundError",
    "StorageError",
    "StorageUnavailableError",
    "TaskNotFoundError",
    "TemplateError",
    "WebhookSignatureError",
    "WorkflowNotFoundError",
    "WorkflowValidationError",
]


class OpsCoreError(Exception):
    """Root of every deliberate Ops-Core error.

    ``code`` is a stable machine-readable identifier (snake_case) that clients may
    switch on; ``errors`` optionally lists per-field problems.
    """

    code = "opscore_error"

    def __init__(self, message: str, *, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or []


class InvalidInputError(OpsCoreError):
    code = "invalid_input"


class AgentIdMismatchError(InvalidInputError):
    code = "agent_id_mismatch"


class WorkflowValidationError(InvalidInputError):
    code = "invalid_workflow"


class TemplateError(InvalidInputError):
    """A ``${...}`` reference in task parameters is malformed or names a missing value.

    The engine fails the task with this message and does not retry it."""

    code = "template_error"


class AuthenticationError(OpsCoreError):
    code = "unauthenticated"


class WebhookSignatureError(AuthenticationError):
    code = "invalid_signature"


class NotFoundError(OpsCoreError):
    code = "not_found"


class AgentNotFoundError(NotFoundError):
    code = "agent_not_found"


class SessionNotFoundError(NotFoundError):
    code = "session_not_found"


class WorkflowNotFoundError(NotFoundError):
    code = "workflow_not_found"


class TaskNotFoundError(NotFoundError):
    code = "task_not_found"


class ConflictError(OpsCoreError):
    code = "conflict"


class InvalidTransitionError(ConflictError):
    code = "invalid_transition"


class InvalidSessionTransitionError(ConflictError):
    code = "invalid_session_transition"


class PayloadTooLargeError(OpsCoreError):
    code = "payload_too_large"


class NotImplementedFeatureError(OpsCoreError):
    code = "not_implemented"


class StorageError(OpsCoreError):
    code = "storage_error"


class StorageUnavailableError(StorageError):
    code = "storage_unavailable"


class DispatchError(OpsCoreError):
    """A task could not be handed to its agent; the attempt fails with this message."""

    code = "dispatch_failed"


class ConfigurationError(OpsCoreError):
    code = "configuration_error"
