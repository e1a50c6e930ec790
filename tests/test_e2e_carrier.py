"""Carrier features end to end over MQTT, the engine and the simulator: TLVs on every part, flash, binary
with ports, scheduled delivery, TLVs of receipts and MO in the events, bad tlvs rejected."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from smppengine.broker import Mosquitto
from smppengine.simulator import Simulator

from .helpers import Watcher, make_config, running_engine, smsc, wait_bound

DLT = {"0x1400": "1101234567890123456", "0x1401": {"cstring": "1107123456789012345"}, "5122": {"int": 7, "size": 2}}


async def test_tlvs_reach_the_smsc_on_every_part(tmp_path: Path, broker: Mosquitto, sim: Simulator) -> None:
    carrier = smsc("a", sim.port, tlvs={"0x1402": "telemarketer-1", "0x1401": "smsc-default"})
    cfg = make_config(str(tmp_path / "e.db"), broker.url, [carrier])
    async with Watcher(broker.url) as w, running_engine(cfg) as engine:
        await wait_bound(engine)
        await w.publish({"id": "dlt", "to": "+919800000001", "text": "x" * 400, "tlvs": DLT})
        await w.publish({"id": "smsc-only", "to": "+919800000002", "text": "short"})
        await w.wait_final(["dlt", "smsc-only"])
        assert w.states("dlt")[-1] == "delivered" and w.states("smsc-only")[-1] == "delivered"
    parts = [s for s in sim.submits if s.destination_addr == "919800000001"]
    assert len(parts) == 3
    for p in parts:
        assert p.tlvs["0x1400"] == b"1101234567890123456"
        assert p.tlvs["0x1401"] == b"1107123456789012345\0"        # the request's value replaced the SMSC's
        assert p.tlvs["0x1402"] == b"\x00\x07"                    # "5122" is 0x1402: the request's again
        assert p.udh[:3] == b"\x05\x00\x03"                       # still concatenated as usual
    (single,) = [s for s in sim.submits if s.destination_addr == "919800000002"]
    assert single.tlvs == {"0x1402": b"telemarketer-1", "0x1401": b"smsc-default"}


async def test_bad_tlvs_are_rejected_naming_the_tag(tmp_path: Path, broker: Mosquitto, sim: Simulator) -> None:
    cfg = make_config(str(tmp_path / "e.db"), broker.url, [smsc("a", sim.port)])
    async with Watcher(broker.url) as w, running_engine(cfg) as engine:
        await wait_bound(engine)
        await w.publish({"id": "sar", "to": "+447700900123", "text": "t", "tlvs": {"0x020E": "2"}})
        await w.publish({"id": "num", "to": "+447700900123", "text": "t", "tlvs": {"0x1400": 12}})
        await w.publish({"id": "ok", "to": "+447700900123", "text": "t", "tlvs": {"0x1400": "1"}})
        await w.wait_final(["sar", "num", "ok"])
    sar, num = w.final("sar")[0], w.final("num")[0]
    assert sar["state"] == num["state"] == "rejected"
    assert sar["error"]["code"] == num["error"]["code"] == "invalid_request"
    assert sar["error"]["detail"].startswith("tlvs: 0x020e: set by the engine itself (sar_total_segments)")
    assert num["error"]["detail"].startswith("tlvs: 0x1400: expected a string")
    assert w.final("ok")[0]["state"] == "delivered"
    assert [s.tlvs for s in sim.submits] == [{"0x1400": b"1"}]    # only the valid one reached the SMSC


async def test_flash_binary_ports_and_schedule_arrive_as_sent(
        tmp_path: Path, broker: Mosquitto, sim: Simulator) -> None:
    cfg = make_config(str(tmp_path / "e.db"), broker.url, [smsc("a", sim.port)])
    binary = bytes(i % 256 for i in range(300))
    at = "2026-12-24T18:00:00+01:00"
    async with Watcher(broker.url) as w, running_engine(cfg) as engine:
        await wait_bound(engine)
        await w.publish({"id": "flash", "to": "+447700900001", "text": "Your code 1234", "flash": True})
        await w.publish({"id": "flash-u", "to": "+447700900002", "text": "Код 1234", "flash": True})
        await w.publish({"id": "wap", "to": "+447700900003", "binary": binary.hex(),
                         "ports": {"src": 9200, "dst": 2948}})
        await w.publish({"id": "udh", "to": "+447700900004", "binary": "c0ffee", "udh": "0605040b8423f0"})
        await w.publish({"id": "later", "to": "+447700900005", "text": "in an hour", "schedule": 3600})
        await w.publish({"id": "xmas", "to": "+447700900006", "text": "at six", "schedule": at})
        ids = ["flash", "flash-u", "wap", "udh", "later", "xmas"]
        await w.wait_final(ids)
        assert all(w.states(i)[-1] == "delivered" for i in ids), {i: w.states(i) for i in ids}
    by_to: dict[str, list] = {}
    for s in sim.submits:
        by_to.setdefault(s.destination_addr, []).append(s)
    (flash,) = by_to["447700900001"]
    assert flash.data_coding == 0x10 and flash.flash and flash.short_message == b"Your code 1234"
    (flash_u,) = by_to["447700900002"]
    assert flash_u.data_coding == 0x18 and flash_u.flash and flash_u.short_message == "Код 1234".encode("utf-16-be")
    wap = by_to["447700900003"]
    assert len(wap) == 3
    assert all(p.data_coding == 4 and p.esm_class == 0x40 and p.ports == (9200, 2948) for p in wap)
    assert sorted(p.udh[5] for p in wap) == [1, 2, 3] and {p.udh[4] for p in wap} == {3}   # concat IE: 3 parts
    assert len({p.udh[3] for p in wap}) == 1 and {p.udh[1] for p in wap} == {0x00}        # one 8-bit reference
    assert b"".join(p.user_data for p in sorted(wap, key=lambda p: p.udh[5])) == binary
    (udh,) = by_to["447700900004"]
    assert udh.short_message == bytes.fromhex("0605040b8423f0c0ffee") and udh.esm_class == 0x40
    assert udh.ports == (0x23F0, 0x0B84) and udh.data_coding == 4 and not udh.flash
    (later,) = by_to["447700900005"]
    assert later.schedule_delivery_time.endswith("R") and len(later.schedule_delivery_time) == 16
    assert later.schedule_delivery_time[:6] == "000000"              # YYMMDD
    hours_min_s = later.schedule_delivery_time[6:12]                # ~ one hour (minus queueing time)
    assert "005900" <= hours_min_s <= "010000", later.schedule_delivery_time
    (xmas,) = by_to["447700900006"]
    assert xmas.schedule_delivery_time == "261224170000000+"       # 18:00+01:00 in UTC
    assert all(s.schedule_delivery_time == "" for s in wap + [flash, flash_u, udh])
    assert datetime(2026, 12, 24, 17, tzinfo=UTC).timestamp() > time.time()


async def test_receipt_and_mo_tlvs_appear_in_the_events(
        tmp_path: Path, broker: Mosquitto, sim: Simulator, store_backend: str) -> None:
    cfg = make_config(store_backend, broker.url, [smsc("a", sim.port)])
    sim.set_receipt(stat="UNDELIV", extra_tlvs={"network_error_code": b"\x03\x00\x2a",
                                                "other_tlvs": {0x1501: b"\xbe\xef", 0x1400: b""}})
    async with Watcher(broker.url) as w, running_engine(cfg) as engine:
        await wait_bound(engine)
        await w.publish({"id": "r1", "to": "+447700900123", "text": "hi"})
        await w.wait_final(["r1"])
        await sim.inject_mo("447700900123", "12345", "YES", tlvs={
            "network_error_code": b"\x01\x02\x03", "other_tlvs": {0x2001: b"vendor"}})
        await sim.inject_mo("447700900124", "12345", "plain")
        await w.wait(lambda: len(w.inbound) == 2, what="2 MO")
    (final,) = w.final("r1")
    assert final["state"] == "undelivered"
    tlvs = final["tlvs"]
    assert tlvs["0x0423"] == {"hex": "03002a"}                       # network_error_code
    assert tlvs["0x1501"] == {"hex": "beef"} and tlvs["0x1400"] == {"hex": ""}   # unknown: kept, raw
    assert tlvs["0x0427"] == {"int": 5, "size": 1}                   # message_state UNDELIV
    assert tlvs["0x001e"]["cstring"] == final["smsc_message_ids"][0]
    assert "tlvs" not in w.events["r1"][0]                           # queued: no receipt yet
    mo = {m["from"]: m for m in w.inbound}
    assert mo["447700900123"]["text"] == "YES"
    assert mo["447700900123"]["tlvs"] == {"0x0423": {"hex": "010203"}, "0x2001": {"hex": "76656e646f72"}}
    assert "tlvs" not in mo["447700900124"]
