"""The dispatcher's paging of a stored backlog never takes in a message twice.

A page read sees the store as of its snapshot. A message that was being sent when the read began and finished
(its resp or final state committed) before the page came back is still `queued` in that page; paging it in
would send it a second time. Seen on PostgreSQL (the read is a round trip on another connection): 20 of 340
messages sent twice in tests/test_e2e_flow.py::test_backlog_over_high_water_waits_in_the_store_not_in_memory.
These tests hold the read open at that moment, deterministically.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import cast

from smppengine.broker import Mosquitto
from smppengine.dispatcher import Dispatcher
from smppengine.model import QUEUED, Request
from smppengine.retry import RetryPolicy
from smppengine.router import Router
from smppengine.simulator import Simulator
from smppengine.store import Active, Store, StoreError

from .helpers import Watcher, eventually, make_config, running_engine, smsc, wait_bound


class SnapshotStore:
    """pending_page answers with what it was given, once the test lets the read complete."""

    def __init__(self, snapshot: list[Active]) -> None:
        self.snapshot = snapshot
        self.read_started = asyncio.Event()
        self.release = asyncio.Event()
        self.reads = 0
        self.read_done = asyncio.Event()

    async def pending_page(self, after: tuple[float, str], limit: int) -> list[Active]:
        self.reads += 1
        self.read_started.set()
        await self.release.wait()
        rows = [a for a in self.snapshot if (a.created_at, a.request.id) > after][:limit]
        self.read_done.set()
        return rows


def active(msg_id: str, at: float) -> Active:
    return Active(Request(id=msg_id, to="+447700900123", text="t"), QUEUED, ttl_at=at + 3600, created_at=at)


def dispatcher(store: SnapshotStore, high_water: int = 10) -> tuple[Dispatcher, list[str], dict[str, asyncio.Event]]:
    d = Dispatcher(cast(Store, store), {}, Router([], []), RetryPolicy(), high_water=high_water)
    attempts: list[str] = []
    finish: dict[str, asyncio.Event] = {}

    async def attempt(a: Active) -> None:       # stands for routing + submit_sm + the commit of its resp
        attempts.append(a.request.id)
        await finish.setdefault(a.request.id, asyncio.Event()).wait()

    d._attempt = attempt  # type: ignore[method-assign]
    return d, attempts, finish


async def test_a_message_that_finishes_while_a_page_is_read_is_not_paged_in_again() -> None:
    x, y = active("x", 1.0), active("y", 2.0)
    store = SnapshotStore([x, y])           # the snapshot predates x's commit: x still looks queued
    d, attempts, finish = dispatcher(store)
    run = asyncio.create_task(d.run())
    refill = asyncio.create_task(d.refill())
    try:
        d.enqueue(x)                        # x is being sent
        await eventually(lambda: attempts == ["x"], timeout=5, what="x's attempt")
        d.spill()                           # y waits in the store
        await asyncio.wait_for(store.read_started.wait(), 5)
        finish["x"].set()                   # x's resp is committed while the page is on its way
        await eventually(lambda: d.active == 0 and "x" not in d._inmem, timeout=5, what="x done")
        store.release.set()
        await asyncio.wait_for(store.read_done.wait(), 5)
        await eventually(lambda: "y" in attempts, timeout=5, what="y paged in")
        await asyncio.sleep(0)              # let the page's loop finish its turn
        assert attempts == ["x", "y"], "x was sent a second time from a stale page"
        assert d._queue.qsize() == 0
    finally:
        for t in (run, refill):
            t.cancel()
        await asyncio.gather(run, refill, return_exceptions=True)


async def test_a_new_request_offered_after_a_page_took_it_is_not_queued_twice() -> None:
    x = active("x", 1.0)
    store = SnapshotStore([x])              # the page read saw x's commit before the intake offered it
    store.release.set()
    d, attempts, finish = dispatcher(store)
    refill = asyncio.create_task(d.refill())
    try:
        d.spill()
        await asyncio.wait_for(store.read_done.wait(), 5)
        await eventually(lambda: "x" in d._inmem, timeout=5, what="x paged in")
        d.offer(x)                          # the intake's offer comes after
        assert d._queue.qsize() == 1
    finally:
        refill.cancel()
        await asyncio.gather(refill, return_exceptions=True)


async def test_a_resp_whose_commit_failed_is_stored_again_and_the_message_not_sent_again(
        tmp_path: Path, broker: Mosquitto, sim: Simulator) -> None:
    """The SMSC accepted the submit, and the commit of its resp failed (on PostgreSQL: the connection was lost
    during the COMMIT, outcome unknown). The store reconnects and the dispatcher reads the stored backlog again,
    where the message still looks queued: it must not be taken in and sent again (seen in
    tests/test_pg_restart.py: 35 of 1,500 messages submitted twice). The resp is stored again instead."""
    cfg = make_config(str(tmp_path / "e.db"), broker.url, [smsc("a", sim.port)])
    async with Watcher(broker.url) as w, running_engine(cfg) as engine:
        await wait_bound(engine)
        real = engine.store.submitted_one
        failed: list[str] = []

        async def lost_during_commit(msg_id: str, smsc_name: str, smsc_id: str) -> None:
            if not failed:
                failed.append(msg_id)
                engine.dispatcher.spill()       # what the store's reconnect does: read the backlog again
                raise StoreError("the connection was lost during the commit: (test)")
            await real(msg_id, smsc_name, smsc_id)

        engine.store.submitted_one = lost_during_commit  # type: ignore[method-assign]
        await w.publish({"id": "r1", "to": "+447700900123", "text": "once"})
        await w.wait_final(["r1"])
        await asyncio.sleep(0.5)                # a second submit, if any, has time to happen
    assert failed == ["r1"]
    assert w.states("r1") == ["queued", "submitted", "delivered"]
    assert len([r for r in sim.ok_submits() if r.destination_addr == "447700900123"]) == 1
