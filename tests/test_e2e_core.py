"""End to end over a private mosquitto and the simulator on real TCP: requests in, receipts out."""

from __future__ import annotations

from pathlib import Path

import pytest

from smppengine.broker import Mosquitto
from smppengine.simulator import Simulator

from .helpers import Watcher, eventually, make_config, running_engine, smsc, wait_bound


async def test_contract_example_is_delivered(tmp_path: Path, broker: Mosquitto, sim: Simulator) -> None:
    cfg = make_config(str(tmp_path / "e.db"), broker.url, [smsc("carrier-a", sim.port)])
    async with Watcher(broker.url) as w, running_engine(cfg) as engine:
        await wait_bound(engine)
        await w.publish({"id": "order-1234-otp", "to": "+447700900123", "from": "ACME",
                         "text": "Your code is 123456", "dlr": True, "validity": 3600, "route": "carrier-a",
                         "encoding": "auto", "meta": {"tenant": "t1"}})
        await w.wait_final(["order-1234-otp"])
        assert w.states("order-1234-otp") == ["queued", "submitted", "delivered"]
        final = w.final("order-1234-otp")[0]
        rec = sim.ok_submits()[0]
        assert final["smsc_message_ids"] == [rec.message_id]
        assert final["meta"] == {"tenant": "t1"} and final["smsc"] == "carrier-a" and final["parts"] == 1
        assert rec.destination_addr == "447700900123" and (rec.dest_addr_ton, rec.dest_addr_npi) == (1, 1)
        assert rec.source_addr == "ACME" and rec.source_addr_ton == 5
        assert rec.short_message == b"Your code is 123456" and rec.data_coding == 0
        assert rec.registered_delivery == 1 and rec.validity_period == "000000010000000R"


def _texts(i: int) -> str:
    kinds = [
        lambda: f"Code {i}: 123456",
        lambda: ("Price 10€ [promo] " * 12)[: 150 + i % 60] + f" #{i}",        # GSM with escapes across parts
        lambda: ("Привет, мир! " * 9)[: 60 + i % 50] + f" {i}",                 # Cyrillic → UCS-2
        lambda: f"Party 🎉🎉 {i} " + "😀" * (i % 40),                           # astral → surrogate pairs
        lambda: "@£$¥èéùìòÇ§ÄÖÑÜ` {i}".replace("{i}", str(i)),                  # '`' is not GSM → UCS-2
    ]
    return kinds[i % len(kinds)]()


def _reassemble(records: list) -> str:  # type: ignore[type-arg]
    from smppengine import text

    chunks = []
    for r in records:
        body = r.short_message
        seq = 1
        if r.esm_class & 0x40:
            info, body = text.split_udh(body)
            seq = info.seq if info else 1
        chunks.append((seq, text.decode(body, r.data_coding)))
    return "".join(c for _, c in sorted(chunks))


async def test_thousand_mixed_texts_each_delivered_once(tmp_path: Path, broker: Mosquitto, sim: Simulator) -> None:
    cfg = make_config(str(tmp_path / "e.db"), broker.url, [smsc("a", sim.port, binds=2, window=20)])
    n = 1000
    expected = {f"m{i}": (f"+4477{i:08d}", _texts(i)) for i in range(n)}
    async with Watcher(broker.url) as w, running_engine(cfg) as engine:
        await wait_bound(engine)
        for msg_id, (to, body) in expected.items():
            await w.publish({"id": msg_id, "to": to, "text": body})
        await w.wait_final(expected, timeout=120)
    by_dest: dict[str, list] = {}  # type: ignore[type-arg]
    for r in sim.ok_submits():
        by_dest.setdefault(r.destination_addr, []).append(r)
    for msg_id, (to, body) in expected.items():
        finals = w.final(msg_id)
        assert [e["state"] for e in finals] == ["delivered"], (msg_id, w.states(msg_id))
        recs = by_dest[to[1:]]
        assert finals[0]["smsc_message_ids"] == [r.message_id for r in sorted(recs, key=lambda r: r.at)] or \
            sorted(finals[0]["smsc_message_ids"]) == sorted(r.message_id for r in recs)
        assert _reassemble(recs) == body, msg_id
        assert finals[0]["parts"] == len(recs)


async def test_receipts_overtaking_their_resp_on_another_bind_are_not_held(
        tmp_path: Path, broker: Mosquitto, sim: Simulator) -> None:
    """The simulator sends receipts round-robin over both binds at once: a receipt often arrives on one
    bind before its resp on the other. The engine waits for that resp in memory instead of holding the
    receipt in the store; every message still ends delivered once."""
    cfg = make_config(str(tmp_path / "e.db"), broker.url, [smsc("a", sim.port, binds=2, window=50)])
    ids = [f"m{i}" for i in range(400)]
    async with Watcher(broker.url) as w, running_engine(cfg) as engine:
        await wait_bound(engine)
        await eventually(lambda: engine.clients["a"].bound_sessions == 2)
        for i in ids:
            await w.publish({"id": i, "to": "+15550001111", "text": f"hello {i}"})
        await w.wait_final(ids, timeout=60)
        for i in ids:
            assert [e["state"] for e in w.final(i)] == ["delivered"], w.states(i)
        assert engine.counters["receipts"] == len(ids)
        assert engine.counters["receipts_held"] == 0


async def test_receipt_before_resp_and_decimal_receipt_ids(tmp_path: Path, broker: Mosquitto) -> None:
    sim = Simulator(credentials={"acme": "secret"}, id_format="hex", receipt_id_format="dec",
                    first_message_id=0xABC000)
    await sim.start()
    try:
        cfg = make_config(str(tmp_path / "e.db"), broker.url, [smsc("a", sim.port)])
        async with Watcher(broker.url) as w, running_engine(cfg) as engine:
            await wait_bound(engine)
            sim.receipt_before_resp(3)
            ids = [f"early{i}" for i in range(3)] + [f"late{i}" for i in range(3)]
            for i in ids:
                await w.publish({"id": i, "to": "+15550001111", "text": f"hello {i}"})
            await w.wait_final(ids)
            for i in ids:
                assert [e["state"] for e in w.final(i)] == ["delivered"], w.states(i)
                assert "submitted" in w.states(i)
            assert engine.counters["receipts_held"] >= 3          # the early receipts really came first
            hex_ids = {r.message_id for r in sim.ok_submits()}
            assert all(h.startswith("abc") for h in hex_ids)      # hex ids; receipts carried them in decimal
            got = {w.final(i)[0]["smsc_message_ids"][0] for i in ids}
            assert got == hex_ids
    finally:
        await sim.stop()


@pytest.mark.parametrize("concat", ["udh", "udh16", "sar", "payload"])
async def test_long_texts_arrive_byte_exact_with_each_concat_method(
        tmp_path: Path, broker: Mosquitto, sim: Simulator, concat: str) -> None:
    from smppengine import text

    gsm = "a" * 151 + "€[" + "b" * 43 + "€[]~"       # escapes straddle the 153-septet boundary
    assert len(gsm) == 200
    cyrillic = ("Съешь же ещё этих мягких французских булок, да выпей чаю. " * 2)[:100]
    emoji = "Party " + "🎉😀" * 20 + " end"                 # surrogate pairs across the 67-unit boundary
    cfg = make_config(str(tmp_path / "e.db"), broker.url, [smsc("a", sim.port, concat=concat)])
    msgs = {"gsm": ("+447700900001", gsm), "cyr": ("+447700900002", cyrillic), "emoji": ("+447700900003", emoji)}
    async with Watcher(broker.url) as w, running_engine(cfg) as engine:
        await wait_bound(engine)
        for msg_id, (to, body) in msgs.items():
            await w.publish({"id": msg_id, "to": to, "text": body})
        await w.wait_final(msgs)
    for msg_id, (to, body) in msgs.items():
        recs = sorted((r for r in sim.ok_submits() if r.destination_addr == to[1:]),
                      key=lambda r: r.tlvs.get("sar_segment_seqnum", 0))
        assert [e["state"] for e in w.final(msg_id)] == ["delivered"]
        if concat == "payload":
            assert len(recs) == 1
            got = text.decode(recs[0].tlvs.get("message_payload") or recs[0].short_message, recs[0].data_coding)
        elif concat == "sar":
            assert len({r.tlvs["sar_msg_ref_num"] for r in recs}) == 1
            assert [r.tlvs["sar_segment_seqnum"] for r in recs] == list(range(1, len(recs) + 1))
            got = "".join(text.decode(r.short_message, r.data_coding) for r in recs)
        else:
            infos = [text.split_udh(r.short_message) for r in recs]
            assert all(r.esm_class & 0x40 for r in recs)
            assert len({i.ref for i, _ in infos if i}) == 1 and all(i and i.total == len(recs) for i, _ in infos)
            got = "".join(text.decode(b, recs[0].data_coding) for _, b in sorted(infos, key=lambda x: x[0].seq))
        assert got == body, (concat, msg_id)
        assert w.final(msg_id)[0]["parts"] == len(recs)


async def test_shared_subscription_splits_one_stream(tmp_path: Path, broker: Mosquitto) -> None:
    sim = Simulator(credentials={"acme": "secret", "acme2": "secret"})
    await sim.start()
    try:
        cfgs = [make_config(str(tmp_path / f"e{i}.db"), broker.url, [smsc("a", sim.port, system_id=sid)],
                            mqtt={"share_group": "smppengine"})
                for i, sid in enumerate(("acme", "acme2"))]
        ids = [f"s{i}" for i in range(200)]
        async with Watcher(broker.url) as w, running_engine(cfgs[0]) as e1, running_engine(cfgs[1]) as e2:
            await wait_bound(e1)
            await wait_bound(e2)
            assert e1.link.request_topic == "$share/smppengine/sms/outbound"
            for i in ids:
                await w.publish({"id": i, "to": "+447700900123", "text": f"shared {i}"})
            await w.wait_final(ids)
            assert all([e["state"] for e in w.final(i)] == ["delivered"] for i in ids)
            assert len(sim.ok_submits()) == len(ids)                          # each request sent once
            assert e1.counters["requests"] > 0 and e2.counters["requests"] > 0    # both took a share
            assert e1.counters["requests"] + e2.counters["requests"] == len(ids)
    finally:
        await sim.stop()


async def test_unbind_from_the_smsc_is_survived(tmp_path: Path, broker: Mosquitto, sim: Simulator) -> None:
    cfg = make_config(str(tmp_path / "e.db"), broker.url, [smsc("a", sim.port)])
    async with Watcher(broker.url) as w, running_engine(cfg) as engine:
        await wait_bound(engine)
        await sim.unbind_all()
        await eventually(lambda: engine.clients["a"].reconnects >= 1, what="rebound after unbind")
        await w.publish({"id": "after-unbind", "to": "+447700900123", "text": "still works"})
        await w.wait_final(["after-unbind"])
        assert w.states("after-unbind")[-1] == "delivered"
