"""An acknowledged write survives SIGKILL of the writing process (a real subprocess)."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from opscore.storage import create_storage

WRITER = Path(__file__).with_name("durability_writer.py")
KILL_AFTER = 150  # acknowledged writes before the kill; the writer is mid-way through more


@pytest.fixture(params=["sqlite", "redis"])
def durable_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/durable.db"
    url: str = request.getfixturevalue("redis_url")
    return url


async def _run_and_kill(url: str) -> list[str]:
    """Start the writer, SIGKILL it once KILL_AFTER keys are printed; every full line."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(WRITER), url, stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    printed: list[str] = []
    try:
        async with asyncio.timeout(60):
            while len(printed) < KILL_AFTER:
                line = await process.stdout.readline()
                if not line.endswith(b"\n"):
                    raise AssertionError(f"writer stopped early (exit {await process.wait()})")
                printed.append(line.decode().strip())
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGKILL)
        rest = await process.stdout.read()  # lines printed before the kill landed
        await process.wait()
    printed.extend(line.decode() for line in rest.split(b"\n")[:-1])  # drop a partial line
    assert process.returncode == -signal.SIGKILL
    return printed


async def test_acknowledged_writes_survive_sigkill(durable_url: str) -> None:
    printed = await _run_and_kill(durable_url)
    storage = create_storage(durable_url)
    await storage.open()
    try:
        docs = await storage.get_many("durable", printed)
        assert [doc.key for doc in docs] == printed
        assert all(doc.data["i"] == int(doc.key[1:]) for doc in docs)
        # Nothing half-written: the index agrees with the documents that exist.
        total = await storage.count("durable")
        assert total >= len(printed)
        assert await storage.count("durable", where=("batch", "one")) == total
        log = await storage.log_read("durable-log", limit=total + 10)
        assert len(log) >= len(printed)
    finally:
        await storage.close()
