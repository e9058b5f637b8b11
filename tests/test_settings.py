"""Settings from the environment and .env, unknown keys reported, API keys resolved
at start (generated, stored with mode 0600, reused)."""

from __future__ import annotations

import io
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from opscore.errors import ConfigurationError
from opscore.logging import configure_logging
from opscore.services import API_KEY_FILENAME, start_services, stop_services
from opscore.settings import Settings, unknown_env_keys


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.upper().startswith("OPSCORE_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no stray .env file


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    try:
        yield stream
    finally:
        configure_logging("info")


def _events(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_defaults(tmp_path: Path) -> None:
    settings = Settings()
    assert settings.data_dir == Path(".opscore")
    assert settings.effective_storage_url == f"sqlite:///{tmp_path / '.opscore' / 'opscore.db'}"
    assert settings.configured_api_keys == []
    assert settings.webhook_secret is None
    assert settings.webhook_max_skew_s == 300
    assert settings.agent_stale_s == 300
    assert settings.max_body_bytes == 1_048_576
    assert settings.log_level == "info"


def test_environment_values(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OPSCORE_API_KEY", "one")
    monkeypatch.setenv("OPSCORE_API_KEYS", " two, three ,,")
    monkeypatch.setenv("OPSCORE_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("OPSCORE_STORAGE_URL", "redis://127.0.0.1:1/2")
    monkeypatch.setenv("OPSCORE_AGENT_STALE_S", "12.5")
    monkeypatch.setenv("OPSCORE_MAX_BODY_BYTES", "2048")
    monkeypatch.setenv("OPSCORE_DATA_DIR", str(tmp_path / "d"))
    settings = Settings()
    assert settings.configured_api_keys == ["one", "two", "three"]
    assert settings.log_level == "debug"
    assert settings.effective_storage_url == "redis://127.0.0.1:1/2"
    assert settings.agent_stale_s == 12.5
    assert settings.max_body_bytes == 2048
    assert settings.data_dir == tmp_path / "d"


def test_dotenv_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("OPSCORE_WEBHOOK_SECRET=from-dotenv\nOPSCORE_LOG_LEVEL=error\n")
    settings = Settings()
    assert settings.webhook_secret == "from-dotenv"
    assert settings.log_level == "error"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("OPSCORE_MAX_BODY_BYTES", "0"),
        ("OPSCORE_LOG_LEVEL", "loud"),
        ("OPSCORE_AGENT_STALE_S", "soon"),
        ("OPSCORE_WEBHOOK_MAX_SKEW_S", "-1"),
    ],
)
def test_invalid_values_are_rejected(monkeypatch: pytest.MonkeyPatch, key: str, value: str) -> None:
    monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError):
        Settings()


def test_unknown_env_keys() -> None:
    env = {
        "OPSCORE_API_KEY": "k",
        "OPSCORE_API_URL": "http://x",  # the SDK's, not the server's
        "OPSCORE_STORAGE_ULR": "memory://",
        "opscore_lowercase_typo": "1",
        "PATH": "/bin",
    }
    assert unknown_env_keys(env) == ["OPSCORE_STORAGE_ULR", "opscore_lowercase_typo"]


async def test_start_reports_unknown_keys_and_unsigned_webhook(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, log_stream: io.StringIO
) -> None:
    monkeypatch.setenv("OPSCORE_STORGE_URL", "memory://")
    (tmp_path / ".env").write_text("OPSCORE_FROM_DOTENV_TYPO=1\n")
    services = await start_services(Settings(storage_url="memory://", api_key="k"))
    await stop_services(services)
    events = _events(log_stream)
    unknown = [e for e in events if e["event"] == "unknown_setting"]
    assert sorted(e["key"] for e in unknown) == ["OPSCORE_FROM_DOTENV_TYPO", "OPSCORE_STORGE_URL"]
    assert all(e["level"] == "warning" for e in unknown)
    unsigned = [e for e in events if e["event"] == "webhook_unsigned"]
    assert len(unsigned) == 1
    assert "OPSCORE_WEBHOOK_SECRET" in unsigned[0]["detail"]


async def test_no_unsigned_warning_with_a_secret(log_stream: io.StringIO) -> None:
    settings = Settings(storage_url="memory://", api_key="k", webhook_secret="s")
    await stop_services(await start_services(settings))
    assert not [e for e in _events(log_stream) if e["event"] == "webhook_unsigned"]


async def test_api_key_generated_stored_0600_and_reused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], log_stream: io.StringIO
) -> None:
    settings = Settings(storage_url="memory://", data_dir=tmp_path / "fresh" / "data")
    services = await start_services(settings)
    await stop_services(services)
    (key,) = services.api_keys
    path = tmp_path / "fresh" / "data" / API_KEY_FILENAME
    assert path.read_text().strip() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(key) >= 40
    printed = capsys.readouterr().out
    assert f"generated API key {key} stored in {path}" in printed
    assert key not in log_stream.getvalue()  # the key is printed, never logged

    again = await start_services(settings)
    await stop_services(again)
    assert again.api_keys == frozenset({key})
    assert capsys.readouterr().out == ""


async def test_configured_keys_win_and_write_nothing(tmp_path: Path) -> None:
    settings = Settings(
        storage_url="memory://", data_dir=tmp_path / "d", api_key="a", api_keys=["b", "c"]
    )
    services = await start_services(settings)
    await stop_services(services)
    assert services.api_keys == frozenset({"a", "b", "c"})
    assert not (tmp_path / "d" / API_KEY_FILENAME).exists()


async def test_empty_key_file_is_a_configuration_error(tmp_path: Path) -> None:
    data_dir = tmp_path / "d"
    data_dir.mkdir()
    (data_dir / API_KEY_FILENAME).write_text("\n")
    with pytest.raises(ConfigurationError, match="empty"):
        await start_services(Settings(storage_url="memory://", data_dir=data_dir))


async def test_default_storage_is_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "home", api_key="k")
    services = await start_services(settings)
    try:
        assert services.storage_kind == "sqlite"
        assert services.storage.durable
    finally:
        await stop_services(services)
    assert (tmp_path / "home" / "opscore.db").exists()


def test_every_setting_is_documented() -> None:
    doc = (Path(__file__).parents[1] / "docs" / "configuration.md").read_text()
    for name in Settings.model_fields:
        assert f"`OPSCORE_{name.upper()}`" in doc, f"OPSCORE_{name.upper()} is not documented"
