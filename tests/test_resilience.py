"""Never lose a message: SIGKILLs of the engine, dropped SMSC connections, a broker restart."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from pathlib import Path

from smppengine.broker import Mosquitto
from smppengine.simulator import Simulator

from .helpers import EngineProcess, Watcher, eventually, make_config, running_engine, smsc, wait_bound, write_toml

FINAL = {"delivered", "undelivered", "expired", "rejected", "failed"}


def _one_final_state_each(w: Watcher, ids: list[str]) -> None:
    for i in ids:
        finals = {e["state"] for e in w.final(i)}
        assert finals == {"delivered"}, (i, w.states(i))


async def test_sigkill_three_times_during_5000_messages(tmp_path: Path, broker: Mosquitto) -> None:
    sim = Simulator(credentials={"acme": "Pw-9f3k"}, receipt_delay=0.05)
    await sim.start()
    cfg_path = write_toml(str(tmp_path / "engine.toml"), {
        "engine": {"instance": "kill3", "store": str(tmp_path / "engine.db")},
        "mqtt": {"url": broker.url},
        "http": {"listen": ""},
        "log": {"level": "info", "format": "json"},
        "smsc": [smsc("a", sim.port, binds=2, window=50, response_timeout_s=2, password="Pw-9f3k")],
    })
    engine = EngineProcess(cfg_path)
    n = 5000
    ids = [f"k{i:05d}" for i in range(n)]
    try:
        async with Watcher(broker.url, persistent=True) as w:
            await engine.start()
            await engine.wait_log("engine_ready")      # subscribed: from now on the broker keeps requests for it
            await engine.wait_log("session_bound")
            publishing = asyncio.create_task(_publish_all(w, ids))
            kills = 0
            for threshold in (800, 2200, 3600):
                await w.wait(lambda t=threshold: len(w.final_ids) >= t  # type: ignore[misc]
                             or len(sim.ok_submits()) >= t, timeout=120, what=f"{threshold} done")
                await engine.kill()
                kills += 1
                await engine.start()
                await engine.wait_log("engine_ready", timeout=30)
            await publishing
            try:
                await w.wait_final(ids, timeout=120)
            except AssertionError:
                missing = [i for i in ids if not w.final(i)]
                raise AssertionError(f"watcher reconnects {w.reconnects}; missing {missing[:10]}") from None
        assert kills == 3
        _one_final_state_each(w, ids)
        # duplicates at the SMSC: only parts whose first OK resp was never committed may be sent twice
        per_text = Counter(r.short_message for r in sim.ok_submits())
        dup_texts = {t for t, c in per_text.items() if c > 1}
        with sqlite3.connect(tmp_path / "engine.db") as db:
            stored = dict(db.execute("SELECT m.id, p.smsc_message_id FROM parts p JOIN messages m ON m.rid = p.rid"))
            resubmits = dict(db.execute("SELECT name, value FROM counters")).get("resubmits_after_ok", 0)
        for t in dup_texts:
            msg_id = t.decode().split()[-1]
            last = [r for r in sim.ok_submits() if r.short_message == t][-1]
            assert stored[msg_id] == last.message_id, (msg_id, "an earlier committed resp was sent again")
        assert resubmits == 0
        assert engine.lines and not any("Pw-9f3k" in str(line) for line in engine.lines)   # never logged
        print(f"\n{n} messages, 3 SIGKILLs: {len(dup_texts)} messages re-sent because their resp was not "
              f"committed before the kill; every id has one final state")
    finally:
        await engine.terminate()
        await sim.stop()


async def _publish_all(w: Watcher, ids: list[str]) -> None:
    for i in ids:
        await w.publish({"id": i, "to": "+447700900123", "text": f"resilience {i}"})


async def test_smsc_connections_dropped_twice_during_2000(tmp_path: Path, broker: Mosquitto) -> None:
    sim = Simulator(credentials={"acme": "secret"}, receipt_delay=0.02)
    await sim.start()
    try:
        cfg = make_config(str(tmp_path / "e.db"), broker.url,
                          [smsc("a", sim.port, binds=2, window=20, response_timeout_s=2)])
        ids = [f"d{i:04d}" for i in range(2000)]
        async with Watcher(broker.url) as w, running_engine(cfg) as engine:
            await wait_bound(engine)
            publishing = asyncio.create_task(_publish_all(w, ids))
            for threshold in (500, 1200):
                await sim.wait_for(lambda t=threshold: len(sim.ok_submits()) >= t, 60)  # type: ignore[misc]
                dropped = await sim.drop_connections()
                assert dropped >= 1
            await publishing
            await w.wait_final(ids, timeout=120)
            assert sum(c.reconnects for c in engine.clients.values()) >= 2
        _one_final_state_each(w, ids)
    finally:
        await sim.stop()


async def test_broker_restart_loses_no_request_and_no_event(tmp_path: Path, sim: Simulator) -> None:
    workdir = tmp_path / "mqtt"
    workdir.mkdir()
    broker = Mosquitto(workdir=str(workdir))
    await broker.start()
    try:
        sim.set_receipt(delay=0.5)       # receipts keep arriving while the broker is away
        cfg = make_config(str(tmp_path / "e.db"), broker.url, [smsc("a", sim.port)])
        first = [f"b{i:03d}" for i in range(300)]
        second = [f"c{i:03d}" for i in range(300)]
        async with Watcher(broker.url, persistent=True) as w, running_engine(cfg) as engine:
            await wait_bound(engine)
            for i in first:
                await w.publish({"id": i, "to": "+447700900123", "text": f"before {i}"})
            await eventually(lambda: len(sim.ok_submits()) >= 100, what="traffic under way")
            await broker.stop()                       # graceful: mosquitto writes its persistence file
            await eventually(lambda: not engine.link.connected.is_set(), what="engine sees the broker gone")
            await broker.start()
            await eventually(lambda: w.client is not None and engine.link.connected.is_set(), timeout=30,
                             what="both reconnected")
            for i in second:
                await w.publish({"id": i, "to": "+447700900123", "text": f"after {i}"})
            await w.wait_final(first + second, timeout=60)
        _one_final_state_each(w, first + second)
        for i in first + second:
            states = w.states(i)
            assert states[0] == "queued" and "submitted" in states, (i, states)   # no event lost on the way
    finally:
        await broker.stop()
