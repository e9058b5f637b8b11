"""Redis backend, shared by several Ops-Core processes.

Layout (every key under ``prefix``, default ``opscore:``, so one DB can hold more):

* ``doc:<kind>:<key>`` - hash with ``rev``, ``data`` (JSON) and ``idx`` (JSON list of
  the index sets that hold the document, so a rewrite can remove them);
* ``keys:<kind>`` - sorted set of the kind's keys, all score 0 (ZRANGEBYLEX pages);
* ``idx:<kind>:<field>:<value>`` - sorted set of the keys indexed so, score 0;
* ``log:<name>`` - list, newest first;  ``queue:<name>`` - sorted set by score;
* channel ``events`` - pub/sub notifications.

``<kind>`` and ``<field>`` escape ``%`` and ``:`` so names cannot collide. Each
document write is one Lua script that updates the hash, the key set and the index
sets together, which makes create / put / replace / delete atomic against every
process sharing the database.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from opscore.errors import StorageError, StorageUnavailableError
from opscore.storage.base import Document, IndexValues, Storage, normalize_index

__all__ = ["RedisStorage"]

JsonDict = dict[str, Any]

# KEYS: doc hash, key set, new index sets...  ARGV: mode, expected rev, key, data, idx
# Returns the new revision, or 0 when refused (create: exists; replace: missing/stale).
_WRITE_SCRIPT = """
local current = redis.call('HMGET', KEYS[1], 'rev', 'idx')
local rev = tonumber(current[1])
local mode = ARGV[1]
if mode == 'create' then
  if rev then return 0 end
elseif mode == 'replace' then
  if (not rev) or rev ~= tonumber(ARGV[2]) then return 0 end
end
rev = rev or 0
local key, idx = ARGV[3], ARGV[5]
if current[2] ~= idx then
  if current[2] then
    for _, set in ipairs(cjson.decode(current[2])) do redis.call('ZREM', set, key) end
  end
  for i = 3, #KEYS do redis.call('ZADD', KEYS[i], 0, key) end
end
redis.call('HSET', KEYS[1], 'rev', rev + 1, 'data', ARGV[4], 'idx', idx)
if rev == 0 then redis.call('ZADD', KEYS[2], 0, key) end
return rev + 1
"""

# KEYS: doc hash, key set.  ARGV: key, expected rev ('' = any).  Returns 1 if deleted.
_DELETE_SCRIPT = """
local current = redis.call('HMGET', KEYS[1], 'rev', 'idx')
if not current[1] then return 0 end
if ARGV[2] ~= '' and tonumber(current[1]) ~= tonumber(ARGV[2]) then return 0 end
for _, set in ipairs(cjson.decode(current[2])) do redis.call('ZREM', set, ARGV[1]) end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""

# KEYS: key set or index set.  ARGV: doc hash prefix, lex minimum, limit.
# Returns key, rev, data triples from one consistent snapshot.
_SCAN_SCRIPT = """
local keys = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[2], '+', 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, key in ipairs(keys) do
  local doc = redis.call('HMGET', ARGV[1] .. key, 'rev', 'data')
  if doc[1] then
    out[#out + 1] = key
    out[#out + 1] = doc[1]
    out[#out + 1] = doc[2]
  end
end
return out
"""

_CHANNEL = "events"


def _escape(name: str) -> str:
    if "%" in name or ":" in name:
        return name.replace("%", "%25").replace(":", "%3A")
    return name


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


class _TranslateErrors:
    """``with _translate:`` turns redis-py errors into Ops-Core storage errors."""

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            return
        if isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError):
            raise StorageUnavailableError(f"Redis unavailable: {exc}") from exc
        if isinstance(exc, RedisError):
            raise StorageError(f"Redis error: {exc}") from exc


_translate = _TranslateErrors()  # stateless


class RedisStorage(Storage):
    """Storage in one Redis database, under a key prefix, shared between processes.

    ``url`` is a redis-py URL (``redis://host:port/db``, ``rediss://``, ``unix://``).
    Calls fail with StorageUnavailableError after a short reconnect attempt (about
    ``retries`` tries, backoff capped at ``retry_backoff_cap_s``) when Redis is down.

    ``socket_timeout_s`` defaults to None (no per-command read timeout): redis-py's
    timeout wrapper costs about a third of a simple command. A dead server or network
    is still detected (connection refused / reset, TCP keepalive); a server that hangs
    is caught by ``ping`` (``ping_timeout_s``), which health checks call.
    """

    durable = True
    shared = True

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "opscore:",
        socket_timeout_s: float | None = None,
        connect_timeout_s: float = 5.0,
        ping_timeout_s: float = 5.0,
        retries: int = 2,
        retry_backoff_cap_s: float = 0.25,
    ) -> None:
        super().__init__()
        self.url = url
        self.prefix = prefix
        self._ping_timeout_s = ping_timeout_s
        self._doc_prefix = f"{prefix}doc:"
        self._channel = f"{prefix}{_CHANNEL}"
        self._client: aioredis.Redis = aioredis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=connect_timeout_s,
            retry=Retry(ExponentialWithJitterBackoff(base=0.02, cap=retry_backoff_cap_s), retries),
        )
        self._write_script = self._client.register_script(_WRITE_SCRIPT)
        self._delete_script = self._client.register_script(_DELETE_SCRIPT)
        self._scan_script = self._client.register_script(_SCAN_SCRIPT)

    # -- key names -----------------------------------------------------------------
    def _doc_key(self, kind: str, key: str) -> str:
        return f"{self._doc_prefix}{_escape(kind)}:{key}"

    def _keys_key(self, kind: str) -> str:
        return f"{self.prefix}keys:{_escape(kind)}"

    def _index_key(self, kind: str, field: str, value: str) -> str:
        return f"{self.prefix}idx:{_escape(kind)}:{_escape(field)}:{value}"

    def _log_key(self, log: str) -> str:
        return f"{self.prefix}log:{log}"

    def _queue_key(self, queue: str) -> str:
        return f"{self.prefix}queue:{queue}"

    # -- lifecycle ---------------------------------------------------------------
    async def open(self) -> None:
        """Check that Redis answers (StorageUnavailableError if not)."""
        await self.ping()

    async def close(self) -> None:
        with _translate:
            await self._client.aclose()

    async def ping(self) -> None:
        """Raise StorageUnavailableError if Redis does not answer within ``ping_timeout_s``
        (also a Redis that accepts connections but hangs)."""
        try:
            async with asyncio.timeout(self._ping_timeout_s):
                with _translate:
                    await self._client.ping()
        except TimeoutError as exc:
            raise StorageUnavailableError(
                f"Redis did not answer PING within {self._ping_timeout_s:g}s"
            ) from exc

    # -- documents ---------------------------------------------------------------
    async def get(self, kind: str, key: str) -> Document | None:
        with _translate:
            rev, data = await self._client.hmget(self._doc_key(kind, key), ["rev", "data"])
        return None if rev is None else Document(key, int(rev), json.loads(cast(str, data)))

    async def get_many(self, kind: str, keys: Sequence[str]) -> list[Document]:
        if not keys:
            return []
        with _translate:
            async with self._client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hmget(self._doc_key(kind, key), ["rev", "data"])
                rows = await pipe.execute()
        return [
            Document(key, int(rev), json.loads(data))
            for key, (rev, data) in zip(keys, rows, strict=True)
            if rev is not None
        ]

    async def create(
        self, kind: str, key: str, data: JsonDict, *, index: IndexValues | None = None
    ) -> Document | None:
        return await self._write("create", kind, key, data, 0, index)

    async def put(
        self, kind: str, key: str, data: JsonDict, *, index: IndexValues | None = None
    ) -> Document:
        doc = await self._write("put", kind, key, data, 0, index)
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
        return await self._write("replace", kind, key, data, expected_rev, index)

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
        index_sets = [self._index_key(kind, f, v) for f, v in normalize_index(index)]
        keys = [self._doc_key(kind, key), self._keys_key(kind), *index_sets]
        args: list[str | int] = [mode, expected_rev, key, text, _dumps(index_sets)]
        with _translate:
            rev = int(await self._write_script(keys=keys, args=args))
        return Document(key, rev, json.loads(text)) if rev else None

    async def delete(self, kind: str, key: str, *, expected_rev: int | None = None) -> bool:
        keys = [self._doc_key(kind, key), self._keys_key(kind)]
        args: list[str | int] = [key, "" if expected_rev is None else expected_rev]
        with _translate:
            return bool(await self._delete_script(keys=keys, args=args))

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
        zset = self._keys_key(kind) if where is None else self._index_key(kind, *where)
        lex_min = "-" if after is None else f"({after}"
        doc_prefix = f"{self._doc_prefix}{_escape(kind)}:"
        with _translate:
            flat = await self._scan_script(keys=[zset], args=[doc_prefix, lex_min, limit])
        return [
            Document(flat[i], int(flat[i + 1]), json.loads(flat[i + 2]))
            for i in range(0, len(flat), 3)
        ]

    async def count(self, kind: str, *, where: tuple[str, str] | None = None) -> int:
        zset = self._keys_key(kind) if where is None else self._index_key(kind, *where)
        with _translate:
            return int(await self._client.zcard(zset))

    # -- logs ----------------------------------------------------------------------
    async def log_append(self, log: str, entry: JsonDict, *, max_len: int) -> None:
        name = self._log_key(log)
        text = _dumps(entry)
        with _translate:
            if max_len <= 0:  # LTRIM 0 -1 would keep everything
                await self._client.delete(name)
                return
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.lpush(name, text)
                pipe.ltrim(name, 0, max_len - 1)
                await pipe.execute()

    async def log_read(self, log: str, *, offset: int = 0, limit: int = 100) -> list[JsonDict]:
        if limit <= 0:  # LRANGE with a stop of -1 would read everything
            return []
        start = max(offset, 0)
        with _translate:
            entries = await self._client.lrange(self._log_key(log), start, start + limit - 1)
        return [json.loads(entry) for entry in entries]

    async def log_delete(self, log: str) -> None:
        with _translate:
            await self._client.delete(self._log_key(log))

    # -- queues --------------------------------------------------------------------
    async def queue_put(self, queue: str, member: str, score: float) -> None:
        with _translate:
            await self._client.zadd(self._queue_key(queue), {member: float(score)})

    async def queue_remove(self, queue: str, member: str) -> bool:
        with _translate:
            return bool(await self._client.zrem(self._queue_key(queue), member))

    async def queue_peek(
        self, queue: str, *, limit: int = 1, max_score: float | None = None
    ) -> list[tuple[str, float]]:
        if limit <= 0:
            return []
        # Equal scores come back in member (byte) order, like the other backends.
        with _translate:
            rows = await self._client.zrangebyscore(
                self._queue_key(queue),
                "-inf",
                "+inf" if max_score is None else float(max_score),
                start=0,
                num=limit,
                withscores=True,
            )
        return [(member, float(score)) for member, score in cast(list[tuple[str, float]], rows)]

    async def queue_size(self, queue: str) -> int:
        with _translate:
            return int(await self._client.zcard(self._queue_key(queue)))

    # -- notifications -------------------------------------------------------------
    async def publish(self, message: str) -> None:
        """Publish on the Redis channel; every subscriber (this process too) gets it
        from Redis, so local and remote subscribers see the same stream."""
        with _translate:
            await self._client.publish(self._channel, message)

    async def subscribe(self) -> AsyncIterator[str]:
        """Yield messages from the Redis channel. Uses its own connection, closed when
        the consumer stops (close the generator, e.g. with ``contextlib.aclosing``).
        Raises StorageUnavailableError if the connection to Redis is lost."""
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        try:
            with _translate:
                await pubsub.subscribe(self._channel)
            while True:
                with _translate:
                    message = await pubsub.get_message(timeout=None)
                if message is not None and message["type"] == "message":
                    yield message["data"]
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]

    # -- maintenance ---------------------------------------------------------------
    async def clear(self) -> None:
        """Delete every key under this backend's prefix (and nothing else)."""
        with _translate:
            batch: list[str] = []
            async for name in self._client.scan_iter(
                match=f"{_glob_escape(self.prefix)}*", count=1000
            ):
                batch.append(name)
                if len(batch) >= 1000:
                    await self._client.unlink(*batch)
                    batch.clear()
            if batch:
                await self._client.unlink(*batch)
