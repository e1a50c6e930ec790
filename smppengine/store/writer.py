"""The group-commit writer both store backends share.

Callers queue an operation and await its result; one writer task takes
whatever operations arrived while the previous transaction ran, lets the
backend apply them in one transaction (``_commit_batch``), and only then
answers every caller. So ``await store.x(...)`` means "x is durable", and a
failed commit answers every caller of the batch with :class:`StoreError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, TypeVarTuple, overload

import structlog

from .base import StoreError

log = structlog.get_logger(__name__)

# A wake-up that finds fewer than GATHER_BELOW operations waits GATHER_S for more to join the commit. At
# moderate rates every operation otherwise had a transaction, a thread hop and a WAL write of its own:
# measured at 1,000 msg/s, 0.89 → 0.62 ms of engine CPU per message for +2 ms at the median publish →
# submit_sm (p99 6.5 → 8.8 ms); flat out, 4,000 → 4,400 msg/s (docs/performance.md).
GATHER_BELOW = 16
GATHER_S = 0.001

Op = tuple[Callable[..., Any], tuple[Any, ...], "asyncio.Future[Any]"]
# An operation is called as fn(conn, *args) in the commit (conn: the backend's connection or batch; the
# PostgreSQL store awaits an operation that is a coroutine function), and its caller gets what it returned:
# typed through _submit/_call.
_R = TypeVar("_R")
_Args = TypeVarTuple("_Args")


class GroupCommitWriter:
    """Mixin: call :meth:`_init_writer` in ``__init__``, implement :meth:`_commit_batch`."""

    outbox_ready: asyncio.Event

    def _init_writer(self) -> None:
        self._ops: list[Op] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._outbox_added = False      # set by operations that wrote outbox rows
        self.failed = False             # the last commit failed: the engine stops acknowledging

    async def _commit_batch(self, batch: list[Op]) -> list[Any]:
        """Apply every operation of the batch in one transaction and commit; one result (or the exception
        of a failed operation) per operation. Raises when the commit itself failed."""
        raise NotImplementedError

    def _start_writer(self) -> None:
        self._writer = asyncio.create_task(self._write_loop(), name="store-writer")

    async def _stop_writer(self, noop: Callable[..., Any]) -> None:
        """Let the operations already queued commit, then stop; ``noop`` is an operation that does nothing
        (backends call their operations differently)."""
        if self._writer is None:
            return
        if self._ops:
            await self._call(noop)          # resolves after every operation queued before it
        self._writer.cancel()
        try:
            await self._writer
        except asyncio.CancelledError:
            pass
        self._writer = None

    @overload
    def _submit(self, fn: Callable[[Any, *_Args], Awaitable[_R]], *args: *_Args) -> asyncio.Future[_R]: ...
    @overload
    def _submit(self, fn: Callable[[Any, *_Args], _R], *args: *_Args) -> asyncio.Future[_R]: ...

    def _submit(self, fn: Callable[[Any, *_Args], Any], *args: *_Args) -> asyncio.Future[Any]:
        """Queue an operation; the future resolves after the commit that applied it."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._ops.append((fn, args, fut))
        self._wake.set()
        return fut

    @overload
    async def _call(self, fn: Callable[[Any, *_Args], Awaitable[_R]], *args: *_Args) -> _R: ...
    @overload
    async def _call(self, fn: Callable[[Any, *_Args], _R], *args: *_Args) -> _R: ...

    async def _call(self, fn: Callable[[Any, *_Args], Any], *args: *_Args) -> Any:
        return await self._submit(fn, *args)

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            if len(self._ops) < GATHER_BELOW:
                await asyncio.sleep(GATHER_S)     # a few operations only: let more join this commit
            self._wake.clear()
            batch, self._ops = self._ops, []
            if not batch:
                continue
            self._outbox_added = False
            try:
                results = await self._commit_batch(batch)
            except Exception as exc:  # the commit itself failed: nothing of the batch is durable
                self.failed = True
                log.error("store_commit_failed", error=str(exc), ops=len(batch))
                for _, _, fut in batch:
                    if not fut.done():
                        fut.set_exception(StoreError(f"store commit failed: {exc}"))
                continue
            if self.failed:
                log.warning("store_commit_recovered")
                self.failed = False
            for (_, _, fut), res in zip(batch, results, strict=True):
                if fut.done():
                    continue
                if isinstance(res, BaseException):
                    fut.set_exception(res)
                else:
                    fut.set_result(res)
            if self._outbox_added:
                self._outbox_added = False
                self.outbox_ready.set()

