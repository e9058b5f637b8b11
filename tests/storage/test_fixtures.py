"""The shared test fixtures themselves: private Redis, per-backend storage URLs."""

from __future__ import annotations

import redis


def test_redis_url_is_private_and_flushed(redis_url: str) -> None:
    assert not redis_url.endswith(":6379/0")
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.ping()
        assert client.dbsize() == 0
        client.set("fixture-check", "1")
    finally:
        client.close()


def test_redis_url_flushes_between_tests(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.get("fixture-check") is None
    finally:
        client.close()


def test_storage_url_names_each_backend(storage_url: str) -> None:
    assert storage_url.split(":", 1)[0] in {"memory", "sqlite", "redis"}
    if storage_url.startswith("sqlite"):
        assert storage_url.startswith("sqlite:////")
