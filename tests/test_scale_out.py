"""Several engine instances on one request stream (mqtt.share_group) with one shared PostgreSQL store.

- receipts delivered on another instance's bind are correlated there and still published once, in order;
- a SIGKILLed instance's messages are taken over by the others once its lease expired;
- the account's tps is split over the instances (engine.instances): the SMSC never sees more than tps.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg

from smppengine.broker import Mosquitto
from smppengine.simulator import Simulator

from .helpers import (
    PG_URL,
    EngineProcess,
    SimProcess,
    Watcher,
    drop_pg_schemas,
    make_config,
    pg_store_url,
    running_engine,
    smsc,
    wait_bound,
    write_toml,
)

FINAL = {"delivered", "undelivered", "expired", "rejected", "failed"}


async def _counters(url: str) -> dict[str, int]:
    schema = url.rsplit("schema=", 1)[1]
    conn = await asyncpg.connect(PG_URL, server_settings={"search_path": schema})
    try:
        return {str(k): int(v) for k, v in await conn.fetch("SELECT name, value FROM counters")}
    finally:
        await conn.close()


async def test_receipts_on_another_instance_are_correlated_and_published_once(broker: Mosquitto) -> None:
    """Two instances, one store, one account with two transceiver binds each: the simulator round-robins
    receipts over all four binds, so about half land on the instance that did not submit the message."""
    url = pg_store_url()
    sim = Simulator(credentials={"acme": "secret"}, receipt_delay=0.01)
    await sim.start()
    try:
        cfgs = [make_config(url, broker.url, [smsc("a", sim.port, binds=2)],
                            engine={"instance": name}, mqtt={"share_group": "pair"}) for name in ("r1", "r2")]
        ids = [f"x{i:04d}" for i in range(600)]
        async with Watcher(broker.url) as w, running_engine(cfgs[0]) as e1, running_engine(cfgs[1]) as e2:
            await wait_bound(e1)
            await wait_bound(e2)
            for i in ids:
                await w.publish({"id": i, "to": "+447700900123", "text": f"pair {i}"})
            await w.wait_final(ids, timeout=60)
            await asyncio.wait_for(asyncio.gather(e1.publisher.idle.wait(), e2.publisher.idle.wait()), 10)
            assert e1.counters["requests"] > 0 and e2.counters["requests"] > 0    # the broker split the stream
            assert e1.counters["receipts"] > 0 and e2.counters["receipts"] > 0
        for i in ids:
            # every event exactly once and in order: no outbox row published by both instances
            assert w.states(i) == ["queued", "submitted", "delivered"], (i, w.states(i))
        counters = await _counters(url)
        assert counters.get("receipts_foreign", 0) > 50, counters
    finally:
        await sim.stop()
        await drop_pg_schemas([url.rsplit("schema=", 1)[1]])


async def _diagnose(url: str, ids: list[str]) -> dict[str, Any]:
    """What the store knows about messages that did not end (for the failure message)."""
    schema = url.rsplit("schema=", 1)[1]
    conn = await asyncpg.connect(PG_URL, server_settings={"search_path": schema})
    try:
        msgs = [dict(r) for r in await conn.fetch(
            "SELECT id, state, final, owner, attempt, parts FROM messages WHERE id = ANY($1::text[])", ids)]
        parts = [dict(r) for r in await conn.fetch(
            "SELECT msg_id, idx, smsc_message_id, state FROM parts WHERE msg_id = ANY($1::text[])", ids)]
        outbox = [dict(r) for r in await conn.fetch("SELECT owner, COUNT(*) FROM outbox GROUP BY owner")]
        inst = [dict(r) for r in await conn.fetch("SELECT * FROM instances")]
        held = await conn.fetchval("SELECT COUNT(DISTINCT uid) FROM held_receipts")
        return {"messages": msgs, "parts": parts, "outbox": outbox, "instances": inst, "held": held}
    finally:
        await conn.close()


async def _pending_by_owner(url: str) -> dict[str, int]:
    """How many messages are not final yet, per owning instance."""
    schema = url.rsplit("schema=", 1)[1]
    conn = await asyncpg.connect(PG_URL, server_settings={"search_path": schema})
    try:
        rows = await conn.fetch("SELECT COALESCE(owner, ''), COUNT(*) FROM messages WHERE NOT final GROUP BY 1")
        return {str(o): int(n) for o, n in rows}
    finally:
        await conn.close()


async def _ids(url: str, sql: str) -> list[str]:
    schema = url.rsplit("schema=", 1)[1]
    conn = await asyncpg.connect(PG_URL, server_settings={"search_path": schema})
    try:
        return [str(r[0]) for r in await conn.fetch(sql)]
    finally:
        await conn.close()


async def _owners(url: str, ids: list[str]) -> dict[str, str | None]:
    """The owners of those of ``ids`` that were delivered."""
    schema = url.rsplit("schema=", 1)[1]
    conn = await asyncpg.connect(PG_URL, server_settings={"search_path": schema})
    try:
        return {str(r[0]): r[1] for r in await conn.fetch(
            "SELECT id, owner FROM messages WHERE id = ANY($1::text[]) AND state = 'delivered'", ids)}
    finally:
        await conn.close()


async def _wait_store(url: str, cond: Callable[[dict[str, Any]], bool], timeout: float,
                      what: str) -> dict[str, Any]:
    """Poll the store (every 0.2 s, bounded) until ``cond`` holds for {stored, final, pending per owner}."""
    schema = url.rsplit("schema=", 1)[1]
    conn = await asyncpg.connect(PG_URL, server_settings={"search_path": schema})
    p: dict[str, Any] = {}
    try:
        async with asyncio.timeout(timeout):
            while True:
                rows = await conn.fetch("SELECT final, COALESCE(owner, ''), COUNT(*) FROM messages GROUP BY 1, 2")
                p = {"stored": sum(int(r[2]) for r in rows), "final": sum(int(r[2]) for r in rows if r[0]),
                     "pending": {str(r[1]): int(r[2]) for r in rows if not r[0]}}
                if cond(p):
                    return p
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout}s waiting for {what}: {p}") from None
    finally:
        await conn.close()


def _max_per_second(times: list[float], span: float = 1.0) -> int:
    """The most submits recorded in any window of ``span`` seconds."""
    times = sorted(times)
    best = j = 0
    for i, t in enumerate(times):
        while times[j] <= t - span:
            j += 1
        best = max(best, i - j + 1)
    return best


async def test_three_instances_share_tps_receipts_and_take_over_a_killed_one(
        tmp_path: Path, broker: Mosquitto) -> None:
    """3 instances (processes) on one topic, one store, one account limited to 150 submit_sm/s; one instance
    is SIGKILLed mid-run. 4,500 messages (10,000 would need 67 s at 150/s before the kill slows the rest)."""
    n, tps, lease = 10_000, 150, 2.0
    url = pg_store_url()
    sim = SimProcess("--tps-limit", str(tps), "--receipt-delay", "0.05")
    await sim.start()
    engines: list[EngineProcess] = []
    try:
        for k in range(3):
            cfg: dict[str, Any] = {
                "engine": {"instance": f"s{k}", "store": url, "instances": 3, "lease_s": lease},
                "mqtt": {"url": broker.url, "share_group": "scale"},
                "http": {"listen": ""},
                "log": {"level": "info", "format": "json"},
                "smsc": [smsc("acct", sim.port, binds=2, window=20, tps=tps, response_timeout_s=5)],
            }
            engines.append(EngineProcess(write_toml(str(tmp_path / f"s{k}.toml"), cfg)))
        for e in engines:
            await e.start()
        for e in engines:
            await e.wait_log("engine_ready", timeout=30)
            await e.wait_log("session_bound", n=2, timeout=30)
        ids = [f"m{i:05d}" for i in range(n)]
        async with Watcher(broker.url, persistent=True) as w:
            # published 200 at a time: one by one, the test's own publishing (~150/s while it also receives the
            # events) was no faster than the account's 150/s, so the instances had almost no backlog left by
            # the time of the kill and there was nothing to take over
            for k in range(0, n, 200):
                await asyncio.gather(*(w.publish({"id": i, "to": "+447700900123", "text": f"scale {i}"})
                                       for i in ids[k:k + 200]))
            # The kill is timed on the store, not on the events this test has received: under load the events
            # reach this test tens of seconds after their commit (measured: 8,574 of 10,000 messages with any
            # event seen here when all 10,000 were already final in the store), so waiting for them let the
            # engines finish everything before the kill and there was nothing left to take over.
            # Every request committed before the kill: requests the broker handed to the victim but it never
            # acknowledged would wait in its MQTT session for its restart (docs/scaling.md).
            progress = await _wait_store(url, lambda p: p["stored"] >= n and p["final"] >= n // 4, timeout=90,
                                         what="every request stored and a quarter final")
            victim = engines[1]
            assert progress["pending"].get("s1", 0) > 0, (
                f"the instance to kill has no message left to take over, so the test cannot check the takeover: "
                f"{progress}")
            await victim.kill()
            # what the victim left (a SIGKILL rolls back what it had not committed, and only a message's owner
            # writes its rows): none of it can end unless a survivor claims it
            left = await _ids(url, "SELECT id FROM messages WHERE owner = 's1' AND NOT final")
            assert left, f"the killed instance had no message left to take over: {await _pending_by_owner(url)}"
            try:
                # after the kill the two survivors keep their static share (2 × 50/s): ~7,500 messages need ~75 s
                await w.wait_final(ids, timeout=150)
            except AssertionError as exc:
                missing = [i for i in ids if not w.final(i)]
                raise AssertionError(f"{exc}; store: {await _diagnose(url, missing[:5])}; "
                                     f"events: {[w.states(i) for i in missing[:5]]}") from None
        for i in ids:
            assert {e["state"] for e in w.final(i)} == {"delivered"}, (i, w.states(i))
        survivors = [engines[0], engines[2]]
        # every message the victim left unfinished was claimed by a survivor (and then delivered, above)
        owners = await _owners(url, left)
        assert len(owners) == len(left) and set(owners.values()) <= {"s0", "s2"}, (
            f"the killed instance's messages were not taken over: of {len(left)} it left, {len(owners)} delivered, "
            f"owners now {dict(Counter(owners.values()))}")
        # store_claimed counts every message claimed; orphans_claimed only those still not final when they were
        # read back (a held receipt may be applied in between)
        claimed = sum(d.get("messages", 0) for e in survivors for d in e.lines if d.get("event") == "store_claimed")
        assert claimed >= len(left), f"the survivors logged {claimed} messages claimed, the victim left {len(left)}"
        counters = await _counters(url)
        assert counters.get("receipts_foreign", 0) > 0, counters
        submits = await sim.submits()
        assert len(submits) >= n
        # The simulator records a submit when its loop reads it, which on this 2-core machine (three engines,
        # the simulator, the broker, PostgreSQL and this test) lags the send by up to 150 ms under load (seen:
        # 154 and 165 in one 0.95 s window at load average 8): a short window measures that lag, not the
        # engines' pacing (tests/test_throttle.py and test_e2e_flow.py::test_tps_is_honoured_across_binds check
        # that). Over 2 s, 200 ms of lag adds at most 10 %; an account share that is not kept (each instance at
        # the full 150/s) makes ~900 there.
        peak = _max_per_second([s["at"] for s in submits], span=2.0)
        assert peak <= 2.2 * tps, f"{peak} submit_sm in one 2 s window (limit {tps} per second, +10 % read lag)"
        throttled = sum(1 for s in submits if s["status"] == 0x58)
        print(f"\n{n} messages on 3 instances, one killed leaving {len(left)}: {claimed} taken over, "
              f"{counters.get('receipts_foreign')} receipts correlated by a non-owner, peak {peak}/2 s, "
              f"{throttled} throttled")
    finally:
        for e in engines:
            if e.proc is not None and e.proc.returncode is None:
                with contextlib.suppress(Exception):
                    await e.terminate(timeout=20)
        await sim.stop()
        await drop_pg_schemas([url.rsplit("schema=", 1)[1]])
