"""The store's interface. The engine only talks to this; SQLite implements it, PostgreSQL will."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..model import Rejection, Request
from ..receipts import Receipt

if TYPE_CHECKING:
    from ..config import ComplianceConfig
    from .optouts import OptOut, Snapshot


class StoreError(Exception):
    """The store could not commit: nothing the caller asked for was made durable."""


@dataclass(slots=True)
class AcceptResult:
    new: list[Request] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Active:
    """A message that has not reached a final state, as the dispatcher needs it."""

    request: Request
    state: str
    smsc: str | None = None
    attempt: int = 0
    ttl_at: float = 0.0
    submitted: dict[int, str] = field(default_factory=dict)   # part index -> SMSC message id
    next_attempt_at: float | None = None


class Store(Protocol):
    outbox_ready: asyncio.Event

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def accept(self, requests: list[Request], rejections: list[Rejection], default_ttl: int) -> AcceptResult: ...
    async def begin_attempt(self, msg_id: str, smsc: str, parts: int, ref: int) -> tuple[int, int]: ...
    async def part_submitted(self, msg_id: str, idx: int, smsc: str, smsc_id: str) -> None: ...
    async def retrying(self, msg_id: str, next_at: float, error: dict[str, Any]) -> None: ...
    async def finish(self, msg_id: str, state: str, error: dict[str, Any] | None) -> None: ...
    async def receipt(self, smsc: str, receipt: Receipt) -> str: ...
    async def mo(self, smsc: str, source: str, dest: str, data: bytes, data_coding: int,
                 concat: tuple[int, int, int] | None, default_alphabet: str,
                 optout: ComplianceConfig | None = None) -> dict[str, Any] | None: ...
    # the opt-out list (store/optouts.py, docs/compliance.md)
    async def optout_snapshot(self, known: int | None) -> Snapshot: ...
    async def optout_list(self) -> list[OptOut]: ...
    async def optout_add(self, rows: list[OptOut]) -> int: ...
    async def optout_remove(self, keys: list[tuple[str, str]]) -> int: ...
    async def outbox_fetch(self, after: int, limit: int) -> list[tuple[int, str, bytes]]: ...
    async def outbox_delete(self, seqs: list[int]) -> None: ...
    async def recover(self) -> list[Active]: ...
    async def trace(self, msg_id: str) -> dict[str, Any] | None: ...
    async def stats(self, since: float) -> dict[str, Any]: ...
