"""The storage interface: a small document store with the few atomic primitives the
services above need. Backends only store; every rule (lifecycle checks, timestamps,
history bounds, workflow progress) lives in the services that call this.

Data model
----------
* **Documents**: JSON objects addressed by ``(kind, key)``, each with a revision
  number ``rev`` (1 on create, +1 on every write). ``replace``/``delete`` take an
  ``expected_rev`` for compare-and-swap, which is how concurrent processes sharing a
  backend claim work without sending the same attempt twice.
* **Indexes**: each write passes ``index``: field -> value (or list of values).
  ``scan(kind, where={field: value})`` returns only documents indexed under that
  value. Index entries are replaced atomically with the document.
* **Logs**: bounded append-only lists (agent state history), read newest first.
* **Queues**: sorted sets of members with a float score, lowest score first (ready
  tasks ordered by priority and age; timers ordered by due time).
* **Notifications**: ``publish``/``subscribe`` wake the engines of every process
  sharing the backend. In-process backends deliver within the process only.

Keys and kinds are short ASCII strings without NUL. Documents must be JSON-able.
Every method may raise :class:`~opscore.errors.StorageError`; backends translate
their driver errors to it.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Document", "IndexValues", "Storage", "normalize_index"]

JsonDict = dict[str, Any]
IndexValues = Mapping[str, str | Sequence[str] | None]


@dataclass(frozen=True, slots=True)
class Document:
    """A stored document and its revision."""

    key: str
    rev: int
    data: JsonDict


def normalize_index(index: IndexValues | None) -> list[tuple[str, str]]:
    """Flatten an index mapping into sorted unique ``(field, value)`` pairs; ``None`` drops."""
    pairs: set[tuple[str, str]] = set()
    for field, value in (index or {}).items():
        if value is None:
            continue
        if isinstance(value, str):
            pairs.add((field, value))
        else:
            pairs.update((field, v) for v in value)
    return sorted(pairs)


class Storage(ABC):
    """Abstract backend. Construct through :func:`opscore.storage.open_storage`."""

    #: True when data survives the process (sqlite, redis); False for memory.
    durable: bool = False
    #: True when other processes may share this backend (redis).
    shared: bool = False

    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue[str]] = set()

    # -- lifecycle ---------------------------------------------------------------
    async def open(self) -> None:  # noqa: B027 - optional hook
        """Connect / create schema. Called once before use."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections. Safe to call twice."""

    async def ping(self) -> None:  # noqa: B027 - optional hook
        """Raise StorageUnavailableError when the backend cannot serve requests."""

    # -- documents ---------------------------------------------------------------
    @abstractmethod
    async def get(self, kind: str, key: str) -> Document | None:
        """The document, or None."""

    @abstractmethod
    async def get_many(self, kind: str, keys: Sequence[str]) -> list[Document]:
        """The documents that exist among ``keys``, in the order given."""

    @abstractmethod
    async def create(
        self, kind: str, key: str, data: JsonDict, *, index: IndexValues | None = None
    ) -> Document | None:
        """Insert if absent. Returns the new document (rev 1), or None if the key exists."""

    @abstractmethod
    async def put(
        self, kind: str, key: str, data: JsonDict, *, index: IndexValues | None = None
    ) -> Document:
        """Insert or overwrite unconditionally; returns the stored document."""

    @abstractmethod
    async def replace(
        self,
        kind: str,
        key: str,
        data: JsonDict,
        *,
        expected_rev: int,
        index: IndexValues | None = None,
    ) -> Document | None:
        """Overwrite only if the current revision is ``expected_rev``.

        Returns the stored document, or None when the document is missing or its
        revision differs (another writer won).
        """

    @abstractmethod
    async def delete(self, kind: str, key: str, *, expected_rev: int | None = None) -> bool:
        """Remove the document and its index entries; with ``expected_rev``, only if it
        still has that revision. True if something was deleted."""

    @abstractmethod
    async def scan(
        self,
        kind: str,
        *,
        where: tuple[str, str] | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> list[Document]:
        """Documents of ``kind`` in ascending key order, keys strictly greater than
        ``after``; with ``where=(field, value)`` only those indexed so."""

    @abstractmethod
    async def count(self, kind: str, *, where: tuple[str, str] | None = None) -> int:
        """How many documents of ``kind`` (indexed under ``where`` if given)."""

    # -- bounded logs --------------------------------------------------------------
    @abstractmethod
    async def log_append(self, log: str, entry: JsonDict, *, max_len: int) -> None:
        """Append ``entry``; keep only the newest ``max_len`` entries."""

    @abstractmethod
    async def log_read(self, log: str, *, offset: int = 0, limit: int = 100) -> list[JsonDict]:
        """Entries newest first, skipping ``offset`` newest."""

    @abstractmethod
    async def log_delete(self, log: str) -> None:
        """Drop the whole log."""

    # -- sorted queues -------------------------------------------------------------
    @abstractmethod
    async def queue_put(self, queue: str, member: str, score: float) -> None:
        """Add ``member`` or move it to ``score``."""

    @abstractmethod
    async def queue_remove(self, queue: str, member: str) -> bool:
        """Remove ``member``; True if it was there."""

    @abstractmethod
    async def queue_peek(
        self, queue: str, *, limit: int = 1, max_score: float | None = None
    ) -> list[tuple[str, float]]:
        """Up to ``limit`` lowest-scored members (score <= ``max_score`` if given),
        lowest first; ties in member order."""

    @abstractmethod
    async def queue_size(self, queue: str) -> int:
        """Number of members."""

    # -- notifications -------------------------------------------------------------
    async def publish(self, message: str) -> None:
        """Tell every subscriber (in every process sharing the backend) ``message``.
        The in-process default reaches this process's subscribers only."""
        self._deliver_local(message)

    def _deliver_local(self, message: str) -> None:
        for queue in list(self._subscribers):
            queue.put_nowait(message)

    async def subscribe(self) -> AsyncIterator[str]:
        """Yield published messages until the consumer stops iterating."""
        queue: asyncio.Queue[str] = asyncio.Queue()
        self._subscribers.add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._subscribers.discard(queue)

    # -- maintenance ---------------------------------------------------------------
    @abstractmethod
    async def clear(self) -> None:
        """Remove everything this backend stored (tests and `opscore reset`)."""
