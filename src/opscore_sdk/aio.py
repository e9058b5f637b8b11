"""The asynchronous client: :class:`AsyncOpsCoreClient`.

It binds the same operations as :class:`opscore_sdk.client.OpsCoreClient`; each method
returns a coroutine (the ``iter_*`` methods return async iterators).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
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

__all__ = ["AsyncOpsCoreClient", "OpsCoreClientAsync"]

P = ParamSpec("P")
T = TypeVar("T")


class _AsyncOp(Generic[P, T]):
    """An operation exposed as a coroutine method."""

    def __init__(self, build: Callable[P, Call[T] | Flow[T]]) -> None:
        self._build = build
        self.__doc__ = build.__doc__
        self._signature = method_signature(build, "{}")

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(
        self, obj: AsyncOpsCoreClient, owner: type[Any]
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...
    def __get__(
        self, obj: AsyncOpsCoreClient | None, owner: type[Any]
    ) -> Self | Callable[P, Coroutine[Any, Any, T]]:
        if obj is None:
            return self
        build = self._build

        @functools.wraps(build)
        async def method(*args: P.args, **kwargs: P.kwargs) -> T:
            return await obj._run(build(*args, **kwargs))

        setattr(method, "__signature__", self._signature)  # noqa: B010 - for help()
        return method


class _AsyncPages(Generic[P, T]):
    """A listing exposed as a method returning an async iterator over every item."""

    def __init__(self, build: Callable[P, Pager[T]]) -> None:
        self._build = build
        self.__doc__ = build.__doc__
        self._signature = method_signature(build, "AsyncIterator[{}]")

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(
        self, obj: AsyncOpsCoreClient, owner: type[Any]
    ) -> Callable[P, AsyncIterator[T]]: ...
    def __get__(
        self, obj: AsyncOpsCoreClient | None, owner: type[Any]
    ) -> Self | Callable[P, AsyncIterator[T]]:
        if obj is None:
            return self
        build = self._build

        @functools.wraps(build)
        def method(*args: P.args, **kwargs: P.kwargs) -> AsyncIterator[T]:
            return obj._iterate(build(*args, **kwargs))

        setattr(method, "__signature__", self._signature)  # noqa: B010 - for help()
        return method


@overload
def _op(build: Callable[P, Call[T]]) -> _AsyncOp[P, T]: ...
@overload
def _op(build: Callable[P, Flow[T]]) -> _AsyncOp[P, T]: ...
def _op(build: Callable[P, Call[T] | Flow[T]]) -> _AsyncOp[P, T]:
    return _AsyncOp(build)


class AsyncOpsCoreClient:
    """Asynchronous client of the Ops-Core API.

    Takes the same arguments as :class:`opscore_sdk.client.OpsCoreClient` (``transport``
    is an ``httpx.AsyncBaseTransport``, e.g. ``httpx.ASGITransport(app)``). Use
    ``async with``, or call :meth:`aclose`.
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
        transport: httpx.AsyncBaseTransport | None = None,
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
        self._http = httpx.AsyncClient(
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
    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    close = aclose

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- execution --------------------------------------------------------------------
    async def _send(self, call: Call[T]) -> T:
        retry = 0
        while True:
            try:
                response = await self._http.request(**call.request_kwargs())
            except httpx.TransportError as exc:
                delay = retry_delay(call, self.config, retry, None)
                if delay is None:
                    raise connection_error(call, self.config.base_url, exc) from exc
            else:
                delay = retry_delay(call, self.config, retry, response)
                if delay is None:
                    return decode(call, response)
            await asyncio.sleep(delay)
            retry += 1

    async def _run(self, op: Call[T] | Flow[T]) -> T:
        if isinstance(op, Call):
            return await self._send(op)
        try:
            step = next(op)
            while True:
                if isinstance(step, Sleep):
                    await asyncio.sleep(step.seconds)
                    step = op.send(None)
                    continue
                try:
                    answer = await self._send(step)
                except OpsCoreError as exc:
                    step = op.throw(exc)
                else:
                    step = op.send(answer)
        except StopIteration as done:
            return cast(T, done.value)
        finally:
            op.close()

    async def _iterate(self, pager: Pager[T]) -> AsyncIterator[T]:
        cursor: str | None = None
        while True:
            items, cursor = pager.items(await self._send(pager.fetch(cursor)))
            for item in items:
                yield item
            if not cursor:
                return

    # -- operations (documented in opscore_sdk._operations) ---------------------------
    health = _op(ops.health)
    ready = _op(ops.ready)

    register_agent = _op(ops.register_agent)
    list_agents = _op(ops.list_agents)
    iter_agents = _AsyncPages(ops.iter_agents)
    get_agent = _op(ops.get_agent)
    deregister_agent = _op(ops.deregister_agent)
    agent_history = _op(ops.agent_history)
    update_state = _op(ops.update_state)
    get_state = _op(ops.get_state)

    create_workflow = _op(ops.create_workflow)
    create_workflow_from_file = _op(ops.create_workflow_from_file)
    list_workflows = _op(ops.list_workflows)
    iter_workflows = _AsyncPages(ops.iter_workflows)
    get_workflow = _op(ops.get_workflow)
    delete_workflow = _op(ops.delete_workflow)
    workflow_schema = _op(ops.workflow_schema)

    trigger = _op(ops.trigger)
    trigger_workflow = _op(ops.trigger_workflow)
    list_sessions = _op(ops.list_sessions)
    iter_sessions = _AsyncPages(ops.iter_sessions)
    get_session = _op(ops.get_session)
    cancel_session = _op(ops.cancel_session)
    pause_session = _op(ops.pause_session)
    resume_session = _op(ops.resume_session)
    wait = _op(ops.wait)

    list_tasks = _op(ops.list_tasks)
    iter_tasks = _AsyncPages(ops.iter_tasks)
    get_task = _op(ops.get_task)
    dead_letters = _op(ops.dead_letters)
    retry_task = _op(ops.retry_task)
    submit_result = _op(ops.submit_result)


#: The seed's name for the asynchronous client.
OpsCoreClientAsync = AsyncOpsCoreClient
