"""The one settings object: every knob is an ``OPSCORE_*`` environment variable.

Values may also come from a ``.env`` file in the working directory. Environment
variables that start with ``OPSCORE_`` but name no setting are reported by
:func:`unknown_env_keys` so a misspelled setting is never silently ignored.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["ENV_PREFIX", "Settings", "unknown_env_keys"]

ENV_PREFIX = "OPSCORE_"

# Variables read by the SDK and CLI (client side), not by the server; they share the
# prefix, so the server must not call them unknown.
CLIENT_ENV_KEYS = frozenset({"OPSCORE_API_URL"})


class Settings(BaseSettings):
    """Server configuration. Field ``foo_bar`` is read from ``OPSCORE_FOO_BAR``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    data_dir: Path = Field(
        default=Path(".opscore"),
        description="Directory for the embedded database and the generated API key.",
    )
    storage_url: str | None = Field(
        default=None,
        description=(
            "Where state lives: memory://, sqlite:///path/to/file.db or "
            "redis://host:port/db. Default: sqlite file opscore.db in the data dir."
        ),
    )
    api_key: str | None = Field(default=None, description="One accepted API key.")
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Several accepted API keys, comma-separated."
    )
    webhook_secret: str | None = Field(
        default=None, description="Shared secret for AgentKit's signed registration webhook."
    )
    webhook_max_skew_s: float = Field(
        default=300.0, gt=0, description="Replay window for webhook timestamps, seconds."
    )
    agentkit_url: str | None = Field(
        default=None, description="Base URL of the AgentKit API used to dispatch tasks."
    )
    agent_stale_s: float = Field(
        default=300.0,
        ge=0,
        description="An agent with no state report for this long reads as offline; 0 disables.",
    )
    state_history_max: int = Field(
        default=200, ge=1, description="State reports kept per agent (newest first)."
    )
    max_body_bytes: int = Field(
        default=1_048_576, ge=1, description="Largest accepted request body; larger gets 413."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Minimum level of the JSON log lines."
    )
    sqlite_synchronous: Literal["NORMAL", "FULL"] = Field(
        default="NORMAL",
        description=(
            "SQLite synchronous mode. NORMAL (WAL) survives a killed process; FULL also "
            "survives power loss at the cost of an fsync per commit."
        ),
    )
    workflow_dir: Path | None = Field(
        default=None, description="Every .json/.yaml/.yml file here is loaded at start."
    )
    recovery_sweep_s: float = Field(
        default=60.0,
        gt=0,
        description=(
            "Shared (Redis) storage only: how often each process re-runs crash recovery, "
            "so work a dead peer left half done never waits for a restart."
        ),
    )
    dispatch_concurrency: int = Field(
        default=64, ge=1, description="Most task deliveries in progress at once per process."
    )

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("sqlite_synchronous", mode="before")
    @classmethod
    def _upper_sync(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @property
    def effective_storage_url(self) -> str:
        """The storage URL, defaulting to a SQLite file inside the data directory."""
        if self.storage_url:
            return self.storage_url
        return f"sqlite:///{(self.data_dir / 'opscore.db').resolve()}"

    @property
    def configured_api_keys(self) -> list[str]:
        """Every key configured through OPSCORE_API_KEY and OPSCORE_API_KEYS."""
        keys = list(self.api_keys)
        if self.api_key:
            keys.insert(0, self.api_key)
        return keys


def unknown_env_keys(environ: Mapping[str, str] | None = None) -> list[str]:
    """``OPSCORE_*`` variables that match no setting (likely typos), sorted."""
    env = os.environ if environ is None else environ
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields} | CLIENT_ENV_KEYS
    return sorted(k for k in env if k.upper().startswith(ENV_PREFIX) and k.upper() not in known)
