"""Signals on a running `smppengine run`: SIGTERM stops cleanly, SIGHUP reloads the config."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from smppengine.broker import Mosquitto
from smppengine.config import ConfigError, load_config
from smppengine.simulator import Simulator

from .helpers import EngineProcess, Watcher, smsc, write_toml


def _doc(tmp_path: Path, broker: Mosquitto, smscs: list[dict[str, Any]], instance: str) -> dict[str, Any]:
    return {
        "engine": {"instance": instance, "store": str(tmp_path / "engine.db")},
        "mqtt": {"url": broker.url}, "http": {"listen": ""}, "log": {"level": "info", "format": "json"},
        "smsc": smscs,
        "route": [{"prefix": "+44", "smsc": ["a"]}, {"prefix": "", "smsc": ["b"] if len(smscs) > 1 else ["a"]}],
    }


async def test_sigterm_while_the_broker_is_unreachable_at_start_stops_the_engine(tmp_path: Path) -> None:
    """The start waits for the broker; a SIGTERM meanwhile (systemd stop, Ctrl-C) must stop the engine, not
    be ignored until the broker comes."""
    from smppengine.broker import free_port

    doc: dict[str, Any] = {
        "engine": {"instance": "nobroker", "store": str(tmp_path / "engine.db")},
        "mqtt": {"url": f"mqtt://127.0.0.1:{free_port()}"}, "http": {"listen": ""},
        "log": {"level": "info", "format": "json"},
        "smsc": [smsc("a", free_port())],
    }
    engine = EngineProcess(write_toml(str(tmp_path / "engine.toml"), doc))
    await engine.start()
    try:
        await engine.wait_log("mqtt_disconnected")          # started, retrying the broker
        assert await engine.terminate(timeout=20) == 0
        assert engine.count("stopped_during_start") == 1 and engine.count("engine_stopped") == 1
    finally:
        await engine.terminate()


async def test_sigterm_mid_traffic_exits_0_unbinds_goes_offline_and_loses_nothing(
        tmp_path: Path, broker: Mosquitto, sim: Simulator) -> None:
    path = write_toml(str(tmp_path / "engine.toml"), _doc(tmp_path, broker, [smsc("a", sim.port, tps=40)], "term"))
    engine = EngineProcess(path)
    await engine.start()
    ids = [f"t{i}" for i in range(40)]
    try:
        await engine.wait_log("engine_ready")       # subscribed: the broker keeps requests for it from now on
        await engine.wait_log("session_bound")
        async with Watcher(broker.url, persistent=True) as w:
            sim.set_receipt(delay=0.5)
            sim.set_response_delay(0.2)              # submits are in flight when the signal comes
            for i in ids:
                await w.publish({"id": i, "to": "+447700900123", "text": f"hello {i}"})
            await w.wait(lambda: any("submitted" in w.states(i) for i in ids), what="first submit")
            assert await engine.terminate() == 0
            assert sim.unbinds_received >= 1
            await w.wait(lambda: w.presence.get("term", {}).get("state") == "offline", what="offline presence")
            assert engine.count("engine_stopped") == 1
            unfinished = [i for i in ids if not w.final(i)]
            assert unfinished, "the test should stop the engine mid-traffic"
            # whatever was accepted, or still sits unacknowledged at the broker, ends after a restart
            sim.set_response_delay(0)
            await engine.start()
            try:
                await w.wait_final(ids, timeout=40)
            except AssertionError:
                missing = {i: w.states(i) for i in ids if not w.final(i)}
                raise AssertionError(f"watcher reconnects {w.reconnects}; no final state: {missing}") from None
            for i in ids:
                assert [e["state"] for e in w.final(i)] == ["delivered"], (i, w.states(i))
            assert len({r.destination_addr + r.short_message.decode() for r in sim.ok_submits()}) == len(ids)
    finally:
        await engine.terminate()


async def test_sighup_applies_tps_in_place_rebinds_what_changed_and_refuses_a_broken_file(
        tmp_path: Path, broker: Mosquitto, sim: Simulator) -> None:
    sim_b = Simulator(credentials={"acme": "secret"})
    await sim_b.start()
    doc = _doc(tmp_path, broker, [smsc("a", sim.port, binds=2), smsc("b", sim_b.port)], "hup")
    path = write_toml(str(tmp_path / "engine.toml"), doc)
    engine = EngineProcess(path)
    await engine.start()
    try:
        await engine.wait_log("session_bound", n=3)
        assert (sim.binds, sim_b.binds) == (2, 1)
        async with Watcher(broker.url) as w:
            # 1. only a's tps changes: applied in place, no bind dropped anywhere
            doc["smsc"][0]["tps"] = 4
            write_toml(path, doc)
            engine.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
            done = await engine.wait_log("config_reloaded")
            assert done["smsc_updated"] == ["a"] and done["smsc_rebound"] == [] and done["smsc_changes"] == {
                "a": ["tps"]}
            ids = [f"slow{i}" for i in range(6)]
            for i in ids:
                await w.publish({"id": i, "to": "+447700900123", "text": i})
            await w.wait_final(ids)
            at = sorted(r.at for r in sim.ok_submits())
            assert at[-1] - at[0] >= 5 / 4 * 0.9          # 6 submits at 4/s span at least 1.25 s
            assert (sim.binds, sim.unbinds_received, sim_b.binds, sim_b.unbinds_received) == (2, 0, 1, 0)
            assert sim.bound_sessions == 2 and sim_b.bound_sessions == 1

            # 2. b's window changes: b is rebound, a's binds stay up
            doc["smsc"][1]["window"] = 7
            write_toml(path, doc)
            engine.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
            done = await engine.wait_log("config_reloaded", n=2)
            assert done["smsc_rebound"] == ["b"] and done["smsc_updated"] == []
            await sim_b.wait_for(lambda: sim_b.binds == 2 and sim_b.bound_sessions == 1, 10)
            assert sim_b.unbinds_received == 1
            assert (sim.binds, sim.unbinds_received) == (2, 0)

            # 3. a broken file is refused with the start-up error text; the engine keeps working
            doc["smsc"][0]["tps"] = -1
            write_toml(path, doc)
            try:
                load_config(path)
                raise AssertionError("the config should be invalid")
            except ConfigError as exc:
                expected = str(exc)
            engine.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
            refused = await engine.wait_log("config_reload_refused")
            assert refused["error"] == expected and "smsc[0].tps" in expected
            await w.publish({"id": "after", "to": "+15550001111", "text": "still running"})
            await w.wait_final(["after"])
            assert [e["state"] for e in w.final("after")] == ["delivered"]
            assert w.final("after")[0]["smsc"] == "b"
            assert engine.proc.returncode is None  # type: ignore[union-attr]
    finally:
        await engine.terminate()
        await sim_b.stop()
