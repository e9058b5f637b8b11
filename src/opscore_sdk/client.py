"""The synchronous client: :class:`OpsCoreClient`.

Its methods are the operations of :mod:`opscore_sdk._operations`, bound by a small
descriptor that sends the described request(s) and returns the result; the async
client in :mod:`opscore_sdk.aio` binds the very same operations.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import Any, Generic, ParamSpec, Self, TypeVar, cast, overload

import httpx

from opscore_sdk import _operations as ops
from opscore_sdk._core import (
    USER_AGENT,
    Call,
    ClientConfig,
    Flow,
    Pager,
    Sleep,
    connection_error,
    decode,
    method_signature,
    retry_delay,
)
from opscore_sdk.errors import OpsCoreError

__all__ = ["OpsCoreClient", "OpsCoreClientSync"]

P = ParamSpec("P")
T = TypeVar("T")


class _Op(Generic[P, T]):
    """An operation exposed as a method returning its result."""

    def __init__(self, build: Callable[P, Call[T] | Flow[T]]) -> None:
        self._build = build
        self.__doc__ = build.__doc__
        self._signature = method_signature(build, "{}")

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, obj: OpsCoreClient, owner: type[Any]) -> Callable[P, T]: ...
    def __get__(self, obj: OpsCoreClient | None, owner: type[Any]) -> Self | Callable[P, T]:
        if obj is None:
            return self
        build = self._build

        @functools.wraps(build)
        def method(*args: P.args, **kwargs: P.kwargs) -> T:
            return obj._run(build(*args, **kwargs))

        setattr(method, "__signature__", self._signature)  # noqa: B010 - for help()
        return method


class _Pages(Generic[P, T]):
    """A listing exposed as a method returning an iterator over every item."""

    def __init__(self, build: Callable[P, Pager[T]]) -> None:
        self._build = build
        self.__doc__ = build.__doc__
        self._signature = method_signature(build, "Iterator[{}]")

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, obj: OpsCoreClient, owner: type[Any]) -> Callable[P, Iterator[T]]: ...
    def __get__(
        self, obj: OpsCoreClient | None, owner: type[Any]
    ) -> Self | Callable[P, Iterator[T]]:
        if obj is None:
            return self
        build = self._build

        @functools.wraps(build)
        def method(*args: P.args, **kwargs: P.kwargs) -> Iterator[T]:
            return obj._iterate(build(*args, **kwargs))

        setattr(method, "__signature__", self._signature)  # noqa: B010 - for help()
        return method


@overload
def _op(build: Callable[P, Call[T]]) -> _Op[P, T]: ...
@overload
def _op(build: Callable[P, Flow[T]]) -> _Op[P, T]: ...
def _op(build: Callable[P, Call[T] | Flow[T]]) -> _Op[P, T]:
    return _Op(build)


class OpsCoreClient:
    """Synchronous client of the Ops-Core API.

    Args:
        base_url: API root, e.g. ``http://127.0.0.1:8000``; default ``$OPSCORE_API_URL``
            or ``http://127.0.0.1:8000``.
        api_key: bearer key; default ``$OPSCORE_API_KEY``, else, for a server on this
            machine, the key a local server generated (``.opscore/api_key``, or
            ``$OPSCORE_DATA_DIR/api_key``).
        timeout_s: per-request timeout, seconds.
        max_retries: retries of a safe call after a connection error or a 503.
        backoff_s: wait before the first retry, doubled each time, seconds.
        backoff_max_s: longest wait between retries, seconds.
        headers: extra headers sent with every request.
        transport: an httpx transport (tests: ``httpx.ASGITransport(app)`` or
            ``httpx.MockTransport(handler)``).

    Every method raises an :class:`~opscore_sdk.errors.OpsCoreError` subclass on
    failure. Use as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout_s: float = 10.0,
        max_retries: int = 3,
        backoff_s: float = 0.25,
        backoff_max_s: float = 5.0,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.config = ClientConfig.resolve(
            base_url,
            api_key,
            timeout_s=timeout_s,
            max_retries=max_retries,
            backoff_s=backoff_s,
            backoff_max_s=backoff_max_s,
            headers=headers,
        )
        self._http = httpx.Client(
            base_url=self.config.base_url,
            headers=self.config.http_headers(USER_AGENT),
            timeout=timeout_s,
            transport=transport,
        )

    @property
    def base_url(self) -> str:
        """The API root this client talks to."""
        return self.config.base_url

    # -- lifecycle --------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- execution --------------------------------------------------------------------
    def _send(self, call: Call[T]) -> T:
        retry = 0
        while True:
            try:
                response = self._http.request(**call.request_kwargs())
            except httpx.TransportError as exc:
                delay = retry_delay(call, self.config, retry, None)
                if delay is None:
                    raise connection_error(call, self.config.base_url, exc) from exc
            else:
                delay = retry_delay(call, self.config, retry, response)
                if delay is None:
                    return decode(call, response)
            time.sleep(delay)
            retry += 1

    def _run(self, op: Call[T] | Flow[T]) -> T:
        if isinstance(op, Call):
            return self._send(op)
        try:
            step = next(op)
            while True:
                if isinstance(step, Sleep):
                    time.sleep(step.seconds)
                    step = op.send(None)
                    continue
                try:
                    answer = self._send(step)
                except OpsCoreError as exc:
                    step = op.throw(exc)
                else:
                    step = op.send(answer)
        except StopIteration as done:
            return cast(T, done.value)
        finally:
            op.close()

    def _iterate(self, pager: Pager[T]) -> Iterator[T]:
        cursor: str | None = None
        while True:
            items, cursor = pager.items(self._send(pager.fetch(cursor)))
            yield from items
            if not cursor:
                return

    # -- operations (documented in opscore_sdk._operations) ---------------------------
    health = _op(ops.health)
    ready = _op(ops.ready)

    register_agent = _op(ops.register_agent)
    list_agents = _op(ops.list_agents)
    iter_agents = _Pages(ops.iter_agents)
    get_agent = _op(ops.get_agent)
    deregister_agent = _op(ops.deregister_agent)
    agent_history = _op(ops.agent_history)
    update_state = _op(ops.update_state)
    get_state = _op(ops.get_state)

    create_workflow = _op(ops.create_workflow)
    create_workflow_from_file = _op(ops.create_workflow_from_file)
    list_workflows = _op(ops.list_workflows)
    iter_workflows = _Pages(ops.iter_workflows)
    get_workflow = _op(ops.get_workflow)
    delete_workflow = _op(ops.delete_workflow)
    workflow_schema = _op(ops.workflow_schema)

    trigger = _op(ops.trigger)
    trigger_workflow = _op(ops.trigger_workflow)
    list_sessions = _op(ops.list_sessions)
    iter_sessions = _Pages(ops.iter_sessions)
    get_session = _op(ops.get_session)
    cancel_session = _op(ops.cancel_session)
    pause_session = _op(ops.pause_session)
    resume_session = _op(ops.resume_session)
    wait = _op(ops.wait)

    list_tasks = _op(ops.list_tasks)
    iter_tasks = _Pages(ops.iter_tasks)
    get_task = _op(ops.get_task)
    dead_letters = _op(ops.dead_letters)
    retry_task = _op(ops.retry_task)
    submit_result = _op(ops.submit_result)


#: The seed's name for the synchronous client.
OpsCoreClientSync = OpsCoreClient
