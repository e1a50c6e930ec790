"""Status/MO outbox publisher: publishes committed events in order, deletes each only after its PUBACK."""

from __future__ import annotations

import asyncio

import aiomqtt
import structlog

from .mqtt import BatchAck, MqttLink
from .store import Store, StoreError

log = structlog.get_logger(__name__)

BATCH = 500
MAX_BATCHES = 8         # batches between publish and delete (the broker's Receive Maximum bounds the unacked)
SHARED_POLL_S = 0.1     # shared store: longest delay of an event another instance wrote for this one
FETCH_RETRY_S = 1.0     # the outbox could not be read: try again after this


class Publisher:
    """Publishes the outbox in seq order with several batches in flight (up to the broker's Receive
    Maximum), so that publishing is not a stop-and-wait of one batch per broker round trip and commit.
    A batch's rows are deleted once the broker acknowledged all of it; after a disconnect or a failed
    publish everything not deleted is published again (status events are at-least-once)."""

    def __init__(self, store: Store, link: MqttLink) -> None:
        self.store = store
        self.link = link
        self.published = 0
        self.idle = asyncio.Event()
        self._inflight: set[asyncio.Task[bool]] = set()
        self._last_task: asyncio.Task[bool] | None = None
        self._in_msgs = 0            # messages handed to the broker and not yet acknowledged
        self._failed = False
        self._room = asyncio.Event()      # a batch was acknowledged or finished: maybe room for the next

    async def run(self) -> None:
        last = 0
        ready = self.store.outbox_ready
        try:
            while True:
                if self._failed or not self.link.connected.is_set():
                    await self._settle()            # let the batches in flight end (acked or failed)
                    if self._failed:
                        self._failed = False
                        await asyncio.sleep(0.2)
                    last = 0      # unacknowledged events are published again after a reconnect
                    self._last_task = None
                    await self.link.connected.wait()
                    continue
                room = min(BATCH, self.link.receive_maximum - self._in_msgs)
                if len(self._inflight) >= MAX_BATCHES:
                    room = 0        # acknowledged batches still waiting for their delete: let the store catch up
                # A shared store has other writers: one may commit a row for this instance with a lower seq
                # after a higher one was read, so read from the start (after the previous batch is deleted),
                # one batch at a time, not from `last`.
                if room <= 0 or (self.store.shared and self._inflight):
                    self._room.clear()             # set on every PUBACKed batch and every finished batch
                    await self._room.wait()
                    continue
                ready.clear()
                try:
                    rows = await self.store.outbox_fetch(0 if self.store.shared else last, room)
                except StoreError as exc:
                    # the store cannot be read (a lost connection it could not restore in time): keep trying,
                    # this loop is the only one that publishes what the store holds
                    log.warning("outbox_fetch_failed", error=str(exc))
                    await asyncio.sleep(FETCH_RETRY_S)
                    ready.set()
                    continue
                if not rows:
                    await self._wait_for_work(ready)
                    continue
                self.idle.clear()
                try:
                    ack = self.link.publish_start([(topic, payload) for _, topic, payload in rows])
                except aiomqtt.MqttError as exc:
                    log.warning("publish_failed", error=str(exc), pending=len(rows))
                    self._failed = True
                    continue
                last = rows[-1][0]
                self._in_msgs += len(rows)
                task = asyncio.create_task(self._finish(ack, [seq for seq, _, _ in rows], self._last_task))
                self._last_task = task
                self._inflight.add(task)
                task.add_done_callback(self._batch_done)
        finally:
            for t in self._inflight:
                t.cancel()

    async def _finish(self, ack: BatchAck, seqs: list[int], prev: asyncio.Task[bool] | None) -> bool:
        """Wait for the batch's PUBACKs, then (after the batch before it, so that the store hears of batches
        in the order they were fetched) delete its rows. False when it or an earlier batch failed."""
        try:
            await self.link.publish_wait(ack)
            ok = True
        except (aiomqtt.MqttError, TimeoutError) as exc:
            log.warning("publish_failed", error=str(exc), pending=len(seqs))
            self._failed = True
            ok = False
        finally:
            self._in_msgs -= len(seqs)
            self._room.set()
        if prev is not None:
            try:
                prev_ok = await asyncio.shield(prev)
            except asyncio.CancelledError:
                prev_ok = False
            if not prev_ok:
                ok = False       # published again from the first unacknowledged row
        if not ok:
            return False
        self.published += len(seqs)
        try:
            await self.store.outbox_delete(seqs)
        except StoreError as exc:         # published but not deleted: published again after a restart
            log.warning("outbox_delete_failed", error=str(exc), count=len(seqs))
        return True

    def _batch_done(self, task: asyncio.Task[bool]) -> None:
        self._inflight.discard(task)
        self._room.set()

    async def _settle(self) -> None:
        if self._inflight:
            await asyncio.wait(set(self._inflight))

    async def _wait_for_work(self, ready: asyncio.Event) -> None:
        """Nothing to publish: wait for a commit that wrote outbox rows, a disconnect, or (shared store) the
        poll interval; meanwhile the batches in flight finish."""
        if not self._inflight:
            self.idle.set()
        waiter = asyncio.ensure_future(ready.wait())
        gone = asyncio.ensure_future(self.link.disconnected.wait())
        # outbox_ready tells of this process's own commits only; on a shared store other instances also
        # write rows for this one (a receipt correlated there for a message owned here): poll as well
        try:
            await asyncio.wait({waiter, gone, *self._inflight}, timeout=SHARED_POLL_S if self.store.shared else None,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            gone.cancel()
        if not self._inflight and not ready.is_set():
            self.idle.set()

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
