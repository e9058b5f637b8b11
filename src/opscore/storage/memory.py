"""In-process backend: fast, nothing survives the process. For tests and demos.

Every method runs without awaiting, so each call is atomic under asyncio.
"""

from __future__ import annotations

import bisect
import itertools
import json
from collections import defaultdict, deque
from collections.abc import Sequence
from typing import Any

from opscore.storage.base import Document, IndexValues, Storage, normalize_index

__all__ = ["MemoryStorage"]

JsonDict = dict[str, Any]


# Documents and log entries are kept as JSON text: decoding on every read hands each
# caller its own copy (much cheaper than deepcopy) and enforces what the durable
# backends enforce (JSON-able data only).
_Stored = tuple[str, int, str]  # key, rev, JSON text


def _document(stored: _Stored) -> Document:
    return Document(stored[0], stored[1], json.loads(stored[2]))


def _score_of(entry: tuple[float, str]) -> float:
    return entry[0]


class MemoryStorage(Storage):
    durable = False
    shared = False

    def __init__(self) -> None:
        super().__init__()
        self._docs: dict[str, dict[str, _Stored]] = defaultdict(dict)
        self._sorted_keys: dict[str, list[str]] = defaultdict(list)
        self._doc_index: dict[tuple[str, str], list[tuple[str, str]]] = {}
        self._index: dict[tuple[str, str, str], list[str]] = defaultdict(list)
        self._logs: dict[str, deque[str]] = {}
        self._queues: dict[str, dict[str, float]] = defaultdict(dict)
        # (score, member) kept sorted: peeks are a slice, not a sort.
        self._queue_order: dict[str, list[tuple[float, str]]] = defaultdict(list)

    # -- documents ---------------------------------------------------------------
    async def get(self, kind: str, key: str) -> Document | None:
        stored = self._docs[kind].get(key)
        return None if stored is None else _document(stored)

    async def get_many(self, kind: str, keys: Sequence[str]) -> list[Document]:
        found = []
        for key in keys:
            doc = await self.get(kind, key)
            if doc is not None:
                found.append(doc)
        return found

    def _store(
        self, kind: str, key: str, rev: int, data: JsonDict, index: IndexValues | None
    ) -> Document:
        docs = self._docs[kind]
        if key not in docs:
            bisect.insort(self._sorted_keys[kind], key)
        self._unindex(kind, key)
        pairs = normalize_index(index)
        for field, value in pairs:
            bisect.insort(self._index[(kind, field, value)], key)
        self._doc_index[(kind, key)] = pairs
        text = json.dumps(data)
        docs[key] = (key, rev, text)
        return Document(key, rev, json.loads(text))

    def _unindex(self, kind: str, key: str) -> None:
        for field, value in self._doc_index.pop((kind, key), []):
            keys = self._index[(kind, field, value)]
            pos = bisect.bisect_left(keys, key)
            if pos < len(keys) and keys[pos] == key:
                keys.pop(pos)

    async def create(
        self, kind: str, key: str, data: JsonDict, *, index: IndexValues | None = None
    ) -> Document | None:
        if key in self._docs[kind]:
            return None
        return self._store(kind, key, 1, data, index)

    async def put(
        self, kind: str, key: str, data: JsonDict, *, index: IndexValues | None = None
    ) -> Document:
        current = self._docs[kind].get(key)
        return self._store(kind, key, (current[1] if current else 0) + 1, data, index)

    async def replace(
        self,
        kind: str,
        key: str,
        data: JsonDict,
        *,
        expected_rev: int,
        index: IndexValues | None = None,
    ) -> Document | None:
        current = self._docs[kind].get(key)
        if current is None or current[1] != expected_rev:
            return None
        return self._store(kind, key, expected_rev + 1, data, index)

    async def delete(self, kind: str, key: str, *, expected_rev: int | None = None) -> bool:
        current = self._docs[kind].get(key)
        if current is None or (expected_rev is not None and current[1] != expected_rev):
            return False
        del self._docs[kind][key]
        keys = self._sorted_keys[kind]
        keys.pop(bisect.bisect_left(keys, key))
        self._unindex(kind, key)
        return True

    async def scan(
        self,
        kind: str,
        *,
        where: tuple[str, str] | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> list[Document]:
        keys = self._sorted_keys[kind] if where is None else self._index[(kind, *where)]
        start = 0 if after is None else bisect.bisect_right(keys, after)
        docs = self._docs[kind]
        return [_document(docs[k]) for k in keys[start : start + limit]]

    async def count(self, kind: str, *, where: tuple[str, str] | None = None) -> int:
        if where is None:
            return len(self._docs[kind])
        return len(self._index[(kind, *where)])

    # -- logs ----------------------------------------------------------------------
    async def log_append(self, log: str, entry: JsonDict, *, max_len: int) -> None:
        entries = self._logs.get(log)
        if entries is None or entries.maxlen != max_len:
            # Newest entries are on the left: keep those when the bound shrinks.
            entries = deque(itertools.islice(entries or (), max(max_len, 0)), maxlen=max_len)
            self._logs[log] = entries
        entries.appendleft(json.dumps(entry))

    async def log_read(self, log: str, *, offset: int = 0, limit: int = 100) -> list[JsonDict]:
        entries = list(self._logs.get(log, ()))
        return [json.loads(e) for e in entries[offset : offset + limit]]

    async def log_delete(self, log: str) -> None:
        self._logs.pop(log, None)

    # -- queues --------------------------------------------------------------------
    async def queue_put(self, queue: str, member: str, score: float) -> None:
        scores = self._queues[queue]
        order = self._queue_order[queue]
        old = scores.get(member)
        if old is not None:
            order.pop(bisect.bisect_left(order, (old, member)))
        scores[member] = float(score)
        bisect.insort(order, (float(score), member))

    async def queue_remove(self, queue: str, member: str) -> bool:
        old = self._queues[queue].pop(member, None)
        if old is None:
            return False
        order = self._queue_order[queue]
        order.pop(bisect.bisect_left(order, (old, member)))
        return True

    async def queue_peek(
        self, queue: str, *, limit: int = 1, max_score: float | None = None
    ) -> list[tuple[str, float]]:
        order = self._queue_order[queue]
        end = (
            len(order)
            if max_score is None
            else bisect.bisect_right(order, max_score, key=_score_of)
        )
        return [(member, score) for score, member in order[: max(0, min(end, limit))]]

    async def queue_size(self, queue: str) -> int:
        return len(self._queues[queue])

    async def clear(self) -> None:
        self._docs.clear()
        self._sorted_keys.clear()
        self._doc_index.clear()
        self._index.clear()
        self._logs.clear()
        self._queues.clear()
        self._queue_order.clear()
