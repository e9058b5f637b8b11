"""A private, throw-away ``redis-server`` for tests (never the shared one at :6379).

    server = RedisServer.start(tmp_dir)   # free port, no persistence, answers PING
    server.url                            # "redis://127.0.0.1:<port>"
    server.stop()

Used by the session fixture ``redis_server`` in ``tests/conftest.py``; tests that need to
take Redis down and up again (outage handling) may start their own instance.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["RedisServer", "RedisServerUnavailable", "free_port"]


class RedisServerUnavailable(RuntimeError):
    """The ``redis-server`` binary is not installed (or not on PATH)."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS hands ports out round-robin)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    return port


def _answers_ping(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One running ``redis-server`` process bound to 127.0.0.1 on a free port."""

    host = "127.0.0.1"

    def __init__(self, process: subprocess.Popen[bytes], port: int) -> None:
        self.process = process
        self.port = port

    @property
    def url(self) -> str:
        """Base URL without a database number: ``redis://127.0.0.1:<port>``."""
        return f"redis://{self.host}:{self.port}"

    @classmethod
    def start(
        cls, data_dir: Path, *, port: int | None = None, startup_timeout_s: float = 15.0
    ) -> RedisServer:
        """Start a server without persistence and wait until it answers PING.

        Raises RedisServerUnavailable if the binary is missing, RuntimeError if it does
        not come up (a random free port is retried a few times: another process may
        have grabbed it in between).
        """
        binary = shutil.which("redis-server")
        if binary is None:
            raise RedisServerUnavailable("redis-server binary not found on PATH")
        data_dir.mkdir(parents=True, exist_ok=True)
        attempts = 1 if port is not None else 3
        last_error = ""
        for _ in range(attempts):
            chosen = port if port is not None else free_port(cls.host)
            log_file = data_dir / f"redis-{chosen}.log"
            options = {
                "bind": cls.host,
                "port": str(chosen),
                "save": "",
                "appendonly": "no",
                "dir": str(data_dir),
                "protected-mode": "no",
                "loglevel": "warning",
                "logfile": str(log_file),
            }
            args = [
                binary,
                *(part for name, value in options.items() for part in (f"--{name}", value)),
            ]
            process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + startup_timeout_s
            while time.monotonic() < deadline and process.poll() is None:
                if _answers_ping(cls.host, chosen):
                    return cls(process, chosen)
                time.sleep(0.02)
            _stop_process(process)
            with contextlib.suppress(OSError):
                last_error = log_file.read_text(errors="replace")
        raise RuntimeError(f"redis-server did not start: {last_error.strip()[-500:]}")

    def stop(self) -> None:
        """Terminate the server (kill it if it does not stop within a few seconds)."""
        _stop_process(self.process)

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
