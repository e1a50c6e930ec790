"""The outbox publisher's flow control, with a stand-in link and store (no broker, no database).

The stand-ins record what the publisher does: batches handed to the broker, the PUBACKs the test releases,
the deletes the store applies. What is checked is what an operator would notice: events leave in commit
order, the broker never has more unacknowledged events than its Receive Maximum, and a store that is slow
to delete cannot make the publisher pile up batches (memory) without bound.
"""

from __future__ import annotations

import asyncio
from typing import Any

from smppengine.publisher import BATCH, MAX_BATCHES, Publisher


class FakeAck:
    def __init__(self, seqs: list[int]) -> None:
        self.seqs = seqs
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()


class FakeLink:
    def __init__(self, receive_maximum: int) -> None:
        self.receive_maximum = receive_maximum
        self.connected = asyncio.Event()
        self.connected.set()
        self.disconnected = asyncio.Event()
        self.batches: list[FakeAck] = []
        self.sent: list[str] = []

    def publish_start(self, items: list[tuple[str, bytes]]) -> FakeAck:
        ack = FakeAck([int(p) for _, p in items])
        self.sent += [t for t, _ in items]
        self.batches.append(ack)
        return ack

    async def publish_wait(self, ack: FakeAck) -> None:
        await ack.done

    def unacked(self) -> int:
        return sum(len(b.seqs) for b in self.batches if not b.done.done())


class FakeStore:
    shared = False

    def __init__(self, n: int) -> None:
        self.rows = [(i, f"sms/status/m{i}", str(i).encode()) for i in range(1, n + 1)]
        self.outbox_ready = asyncio.Event()
        self.deleted: list[list[int]] = []
        self.delete_gate = asyncio.Event()       # closed: deletes wait (a store busy committing)

    async def outbox_fetch(self, after: int, limit: int) -> list[tuple[int, str, bytes]]:
        done = {s for batch in self.deleted for s in batch}
        return [r for r in self.rows if r[0] > after and r[0] not in done][:limit]

    async def outbox_delete(self, seqs: list[int]) -> None:
        await self.delete_gate.wait()
        self.deleted.append(seqs)


async def _until(cond: Any, timeout: float = 5.0) -> None:
    """Let the publisher run (one loop turn at a time) until ``cond`` holds; fails after ``timeout``."""
    async with asyncio.timeout(timeout):
        while not cond():  # noqa: ASYNC110 - the stand-ins have no events; each turn lets the publisher act
            await asyncio.sleep(0)


async def test_batches_stay_within_receive_maximum_and_leave_in_order() -> None:
    store, link = FakeStore(3000), FakeLink(receive_maximum=1200)
    store.delete_gate.set()
    pub = Publisher(store, link)  # type: ignore[arg-type]
    task = asyncio.create_task(pub.run())
    try:
        async with asyncio.timeout(10):
            while sum(map(len, store.deleted)) < 3000:
                await _until(lambda: link.unacked() > 0 or sum(map(len, store.deleted)) == 3000)
                assert link.unacked() <= 1200                   # never more than the broker's Receive Maximum
                oldest = next((b for b in link.batches if not b.done.done()), None)
                if oldest is not None:
                    oldest.done.set_result(None)                # the broker acknowledges the oldest batch
                await asyncio.sleep(0)
        assert link.sent == [f"sms/status/m{i}" for i in range(1, 3001)]       # commit order, each once
        assert [s for batch in store.deleted for s in batch] == list(range(1, 3001))   # deleted in fetch order
        assert max(len(b.seqs) for b in link.batches) <= BATCH
        assert max(len(b.seqs) for b in link.batches[:2]) == BATCH and len(link.batches) >= 3000 // BATCH
    finally:
        task.cancel()


async def test_a_slow_store_bounds_the_batches_waiting_for_their_delete() -> None:
    store, link = FakeStore(20 * BATCH), FakeLink(receive_maximum=BATCH)
    pub = Publisher(store, link)  # type: ignore[arg-type]
    task = asyncio.create_task(pub.run())
    try:
        # the broker acknowledges everything at once; the store does not delete yet
        for _ in range(3 * MAX_BATCHES):
            await asyncio.sleep(0.01)
            for b in link.batches:
                if not b.done.done():
                    b.done.set_result(None)
        assert len(link.batches) == MAX_BATCHES            # no more batches until deletes catch up
        assert store.deleted == []
        store.delete_gate.set()
        await _until(lambda: len(link.batches) > MAX_BATCHES)
        await _until(lambda: bool(store.deleted))
    finally:
        task.cancel()
