"""Status/MO outbox publisher: publishes committed events in order, deletes each only after its PUBACK."""

from __future__ import annotations

import asyncio

import aiomqtt
import structlog

from .mqtt import MqttLink
from .store import Store

log = structlog.get_logger(__name__)

BATCH = 500
SHARED_POLL_S = 0.1     # shared store: longest delay of an event another instance wrote for this one


class Publisher:
    def __init__(self, store: Store, link: MqttLink) -> None:
        self.store = store
        self.link = link
        self.published = 0
        self.idle = asyncio.Event()

    async def run(self) -> None:
        last = 0
        ready = self.store.outbox_ready
        while True:
            if not self.link.connected.is_set():
                last = 0          # unacknowledged events are published again after a reconnect
                await self.link.connected.wait()
            ready.clear()
            # A shared store has other writers: one may commit a row for this instance with a lower seq after a
            # higher one was read, so read from the start (the previous batch is deleted by now) not from `last`.
            after = 0 if self.store.shared else last
            rows = await self.store.outbox_fetch(after, min(BATCH, self.link.receive_maximum))
            if not rows:
                self.idle.set()
                waiter = asyncio.ensure_future(ready.wait())
                gone = asyncio.ensure_future(self.link.disconnected.wait())
                # outbox_ready tells of this process's own commits only; on a shared store other instances also
                # write rows for this one (a receipt correlated there for a message owned here): poll as well
                await asyncio.wait({waiter, gone}, timeout=SHARED_POLL_S if self.store.shared else None,
                                   return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                gone.cancel()
                continue
            self.idle.clear()
            try:
                await self.link.publish_batch([(topic, payload) for _, topic, payload in rows])
            except (aiomqtt.MqttError, TimeoutError) as exc:
                log.warning("publish_failed", error=str(exc), pending=len(rows))
                last = 0
                await asyncio.sleep(0.2)
                continue
            last = rows[-1][0]
            self.published += len(rows)
            await self.store.outbox_delete([seq for seq, _, _ in rows])

    async def flush(self, timeout: float) -> bool:
        """Wait until the outbox is empty (bounded); True when it is."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    if not await self.store.outbox_fetch(0, 1):
                        return True
                    await asyncio.sleep(0.05)
        except TimeoutError:
            return False
