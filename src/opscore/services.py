"""Everything a running Ops-Core needs, built in one place.

:func:`start_services` opens the storage, resolves the API keys and builds the
services on top; :func:`stop_services` releases them in reverse order. The API's
lifespan keeps the result on ``app.state.services``; the CLI and tests may use it
directly. To add a service, add a field to :class:`Services` and build it in
:func:`start_services` (and stop it in :func:`stop_services`).
"""

from __future__ import annotations

import os
import secrets
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import structlog
from dotenv import dotenv_values

from opscore.engine.service import WorkflowEngine
from opscore.engine.store import EngineStore
from opscore.engine.transports import TransportSet
from opscore.errors import ConfigurationError
from opscore.lifecycle import LifecycleService
from opscore.settings import Settings, unknown_env_keys
from opscore.storage import Storage, create_storage

__all__ = [
    "API_KEY_FILENAME",
    "Services",
    "new_agent_id",
    "open_configured_storage",
    "resolve_api_keys",
    "start_services",
    "stop_services",
]

log = structlog.get_logger("opscore.services")

#: Name of the generated key's file inside the data directory.
API_KEY_FILENAME = "api_key"


def new_agent_id() -> str:
    """A fresh server-generated agent id (uuid4 string)."""
    return str(uuid.uuid4())


@dataclass(slots=True)
class Services:
    """The running service graph. One per app (or CLI invocation)."""

    settings: Settings
    storage: Storage
    lifecycle: LifecycleService
    #: Every accepted API key.
    api_keys: frozenset[str]
    #: Runs workflows; started after everything it depends on.
    engine: WorkflowEngine
    #: False when the caller handed in an already opened storage it will close itself.
    owns_storage: bool = True

    @property
    def storage_kind(self) -> str:
        """The backend's URL scheme: memory, sqlite or redis."""
        url = self.settings.effective_storage_url
        return url.split(":", 1)[0].lower() if self.owns_storage else _kind_of(self.storage)


def _kind_of(storage: Storage) -> str:
    name = type(storage).__name__.lower()
    return name.removesuffix("storage") or name


async def open_configured_storage(settings: Settings) -> Storage:
    """Open the backend the settings name; StorageError if it cannot be opened."""
    if settings.storage_url is None:  # default: SQLite file inside the data dir
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    storage = create_storage(
        settings.effective_storage_url, sqlite_synchronous=settings.sqlite_synchronous
    )
    await storage.open()
    return storage


async def start_services(settings: Settings, *, storage: Storage | None = None) -> Services:
    """Open storage and build every service.

    ``storage``: an already opened backend to use instead of the one named by
    ``settings.effective_storage_url`` (tests); the caller keeps ownership and closes
    it. Raises ConfigurationError for unusable settings and StorageError when the
    backend cannot be opened.
    """
    _report_settings(settings)
    api_keys = resolve_api_keys(settings)
    owns_storage = storage is None
    if storage is None:
        storage = await open_configured_storage(settings)
    try:
        lifecycle = LifecycleService(
            storage,
            stale_after_s=settings.agent_stale_s,
            history_max=settings.state_history_max,
            new_id=new_agent_id,
        )
        engine = WorkflowEngine(
            settings=settings,
            lifecycle=lifecycle,
            store=EngineStore(storage),
            transports=TransportSet(agentkit_url=settings.agentkit_url),
        )
        services = Services(
            settings=settings,
            storage=storage,
            lifecycle=lifecycle,
            api_keys=api_keys,
            engine=engine,
            owns_storage=owns_storage,
        )
        await engine.start()
    except BaseException:
        if owns_storage:
            await storage.close()
        raise
    log.info(
        "services_started",
        storage=services.storage_kind,
        durable=storage.durable,
        apiKeys=len(api_keys),
    )
    return services


async def stop_services(services: Services) -> None:
    """Stop what :func:`start_services` started, in reverse order. Safe to call twice."""
    await services.engine.stop()
    if services.owns_storage:
        await services.storage.close()
    log.info("services_stopped")


def _report_settings(settings: Settings) -> None:
    environ: dict[str, str] = {}
    env_file = settings.model_config.get("env_file")
    if isinstance(env_file, str | Path) and Path(env_file).is_file():
        environ.update({k: v or "" for k, v in dotenv_values(env_file).items()})
    environ.update(os.environ)
    for key in unknown_env_keys(environ):
        log.warning(
            "unknown_setting",
            key=key,
            detail=f"{key} is not an Ops-Core setting and is ignored (misspelled?)",
        )
    if not settings.webhook_secret:
        log.warning(
            "webhook_unsigned",
            detail=(
                "OPSCORE_WEBHOOK_SECRET is not set: the AgentKit registration webhook "
                "accepts unsigned requests"
            ),
        )


def resolve_api_keys(settings: Settings) -> frozenset[str]:
    """The configured keys; else the key stored in ``<data_dir>/api_key``; else a new
    key, generated, stored there (mode 0600) and printed once to stdout.

    Raises ConfigurationError when the key file cannot be read or written.
    """
    configured = settings.configured_api_keys
    if configured:
        return frozenset(configured)
    path = settings.data_dir / API_KEY_FILENAME
    try:
        stored = _read_key(path)
        if stored:
            log.info("api_key_loaded", path=str(path))
            return frozenset({stored})
        key = secrets.token_urlsafe(32)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        if not _write_new_key(path, key):  # another process created it first
            stored = _read_key(path)
            if stored:
                return frozenset({stored})
            raise ConfigurationError(f"API key file {path} exists but is empty")
    except OSError as exc:
        raise ConfigurationError(f"cannot read or write the API key file {path}: {exc}") from exc
    # The key itself goes to the console only, never into the log stream.
    log.warning("api_key_generated", path=str(path))
    print(f"Ops-Core generated API key {key} stored in {path}", file=sys.stdout, flush=True)
    return frozenset({key})


def _read_key(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def _write_new_key(path: Path, key: str) -> bool:
    """Create ``path`` with mode 0600 holding ``key``; False if it already exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(key + "\n")
        file.flush()
        os.fsync(file.fileno())
    return True
