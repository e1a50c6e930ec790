"""The engine's side of the opt-out list: the in-memory cache, kept in step with the store,
and the optional confirmation replies to STOP / START (docs/compliance.md).

- At start the cache is loaded from the store.
- An MO that changed the list (the store sets ``opt_out`` on it in the MO's own commit) is
  applied to the cache right after that commit.
- Changes made by ``smppengine optout ...`` while the engine runs reach the cache through
  :meth:`OptOutRuntime.watch`: every ``interval`` seconds it asks the store (through its
  writer, so in order with the MO commits) whether the ``optout_changes`` counter moved, and
  reloads the list when it did.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import structlog

from .compliance import CONFIRM_PREFIX, OptOutCache, classify
from .config import ComplianceConfig
from .model import QUEUED, Request
from .store import Active, Store, StoreError

log = structlog.get_logger(__name__)


class OptOutRuntime:
    """``cache``: the list the dispatcher consults (kept in step here); ``enqueue``: how a confirmation reply,
    once committed, is handed to the dispatcher (Dispatcher.enqueue)."""

    def __init__(self, store: Store, cache: OptOutCache, enqueue: Callable[[Active], None]) -> None:
        self.store = store
        self.cache = cache
        self._enqueue = enqueue
        self.version: int | None = None
        self.confirmations = 0

    async def load(self) -> None:
        """Load the whole list (the store is open); refreshes only when the store's counter moved."""
        snap = await self.store.optout_snapshot(self.version)
        if snap.entries is not None:
            self.cache.replace(snap.entries)
            log.info("optouts_loaded", entries=len(self.cache), version=snap.version)
        self.version = snap.version

    async def watch(self, interval: float = 2.0) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.load()
            except StoreError as exc:      # a failing store must not end the loop
                log.warning("optouts_refresh_failed", error=str(exc))

    async def on_mo(self, msg: dict[str, Any], rules: ComplianceConfig, default_ttl: int) -> None:
        """After the MO's commit: update the cache, send the configured confirmation reply."""
        change = classify(msg["text"], msg["from"], msg["to"], rules)
        if change is None:
            return
        if "opt_out" in msg:
            self.cache.apply(change)
            log.info("optout_changed", mo_id=msg["id"], opted_out=change.add, scope=",".join(change.scopes),
                     smsc=msg.get("smsc"), keyword=change.keyword)
        reply = rules.confirm_stop if change.add else rules.confirm_start
        if not reply or not msg["to"]:
            return
        req = Request(id=f"{CONFIRM_PREFIX}{uuid.uuid4()}", to=msg["from"], text=reply, sender=msg["to"],
                      meta={"confirms": msg["id"]})
        try:
            result = await self.store.accept([req], [], default_ttl)
        except StoreError as exc:
            log.error("optout_confirm_not_queued", mo_id=msg["id"], error=str(exc))
            return
        for new in result.new:
            self.confirmations += 1
            log.info("optout_confirm_queued", msg_id=new.id, mo_id=msg["id"])
            self._enqueue(Active(new, QUEUED, ttl_at=new.received_at + default_ttl))
