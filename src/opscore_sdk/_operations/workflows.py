"""Operations on workflow definitions."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from opscore_sdk._core import Call, Pager
from opscore_sdk._operations._common import PREFIX, as_dict, none, page_items, params, q
from opscore_sdk.models import Workflow, WorkflowPage

__all__ = [
    "create_workflow",
    "create_workflow_from_file",
    "delete_workflow",
    "get_workflow",
    "iter_workflows",
    "list_workflows",
    "workflow_schema",
]

_YAML_SUFFIXES = (".yaml", ".yml")


# -- workflows ------------------------------------------------------------------------


def create_workflow(definition: Mapping[str, Any]) -> Call[Workflow]:
    """Store a workflow definition given as a dict.

    Storing the same id and version with identical content again is harmless;
    different content under an existing id and version raises ConflictError; an
    invalid definition raises ValidationError whose ``errors`` name taskId and field.
    """
    return Call(
        method="POST",
        path=f"{PREFIX}/workflows",
        json_body=dict(definition),
        parse=Workflow.model_validate,
        idempotent=True,
    )


def create_workflow_from_file(path: str | os.PathLike[str]) -> Call[Workflow]:
    """Store a workflow definition read from a ``.json``, ``.yaml`` or ``.yml`` file.

    The file is sent as it is (YAML as ``application/yaml``) so the server reports
    problems against the text you wrote. Other suffixes: JSON if the text starts with
    ``{``, YAML otherwise. Raises OSError if the file cannot be read.
    """
    file = Path(path)
    raw = file.read_bytes()
    is_yaml = file.suffix.lower() in _YAML_SUFFIXES or (
        file.suffix.lower() != ".json" and not raw.lstrip().startswith(b"{")
    )
    content_type = "application/yaml" if is_yaml else "application/json"
    return Call(
        method="POST",
        path=f"{PREFIX}/workflows",
        content=raw,
        headers={"Content-Type": content_type},
        parse=Workflow.model_validate,
        idempotent=True,
    )


def list_workflows(*, limit: int | None = None, cursor: str | None = None) -> Call[WorkflowPage]:
    """One page of workflows (the latest version of each)."""
    return Call(
        method="GET",
        path=f"{PREFIX}/workflows",
        params=params(limit=limit, cursor=cursor),
        parse=WorkflowPage.model_validate,
        idempotent=True,
    )


def iter_workflows(*, page_size: int = 100) -> Pager[Workflow]:
    """Every workflow (latest versions), fetching pages as needed."""
    return Pager(
        fetch=lambda cursor: list_workflows(limit=page_size, cursor=cursor), items=page_items
    )


def get_workflow(workflow_id: str, *, version: str | None = None) -> Call[Workflow]:
    """A workflow definition: the latest version, or ``version``. Raises NotFoundError."""
    return Call(
        method="GET",
        path=f"{PREFIX}/workflows/{q(workflow_id)}",
        params=params(version=version),
        parse=Workflow.model_validate,
        idempotent=True,
    )


def delete_workflow(workflow_id: str, *, version: str | None = None) -> Call[None]:
    """Delete every version of a workflow, or only ``version``. Raises NotFoundError."""
    return Call(
        method="DELETE",
        path=f"{PREFIX}/workflows/{q(workflow_id)}",
        params=params(version=version),
        parse=none,
        idempotent=True,
        empty=True,
    )


def workflow_schema() -> Call[dict[str, Any]]:
    """The JSON Schema of the workflow definition format."""
    return Call(method="GET", path=f"{PREFIX}/schemas/workflow", parse=as_dict, idempotent=True)
