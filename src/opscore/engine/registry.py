"""Stored workflow definitions, versioned by ``id`` + ``version``.

"Latest" means the most recently stored version of an id. A stored version is
immutable: storing the same id and version again is accepted only with identical
content (so loading a workflow directory at every start is harmless).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import structlog

from opscore.engine.definition import WorkflowDefinition, load_definition_text, parse_definition
from opscore.errors import ConflictError, WorkflowNotFoundError, WorkflowValidationError
from opscore.lifecycle import decode_cursor, encode_cursor
from opscore.models import utcnow
from opscore.storage.base import Storage

__all__ = ["StoredWorkflow", "WorkflowPage", "WorkflowRegistry"]

WORKFLOW_KIND = "workflow"
HEAD_KIND = "workflow-head"
_CAS_RETRIES = 20

log = structlog.get_logger("opscore.workflows")


@dataclass(frozen=True, slots=True)
class StoredWorkflow:
    definition: WorkflowDefinition
    created_at: datetime
    versions: list[str]

    def to_doc(self) -> dict[str, Any]:
        d = self.definition
        return {
            "id": d.id,
            "version": d.version,
            "name": d.name,
            "description": d.description,
            "createdAt": self.created_at.isoformat(),
            "versions": self.versions,
            "definition": d.to_doc(),
        }


@dataclass(frozen=True, slots=True)
class WorkflowPage:
    items: list[StoredWorkflow]
    next_cursor: str | None


def _version_key(workflow_id: str, version: str) -> str:
    return f"{workflow_id}@{version}"


class WorkflowRegistry:
    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    async def store(self, definition: WorkflowDefinition) -> tuple[StoredWorkflow, bool]:
        """Store a validated definition; returns (record, created). ConflictError if the
        same id and version is stored with different content."""
        key = _version_key(definition.id, definition.version)
        doc = {"definition": definition.to_doc(), "createdAt": utcnow().isoformat()}
        created = await self._storage.create(
            WORKFLOW_KIND, key, doc, index={"workflowId": definition.id}
        )
        if created is None:
            existing = await self._storage.get(WORKFLOW_KIND, key)
            if existing is not None and existing.data["definition"] != definition.to_doc():
                raise ConflictError(
                    f"workflow {definition.id!r} version {definition.version!r} already exists "
                    "with different content; give the new definition a new version"
                )
        versions = await self._add_version(definition.id, definition.version)
        stored = await self._load(definition.id, definition.version)
        assert stored is not None
        return StoredWorkflow(stored.definition, stored.created_at, versions), created is not None

    async def _add_version(self, workflow_id: str, version: str) -> list[str]:
        for _ in range(_CAS_RETRIES):
            head = await self._storage.get(HEAD_KIND, workflow_id)
            if head is None:
                versions = [version]
                if await self._storage.create(HEAD_KIND, workflow_id, {"versions": versions}):
                    return versions
                continue
            versions = list(head.data["versions"])
            if version in versions:
                return versions
            versions.append(version)
            if await self._storage.replace(
                HEAD_KIND, workflow_id, {"versions": versions}, expected_rev=head.rev
            ):
                return versions
        raise ConflictError(f"workflow {workflow_id!r} is being modified concurrently; retry")

    async def _load(self, workflow_id: str, version: str) -> StoredWorkflow | None:
        doc = await self._storage.get(WORKFLOW_KIND, _version_key(workflow_id, version))
        if doc is None:
            return None
        return StoredWorkflow(
            definition=parse_definition(doc.data["definition"]),
            created_at=datetime.fromisoformat(doc.data["createdAt"]),
            versions=[],
        )

    async def versions(self, workflow_id: str) -> list[str]:
        head = await self._storage.get(HEAD_KIND, workflow_id)
        return [] if head is None else list(head.data["versions"])

    async def get(self, workflow_id: str, version: str | None = None) -> StoredWorkflow:
        """The given version, or the latest; WorkflowNotFoundError if absent."""
        versions = await self.versions(workflow_id)
        if not versions:
            raise WorkflowNotFoundError(f"workflow {workflow_id!r} is not defined")
        wanted = version if version is not None else versions[-1]
        stored = await self._load(workflow_id, wanted) if wanted in versions else None
        if stored is None:
            raise WorkflowNotFoundError(
                f"workflow {workflow_id!r} has no version {wanted!r}; it has: {', '.join(versions)}"
            )
        return StoredWorkflow(stored.definition, stored.created_at, versions)

    async def list(self, *, limit: int = 100, cursor: str | None = None) -> WorkflowPage:
        """The latest version of every workflow, in id order."""
        heads = await self._storage.scan(HEAD_KIND, after=decode_cursor(cursor), limit=limit + 1)
        items = [await self.get(h.key) for h in heads[:limit]]
        more = len(heads) > limit
        return WorkflowPage(items, encode_cursor(heads[limit - 1].key) if more else None)

    async def delete(self, workflow_id: str, version: str | None = None) -> None:
        """Delete one version or all; sessions already running keep their copy."""
        versions = await self.versions(workflow_id)
        if not versions or (version is not None and version not in versions):
            raise WorkflowNotFoundError(
                f"workflow {workflow_id!r}"
                + (f" version {version!r}" if version is not None else "")
                + " is not defined"
            )
        doomed = versions if version is None else [version]
        for v in doomed:
            await self._storage.delete(WORKFLOW_KIND, _version_key(workflow_id, v))
        for _ in range(_CAS_RETRIES):
            head = await self._storage.get(HEAD_KIND, workflow_id)
            if head is None:
                return
            remaining = [v for v in head.data["versions"] if v not in doomed]
            if not remaining:
                if await self._storage.delete(HEAD_KIND, workflow_id, expected_rev=head.rev):
                    return
            elif await self._storage.replace(
                HEAD_KIND, workflow_id, {"versions": remaining}, expected_rev=head.rev
            ):
                return
        raise ConflictError(f"workflow {workflow_id!r} is being modified concurrently; retry")

    async def load_directory(self, directory: Path) -> int:
        """Store every .json/.yaml/.yml definition in ``directory``; returns how many.
        A bad file stops start-up with an error naming the file."""
        count = 0
        paths = await asyncio.to_thread(lambda: sorted(directory.iterdir()))
        for path in paths:
            suffix = path.suffix.lower()
            if not path.is_file() or suffix not in {".json", ".yaml", ".yml"}:
                continue
            fmt: Literal["json", "yaml"] = "json" if suffix == ".json" else "yaml"
            try:
                text = await asyncio.to_thread(path.read_bytes)
                definition = parse_definition(load_definition_text(text, fmt=fmt))
                await self.store(definition)
            except (WorkflowValidationError, ConflictError) as exc:
                raise type(exc)(f"{path}: {exc.message}", errors=exc.errors) from exc
            log.info("workflow_loaded", path=str(path), workflowId=definition.id)
            count += 1
        return count
