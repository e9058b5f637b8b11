"""Shared fixtures: a private Redis server and the storage backends.

* ``redis_server`` (session): base URL ``redis://127.0.0.1:<port>`` of a private
  ``redis-server`` (no persistence). Skips when the binary is missing, fails under CI=true.
* ``redis_url`` (function): ``redis://127.0.0.1:<port>/0``, flushed before the test.
* ``storage_url`` (function, parametrized ``[memory]``, ``[sqlite]``, ``[redis]``).
* ``storage`` (function): the opened backend for ``storage_url``; closed afterwards.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis

from opscore.storage import Storage, create_storage

try:  # tests/ is on sys.path (pytest's rootdir "prepend" import mode)
    from redis_server import RedisServer, RedisServerUnavailable
except ModuleNotFoundError:  # pragma: no cover - if tests/ ever becomes a package
    from tests.redis_server import RedisServer, RedisServerUnavailable

BACKENDS = ["memory", "sqlite", "redis"]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start a private redis-server for the whole session; yield its base URL."""
    try:
        server = RedisServer.start(tmp_path_factory.mktemp("redis"))
    except RedisServerUnavailable as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but Redis tests cannot run: {exc}")
        pytest.skip(f"Redis tests need a local redis-server binary: {exc}")
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """URL of logical DB 0 on the private server, emptied (FLUSHALL) before the test."""
    url = f"{redis_server}/0"
    client = redis.Redis.from_url(url)
    try:
        client.flushall()
    finally:
        client.close()
    return url


@pytest.fixture(params=BACKENDS)
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A storage URL per backend; Redis is only started for the ``[redis]`` case."""
    backend: str = request.param
    if backend == "memory":
        return "memory://"
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/opscore.db"
    url: str = request.getfixturevalue("redis_url")
    return url


@pytest.fixture
async def storage(storage_url: str) -> AsyncIterator[Storage]:
    """The opened backend named by ``storage_url``; closed after the test."""
    backend = create_storage(storage_url)
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()
