"""Write documents forever, printing each key only after its write returned.

    python durability_writer.py <storage-url>

tests/storage/test_durability.py kills this process with SIGKILL mid-way and then checks
that every printed key can be read back.
"""

from __future__ import annotations

import asyncio
import sys

from opscore.storage import create_storage


async def main(url: str) -> None:
    storage = create_storage(url)
    await storage.open()
    i = 0
    while True:
        key = f"k{i:07d}"
        await storage.create("durable", key, {"i": i, "pad": "x" * 200}, index={"batch": "one"})
        await storage.log_append("durable-log", {"i": i}, max_len=1_000_000)
        print(key, flush=True)
        i += 1


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
