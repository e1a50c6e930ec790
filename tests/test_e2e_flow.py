"""Throttling, error classes, retries, timeouts, ttl and failover over real TCP with the simulator."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

from smppengine.broker import Mosquitto
from smppengine.simulator import Simulator
from smppengine.smpp import pdu as P

from .helpers import SimProcess, Watcher, eventually, make_config, running_engine, smsc, wait_bound


def max_in_window(times: list[float], span: float = 1.0) -> int:
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while t - times[j] >= span:
            j += 1
        best = max(best, i - j + 1)
    return best


# The simulator stamps a submit when its process reads it. On a loaded machine that process waits for a CPU,
# and a submit is stamped late (measured here with two CPU hogs: p99 20-75 ms, up to 180 ms) while the next
# ones are not, so two submits the engine wrote 1.02 s apart looked 0.96 s apart and the 51st was throttled.
# The simulator therefore allows 150 ms of jitter in its 1 s window (--tps-jitter-ms, like an SMSC allowing for
# network jitter), and a 5 s window catches an engine that is over its tps for longer than a moment: any 5 s
# holds at most 5 x 50 sends on the wire, + 8 for the 150 ms of stamping lag. Checked by hand that it fails:
# engine at tps 100 -> 2 throttled answers; at tps 55 -> none, but 271 submits in one 5 s window.
TPS_JITTER_S = 0.15


async def test_tps_is_honoured_across_binds(tmp_path: Path, broker: Mosquitto) -> None:
    sim = SimProcess("--tps-limit", "50", "--tps-jitter-ms", str(TPS_JITTER_S * 1000))
    await sim.start()
    try:
        cfg = make_config(str(tmp_path / "e.db"), broker.url, [smsc("a", sim.port, tps=50, binds=2, window=10)])
        ids = [f"t{i}" for i in range(500)]
        async with Watcher(broker.url) as w, running_engine(cfg) as engine:
            await wait_bound(engine)
            await eventually(lambda: engine.clients["a"].bound_sessions == 2, what="2 binds")
            for i in ids:
                await w.publish({"id": i, "to": "+447700900123", "text": f"msg {i}"})
            await w.wait_final(ids, timeout=60)
        stats = await sim.get("/stats")
        submits = await sim.submits()
        at = [r["at"] for r in submits]
        assert stats["throttled"] == 0
        assert max_in_window(at, 1.0 - TPS_JITTER_S) <= 50
        assert max_in_window(at, 5.0) <= 5 * 50 + math.ceil(TPS_JITTER_S * 50)
        assert len({r["session_id"] for r in submits}) == 2          # both binds carried traffic
        assert all([e["state"] for e in w.final(i)] == ["delivered"] for i in ids)
    finally:
        await sim.stop()


async def test_engine_adapts_to_a_slower_smsc(tmp_path: Path, broker: Mosquitto) -> None:
    sim = SimProcess("--tps-limit", "50")
    await sim.start()
    try:
        cfg = make_config(str(tmp_path / "e.db"), broker.url, [smsc("a", sim.port, tps=200, binds=2, window=10)],
                          retry={"max_attempts": 3, "backoff_initial": 0.2, "backoff_max": 1.0})
        ids = [f"a{i}" for i in range(400)]
        async with Watcher(broker.url) as w, running_engine(cfg) as engine:
            await wait_bound(engine)
            t0 = time.monotonic()
            for i in ids:
                await w.publish({"id": i, "to": "+447700900123", "text": f"adaptive {i}"})
            await w.wait_final(ids, timeout=90)
            elapsed = time.monotonic() - t0
        stats = await sim.get("/stats")
        ok = [r for r in await sim.submits() if r["status"] == 0]
        rate = len(ok) / elapsed
        print(f"\nadaptive: {len(ok)} OK submits in {elapsed:.1f}s = {rate:.1f}/s against a 50/s SMSC; "
              f"{stats['throttled']} throttled answers")
        assert all([e["state"] for e in w.final(i)] == ["delivered"] for i in ids)
        assert "failed" not in {s for i in ids for s in w.states(i)}
        assert len(ok) == len(ids) and stats["duplicates"] == 0     # no message submitted twice after an OK
        assert stats["throttled"] < len(ids)                         # it backed off instead of hammering
    finally:
        await sim.stop()


async def test_error_classes_retries_timeouts_and_ttl(tmp_path: Path, broker: Mosquitto, sim: Simulator) -> None:
    cfg = make_config(str(tmp_path / "e.db"), broker.url, [smsc("a", sim.port, response_timeout_s=0.5)],
                      retry={"max_attempts": 3, "backoff_initial": 0.05, "backoff_max": 0.2})
    async with Watcher(broker.url) as w, running_engine(cfg) as engine:
        await wait_bound(engine)
        sim.fail_destination("447700900001", P.ESME_RINVDSTADR)
        await w.publish({"id": "perm", "to": "+447700900001", "text": "bad number"})
        await w.wait_final(["perm"])
        assert w.states("perm") == ["queued", "rejected"]
        err = w.final("perm")[0]["error"]
        assert err["code"] == "ESME_RINVDSTADR" and err["status"] == P.ESME_RINVDSTADR

        sim.fail_next(2, P.ESME_RSYSERR)
        await w.publish({"id": "trans", "to": "+447700900002", "text": "flaky"})
        await w.wait_final(["trans"])
        assert w.states("trans") == ["queued", "retrying", "retrying", "submitted", "delivered"]
        retry_event = w.events["trans"][1]
        assert retry_event["error"]["code"] == "ESME_RSYSERR" and retry_event["next_attempt_at"]
        # each failed attempt is counted before its retrying event, the OK one with its submitted event
        assert [e["attempt"] for e in w.events["trans"]] == [0, 1, 2, 3, 3]
        assert [(e["smsc"], e["parts"]) for e in w.events["trans"][1:]] == [("a", 1)] * 4

        sim.fail_destination("447700900003", P.ESME_RSYSERR)
        await w.publish({"id": "exhausted", "to": "+447700900003", "text": "never"})
        await w.wait_final(["exhausted"])
        assert w.states("exhausted") == ["queued", "retrying", "retrying", "failed"]
        assert w.final("exhausted")[0]["attempt"] == 3

        sim.drop_responses(1)
        await w.publish({"id": "silent", "to": "+447700900004", "text": "no resp the first time"})
        await w.wait_final(["silent"])
        assert w.states("silent") == ["queued", "retrying", "submitted", "delivered"]
        assert w.events["silent"][1]["error"]["code"] == "timeout"
        assert [e["attempt"] for e in w.events["silent"]] == [0, 1, 2, 2]

        sim.refuse_binds(True)
        await sim.drop_connections()
        await eventually(lambda: not engine.clients["a"].up.is_set(), what="binds down")
        await w.publish({"id": "late", "to": "+447700900005", "text": "no SMSC in time", "ttl": 1})
        await w.wait_final(["late"], timeout=10)
        assert w.states("late") == ["queued", "expired"]
        assert w.final("late")[0]["error"]["code"] == "ttl_expired"


async def test_failover_and_return(tmp_path: Path, broker: Mosquitto) -> None:
    b = Simulator(credentials={"acme": "secret"}, name="b")
    await b.start()
    a = Simulator(credentials={"acme": "secret"}, name="a")
    await a.start()
    a_port = a.port
    await a.stop()                      # A is down when the engine starts
    try:
        cfg = make_config(str(tmp_path / "e.db"), broker.url, [smsc("a", a_port), smsc("b", b.port)],
                          route=[{"prefix": "+44", "smsc": ["a", "b"]}])
        async with Watcher(broker.url) as w, running_engine(cfg) as engine:
            await engine.clients["b"].up.wait()
            for i in range(5):
                await w.publish({"id": f"f{i}", "to": "+447700900123", "text": f"via b {i}"})
            await w.wait_final([f"f{i}" for i in range(5)])
            assert {w.final(f"f{i}")[0]["smsc"] for i in range(5)} == {"b"}
            a = Simulator("127.0.0.1", a_port, credentials={"acme": "secret"}, name="a")
            await a.start()
            await eventually(lambda: engine.clients["a"].up.is_set(), timeout=20, what="A back")
            for i in range(5):
                await w.publish({"id": f"g{i}", "to": "+447700900123", "text": f"via a {i}"})
            await w.wait_final([f"g{i}" for i in range(5)])
            assert {w.final(f"g{i}")[0]["smsc"] for i in range(5)} == {"a"}
            assert len(a.ok_submits()) == 5 and len(b.ok_submits()) == 5
    finally:
        await a.stop()
        await b.stop()


async def test_backlog_over_high_water_waits_in_the_store_not_in_memory(
        tmp_path: Path, broker: Mosquitto, monkeypatch: pytest.MonkeyPatch) -> None:
    import smppengine.engine

    monkeypatch.setattr(smppengine.engine, "BACKLOG_HIGH_WATER", 50)
    sim = Simulator(credentials={"acme": "secret"})
    await sim.start()
    port = sim.port
    await sim.stop()                                   # the SMSC is down: nothing drains
    try:
        cfg = make_config(str(tmp_path / "e.db"), broker.url, [smsc("a", port)])
        ids = [f"h{i}" for i in range(340)]
        async with Watcher(broker.url) as w, running_engine(cfg) as engine:
            for i in ids:
                await w.publish({"id": i, "to": "+447700900123", "text": f"hw {i}"})
            # every request is committed and acknowledged, but at most 50 are held in memory
            await w.wait(lambda: all(w.states(i) for i in ids), what="all 340 queued")
            assert engine.dispatcher.backlog <= 50
            sim = Simulator("127.0.0.1", port, credentials={"acme": "secret"})
            await sim.start()
            await w.wait_final(ids, timeout=60)               # paged back in from the store, oldest first
        assert all([e["state"] for e in w.final(i)] == ["delivered"] for i in ids)
        assert len(sim.ok_submits()) == len(ids)
    finally:
        await sim.stop()
