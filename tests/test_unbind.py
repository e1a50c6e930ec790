"""Responses that cross an unbind on the wire are used, never thrown away (and the message sent again).

The simulator's ``hold_responses`` keeps every submit_sm_resp back until an unbind (the SMSC's own once
N resps are held, or the engine's), sends them 150 ms after it and closes the connection 600 ms after
it. A message whose resp arrives is submitted once: the simulator must see each text exactly once.
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from smppengine.broker import Mosquitto
from smppengine.config import SmscConfig
from smppengine.simulator import Simulator
from smppengine.smpp.client import SmscClient
from smppengine.smpp.session import Session, SessionClosed

from .helpers import EngineProcess, Watcher, make_config, running_engine, smsc, wait_bound, write_toml

OUTSTANDING = 48        # as in the report: 48 submits outstanding when the unbind came


def _sent_once(sim: Simulator, texts: list[str]) -> None:
    """Every text reached the simulator in exactly one submit_sm (any status), and was accepted once."""
    per_text = Counter(r.short_message.decode() for r in sim.submits)
    twice = {t: n for t, n in per_text.items() if n > 1}
    assert not twice, f"{len(twice)} messages sent more than once: {sorted(twice.items())[:5]}"
    assert sorted(per_text) == sorted(texts)
    assert Counter(r.short_message.decode() for r in sim.ok_submits()) == Counter(texts)


def _all_delivered(w: Watcher, ids: list[str]) -> None:
    for i in ids:
        assert [e["state"] for e in w.final(i)] == ["delivered"], (i, w.states(i))


# ---------------------------------------------------------------------- the SMSC's unbind

async def test_smsc_unbind_with_48_submits_outstanding_sends_none_twice(
        tmp_path: Path, broker: Mosquitto, sim: Simulator) -> None:
    """The report: the SMSC unbinds with 48 submits outstanding, their resps come 150 ms after the unbind
    (after the engine's unbind_resp), the SMSC closes 600 ms after it. Every resp is used: zero messages sent
    twice, all delivered (receipts of the released resps come on the unbinding session or after the rebind)."""
    cfg = make_config(str(tmp_path / "e.db"), broker.url,
                      [smsc("a", sim.port, window=OUTSTANDING, response_timeout_s=5)])
    ids = [f"u{i:03d}" for i in range(OUTSTANDING + 12)]
    texts = [f"smsc unbind {i}" for i in ids]
    sim.hold_responses(unbind_at=OUTSTANDING, release_after=0.15, close_after=0.6)
    async with Watcher(broker.url) as w, running_engine(cfg) as engine:
        await wait_bound(engine)
        for i, t in zip(ids, texts, strict=True):
            await w.publish({"id": i, "to": "+447700900123", "text": t})
        await w.wait_final(ids, timeout=40)
        client = engine.clients["a"]
    _all_delivered(w, ids)
    _sent_once(sim, texts)
    assert sim.unbinds_sent == 1 and sim.submits_after_unbind == 0
    first = [r for r in sim.submits if r.session_id == sim.submits[0].session_id]
    assert len(first) == OUTSTANDING and all(r.status == 0 for r in first)   # answered after the unbind, used
    assert sim.binds == 2 and client.reconnects == 1                         # the rest went on the next bind


async def test_after_an_smsc_unbind_only_submits_never_answered_go_again(
        tmp_path: Path, broker: Mosquitto, sim: Simulator) -> None:
    """Two submits the SMSC never answers, ten answered only after its unbind: the ten are used, the two
    are "not attempted" and go again on the next bind (the one case SMPP cannot tell apart)."""
    cfg = make_config(str(tmp_path / "e.db"), broker.url, [smsc("a", sim.port, window=12, response_timeout_s=5)])
    ids = [f"n{i:02d}" for i in range(12)]
    texts = [f"never answered {i}" for i in ids]
    sim.drop_responses(2)
    sim.hold_responses(unbind_at=10, release_after=0.15, close_after=0.6)
    async with Watcher(broker.url) as w, running_engine(cfg) as engine:
        await wait_bound(engine)
        for i, t in zip(ids, texts, strict=True):
            await w.publish({"id": i, "to": "+447700900123", "text": t})
        await w.wait_final(ids, timeout=40)
    _all_delivered(w, ids)
    statuses: dict[str, list[int]] = {}
    for r in sim.submits:
        statuses.setdefault(r.short_message.decode(), []).append(r.status)
    again = {t: st for t, st in statuses.items() if len(st) > 1}
    assert sorted(again.values()) == [[-1, 0], [-1, 0]], statuses
    assert all(st == [0] for t, st in statuses.items() if t not in again) and len(statuses) == 12
    assert Counter(r.short_message.decode() for r in sim.ok_submits()) == Counter(texts)


async def test_smsc_unbind_session_level_reasons_and_nothing_new_sent(sim: Simulator) -> None:
    """One session: after the SMSC's unbind the session is not bound, refuses new requests (nothing is sent),
    hands the resps that follow to their requests, and closes when the SMSC closes, logged as its unbind."""
    sim.hold_responses(unbind_at=40, release_after=0.15, close_after=0.6)
    changed = asyncio.Event()
    s = Session(_cfg(sim), "a/0", "transceiver", None, on_change=changed.set)
    await s.open()
    async with asyncio.timeout(10):
        reqs = _submits(s, 40, "s")
        while not s.unbinding:
            changed.clear()
            await changed.wait()
        assert not s.bound and s.free == 0
        with pytest.raises(SessionClosed):
            await s.request("submit_sm", _submit("late"))
        resps = await asyncio.gather(*reqs)
        assert all(r.command == "submit_sm_resp" and r.status == 0 for r in resps)
        assert not s.closed.is_set()         # the SMSC has not closed yet: still reading (receipts may come)
        await s.closed.wait()
    assert s.close_reason == "unbound by SMSC"
    assert sim.submit_count == 40 and sim.submits_after_unbind == 0


async def test_smsc_that_unbinds_and_never_closes_is_closed_after_response_timeout(sim: Simulator) -> None:
    """The drain after the SMSC's unbind is bounded: an SMSC that keeps the connection open is closed
    response_timeout_s after its unbind (the resps it sent meanwhile were used)."""
    sim.hold_responses(unbind_at=3, release_after=0.05, close_after=60)
    s = Session(_cfg(sim, response_timeout_s=0.5), "a/0", "transceiver", None)
    await s.open()
    async with asyncio.timeout(10):
        reqs = _submits(s, 3, "n")
        resps = await asyncio.gather(*reqs)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await s.closed.wait()
    assert all(r.status == 0 for r in resps)
    assert s.close_reason == "unbound by SMSC; it did not close within 0.5s"
    assert 0.2 < loop.time() - t0 < 2.0


# ---------------------------------------------------------------------- the engine's unbind

def _cfg(sim: Simulator, **kw: Any) -> SmscConfig:
    d: dict[str, Any] = {"name": "a", "host": "127.0.0.1", "port": sim.port, "system_id": "acme",
                         "password": "secret", "window": 50, "response_timeout_s": 5.0, "enquire_link_s": 60.0}
    d.update(kw)
    return SmscConfig(**d)


def _submit(text: str) -> dict[str, Any]:
    return {"source_addr": "1", "destination_addr": "447700900123", "short_message": text.encode()}


def _submits(s: Session, n: int, prefix: str) -> list[asyncio.Future[Any]]:
    """n submit_sm on window slots of ``s``, sent in this loop turn."""
    out = []
    for i in range(n):
        s.reserve()
        out.append(asyncio.ensure_future(s.submit(_submit(f"{prefix}{i}"))))
    return out


async def test_engine_unbind_is_logged_as_the_engines(sim: Simulator) -> None:
    """The simulator closes right after its unbind_resp (the EOF often comes in the same read): the session
    must still say it was unbound by the engine, not 'connection closed by SMSC'."""
    for _ in range(5):
        s = Session(_cfg(sim), "a/0", "transceiver", None)
        await s.open()
        await s.unbind(timeout=5)
        assert s.close_reason == "unbound by engine"
    assert sim.unbinds_received == 5


@pytest.mark.parametrize("unbind_resp_first", [False, True])
async def test_engine_unbind_uses_the_resps_that_cross_it(sim: Simulator, unbind_resp_first: bool) -> None:
    """The engine unbinds with 45 submits outstanding; the SMSC sends their resps 150 ms later, before or
    after its unbind_resp, and closes 600 ms after the unbind: each request gets its resp."""
    sim.hold_responses(unbind_at=0, release_after=0.15, close_after=0.6, unbind_resp_first=unbind_resp_first)
    s = Session(_cfg(sim), "a/0", "transceiver", None)
    await s.open()
    async with asyncio.timeout(10):
        reqs = _submits(s, 45, "e")
        await sim.wait_for(lambda: sim.held_responses() == 45, 5)
        await s.unbind(timeout=5)
        assert all(r.done() for r in reqs)
        resps = [r.result() for r in reqs]
    assert all(r.command == "submit_sm_resp" and r.status == 0 for r in resps)
    assert s.close_reason == "unbound by engine" and sim.unbinds_received == 1


async def test_client_retire_unbinds_and_uses_resps_that_cross_the_unbind(sim: Simulator) -> None:
    """A rebind's retire (engine.reload -> SmscClient.retire) whose wait ran out with 45 submits still
    outstanding: it unbinds, and the resps that come 150 ms after the unbind (after its unbind_resp) reach
    their senders (none gets SessionClosed, so none is sent again)."""
    client = SmscClient(_cfg(sim, window=50), on_deliver=lambda *a: 0)
    client.start()
    try:
        await asyncio.wait_for(client.up.wait(), 5)
        sim.hold_responses(unbind_at=0, release_after=0.15, close_after=0.6, unbind_resp_first=True)
        sends = [asyncio.ensure_future(client.send(_submit(f"r{i}"))) for i in range(45)]
        await sim.wait_for(lambda: sim.held_responses() == 45, 5)
        await asyncio.wait_for(client.retire(0.2), 10)
        results = await asyncio.gather(*sends, return_exceptions=True)
    finally:
        await client.stop()
    assert all(not isinstance(r, BaseException) and r.status == 0 for r in results), results[:3]
    assert sim.unbinds_received == 1 and sim.submit_count == 45


def _doc(tmp_path: Path, broker: Mosquitto, smscs: list[dict[str, Any]], instance: str) -> dict[str, Any]:
    return {
        "engine": {"instance": instance, "store": str(tmp_path / "engine.db")},
        "mqtt": {"url": broker.url}, "http": {"listen": ""}, "log": {"level": "info", "format": "json"},
        "smsc": smscs,
    }


async def test_sigterm_with_48_submits_outstanding_uses_the_resps_after_its_unbind(
        tmp_path: Path, broker: Mosquitto, sim: Simulator) -> None:
    """SIGTERM while 48 submits wait for resps the SMSC sends only after the engine's unbind (its unbind_resp
    at once, the resps 150 ms after the unbind, closed 600 ms after it). The stop waits its 10 s for them,
    unbinds, and still stores every resp that follows: after a restart each message is delivered, none was
    sent twice."""
    path = write_toml(str(tmp_path / "engine.toml"),
                      _doc(tmp_path, broker, [smsc("a", sim.port, window=OUTSTANDING, response_timeout_s=30)],
                           "term"))
    engine = EngineProcess(path)
    ids = [f"t{i:03d}" for i in range(OUTSTANDING)]
    texts = [f"sigterm {i}" for i in ids]
    try:
        async with Watcher(broker.url, persistent=True) as w:
            await engine.start()
            await engine.wait_log("engine_ready")
            await engine.wait_log("session_bound")
            sim.hold_responses(unbind_at=0, release_after=0.15, close_after=0.6, unbind_resp_first=True)
            for i, t in zip(ids, texts, strict=True):
                await w.publish({"id": i, "to": "+447700900123", "text": t})
            await sim.wait_for(lambda: sim.held_responses() == OUTSTANDING, 20)
            assert await engine.terminate(timeout=40) == 0
            closed = [d for d in engine.lines if d.get("event") == "session_closed"]
            assert [d["reason"] for d in closed] == ["unbound by engine"], closed
            assert sim.unbinds_received == 1
            await engine.start()                   # receipts the SMSC could not deliver before the close
            await w.wait_final(ids, timeout=40)
        _all_delivered(w, ids)
        _sent_once(sim, texts)
        assert sim.submits_after_unbind == 0
    finally:
        await engine.terminate()


async def test_sighup_rebind_with_48_submits_outstanding_sends_none_twice(
        tmp_path: Path, broker: Mosquitto, sim: Simulator) -> None:
    """SIGHUP rebinds the SMSC (its window changed) while 48 submits are outstanding and their resps come
    late: the old bind gets them all before or across its unbind, the new bind sends the rest; every
    message is delivered once, none sent twice."""
    doc = _doc(tmp_path, broker, [smsc("a", sim.port, window=OUTSTANDING, response_timeout_s=5)], "hup")
    path = write_toml(str(tmp_path / "engine.toml"), doc)
    engine = EngineProcess(path)
    ids = [f"h{i:03d}" for i in range(OUTSTANDING + 12)]
    texts = [f"sighup {i}" for i in ids]
    try:
        async with Watcher(broker.url) as w:
            await engine.start()
            await engine.wait_log("engine_ready")
            await engine.wait_log("session_bound")
            sim.set_response_delay(0.8)
            for i, t in zip(ids, texts, strict=True):
                await w.publish({"id": i, "to": "+447700900123", "text": t})
            await sim.wait_for(lambda: sim.submit_count >= OUTSTANDING, 20)
            doc["smsc"][0]["window"] = 20
            write_toml(path, doc)
            engine.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
            done = await engine.wait_log("config_reloaded")
            assert done["smsc_rebound"] == ["a"]
            await w.wait_final(ids, timeout=40)
            closed = [d for d in engine.lines if d.get("event") == "session_closed"]
            assert [d["reason"] for d in closed] == ["unbound by engine"], closed
        _all_delivered(w, ids)
        _sent_once(sim, texts)
        assert sim.unbinds_received == 1 and sim.binds == 2 and sim.submits_after_unbind == 0
    finally:
        await engine.terminate()


# ---------------------------------------------------------------------- the simulator's knob itself

async def test_simulator_hold_responses_unbinds_releases_then_closes(sim: Simulator) -> None:
    """What the knob promises, seen by a bare SMPP client: resps held until the unbind at N, sent
    release_after later (with their receipts), a submit after the unbind refused and counted, then a FIN."""
    from .test_simulator import Client

    sim.hold_responses(unbind_at=3, release_after=0.15, close_after=0.6)
    c = await Client.connect(sim.port)
    try:
        await c.bind()
        seqs = [await c.submit(text=f"h{i}".encode()) for i in range(3)]
        unbind = await c.recv()
        assert unbind.command == "unbind" and sim.held_responses() == 3 and sim.unbinds_sent == 1
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await c.send("unbind_resp", seq=unbind.seq)
        late = await c.submit(text=b"late")
        got = [await c.recv() for _ in range(1 + 3 + 3)]     # RINVBNDSTS for the late one, 3 resps, 3 receipts
        assert loop.time() - t0 >= 0.1
        by_cmd = Counter(p.command for p in got)
        assert by_cmd == {"submit_sm_resp": 4, "deliver_sm": 3}, got
        resps = {p.seq: p.status for p in got if p.command == "submit_sm_resp"}
        assert resps[late] == 0x04 and all(resps[s] == 0 for s in seqs)
        for p in got:
            if p.command == "deliver_sm":
                await c.send("deliver_sm_resp", seq=p.seq)
        with pytest.raises(EOFError):
            await c.recv(wait=5)                              # closed close_after the unbind
        assert loop.time() - t0 >= 0.5
        assert sim.submits_after_unbind == 1 and sim.knobs()["hold_responses"] is None   # used up
    finally:
        await c.close()


async def test_simulator_hold_responses_esme_unbind_and_control_api(sim: Simulator) -> None:
    """unbind_at 0: the ESME's unbind is answered after the held resps; set and cleared over HTTP."""
    from smppengine.simulator import start_control

    from .test_simulator import Client, _http

    server = await start_control(sim, "127.0.0.1", 0)
    cport = server.sockets[0].getsockname()[1]
    c = await Client.connect(sim.port)
    try:
        status, body = await _http(cport, "POST", "/knobs", {"hold_responses": {"unbind_at": -1}})
        assert status == 400 and sim.knobs()["hold_responses"] is None
        status, body = await _http(cport, "POST", "/knobs", {"hold_responses": {"release_after": 0.1}})
        assert status == 200 and body["hold_responses"] == {
            "unbind_at": 0, "release_after": 0.1, "close_after": 0.6, "unbind_resp_first": False}
        await c.bind()
        seqs = [await c.submit(text=f"x{i}".encode(), rd=0) for i in range(2)]
        await sim.wait_for(lambda: sim.held_responses() == 2, 5)
        useq = await c.send("unbind")
        got = [await c.recv() for _ in range(3)]
        assert [(p.command, p.seq) for p in got] == [
            ("submit_sm_resp", seqs[0]), ("submit_sm_resp", seqs[1]), ("unbind_resp", useq)]
        with pytest.raises(EOFError):
            await c.recv(wait=5)
        status, body = await _http(cport, "POST", "/knobs", {"hold_responses": None})
        assert status == 200 and body["hold_responses"] is None
        assert (await _http(cport, "GET", "/stats"))[1]["unbinds_sent"] == 0
    finally:
        await c.close()
        server.close()
        await server.wait_closed()
