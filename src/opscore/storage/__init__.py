"""Storage backends behind one interface, chosen by URL and imported only when used.

* ``memory://`` - in-process, nothing survives a restart (tests, demos);
* ``sqlite:///absolute/or/relative/path.db`` - embedded file, WAL mode (the default);
* ``redis://host:port/db`` - shared by several Ops-Core processes.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from opscore.errors import ConfigurationError
from opscore.storage.base import Document, Storage

__all__ = ["Document", "Storage", "create_storage"]


def create_storage(url: str, *, sqlite_synchronous: str = "NORMAL") -> Storage:
    """Build (but do not open) the backend named by ``url``.

    Raises ConfigurationError for an unknown scheme or a missing optional driver.
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme == "memory":
        from opscore.storage.memory import MemoryStorage

        return MemoryStorage()
    if scheme == "sqlite":
        from opscore.storage.sqlite import SQLiteStorage  # the standard library's sqlite3

        path = url[len("sqlite:///") :] if url.lower().startswith("sqlite:///") else ""
        if not path:
            raise ConfigurationError(
                f"sqlite URL needs a path, like sqlite:///data/opscore.db: {url!r}"
            )
        return SQLiteStorage(Path(path), synchronous=sqlite_synchronous)
    if scheme in {"redis", "rediss", "unix"}:
        try:
            from opscore.storage.redis import RedisStorage
        except ImportError as exc:  # pragma: no cover - redis is a base dependency
            raise ConfigurationError(f"redis storage needs the redis package ({exc})") from exc
        return RedisStorage(url)
    raise ConfigurationError(
        f"unknown storage URL {url!r}: use memory://, sqlite:///path or redis://host:port/db"
    )
