"""Run ``opscore serve`` as a real subprocess (for crash and multi-process tests)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import IO

import httpx

__all__ = ["ServerProcess", "free_port"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """One Ops-Core server process on a fixed port; can be killed and started again."""

    def __init__(self, *, storage_url: str, data_dir: Path, api_key: str, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self.env = {
            **os.environ,
            "OPSCORE_STORAGE_URL": storage_url,
            "OPSCORE_DATA_DIR": str(data_dir),
            "OPSCORE_API_KEY": api_key,
            "OPSCORE_LOG_LEVEL": "warning",
        }
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.starts = 0

    async def start(self, timeout_s: float = 30.0) -> None:
        self.starts += 1
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = (self.data_dir / f"server-{self.port}-{self.starts}.log").open("wb")
        self.process = subprocess.Popen(  # noqa: ASYNC220 - returns at once
            [sys.executable, "-m", "opscore", "serve", "--port", str(self.port)],
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = asyncio.get_running_loop().time() + timeout_s
        async with httpx.AsyncClient() as client:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"server exited with {self.process.returncode}: {self.log()}"
                    )
                try:
                    if (await client.get(f"{self.url}/health")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if asyncio.get_running_loop().time() > deadline:
                    raise RuntimeError(f"server did not start: {self.log()}")
                await asyncio.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, exactly like a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
        self._close_log()

    async def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.to_thread(self.process.wait), timeout=10)
            except TimeoutError:
                self.process.kill()
                self.process.wait()
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def log(self) -> str:
        texts = []
        for path in sorted(self.data_dir.glob(f"server-{self.port}-*.log")):
            texts.append(path.read_text(errors="replace")[-3000:])
        return "\n".join(texts)
