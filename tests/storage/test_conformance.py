"""One behaviour for every backend: this module runs unchanged against memory, sqlite
and redis (the ``storage`` fixture is parametrized). A difference is a bug."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator

import pytest

from opscore.storage import Storage

KIND = "thing"


async def _keys(storage: Storage, kind: str = KIND, **kwargs: object) -> list[str]:
    return [doc.key for doc in await storage.scan(kind, **kwargs)]  # type: ignore[arg-type]


# -- documents ------------------------------------------------------------------------


async def test_create_returns_revision_one_and_refuses_an_existing_key(storage: Storage) -> None:
    doc = await storage.create(KIND, "a", {"n": 1})
    assert doc is not None
    assert (doc.key, doc.rev, doc.data) == ("a", 1, {"n": 1})
    assert await storage.create(KIND, "a", {"n": 2}) is None
    stored = await storage.get(KIND, "a")
    assert stored is not None
    assert (stored.rev, stored.data) == (1, {"n": 1})


async def test_get_of_a_missing_key_is_none(storage: Storage) -> None:
    assert await storage.get(KIND, "missing") is None


async def test_put_inserts_then_overwrites_with_the_next_revision(storage: Storage) -> None:
    first = await storage.put(KIND, "a", {"v": "one"})
    second = await storage.put(KIND, "a", {"v": "two"})
    assert (first.rev, second.rev) == (1, 2)
    stored = await storage.get(KIND, "a")
    assert stored is not None
    assert (stored.rev, stored.data) == (2, {"v": "two"})


async def test_replace_is_compare_and_swap_on_the_revision(storage: Storage) -> None:
    await storage.create(KIND, "a", {"v": 1})
    won = await storage.replace(KIND, "a", {"v": 2}, expected_rev=1)
    assert won is not None
    assert (won.rev, won.data) == (2, {"v": 2})
    assert await storage.replace(KIND, "a", {"v": 3}, expected_rev=1) is None  # stale
    assert await storage.replace(KIND, "missing", {"v": 1}, expected_rev=1) is None
    assert await storage.replace(KIND, "missing", {"v": 1}, expected_rev=0) is None
    stored = await storage.get(KIND, "a")
    assert stored is not None
    assert (stored.rev, stored.data) == (2, {"v": 2})
    assert await storage.get(KIND, "missing") is None


async def test_delete_without_a_revision_removes_the_document(storage: Storage) -> None:
    await storage.create(KIND, "a", {}, index={"s": "x"})
    assert await storage.delete(KIND, "a") is True
    assert await storage.get(KIND, "a") is None
    assert await storage.delete(KIND, "a") is False
    assert await storage.count(KIND) == 0
    assert await storage.count(KIND, where=("s", "x")) == 0
    assert await storage.scan(KIND, where=("s", "x")) == []
    again = await storage.create(KIND, "a", {})  # a deleted key can be created afresh
    assert again is not None
    assert again.rev == 1


async def test_delete_with_an_expected_revision_is_compare_and_swap(storage: Storage) -> None:
    await storage.create(KIND, "a", {})
    await storage.put(KIND, "a", {})
    assert await storage.delete(KIND, "a", expected_rev=1) is False
    assert await storage.get(KIND, "a") is not None
    assert await storage.delete(KIND, "a", expected_rev=2) is True
    assert await storage.get(KIND, "a") is None
    assert await storage.delete(KIND, "a", expected_rev=2) is False


async def test_rewriting_a_document_replaces_its_index_entries(storage: Storage) -> None:
    await storage.create(KIND, "a", {}, index={"status": "ready", "owner": "x"})
    await storage.put(KIND, "a", {}, index={"status": "running", "owner": "x"})
    assert await storage.count(KIND, where=("status", "ready")) == 0
    assert await _keys(storage, where=("status", "running")) == ["a"]
    assert await _keys(storage, where=("owner", "x")) == ["a"]
    await storage.replace(KIND, "a", {}, expected_rev=2, index={"status": "done"})
    assert await storage.count(KIND, where=("status", "running")) == 0
    assert await storage.count(KIND, where=("owner", "x")) == 0
    assert await _keys(storage, where=("status", "done")) == ["a"]
    await storage.put(KIND, "a", {})  # no index at all: every entry goes
    assert await storage.count(KIND, where=("status", "done")) == 0
    assert await storage.count(KIND) == 1


async def test_a_failed_compare_and_swap_leaves_the_index_alone(storage: Storage) -> None:
    await storage.create(KIND, "a", {}, index={"status": "ready"})
    assert await storage.replace(KIND, "a", {}, expected_rev=7, index={"status": "x"}) is None
    assert await storage.create(KIND, "a", {}, index={"status": "y"}) is None
    assert await _keys(storage, where=("status", "ready")) == ["a"]
    assert await storage.count(KIND, where=("status", "x")) == 0
    assert await storage.count(KIND, where=("status", "y")) == 0


async def test_index_values_may_be_lists_and_none_drops_a_field(storage: Storage) -> None:
    await storage.create(KIND, "a", {}, index={"tag": ["red", "blue", "red"], "gone": None})
    await storage.create(KIND, "b", {}, index={"tag": ["blue"], "gone": []})
    assert await _keys(storage, where=("tag", "red")) == ["a"]
    assert await _keys(storage, where=("tag", "blue")) == ["a", "b"]
    assert await storage.count(KIND, where=("tag", "red")) == 1
    assert await storage.count(KIND, where=("gone", "None")) == 0
    await storage.put(KIND, "a", {}, index={"tag": ["green"]})
    assert await _keys(storage, where=("tag", "blue")) == ["b"]
    assert await _keys(storage, where=("tag", "green")) == ["a"]


async def test_scan_returns_ascending_keys_in_pages_after_a_key(storage: Storage) -> None:
    keys = [f"k{i:02d}" for i in range(7)]
    for key in random.Random(7).sample(keys, len(keys)):
        await storage.create(KIND, key, {"key": key}, index={"parity": str(int(key[1:]) % 2)})
    assert await _keys(storage) == keys
    pages: list[list[str]] = []
    after: str | None = None
    while page := await storage.scan(KIND, after=after, limit=3):
        pages.append([doc.key for doc in page])
        after = page[-1].key
    assert pages == [keys[0:3], keys[3:6], keys[6:7]]
    assert await _keys(storage, after="k03x") == keys[4:]  # `after` need not exist
    assert await _keys(storage, after="k06") == []
    assert await _keys(storage, limit=0) == []
    assert await _keys(storage, where=("parity", "1")) == ["k01", "k03", "k05"]
    assert await _keys(storage, where=("parity", "1"), after="k01", limit=1) == ["k03"]
    assert await _keys(storage, where=("parity", "9")) == []
    docs = await storage.scan(KIND, where=("parity", "0"), limit=1)
    assert [(d.key, d.rev, d.data) for d in docs] == [("k00", 1, {"key": "k00"})]


async def test_scan_orders_keys_by_code_point(storage: Storage) -> None:
    keys = ["B", "a", "a-b", "a_b", "a:b", "ab", "é", "z", "日本", ""]
    for key in keys:
        await storage.create(KIND, key, {})
    assert await _keys(storage) == sorted(keys)
    assert await _keys(storage, after="a") == [k for k in sorted(keys) if k > "a"]


async def test_kinds_and_index_names_never_collide(storage: Storage) -> None:
    await storage.create("a", "b:c", {"which": 1}, index={"f": "v:w"})
    await storage.create("a:b", "c", {"which": 2}, index={"f:v": "w"})
    await storage.create("other", "b:c", {"which": 3})
    first, second = await storage.get("a", "b:c"), await storage.get("a:b", "c")
    assert first is not None
    assert second is not None
    assert (first.data, second.data) == ({"which": 1}, {"which": 2})
    assert await _keys(storage, "a") == ["b:c"]
    assert await _keys(storage, "a:b") == ["c"]
    assert await _keys(storage, "a", where=("f", "v:w")) == ["b:c"]
    assert await _keys(storage, "a:b", where=("f:v", "w")) == ["c"]
    assert await storage.count("a:b", where=("f", "v:w")) == 0
    assert await storage.count("a") == 1


async def test_count_counts_a_kind_or_an_index_value(storage: Storage) -> None:
    assert await storage.count(KIND) == 0
    for i in range(5):
        await storage.create(KIND, f"k{i}", {}, index={"even": "yes" if i % 2 == 0 else "no"})
    await storage.create("elsewhere", "k0", {})
    assert await storage.count(KIND) == 5
    assert await storage.count(KIND, where=("even", "yes")) == 3
    assert await storage.count(KIND, where=("even", "no")) == 2


async def test_get_many_keeps_the_requested_order_and_skips_missing(storage: Storage) -> None:
    for key in ("a", "b", "c"):
        await storage.create(KIND, key, {"key": key})
    docs = await storage.get_many(KIND, ["c", "missing", "a", "c"])
    assert [(d.key, d.data) for d in docs] == [
        ("c", {"key": "c"}),
        ("a", {"key": "a"}),
        ("c", {"key": "c"}),
    ]
    assert await storage.get_many(KIND, []) == []
    assert await storage.get_many("nothing", ["a"]) == []


async def test_nested_and_unicode_data_round_trips_as_json(storage: Storage) -> None:
    data = {
        "text": 'héllo wörld ✓ 日本語 🚀 "quoted" \\ \n\t',
        "nested": {"list": [1, 2.5, -3, None, True, False, {"deep": [[]]}], "empty": {}},
        "big": 2**53 + 1,
        "tuple": (1, 2),
        "ключ": "значение",
    }
    expected = {**data, "tuple": [1, 2]}
    created = await storage.create(KIND, "a", data)
    assert created is not None
    assert created.data == expected
    stored = await storage.get(KIND, "a")
    assert stored is not None
    assert stored.data == expected
    assert (await storage.get_many(KIND, ["a"]))[0].data == expected
    assert (await storage.scan(KIND))[0].data == expected


async def test_returned_documents_are_copies(storage: Storage) -> None:
    data = {"list": [1]}
    created = await storage.create(KIND, "a", data)
    assert created is not None
    data["list"].append(2)
    created.data["list"].append(3)
    stored = await storage.get(KIND, "a")
    assert stored is not None
    stored.data["list"].append(4)
    again = await storage.get(KIND, "a")
    assert again is not None
    assert again.data == {"list": [1]}


async def test_data_that_is_not_json_is_rejected_and_not_stored(storage: Storage) -> None:
    with pytest.raises(TypeError):
        await storage.create(KIND, "a", {"bad": object()})
    assert await storage.get(KIND, "a") is None
    assert await storage.count(KIND) == 0


async def test_concurrent_replaces_of_one_revision_have_exactly_one_winner(
    storage: Storage,
) -> None:
    await storage.create(KIND, "a", {"winner": None}, index={"state": "open"})
    results = await asyncio.gather(
        *(
            storage.replace(KIND, "a", {"winner": i}, expected_rev=1, index={"state": f"w{i}"})
            for i in range(20)
        )
    )
    winners = [doc for doc in results if doc is not None]
    assert len(winners) == 1
    stored = await storage.get(KIND, "a")
    assert stored is not None
    assert (stored.rev, stored.data) == (2, winners[0].data)
    assert await storage.count(KIND, where=("state", "open")) == 0
    assert await _keys(storage, where=("state", f"w{winners[0].data['winner']}")) == ["a"]


async def test_concurrent_creates_of_one_key_have_exactly_one_winner(storage: Storage) -> None:
    results = await asyncio.gather(*(storage.create(KIND, "a", {"i": i}) for i in range(20)))
    assert sum(doc is not None for doc in results) == 1
    assert await storage.count(KIND) == 1


# -- logs -----------------------------------------------------------------------------


async def test_log_reads_newest_first_with_offset_and_limit(storage: Storage) -> None:
    for i in range(5):
        await storage.log_append("history", {"i": i, "text": "ü"}, max_len=10)
    assert [e["i"] for e in await storage.log_read("history")] == [4, 3, 2, 1, 0]
    assert [e["i"] for e in await storage.log_read("history", offset=1, limit=2)] == [3, 2]
    assert [e["i"] for e in await storage.log_read("history", offset=4, limit=9)] == [0]
    assert await storage.log_read("history", offset=5) == []
    assert await storage.log_read("history", limit=0) == []
    assert await storage.log_read("never-written") == []
    assert (await storage.log_read("history", limit=1))[0] == {"i": 4, "text": "ü"}


async def test_log_keeps_only_the_newest_max_len_entries(storage: Storage) -> None:
    for i in range(7):
        await storage.log_append("history", {"i": i}, max_len=3)
    assert [e["i"] for e in await storage.log_read("history")] == [6, 5, 4]
    await storage.log_append("history", {"i": 7}, max_len=2)  # a smaller bound trims more
    assert [e["i"] for e in await storage.log_read("history")] == [7, 6]
    await storage.log_append("history", {"i": 8}, max_len=5)
    assert [e["i"] for e in await storage.log_read("history")] == [8, 7, 6]


async def test_log_delete_drops_only_that_log(storage: Storage) -> None:
    await storage.log_append("one", {"i": 1}, max_len=5)
    await storage.log_append("two", {"i": 2}, max_len=5)
    await storage.log_delete("one")
    await storage.log_delete("never-written")
    assert await storage.log_read("one") == []
    assert await storage.log_read("two") == [{"i": 2}]
    await storage.log_append("one", {"i": 3}, max_len=5)
    assert await storage.log_read("one") == [{"i": 3}]


# -- queues ---------------------------------------------------------------------------


async def test_queue_orders_by_score_then_member(storage: Storage) -> None:
    for member, score in [("c", 2.0), ("b", 1.0), ("a", 2.0), ("d", -1.5), ("e", 1e12)]:
        await storage.queue_put("ready", member, score)
    assert await storage.queue_peek("ready", limit=10) == [
        ("d", -1.5),
        ("b", 1.0),
        ("a", 2.0),
        ("c", 2.0),
        ("e", 1e12),
    ]
    assert await storage.queue_peek("ready") == [("d", -1.5)]
    assert await storage.queue_peek("ready", limit=0) == []
    assert await storage.queue_peek("empty", limit=5) == []
    assert await storage.queue_size("ready") == 5
    assert await storage.queue_size("empty") == 0


async def test_queue_peek_honours_max_score(storage: Storage) -> None:
    for member, score in [("a", 1.0), ("b", 2.0), ("c", 2.5), ("d", 3.0)]:
        await storage.queue_put("timers", member, score)
    assert await storage.queue_peek("timers", limit=10, max_score=2.5) == [
        ("a", 1.0),
        ("b", 2.0),
        ("c", 2.5),
    ]
    assert await storage.queue_peek("timers", limit=2, max_score=2.5) == [("a", 1.0), ("b", 2.0)]
    assert await storage.queue_peek("timers", limit=10, max_score=0.5) == []


async def test_queue_put_of_an_existing_member_moves_it(storage: Storage) -> None:
    await storage.queue_put("ready", "a", 1.0)
    await storage.queue_put("ready", "b", 2.0)
    await storage.queue_put("ready", "a", 3.0)
    assert await storage.queue_peek("ready", limit=5) == [("b", 2.0), ("a", 3.0)]
    assert await storage.queue_size("ready") == 2


async def test_queue_remove_reports_whether_the_member_was_there(storage: Storage) -> None:
    await storage.queue_put("ready", "a", 1.0)
    await storage.queue_put("other", "a", 1.0)
    assert await storage.queue_remove("ready", "a") is True
    assert await storage.queue_remove("ready", "a") is False
    assert await storage.queue_remove("never", "a") is False
    assert await storage.queue_size("ready") == 0
    assert await storage.queue_peek("other") == [("a", 1.0)]


# -- notifications ----------------------------------------------------------------------


async def _receive(subscription: AsyncIterator[str]) -> str:
    return await anext(subscription)


async def _publish_until_received(
    storage: Storage, subscriptions: list[AsyncIterator[str]], message: str
) -> list[str]:
    """Publish until every subscription got a message. A subscription starts listening
    only once iterated, so a message published before that may be missed: retry."""
    pending = [asyncio.ensure_future(_receive(sub)) for sub in subscriptions]
    try:
        async with asyncio.timeout(10):
            while not all(task.done() for task in pending):
                await storage.publish(message)
                await asyncio.wait(pending, timeout=0.05)
        return [task.result() for task in pending]
    finally:
        for task in pending:
            task.cancel()


async def test_a_subscriber_receives_published_messages(storage: Storage) -> None:
    async with contextlib.aclosing(storage.subscribe()) as subscription:
        [message] = await _publish_until_received(storage, [subscription], "wake:ü")
        assert message == "wake:ü"


async def test_every_subscriber_receives_a_message(storage: Storage) -> None:
    async with (
        contextlib.aclosing(storage.subscribe()) as first,
        contextlib.aclosing(storage.subscribe()) as second,
    ):
        assert await _publish_until_received(storage, [first, second], "ping") == [
            "ping",
            "ping",
        ]


# -- maintenance ------------------------------------------------------------------------


async def test_clear_removes_documents_indexes_logs_and_queues(storage: Storage) -> None:
    await storage.create(KIND, "a", {}, index={"s": "x"})
    await storage.log_append("history", {"i": 1}, max_len=5)
    await storage.queue_put("ready", "a", 1.0)
    await storage.clear()
    assert await storage.get(KIND, "a") is None
    assert await storage.count(KIND) == 0
    assert await storage.count(KIND, where=("s", "x")) == 0
    assert await storage.log_read("history") == []
    assert await storage.queue_size("ready") == 0
    created = await storage.create(KIND, "a", {})
    assert created is not None
    assert created.rev == 1


async def test_ping_answers_when_the_backend_is_up(storage: Storage) -> None:
    await storage.ping()
