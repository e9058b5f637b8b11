"""What every API command shares: ``--url``/``--api-key``, the SDK client, JSON arguments,
and the one place that turns SDK errors into a message and exit code 1.

Commands are thin (like arq's CLI): parse arguments, call :class:`OpsCoreClient`,
print. They open their client with :func:`open_client`; the group class
:class:`ApiGroup` catches every :class:`~opscore_sdk.OpsCoreError` they let through.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import httpx

from opscore_sdk import API_KEY_ENV, API_URL_ENV, DEFAULT_API_URL, OpsCoreClient, OpsCoreError

from .output import error_message

__all__ = [
    "ApiGroup",
    "ClientHooks",
    "JsonObject",
    "api_options",
    "json_option",
    "open_client",
]

F = TypeVar("F", bound=Callable[..., Any])

_URL_KEY = "opscore.url"
_API_KEY_KEY = "opscore.api_key"


@dataclass(frozen=True, kw_only=True)
class ClientHooks:
    """Overrides for the SDK clients the CLI makes; pass as ``obj=`` to the ``main`` group.

    Tests use it to run commands through an httpx transport of their choice
    (``runner.invoke(main, args, obj=ClientHooks(transport=...))``).
    """

    transport: httpx.BaseTransport | None = None
    max_retries: int | None = None


def _remember(key: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
        ctx.meta[key] = value
        return value

    return callback


def api_options(command: F) -> F:
    """Add ``--url`` and ``--api-key`` (read back by :func:`open_client`)."""
    command = click.option(
        "--api-key",
        envvar=API_KEY_ENV,
        show_envvar=True,
        expose_value=False,
        callback=_remember(_API_KEY_KEY),
        help="API key. Without one, a server on this machine's generated key is read "
        "from $OPSCORE_DATA_DIR/api_key (default .opscore/api_key).",
    )(command)
    command = click.option(
        "--url",
        envvar=API_URL_ENV,
        show_envvar=True,
        default=DEFAULT_API_URL,
        show_default=True,
        expose_value=False,
        callback=_remember(_URL_KEY),
        help="Ops-Core API root.",
    )(command)
    return command


def json_option(command: F) -> F:
    """Add ``--json``: print machine-readable JSON on stdout and nothing else."""
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print JSON (the API's camelCase shape) on stdout and nothing else.",
    )(command)


def paging_options(command: F) -> F:
    """Add ``--limit``, ``--cursor`` and ``--all`` (as ``fetch_all``) to a list command."""
    command = click.option("--all", "fetch_all", is_flag=True, help="Fetch every page.")(command)
    command = click.option("--cursor", help="Continue after a previous page (its nextCursor).")(
        command
    )
    return click.option(
        "--limit", type=click.IntRange(1, 500), default=50, show_default=True, help="Page size."
    )(command)


def api_url() -> str:
    """The ``--url`` of the command being run."""
    return str(click.get_current_context().meta.get(_URL_KEY) or DEFAULT_API_URL)


def open_client() -> OpsCoreClient:
    """An SDK client for the running command's ``--url`` and ``--api-key``.

    The SDK resolves a missing key itself (``$OPSCORE_API_KEY``, then the local
    server's key file for a URL on this machine).
    """
    ctx = click.get_current_context()
    hooks = ctx.find_object(ClientHooks) or ClientHooks()
    extra: dict[str, Any] = {}
    if hooks.max_retries is not None:
        extra["max_retries"] = hooks.max_retries
    return OpsCoreClient(
        api_url(), ctx.meta.get(_API_KEY_KEY) or None, transport=hooks.transport, **extra
    )


class ApiGroup(click.Group):
    """A command group whose commands talk to the API: an SDK error becomes one clear
    message on stderr and exit code 1 (never a traceback)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OpsCoreError as exc:
            click.echo(error_message(exc, str(ctx.meta.get(_URL_KEY) or DEFAULT_API_URL)), err=True)
            ctx.exit(1)


if TYPE_CHECKING:  # click.ParamType is generic only for type checkers on older click
    _DictParamType = click.ParamType[dict[str, Any]]
else:
    _DictParamType = click.ParamType


class JsonObject(_DictParamType):
    """A JSON object given inline (``'{"a": 1}'``) or as ``@file.json``."""

    name = "JSON"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> dict[str, Any]:
        if isinstance(value, dict):
            return value
        text = str(value)
        if text.startswith("@"):
            try:
                text = Path(text[1:]).read_text(encoding="utf-8")
            except OSError as exc:
                self.fail(f"cannot read {text[1:]}: {exc.strerror or exc}", param, ctx)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            self.fail(f"not valid JSON ({exc.msg} at column {exc.colno}): {text!r}", param, ctx)
        if not isinstance(data, dict):
            self.fail(f"must be a JSON object, got {text!r}", param, ctx)
        return data
