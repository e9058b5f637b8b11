"""What only some backends promise: SQLite files survive a reopen, Redis is shared by
several processes, unreachable backends raise StorageUnavailableError, URLs are checked."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from opscore.errors import ConfigurationError, StorageError, StorageUnavailableError
from opscore.storage import Storage, create_storage
from opscore.storage.redis import RedisStorage
from opscore.storage.sqlite import _CACHED_DOCUMENTS, SQLiteStorage, _RecentDocuments

try:  # tests/ is on sys.path (pytest's rootdir "prepend" import mode)
    from redis_server import RedisServer, free_port
except ModuleNotFoundError:  # pragma: no cover
    from tests.redis_server import RedisServer, free_port


@contextlib.asynccontextmanager
async def opened(url: str) -> AsyncIterator[Storage]:
    storage = create_storage(url)
    await storage.open()
    try:
        yield storage
    finally:
        await storage.close()


async def data_of(storage: Storage, kind: str, key: str) -> object:
    doc = await storage.get(kind, key)
    return None if doc is None else doc.data


# -- create_storage -----------------------------------------------------------------


@pytest.mark.parametrize("url", ["postgres://db/x", "mongodb://h", "nonsense", ""])
def test_create_storage_rejects_an_unknown_scheme(url: str) -> None:
    with pytest.raises(ConfigurationError):
        create_storage(url)


def test_create_storage_picks_the_backend_by_scheme(tmp_path: Path) -> None:
    sqlite = create_storage(f"sqlite:///{tmp_path}/x.db", sqlite_synchronous="FULL")
    assert isinstance(sqlite, SQLiteStorage)
    assert sqlite.path == tmp_path / "x.db"
    assert (sqlite.durable, sqlite.shared) == (True, False)
    remote = create_storage("redis://127.0.0.1:1/0")
    assert isinstance(remote, RedisStorage)
    assert (remote.durable, remote.shared) == (True, True)
    with pytest.raises(ConfigurationError):
        create_storage("sqlite://")


# -- sqlite ---------------------------------------------------------------------------


async def test_sqlite_data_survives_close_and_reopen(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/nested/dir/opscore.db"  # the directory is created
    async with opened(url) as storage:
        await storage.create("thing", "a", {"v": "ü"}, index={"s": "x"})
        await storage.put("thing", "a", {"v": 2}, index={"s": "y"})
        await storage.log_append("history", {"i": 1}, max_len=5)
        await storage.queue_put("ready", "a", 1.5)
    async with opened(url) as storage:
        doc = await storage.get("thing", "a")
        assert doc is not None
        assert (doc.rev, doc.data) == (2, {"v": 2})
        assert [d.key for d in await storage.scan("thing", where=("s", "y"))] == ["a"]
        assert await storage.count("thing", where=("s", "x")) == 0
        assert await storage.log_read("history") == [{"i": 1}]
        assert await storage.queue_peek("ready") == [("a", 1.5)]


async def test_sqlite_file_that_cannot_be_opened_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "a-directory.db").mkdir()
    storage = create_storage(f"sqlite:///{tmp_path}/a-directory.db")
    with pytest.raises(StorageUnavailableError):
        await storage.open()
    blocked = create_storage(f"sqlite:///{tmp_path}/a-file/under/it.db")
    (tmp_path / "a-file").write_text("not a directory")
    with pytest.raises(StorageUnavailableError):
        await blocked.open()


async def test_sqlite_garbage_file_is_a_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StorageError):
        await create_storage(f"sqlite:///{path}").open()


async def test_sqlite_calls_after_close_are_unavailable(tmp_path: Path) -> None:
    storage = create_storage(f"sqlite:///{tmp_path}/x.db")
    await storage.open()
    await storage.close()
    await storage.close()  # twice is fine
    with pytest.raises(StorageUnavailableError):
        await storage.get("thing", "a")


async def test_sqlite_recent_documents_never_hide_the_file(tmp_path: Path) -> None:
    """Documents are answered from memory; every way the file can disagree ends that."""
    path = tmp_path / "x.db"
    async with opened(f"sqlite:///{path}") as storage:
        await storage.create("thing", "a", {"v": 1})
        assert await data_of(storage, "thing", "a") == {"v": 1}
        # Changed behind this process's back (unsupported, but it must not stick):
        # the next compare-and-swap is refused and the document is read again.
        with sqlite3.connect(path) as other:
            other.execute(
                "UPDATE documents SET rev = 7, data = ? WHERE kind = 'thing' AND key = 'a'",
                (json.dumps({"v": "outside"}),),
            )
        assert await storage.replace("thing", "a", {"v": 2}, expected_rev=1) is None
        doc = await storage.get("thing", "a")
        assert doc is not None
        assert (doc.rev, doc.data) == (7, {"v": "outside"})

        assert await storage.delete("thing", "a")
        assert await storage.get("thing", "a") is None
        await storage.put("thing", "b", {"v": 1})
        await storage.clear()
        assert await storage.get("thing", "b") is None

        # Far more documents than are remembered: every one still reads back right.
        for i in range(_CACHED_DOCUMENTS + 50):
            await storage.put("many", str(i), {"i": i})
        for i in (0, 49, _CACHED_DOCUMENTS + 49):
            assert await data_of(storage, "many", str(i)) == {"i": i}


async def test_sqlite_file_serves_one_process_at_a_time(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/x.db"
    async with opened(url) as first:
        await first.put("thing", "a", {"v": 1})
        second = create_storage(url)
        with pytest.raises(
            StorageUnavailableError, match=rf"in use by another process \(pid {os.getpid()}\)"
        ):
            await second.open()
        await second.close()  # nothing was opened: a no-op
    async with opened(url) as again:  # closing released it
        assert await data_of(again, "thing", "a") == {"v": 1}


async def test_sqlite_lock_dies_with_its_process(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/x.db"
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import asyncio, sys\n"
        "from opscore.storage import create_storage\n"
        "async def main():\n"
        f"    await create_storage({url!r}).open()\n"
        "    print('open', flush=True)\n"
        "    await asyncio.sleep(60)\n"
        "asyncio.run(main())\n",
        stdout=asyncio.subprocess.PIPE,
    )
    assert holder.stdout is not None
    assert await asyncio.wait_for(holder.stdout.readline(), timeout=30) == b"open\n"
    with pytest.raises(StorageUnavailableError, match=rf"pid {holder.pid}"):
        await create_storage(url).open()
    holder.send_signal(signal.SIGKILL)
    await holder.wait()
    async with opened(url):  # a killed holder leaves no lock behind
        pass


def test_recent_documents_drop_the_least_recently_used_and_reads_never_override() -> None:
    recent = _RecentDocuments(2)
    recent.put("k", "a", 1, "A1")
    recent.put("k", "b", 1, "B1")
    assert recent.get("k", "a") == (1, "A1")  # now b is the least recently used
    recent.put("k", "c", 1, "C1")
    assert recent.get("k", "b") is None
    recent.add_if_absent("k", "a", 0, "older")  # a read cannot undo a write
    assert recent.get("k", "a") == (1, "A1")
    recent.forget("k", "a")
    assert recent.get("k", "a") is None


def test_sqlite_rejects_an_unknown_synchronous_mode(tmp_path: Path) -> None:
    with pytest.raises(StorageError):
        SQLiteStorage(tmp_path / "x.db", synchronous="SOMETIMES")


# -- redis ----------------------------------------------------------------------------


async def test_two_redis_instances_share_writes(redis_url: str) -> None:
    async with opened(redis_url) as one, opened(redis_url) as two:
        await one.create("thing", "a", {"v": 1}, index={"s": "x"})
        doc = await two.get("thing", "a")
        assert doc is not None
        assert doc.data == {"v": 1}
        assert await two.replace("thing", "a", {"v": 2}, expected_rev=1) is not None
        assert await one.replace("thing", "a", {"v": 3}, expected_rev=1) is None
        await two.queue_put("ready", "a", 1.0)
        assert await one.queue_peek("ready") == [("a", 1.0)]
        await one.log_append("history", {"i": 1}, max_len=3)
        assert await two.log_read("history") == [{"i": 1}]


async def test_two_redis_instances_wake_each_other(redis_url: str) -> None:
    async with (
        opened(redis_url) as publisher,
        opened(redis_url) as listener,
        contextlib.aclosing(listener.subscribe()) as subscription,
    ):
        receiving = asyncio.ensure_future(anext(subscription))
        try:
            async with asyncio.timeout(10):
                while not receiving.done():  # retry until the SUBSCRIBE is in place
                    await publisher.publish("wake")
                    await asyncio.wait([receiving], timeout=0.05)
            assert receiving.result() == "wake"
        finally:
            receiving.cancel()


async def _wait_for_subscribers(admin: aioredis.Redis, channel: str, count: int) -> None:
    """Poll PUBSUB NUMSUB (generously: the machine may be busy) until it reads ``count``."""
    for _ in range(500):
        if dict(await admin.pubsub_numsub(channel))[channel] == count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{channel} never had {count} subscriber(s)")


async def test_redis_subscription_releases_its_connection(redis_url: str) -> None:
    storage = RedisStorage(redis_url)
    await storage.open()
    admin = aioredis.Redis.from_url(redis_url, decode_responses=True)
    channel = f"{storage.prefix}events"
    try:
        async with contextlib.aclosing(storage.subscribe()) as subscription:
            receiving = asyncio.ensure_future(anext(subscription))
            await _wait_for_subscribers(admin, channel, 1)
            receiving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiving
        await _wait_for_subscribers(admin, channel, 0)
    finally:
        await admin.aclose()
        await storage.close()


async def test_redis_prefix_isolates_and_clear_keeps_foreign_keys(redis_url: str) -> None:
    one, other = RedisStorage(redis_url), RedisStorage(redis_url, prefix="elsewhere:")
    admin = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        await one.open()
        await other.open()
        await admin.set("foreign", "kept")
        await one.create("thing", "a", {}, index={"s": "x"})
        await other.create("thing", "b", {})
        assert [d.key for d in await other.scan("thing")] == ["b"]
        await one.clear()
        assert await one.count("thing") == 0
        assert await other.count("thing") == 1
        assert await admin.get("foreign") == "kept"
    finally:
        await admin.aclose()
        await one.close()
        await other.close()


async def test_unreachable_redis_is_unavailable() -> None:
    storage = RedisStorage(f"redis://127.0.0.1:{free_port()}/0")
    try:
        with pytest.raises(StorageUnavailableError):
            await storage.open()
        with pytest.raises(StorageUnavailableError):
            await storage.ping()
        with pytest.raises(StorageUnavailableError):
            await storage.get("thing", "a")
    finally:
        await storage.close()


@pytest.fixture
def own_redis(redis_server: str, tmp_path: Path) -> Iterator[RedisServer]:
    """A second private server this test may stop, freeze or restart (``redis_server``
    is requested only so that a missing binary skips or fails the same way)."""
    server = RedisServer.start(tmp_path / "own-redis")
    try:
        yield server
    finally:
        server.stop()


async def test_redis_outage_is_unavailable_and_recovers(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    storage = RedisStorage(f"{own_redis.url}/0")
    await storage.open()
    try:
        await storage.put("thing", "a", {})
        async with contextlib.aclosing(storage.subscribe()) as subscription:
            receiving = asyncio.ensure_future(anext(subscription))
            await asyncio.sleep(0.2)  # let it subscribe (not required for the check)
            own_redis.stop()
            with pytest.raises(StorageUnavailableError):
                await storage.get("thing", "a")
            with pytest.raises(StorageUnavailableError):
                await storage.ping()
            async with asyncio.timeout(10):
                with pytest.raises(StorageUnavailableError):
                    await receiving
        restarted = RedisServer.start(tmp_path / "restarted", port=own_redis.port)
        try:
            await storage.ping()  # reconnects by itself (the data is gone: no persistence)
            assert await storage.create("thing", "b", {}) is not None
        finally:
            restarted.stop()
    finally:
        await storage.close()


async def test_a_hanging_redis_fails_ping(own_redis: RedisServer) -> None:
    storage = RedisStorage(f"{own_redis.url}/0", ping_timeout_s=0.5)
    await storage.open()
    await storage.put("thing", "a", {"v": 1})
    os.kill(own_redis.process.pid, signal.SIGSTOP)
    try:
        with pytest.raises(StorageUnavailableError):
            await storage.ping()
    finally:
        os.kill(own_redis.process.pid, signal.SIGCONT)
    try:
        # The late PONG must not be taken for the answer to a later command.
        await storage.ping()
        doc = await storage.get("thing", "a")
        assert doc is not None
        assert doc.data == {"v": 1}
        assert await storage.count("thing") == 1
    finally:
        await storage.close()
