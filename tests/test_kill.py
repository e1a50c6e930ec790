"""Kill -9 of the engine: a request is acknowledged only after its commit, and a committed one survives."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from smppengine.broker import Mosquitto
from smppengine.simulator import Simulator

from .helpers import EngineProcess, Watcher, smsc, write_toml


def _config(tmp_path: Path, broker: Mosquitto, sim: Simulator, **smsc_kw: object) -> str:
    return write_toml(str(tmp_path / "engine.toml"), {
        "engine": {"instance": "killme", "store": str(tmp_path / "engine.db")},
        "mqtt": {"url": broker.url},
        "http": {"listen": ""},
        "log": {"level": "info", "format": "json"},
        "smsc": [smsc("a", sim.port, **smsc_kw)],
    })


async def test_killed_before_commit_the_broker_redelivers(tmp_path: Path, broker: Mosquitto, sim: Simulator) -> None:
    engine = EngineProcess(_config(tmp_path, broker, sim))
    await engine.start()
    try:
        await engine.wait_log("engine_ready")
        await engine.wait_log("session_bound")
        # hold the store's write lock: the engine receives the request but cannot commit it
        lock = sqlite3.connect(tmp_path / "engine.db", isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        async with Watcher(broker.url) as w:
            await w.publish({"id": "k1", "to": "+447700900123", "text": "kill me before commit"})
            await engine.wait_log("requests_not_committed", timeout=30)
            await engine.kill()
            lock.execute("ROLLBACK")
            lock.close()
            assert w.states("k1") == []
            with sqlite3.connect(tmp_path / "engine.db") as db:
                assert db.execute("SELECT COUNT(*) FROM messages WHERE id='k1'").fetchone()[0] == 0
            assert sim.ok_submits() == []
            # the request was never PUBACKed, so the broker hands it to the restarted engine
            await engine.start()
            await w.wait_final(["k1"])
            assert w.states("k1") == ["queued", "submitted", "delivered"]
            assert len(sim.ok_submits()) == 1
    finally:
        await engine.terminate()


async def test_acknowledged_requests_survive_kill(tmp_path: Path, broker: Mosquitto, sim: Simulator) -> None:
    engine = EngineProcess(_config(tmp_path, broker, sim, response_timeout_s=2))
    await engine.start()
    try:
        await engine.wait_log("engine_ready")
        await engine.wait_log("session_bound")
        async with Watcher(broker.url) as w:
            # k2 will be acknowledged and committed but never answered by the SMSC before the kill;
            # k3 is submitted and waits for its receipt when the engine dies
            sim.set_receipt(delay=2.0)
            await w.publish({"id": "k3", "to": "+447700900124", "text": "awaiting receipt"})
            await w.wait(lambda: "submitted" in w.states("k3"), what="k3 submitted")
            sim.drop_responses(1000)
            await w.publish({"id": "k2", "to": "+447700900123", "text": "in flight"})
            await w.wait(lambda: "queued" in w.states("k2"), what="k2 queued")
            await sim.wait_for(lambda: any(r.destination_addr == "447700900123" for r in sim.submits), 10)
            await engine.kill()
            sim.drop_responses(0)
            sim.set_receipt(delay=0.0)
            await sim.drop_connections()
            await engine.start()
            await w.wait_final(["k2", "k3"], timeout=30)
            assert [e["state"] for e in w.final("k2")] == ["delivered"]
            assert [e["state"] for e in w.final("k3")] == ["delivered"]
            # k3 was not sent again; k2 (no resp ever seen) was, once more
            assert sum(1 for r in sim.ok_submits() if r.destination_addr == "447700900124") == 1
            assert sum(1 for r in sim.ok_submits() if r.destination_addr == "447700900123") == 1
    finally:
        await engine.terminate()
