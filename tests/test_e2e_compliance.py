"""Compliance end to end, over a private mosquitto and the simulator on real TCP: STOP / START keywords,
scoped and global opt-outs, confirmation replies, the operator CLI (10,000-number import) and sender rules."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from smppengine.broker import Mosquitto
from smppengine.simulator import Simulator

from .helpers import Watcher, eventually, make_config, running_engine, smsc, store_for_test, wait_bound

A, B, C = "447700900123", "447700900124", "447700900125"


def _to(sim: Simulator, number: str) -> list[Any]:
    return [r for r in sim.submits if r.destination_addr == number]


def _error(w: Watcher, msg_id: str) -> str | None:
    final = w.final(msg_id)
    assert final, f"{msg_id} has no final state"
    return final[0]["error"]["code"] if final[0]["error"] else None


async def _mo(sim: Simulator, w: Watcher, source: str, dest: str, text: str) -> dict[str, Any]:
    """Inject an MO and wait for it on P/inbound (deliver_sm_resp, so the list change, came first)."""
    n = len(w.inbound)
    await sim.inject_mo(source, dest, text)
    await w.wait(lambda: len(w.inbound) > n, what=f"MO {text!r} on P/inbound")
    return w.inbound[n]


async def test_stop_blocks_the_next_request_and_start_unblocks(
        tmp_path: Path, broker: Mosquitto, sim: Simulator) -> None:
    cfg = make_config(str(tmp_path / "e.db"), broker.url, [smsc("a", sim.port, default_from="12345")])
    async with Watcher(broker.url) as w, running_engine(cfg) as engine:
        await wait_bound(engine)
        mo = await _mo(sim, w, A, "12345", "stop ")
        assert mo["text"] == "stop " and mo["opt_out"] is True
        await w.publish({"id": "blocked", "to": "+" + A, "text": "offer"})
        await w.publish({"id": "other-number", "to": "+" + B, "text": "offer"})
        await w.publish({"id": "other-sender", "to": "+" + A, "from": "ACME", "text": "scoped: allowed"})
        await w.wait_final(["blocked", "other-number", "other-sender"])
        assert w.states("blocked") == ["queued", "rejected"] and _error(w, "blocked") == "opted_out"
        assert w.final("other-number")[0]["state"] == "delivered"
        assert w.final("other-sender")[0]["state"] == "delivered"
        assert [r.source_addr for r in _to(sim, A)] == ["ACME"]        # nothing for "blocked"
        again = await _mo(sim, w, A, "12345", "STOP")                   # already on the list: no change
        assert "opt_out" not in again
        plain = await _mo(sim, w, A, "12345", "stop it")
        assert "opt_out" not in plain
        start = await _mo(sim, w, A, "12345", "START")
        assert start["opt_out"] is False
        await w.publish({"id": "unblocked", "to": "+" + A, "text": "welcome back"})
        await w.wait_final(["unblocked"])
        assert w.final("unblocked")[0]["state"] == "delivered"
        assert [r.source_addr for r in _to(sim, A)] == ["ACME", "12345"]


async def test_scoped_global_stopall_and_transactional_route(
        tmp_path: Path, broker: Mosquitto, sim: Simulator) -> None:
    cfg = make_config(str(tmp_path / "e.db"), broker.url, [smsc("a", sim.port, default_from="12345")],
                      route=[{"prefix": "", "smsc": ["a"]},
                             {"prefix": "+4479", "smsc": ["a"], "allow_opted_out": True}])
    async with Watcher(broker.url) as w, running_engine(cfg) as engine:
        await wait_bound(engine)
        await _mo(sim, w, A, "12345", "Stop")               # scoped to 12345
        await _mo(sim, w, B, "12345", "STOPALL")            # global
        await w.publish({"id": "a-12345", "to": "+" + A, "text": "x"})
        await w.publish({"id": "a-67890", "to": "+" + A, "from": "67890", "text": "x"})
        await w.publish({"id": "b-67890", "to": "+" + B, "from": "67890", "text": "x"})
        await w.publish({"id": "b-alpha", "to": B, "from": "ACME", "text": "x"})
        await w.wait_final(["a-12345", "a-67890", "b-67890", "b-alpha"])
        assert _error(w, "a-12345") == "opted_out"
        assert w.final("a-67890")[0]["state"] == "delivered"
        assert _error(w, "b-67890") == "opted_out" and _error(w, "b-alpha") == "opted_out"
        assert _to(sim, B) == [] and [r.source_addr for r in _to(sim, A)] == ["67890"]
        # the transactional route may reach an opted-out number
        await _mo(sim, w, "447900900001", "12345", "STOPALL")
        await w.publish({"id": "otp", "to": "+447900900001", "text": "code 1234"})
        await w.wait_final(["otp"])
        assert w.final("otp")[0]["state"] == "delivered"


async def test_global_scope_and_confirmation_replies(tmp_path: Path, broker: Mosquitto, sim: Simulator) -> None:
    cfg = make_config(str(tmp_path / "e.db"), broker.url, [smsc("a", sim.port, default_from="12345")],
                      compliance={"optout_scope": "global", "confirm_stop": "You will get no more messages.",
                                  "confirm_start": "Welcome back."})
    async with Watcher(broker.url) as w, running_engine(cfg) as engine:
        await wait_bound(engine)
        mo = await _mo(sim, w, A, "12345", "unsubscribe")
        assert mo["opt_out"] is True
        # the STOP confirmation is sent even though A just opted out (from the number A wrote to)
        await w.wait(lambda: any(i.startswith("optout-confirm-") and w.final(i) for i in w.events), what="confirm")
        confirm = next(i for i in w.events if i.startswith("optout-confirm-"))
        assert w.final(confirm)[0]["state"] == "delivered" and w.final(confirm)[0]["meta"] == {"confirms": mo["id"]}
        sent = _to(sim, A)
        assert len(sent) == 1 and sent[0].source_addr == "12345"
        assert sent[0].short_message == b"You will get no more messages."
        await w.publish({"id": "other-sender", "to": "+" + A, "from": "67890", "text": "x"})   # global
        await w.wait_final(["other-sender"])
        assert _error(w, "other-sender") == "opted_out" and len(_to(sim, A)) == 1
        n = len(w.events)
        await _mo(sim, w, A, "12345", "start")
        await w.wait(lambda: len(w.events) > n and len(_to(sim, A)) == 2, what="start confirmation")
        assert _to(sim, A)[1].short_message == b"Welcome back."
        # an application cannot use the engine's reserved id prefix to get around the list
        await _mo(sim, w, A, "12345", "STOP")
        await w.publish({"id": "optout-confirm-fake", "to": "+" + A, "text": "sneaky"})
        await w.wait_final(["optout-confirm-fake"])
        assert _error(w, "optout-confirm-fake") == "invalid_request"
        assert engine.optouts.confirmations == 3


async def _cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "smppengine.cli", "optout", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_cli_import_of_10000_numbers_and_running_engine_follows(
        tmp_path: Path, broker: Mosquitto, sim: Simulator) -> None:
    path = str(tmp_path / "e.db")
    db = store_for_test(path)              # the SQLite file, or its PostgreSQL stand-in (same for the engine)
    csv_path = tmp_path / "stop.csv"
    numbers = [f"+4477009{i:05d}" for i in range(10_000)]
    csv_path.write_text("number,scope\n" + "".join(f"{n},{'12345' if i % 2 else '*'}\n"
                                                  for i, n in enumerate(numbers)))
    t0 = time.perf_counter()
    rc, out, err = await _cli("--store", db, "import", str(csv_path))
    wall = time.perf_counter() - t0
    assert rc == 0, err
    took = float(out.split(" in ")[1].rstrip("s\n"))
    print(f"\nimport of 10,000 numbers: {took:.3f}s in the store ({wall:.2f}s with process start)")
    assert out.startswith("imported 10000 entries") and took < 3.0
    rc, out, _ = await _cli("--store", db, "export")
    lines = out.splitlines()
    assert lines[0] == "number,scope,source,at" and len(lines) == 10_001
    assert lines[1].startswith("447700900000,*,import,")
    rc, _, err = await _cli("--store", db, "import", "-")            # stdin, empty: nothing to do
    assert rc == 0

    cfg = make_config(path, broker.url, [smsc("a", sim.port, default_from="12345")])
    async with Watcher(broker.url) as w, running_engine(cfg) as engine:
        await wait_bound(engine)
        assert len(engine.optouts.cache) == 10_000
        await w.publish({"id": "imported-global", "to": numbers[0], "from": "67890", "text": "x"})
        await w.publish({"id": "imported-scoped", "to": numbers[1], "text": "x"})
        await w.publish({"id": "imported-other-scope", "to": numbers[1], "from": "67890", "text": "x"})
        await w.wait_final(["imported-global", "imported-scoped", "imported-other-scope"])
        assert _error(w, "imported-global") == "opted_out" and _error(w, "imported-scoped") == "opted_out"
        assert w.final("imported-other-scope")[0]["state"] == "delivered"
        # operator changes while the engine runs reach its cache (polled every 2 s)
        rc, out, _ = await _cli("--store", db, "add", "+44 7700 800001", "--scope", "12345")
        assert rc == 0 and "447700800001" in out
        rc, _, _ = await _cli("--store", db, "remove", numbers[0])
        assert rc == 0
        await eventually(lambda: engine.optouts.cache.blocked("447700800001", "12345")
                         and not engine.optouts.cache.blocked(numbers[0], "67890"), timeout=10,
                         what="the CLI changes in the running engine's cache")
        await w.publish({"id": "added", "to": "+447700800001", "text": "x"})
        await w.publish({"id": "removed", "to": numbers[0], "from": "67890", "text": "x"})
        await w.wait_final(["added", "removed"])
        assert _error(w, "added") == "opted_out" and w.final("removed")[0]["state"] == "delivered"
    rc, out, _ = await _cli("--store", db, "list")
    assert rc == 0 and out.rstrip().endswith("(10000 entries)") and "447700800001" in out
    rc, _, err = await _cli("--store", db, "add", "ACME")
    assert rc == 1 and "not a phone number" in err


async def test_sender_rules(tmp_path: Path, broker: Mosquitto, sim: Simulator) -> None:
    cfg = make_config(str(tmp_path / "e.db"), broker.url,
                      [smsc("a", sim.port, default_from="12345", senders=["12345", "ACME", "Shop & Co"])],
                      route=[{"prefix": "", "smsc": ["a"]}, {"prefix": "+33", "smsc": ["a"], "senders": ["ACME"]}])
    async with Watcher(broker.url) as w, running_engine(cfg) as engine:
        await wait_bound(engine)
        await w.publish({"id": "ok-default", "to": "+" + A, "text": "x"})
        await w.publish({"id": "ok-listed", "to": "+" + A, "from": "Shop & Co", "text": "x"})
        await w.publish({"id": "not-listed", "to": "+" + A, "from": "OTHER", "text": "x"})
        await w.publish({"id": "route-not-listed", "to": "+33612345678", "text": "x"})   # default 12345
        await w.publish({"id": "route-listed", "to": "+33612345678", "from": "ACME", "text": "x"})
        await w.publish({"id": "bad-alnum", "to": "+" + A, "from": "TOOLONGSENDER", "text": "x"})
        await w.publish({"id": "bad-chars", "to": "+" + A, "from": "AC*ME", "text": "x"})
        ids = ["ok-default", "ok-listed", "not-listed", "route-not-listed", "route-listed", "bad-alnum", "bad-chars"]
        await w.wait_final(ids)
        assert [w.final(i)[0]["state"] for i in ids] == ["delivered", "delivered"] + ["rejected"] * 2 + [
            "delivered"] + ["rejected"] * 2
        assert _error(w, "not-listed") == "sender_not_allowed" and _error(w, "route-not-listed") == "sender_not_allowed"
        assert _error(w, "bad-alnum") == "invalid_request" and _error(w, "bad-chars") == "invalid_request"
        assert sorted(r.source_addr for r in sim.submits) == ["12345", "ACME", "Shop & Co"]
