"""The I/O-free core shared by the sync and the async client.

Every API operation is described once, as data: a :class:`Call` says which request to
send, whether it is safe to repeat, and how to read the answer. Operations that need
several requests (``wait``) are *flows*: generators that yield calls and pauses and
receive the decoded answers. The two clients only execute calls (with the retry rules
below) and drive flows; they never know about individual endpoints.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import json
import os
import random
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import httpx
import pydantic

from opscore_sdk.errors import OpsCoreConnectionError, OpsCoreError, error_from_response

__all__ = [
    "API_KEY_ENV",
    "API_URL_ENV",
    "DEFAULT_API_URL",
    "USER_AGENT",
    "Call",
    "ClientConfig",
    "Flow",
    "Pager",
    "Sleep",
    "connection_error",
    "decode",
    "method_signature",
    "retry_delay",
]

T = TypeVar("T")

API_URL_ENV = "OPSCORE_API_URL"
API_KEY_ENV = "OPSCORE_API_KEY"
DEFAULT_API_URL = "http://127.0.0.1:8000"
# Where a local server keeps its generated key (the server's OPSCORE_DATA_DIR setting).
DATA_DIR_ENV = "OPSCORE_DATA_DIR"
DEFAULT_DATA_DIR = ".opscore"
API_KEY_FILENAME = "api_key"


def _version() -> str:
    try:
        return importlib.metadata.version("opscore")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - source checkout
        return "0"


USER_AGENT = f"opscore-sdk/{_version()}"


def _is_local(url: str) -> bool:
    host = httpx.URL(url).host
    return host in {"localhost", "127.0.0.1", "::1"}


def _local_key() -> str | None:
    """The key a local ``opscore serve`` generated: ``<data dir>/api_key``.

    Only read for a server on this machine, so the key never goes to another host.
    """
    path = Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR) / API_KEY_FILENAME
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


@dataclass(frozen=True, kw_only=True)
class ClientConfig:
    """Connection settings of a client, normalised once.

    Arguments win over the environment (``OPSCORE_API_URL``, ``OPSCORE_API_KEY``). With
    no key given either way and a server on this machine, the key a local server
    generated is used (``$OPSCORE_DATA_DIR/api_key``, default ``.opscore/api_key``).
    """

    base_url: str
    api_key: str | None
    timeout_s: float
    max_retries: int
    backoff_s: float
    backoff_max_s: float
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def resolve(
        cls,
        base_url: str | None,
        api_key: str | None,
        *,
        timeout_s: float,
        max_retries: int,
        backoff_s: float,
        backoff_max_s: float,
        headers: Mapping[str, str] | None,
    ) -> ClientConfig:
        url = base_url or os.environ.get(API_URL_ENV) or DEFAULT_API_URL
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        if key is None and _is_local(url):
            key = _local_key()
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if max_retries < 0 or backoff_s < 0 or backoff_max_s < 0:
            raise ValueError("max_retries, backoff_s and backoff_max_s must not be negative")
        return cls(
            base_url=url.rstrip("/"),
            api_key=key or None,
            timeout_s=timeout_s,
            max_retries=max_retries,
            backoff_s=backoff_s,
            backoff_max_s=backoff_max_s,
            headers=dict(headers or {}),
        )

    def http_headers(self, user_agent: str) -> dict[str, str]:
        """Headers sent with every request."""
        headers = {"User-Agent": user_agent, "Accept": "application/json", **self.headers}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers


@dataclass(frozen=True, kw_only=True)
class Call(Generic[T]):
    """One HTTP request and how to read its answer.

    ``idempotent`` marks requests that may be sent again after a connection error or a
    503 without changing the outcome (reads, deletes, updates by id, and triggers with an
    Idempotency-Key).
    """

    method: str
    path: str
    parse: Callable[[Any], T]
    params: Mapping[str, str | int] | None = None
    json_body: Any = None
    content: bytes | None = None
    headers: Mapping[str, str] | None = None
    idempotent: bool = False
    #: The answer has no body (204); ``parse`` receives ``None``.
    empty: bool = False

    def request_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``httpx.Client.request`` / ``AsyncClient.request``."""
        kwargs: dict[str, Any] = {"method": self.method, "url": self.path}
        if self.params:
            kwargs["params"] = {k: v for k, v in self.params.items()}
        if self.content is not None:
            kwargs["content"] = self.content
        elif self.json_body is not None:
            kwargs["json"] = self.json_body
        if self.headers:
            kwargs["headers"] = dict(self.headers)
        return kwargs


@dataclass(frozen=True)
class Sleep:
    """A pause a flow asks its executor for (time.sleep or asyncio.sleep)."""

    seconds: float


#: A multi-request operation: yields calls (receiving their decoded answers) and pauses.
Flow = Generator["Call[Any] | Sleep", Any, T]


@dataclass(frozen=True)
class Pager(Generic[T]):
    """How to fetch the pages of a listing; clients turn it into an (async) iterator."""

    fetch: Callable[[str | None], Call[Any]]
    items: Callable[[Any], tuple[list[T], str | None]]


def method_signature(build: Callable[..., Any], returns: str = "{}") -> inspect.Signature:
    """``build``'s signature with ``Call[X]``/``Flow[X]``/``Pager[X]`` shown as ``returns``
    filled with ``X``, so ``help()`` on a client method shows what it really returns."""
    signature = inspect.signature(build)
    annotation = signature.return_annotation
    if isinstance(annotation, str) and "[" in annotation and annotation.endswith("]"):
        signature = signature.replace(
            return_annotation=returns.format(annotation[annotation.index("[") + 1 : -1])
        )
    return signature


def decode(call: Call[T], response: httpx.Response) -> T:
    """The call's result from a 2xx answer; raises the matching OpsCoreError otherwise."""
    if response.status_code >= 400 or response.status_code < 200:
        raise error_from_response(response)
    if call.empty or response.status_code == 204:
        return call.parse(None)
    try:
        return call.parse(response.json())
    except (json.JSONDecodeError, UnicodeDecodeError, pydantic.ValidationError) as exc:
        raise OpsCoreError(
            f"unexpected answer to {call.method} {call.path}: {exc}".splitlines()[0],
            status=response.status_code,
            code="invalid_response",
            request_id=response.headers.get("x-request-id"),
        ) from exc


def connection_error(call: Call[Any], base_url: str, exc: httpx.TransportError) -> OpsCoreError:
    """The SDK error for an httpx transport failure."""
    what = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
    reason = str(exc) or type(exc).__name__
    return OpsCoreConnectionError(
        f"{call.method} {base_url}{call.path} {what}: {reason}",
        code="timeout" if isinstance(exc, httpx.TimeoutException) else "connection_error",
    )


def retry_delay(
    call: Call[Any],
    config: ClientConfig,
    retry: int,
    response: httpx.Response | None,
) -> float | None:
    """Seconds to wait before sending ``call`` again, or ``None`` to give up.

    ``retry`` counts retries already made (0 for the first failure). Only idempotent
    calls are repeated, on a connection error (``response is None``) or a 503; the
    wait doubles each time (with jitter), capped by ``backoff_max_s``, and honours a
    ``Retry-After`` header in seconds.
    """
    if not call.idempotent or retry >= config.max_retries:
        return None
    if response is not None and response.status_code != 503:
        return None
    delay = min(config.backoff_max_s, config.backoff_s * (2.0**retry))
    delay *= random.uniform(0.5, 1.0)  # jitter: many clients do not retry in lockstep
    if response is not None:
        retry_after = response.headers.get("retry-after", "")
        if retry_after.strip().isdigit():
            delay = min(config.backoff_max_s, max(delay, float(retry_after)))
    return delay
