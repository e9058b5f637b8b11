"""Embedded SQLite backend: one file in WAL mode, one writer connection, one reader.

Every write runs as one plain function on the writer's own worker thread (one thread
hop per call). A call that writes several rows is one ``BEGIN IMMEDIATE`` transaction
inside that function, so compare-and-swap and index maintenance are atomic, and
concurrent coroutines can never interleave statements on the shared connection. Each
write commits before the call returns; in WAL mode with ``synchronous=NORMAL`` a
committed transaction survives a killed process (``FULL`` also survives power loss).

Reads run directly on the event loop through a second, read-only connection: a WAL
reader sees every committed write and never waits for the writer, and an indexed
lookup (~10 us) is cheaper than a hop to the worker thread (~60 us).

The file belongs to one process (a lock file next to it, ``<file>.lock``, makes a
second process fail at open), so documents this process read or wrote recently
are kept (as JSON text, with their revision) and ``get`` answers from them: under a
steady stream of writes the reader's page cache is invalid at nearly every read, and
a lookup that must fetch its pages again costs several times the ~10 us above.
"""

from __future__ import annotations

import json
import sqlite3
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from opscore.errors import StorageError, StorageUnavailableError
from opscore.storage._file_lock import ProcessLock
from opscore.storage._worker_thread import WorkerThread
from opscore.storage.base import Document, IndexValues, Storage, normalize_index

__all__ = ["SQLiteStorage"]

JsonDict = dict[str, Any]
T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    kind TEXT NOT NULL,
    key  TEXT NOT NULL,
    rev  INTEGER NOT NULL,
    data TEXT NOT NULL,              -- the JSON document
    idx  TEXT NOT NULL DEFAULT '[]', -- its index pairs as JSON, to remove them later
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS index_entries (
    kind  TEXT NOT NULL,
    field TEXT NOT NULL,
    value TEXT NOT NULL,
    key   TEXT NOT NULL,
    PRIMARY KEY (kind, field, value, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS log_entries (
    seq   INTEGER PRIMARY KEY,       -- grows within a log: only a log's oldest are trimmed
    log   TEXT NOT NULL,
    entry TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS log_entries_by_log ON log_entries (log, seq);
CREATE TABLE IF NOT EXISTS queue_members (
    queue  TEXT NOT NULL,
    member TEXT NOT NULL,
    score  REAL NOT NULL,
    PRIMARY KEY (queue, member)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS queue_members_by_score ON queue_members (queue, score, member);
"""

_SYNCHRONOUS_MODES = frozenset({"OFF", "NORMAL", "FULL", "EXTRA"})
_READER_BUSY_TIMEOUT_MS = 50  # then the read is retried on the worker thread
_GET_MANY_CHUNK = 500  # stays far below SQLite's bound-parameter limit

_SELECT_DOC = "SELECT rev, data FROM documents WHERE kind = ? AND key = ?"
_SELECT_REV = "SELECT rev, idx FROM documents WHERE kind = ? AND key = ?"
_INSERT_DOC = "INSERT INTO documents (kind, key, rev, data, idx) VALUES (?, ?, ?, ?, ?)"
_UPDATE_DOC = "UPDATE documents SET rev = ?, data = ?, idx = ? WHERE kind = ? AND key = ?"
_DELETE_DOC = "DELETE FROM documents WHERE kind = ? AND key = ?"
_INSERT_ENTRY = "INSERT OR IGNORE INTO index_entries (kind, field, value, key) VALUES (?, ?, ?, ?)"
_DELETE_ENTRY = "DELETE FROM index_entries WHERE kind = ? AND field = ? AND value = ? AND key = ?"
_SCAN = "SELECT key, rev, data FROM documents WHERE kind = ? AND key > ? ORDER BY key LIMIT ?"
_SCAN_FIRST = "SELECT key, rev, data FROM documents WHERE kind = ? ORDER BY key LIMIT ?"
_SCAN_WHERE = (
    "SELECT d.key, d.rev, d.data FROM index_entries AS i"
    " JOIN documents AS d ON d.kind = i.kind AND d.key = i.key"
    " WHERE i.kind = ? AND i.field = ? AND i.value = ? AND i.key > ? ORDER BY i.key LIMIT ?"
)
_SCAN_WHERE_FIRST = (
    "SELECT d.key, d.rev, d.data FROM index_entries AS i"
    " JOIN documents AS d ON d.kind = i.kind AND d.key = i.key"
    " WHERE i.kind = ? AND i.field = ? AND i.value = ? ORDER BY i.key LIMIT ?"
)
_COUNT = "SELECT COUNT(*) FROM documents WHERE kind = ?"
_COUNT_WHERE = "SELECT COUNT(*) FROM index_entries WHERE kind = ? AND field = ? AND value = ?"
_LOG_INSERT = "INSERT INTO log_entries (log, entry) VALUES (?, ?)"
_LOG_TRIM = (
    "DELETE FROM log_entries WHERE log = ? AND seq <= (SELECT seq FROM log_entries"
    " WHERE log = ? ORDER BY seq DESC LIMIT 1 OFFSET ?)"
)
_LOG_READ = "SELECT entry FROM log_entries WHERE log = ? ORDER BY seq DESC LIMIT ? OFFSET ?"
_LOG_DELETE = "DELETE FROM log_entries WHERE log = ?"
_QUEUE_PUT = (
    "INSERT INTO queue_members (queue, member, score) VALUES (?, ?, ?)"
    " ON CONFLICT (queue, member) DO UPDATE SET score = excluded.score"
)
_QUEUE_REMOVE = "DELETE FROM queue_members WHERE queue = ? AND member = ?"
_QUEUE_PEEK = (
    "SELECT member, score FROM queue_members WHERE queue = ? ORDER BY score, member LIMIT ?"
)
_QUEUE_PEEK_MAX = (
    "SELECT member, score FROM queue_members WHERE queue = ? AND score <= ?"
    " ORDER BY score, member LIMIT ?"
)
_QUEUE_SIZE = "SELECT COUNT(*) FROM queue_members WHERE queue = ?"

_CREATE, _PUT, _REPLACE = "create", "put", "replace"
_CACHED_DOCUMENTS = 4096


class _RecentDocuments:
    """The last documents read or written, least recently used dropped first."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._docs: OrderedDict[tuple[str, str], tuple[int, str]] = OrderedDict()

    def get(self, kind: str, key: str) -> tuple[int, str] | None:
        found = self._docs.get((kind, key))
        if found is not None:
            self._docs.move_to_end((kind, key))
        return found

    def put(self, kind: str, key: str, rev: int, text: str) -> None:
        self._docs[(kind, key)] = (rev, text)
        self._docs.move_to_end((kind, key))
        if len(self._docs) > self._size:
            self._docs.popitem(last=False)

    def add_if_absent(self, kind: str, key: str, rev: int, text: str) -> None:
        # A read must not replace what a write stored meanwhile: writes are newer.
        if (kind, key) not in self._docs:
            self.put(kind, key, rev, text)

    def forget(self, kind: str, key: str) -> None:
        self._docs.pop((kind, key), None)

    def clear(self) -> None:
        self._docs.clear()


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


class SQLiteStorage(Storage):
    """Documents, logs and queues in one SQLite file (created with its directory).

    ``synchronous`` is the ``PRAGMA synchronous`` mode: NORMAL (default, survives a
    killed process) or FULL (also survives an OS crash or power loss).
    """

    durable = True
    shared = False

    def __init__(
        self, path: Path, *, synchronous: str = "NORMAL", busy_timeout_ms: int = 5000
    ) -> None:
        super().__init__()
        mode = synchronous.upper()
        if mode not in _SYNCHRONOUS_MODES:
            raise StorageError(f"unknown SQLite synchronous mode {synchronous!r}")
        self.path = path
        self._synchronous = mode
        self._busy_timeout_ms = busy_timeout_ms
        self._conn: sqlite3.Connection | None = None  # used on the worker thread only
        self._reader: sqlite3.Connection | None = None  # used on the event loop only
        self._worker: WorkerThread | None = None
        self._recent = _RecentDocuments(_CACHED_DOCUMENTS)
        self._lock = ProcessLock(
            path.with_name(path.name + ".lock"), what=f"SQLite database {str(path)!r}"
        )

    # -- lifecycle ---------------------------------------------------------------
    async def open(self) -> None:
        if self._worker is not None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock.acquire()
        except OSError as exc:
            raise StorageUnavailableError(
                f"cannot open SQLite database {str(self.path)!r}: {exc}"
            ) from exc
        worker = WorkerThread("opscore-sqlite")
        try:
            self._conn, self._reader = await worker.call(self._connect)
        except (OSError, sqlite3.Error) as exc:
            await worker.stop()
            self._lock.release()
            raise StorageUnavailableError(
                f"cannot open SQLite database {str(self.path)!r}: {exc}"
            ) from exc
        self._worker = worker

    def _connect(self) -> tuple[sqlite3.Connection, sqlite3.Connection]:
        """The writer (schema created) and the reader connection."""
        # Autocommit mode: single statements commit themselves, multi-row writes use
        # an explicit BEGIN IMMEDIATE (take the write lock up front: no upgrade deadlock
        # with a tool such as the sqlite3 shell that opens the same file).
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, cached_statements=64
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            conn.executescript(_SCHEMA)
            # Reads run on the event loop: a WAL reader never waits for the writer, and
            # an indexed lookup costs less than a hop to the worker thread.
            reader = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, cached_statements=64
            )
        except BaseException:
            conn.close()
            raise
        try:
            reader.execute(f"PRAGMA busy_timeout = {_READER_BUSY_TIMEOUT_MS}")
            reader.execute("PRAGMA query_only = ON")
        except BaseException:
            reader.close()
            conn.close()
            raise
        return conn, reader

    async def close(self) -> None:
        worker, conn, reader = self._worker, self._conn, self._reader
        self._worker = self._conn = self._reader = None
        if worker is None or conn is None or reader is None:
            return
        try:
            reader.close()
            await worker.call(conn.close)
        except sqlite3.Error as exc:
            raise StorageError(f"closing SQLite database failed: {exc}") from exc
        finally:
            await worker.stop()
            self._recent.clear()  # once the lock is gone, others may change the file
            self._lock.release()

    async def ping(self) -> None:
        await self._run(_ping)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` on the connection thread; translate driver errors."""
        worker, conn = self._worker, self._conn
        if worker is None or conn is None:
            raise StorageUnavailableError("SQLite storage is not open")
        try:
            return await worker.call(fn, conn, *args)
        except sqlite3.OperationalError as exc:
            # Disk full, I/O error, locked beyond busy_timeout: the file cannot serve now.
            raise StorageUnavailableError(f"SQLite error: {exc}") from exc
        except sqlite3.Error as exc:
            raise StorageError(f"SQLite error: {exc}") from exc

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run the read ``fn(conn, *args)`` on the reader, here on the event loop."""
        reader = self._reader
        if reader is None:
            raise StorageUnavailableError("SQLite storage is not open")
        try:
            return fn(reader, *args)
        except sqlite3.Error:
            # Rare (busy during WAL recovery, a full checkpoint): retry on the worker
            # thread, which may wait up to busy_timeout without blocking the loop.
            return await self._run(fn, *args)

    # -- documents ---------------------------------------------------------------
    async def get(self, kind: str, key: str) -> Document | None:
        found = self._recent.get(kind, key)
        if found is None:
            row = await self._read(_fetch_one, _SELECT_DOC, (kind, key))
            if row is None:
                return None
            found = (row[0], row[1])
            self._recent.add_if_absent(kind, key, *found)
        return Document(key, found[0], json.loads(found[1]))

    async def get_many(self, kind: str, keys: Sequence[str]) -> list[Document]:
        if not keys:
            return []
        rows = await self._read(_get_many, kind, list(dict.fromkeys(keys)))
        found = {key: (rev, data) for key, rev, data in rows}
        return [
            Document(key, found[key][0], json.loads(found[key][1])) for key in keys if key in found
        ]

    async def create(
        self, kind: str, key: str, data: JsonDict, *, index: IndexValues | None = None
    ) -> Document | None:
        return await self._write(_CREATE, kind, key, data, 0, index)

    async def put(
        self, kind: str, key: str, data: JsonDict, *, index: IndexValues | None = None
    ) -> Document:
        doc = await self._write(_PUT, kind, key, data, 0, index)
        assert doc is not None  # an unconditional write always stores
        return doc

    async def replace(
        self,
        kind: str,
        key: str,
        data: JsonDict,
        *,
        expected_rev: int,
        index: IndexValues | None = None,
    ) -> Document | None:
        return await self._write(_REPLACE, kind, key, data, expected_rev, index)

    async def _write(
        self,
        mode: str,
        kind: str,
        key: str,
        data: JsonDict,
        expected_rev: int,
        index: IndexValues | None,
    ) -> Document | None:
        text = _dumps(data)  # raises TypeError for non-JSON data, like every backend
        pairs = normalize_index(index)
        try:
            rev = await self._run(_write_doc, mode, kind, key, text, pairs, expected_rev)
        except BaseException:
            self._recent.forget(kind, key)
            raise
        if rev is None:
            # Refused: what this process remembers of the document is out of date.
            self._recent.forget(kind, key)
            return None
        self._recent.put(kind, key, rev, text)
        return Document(key, rev, json.loads(text))

    async def delete(self, kind: str, key: str, *, expected_rev: int | None = None) -> bool:
        try:
            return await self._run(_delete_doc, kind, key, expected_rev)
        finally:
            self._recent.forget(kind, key)

    async def scan(
        self,
        kind: str,
        *,
        where: tuple[str, str] | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> list[Document]:
        if limit <= 0:
            return []
        params: tuple[Any, ...]
        if where is None:
            if after is None:
                sql, params = _SCAN_FIRST, (kind, limit)
            else:
                sql, params = _SCAN, (kind, after, limit)
        else:
            field, value = where
            if after is None:
                sql, params = _SCAN_WHERE_FIRST, (kind, field, value, limit)
            else:
                sql, params = _SCAN_WHERE, (kind, field, value, after, limit)
        rows = await self._read(_fetch_all, sql, params)
        return [Document(key, rev, json.loads(data)) for key, rev, data in rows]

    async def count(self, kind: str, *, where: tuple[str, str] | None = None) -> int:
        if where is None:
            row = await self._read(_fetch_one, _COUNT, (kind,))
        else:
            row = await self._read(_fetch_one, _COUNT_WHERE, (kind, *where))
        return int(row[0]) if row else 0

    # -- logs ----------------------------------------------------------------------
    async def log_append(self, log: str, entry: JsonDict, *, max_len: int) -> None:
        await self._run(_log_append, log, _dumps(entry), max(max_len, 0))

    async def log_read(self, log: str, *, offset: int = 0, limit: int = 100) -> list[JsonDict]:
        if limit <= 0:
            return []
        rows = await self._read(_fetch_all, _LOG_READ, (log, limit, max(offset, 0)))
        return [json.loads(entry) for (entry,) in rows]

    async def log_delete(self, log: str) -> None:
        await self._run(_execute, _LOG_DELETE, (log,))

    # -- queues --------------------------------------------------------------------
    async def queue_put(self, queue: str, member: str, score: float) -> None:
        await self._run(_execute, _QUEUE_PUT, (queue, member, float(score)))

    async def queue_remove(self, queue: str, member: str) -> bool:
        return await self._run(_execute, _QUEUE_REMOVE, (queue, member)) > 0

    async def queue_peek(
        self, queue: str, *, limit: int = 1, max_score: float | None = None
    ) -> list[tuple[str, float]]:
        if limit <= 0:
            return []
        if max_score is None:
            rows = await self._read(_fetch_all, _QUEUE_PEEK, (queue, limit))
        else:
            rows = await self._read(_fetch_all, _QUEUE_PEEK_MAX, (queue, float(max_score), limit))
        return [(member, float(score)) for member, score in rows]

    async def queue_size(self, queue: str) -> int:
        row = await self._read(_fetch_one, _QUEUE_SIZE, (queue,))
        return int(row[0]) if row else 0

    # -- maintenance ---------------------------------------------------------------
    async def clear(self) -> None:
        try:
            await self._run(_clear)
        finally:
            self._recent.clear()


# -- functions that run on the connection thread -------------------------------------
# Each one is a whole storage call; multi-statement writes are one transaction.


def _ping(conn: sqlite3.Connection) -> None:
    conn.execute("SELECT 1").fetchone()


def _fetch_one(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> Any:
    # fetchall runs the statement to its end, which releases the WAL read snapshot.
    rows = conn.execute(sql, params).fetchall()
    return rows[0] if rows else None


def _fetch_all(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> list[Any]:
    return conn.execute(sql, params).fetchall()


def _execute(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> int:
    """One self-committing statement; returns the number of rows it changed."""
    return conn.execute(sql, params).rowcount


def _get_many(conn: sqlite3.Connection, kind: str, keys: list[str]) -> list[Any]:
    rows: list[Any] = []
    for start in range(0, len(keys), _GET_MANY_CHUNK):
        chunk = keys[start : start + _GET_MANY_CHUNK]
        marks = ",".join("?" * len(chunk))
        sql = f"SELECT key, rev, data FROM documents WHERE kind = ? AND key IN ({marks})"
        rows.extend(conn.execute(sql, (kind, *chunk)).fetchall())
    return rows


def _transaction(conn: sqlite3.Connection, body: Callable[[], T]) -> T:
    """Run ``body`` in one write transaction: committed on return, rolled back on error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = body()
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # some errors (disk full) already rolled back
            conn.execute("ROLLBACK")
        raise
    return result


def _write_doc(
    conn: sqlite3.Connection,
    mode: str,
    kind: str,
    key: str,
    text: str,
    pairs: list[tuple[str, str]],
    expected_rev: int,
) -> int | None:
    """create / put / replace in one transaction; the new revision, or None if refused."""
    new_idx = _dumps(pairs)

    def body() -> int | None:
        current = conn.execute(_SELECT_REV, (kind, key)).fetchone()
        if current is None:
            if mode == _REPLACE:
                return None
            conn.execute(_INSERT_DOC, (kind, key, 1, text, new_idx))
            _add_entries(conn, kind, key, pairs)
            return 1
        rev, old_idx = current
        if mode == _CREATE or (mode == _REPLACE and rev != expected_rev):
            return None
        conn.execute(_UPDATE_DOC, (rev + 1, text, new_idx, kind, key))
        if old_idx != new_idx:  # re-index only when the pairs changed
            _remove_entries(conn, kind, key, old_idx)
            _add_entries(conn, kind, key, pairs)
        return int(rev) + 1

    return _transaction(conn, body)


def _delete_doc(conn: sqlite3.Connection, kind: str, key: str, expected_rev: int | None) -> bool:
    def body() -> bool:
        current = conn.execute(_SELECT_REV, (kind, key)).fetchone()
        if current is None or (expected_rev is not None and current[0] != expected_rev):
            return False
        conn.execute(_DELETE_DOC, (kind, key))
        _remove_entries(conn, kind, key, current[1])
        return True

    return _transaction(conn, body)


def _add_entries(
    conn: sqlite3.Connection, kind: str, key: str, pairs: list[tuple[str, str]]
) -> None:
    if pairs:
        conn.executemany(_INSERT_ENTRY, [(kind, field, value, key) for field, value in pairs])


def _remove_entries(conn: sqlite3.Connection, kind: str, key: str, idx: str) -> None:
    pairs = json.loads(idx)
    if pairs:
        conn.executemany(_DELETE_ENTRY, [(kind, field, value, key) for field, value in pairs])


def _log_append(conn: sqlite3.Connection, log: str, entry: str, max_len: int) -> None:
    def body() -> None:
        conn.execute(_LOG_INSERT, (log, entry))
        conn.execute(_LOG_TRIM, (log, log, max_len))

    _transaction(conn, body)


def _clear(conn: sqlite3.Connection) -> None:
    def body() -> None:
        for table in ("documents", "index_entries", "log_entries", "queue_members"):
            conn.execute(f"DELETE FROM {table}")  # fixed table names

    _transaction(conn, body)
