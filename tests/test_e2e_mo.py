"""MO messages and hostile SMSCs: inbound text decoded and reassembled; bad PDUs get generic_nack."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

from smppengine.broker import Mosquitto
from smppengine.simulator import Simulator
from smppengine.smpp import pdu as P

from .helpers import FrameReader, Watcher, eventually, make_config, running_engine, smsc, wait_bound


async def test_mo_plain_ucs2_and_concatenated(tmp_path: Path, broker: Mosquitto, sim: Simulator) -> None:
    cfg = make_config(str(tmp_path / "e.db"), broker.url, [smsc("carrier-a", sim.port)])
    async with Watcher(broker.url) as w, running_engine(cfg) as engine:
        await wait_bound(engine)
        await sim.inject_mo("447700900123", "12345", "STOP")
        await sim.inject_mo("447700900124", "12345", "Привет 🎉".encode("utf-16-be"), data_coding=8)
        await sim.inject_mo("447700900125", "12345", "@£€ ok".encode("latin-1", "replace"), data_coding=3)
        # a two-part MO with an 8-bit reference UDH, second part first
        body1, body2 = b"Hello ", b"world"
        await sim.inject_mo("447700900126", "12345", b"\x05\x00\x03\x2a\x02\x02" + body2, esm_class=0x40)
        await sim.inject_mo("447700900126", "12345", b"\x05\x00\x03\x2a\x02\x01" + body1, esm_class=0x40)
        # a two-part MO with sar TLVs
        await sim.inject_mo("447700900127", "12345", b"sar one ", tlvs={
            "sar_msg_ref_num": 7, "sar_total_segments": 2, "sar_segment_seqnum": 1})
        await sim.inject_mo("447700900127", "12345", b"two", tlvs={
            "sar_msg_ref_num": 7, "sar_total_segments": 2, "sar_segment_seqnum": 2})
        await w.wait(lambda: len(w.inbound) >= 5, what="5 MO")
        by_from = {m["from"]: m for m in w.inbound}
        assert by_from["447700900123"]["text"] == "STOP"
        assert by_from["447700900123"]["to"] == "12345" and by_from["447700900123"]["smsc"] == "carrier-a"
        assert by_from["447700900124"]["text"] == "Привет 🎉"
        assert by_from["447700900125"]["text"] == "@£? ok"
        assert by_from["447700900126"]["text"] == "Hello world"
        assert by_from["447700900127"]["text"] == "sar one two"
        assert len(w.inbound) == 5 and all(m["id"] and m["received_at"].endswith("Z") for m in w.inbound)
        assert all(status == 0 for _, status in sim.deliver_resps)
        assert w.events == {}                        # MO never shows up as a status event


async def test_transmitter_receiver_pair_carries_submits_and_receipts(
        tmp_path: Path, broker: Mosquitto, sim: Simulator) -> None:
    cfg = make_config(str(tmp_path / "e.db"), broker.url, [smsc("a", sim.port, bind="transmitter_receiver")])
    async with Watcher(broker.url) as w, running_engine(cfg) as engine:
        await wait_bound(engine)
        await eventually(lambda: engine.clients["a"].bound_sessions == 2, what="tx + rx bound")
        await w.publish({"id": "pair", "to": "+447700900123", "text": "via a tx/rx pair"})
        await w.wait_final(["pair"])
        assert w.states("pair") == ["queued", "submitted", "delivered"]
        await sim.inject_mo("447700900123", "1234", "hi")
        await w.wait(lambda: len(w.inbound) == 1)


async def _hostile_smsc(script: list[bytes], received: list[P.Pdu], done: asyncio.Event) -> asyncio.Server:
    """An SMSC that accepts any bind, then sends raw bytes and records what the engine answers."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        frames = FrameReader(reader)
        bind = await frames.pdu()
        writer.write(P.encode(P.response_for(bind, system_id="evil")))
        for raw in script:
            writer.write(raw)
        await writer.drain()
        try:
            while True:
                received.append(await frames.pdu())
                done.set()
        except (EOFError, P.FrameError, ConnectionError):
            pass

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def test_malformed_pdus_get_generic_nack_not_a_crash(tmp_path: Path, broker: Mosquitto) -> None:
    unknown_cmd = struct.pack(">IIII", 16, 0x00000777, 0, 41)
    truncated_deliver = struct.pack(">IIII", 20, P.DELIVER_SM, 0, 42) + b"\x00\x01\x02\x03"
    enquire = P.encode(P.Pdu("enquire_link", 43))
    received: list[P.Pdu] = []
    done = asyncio.Event()
    server = await _hostile_smsc([unknown_cmd, truncated_deliver, enquire], received, done)
    port = server.sockets[0].getsockname()[1]
    try:
        cfg = make_config(str(tmp_path / "e.db"), broker.url, [smsc("evil", port)])
        async with running_engine(cfg) as engine:
            await wait_bound(engine)
            await eventually(lambda: len(received) >= 3, what="three answers")
            nacks = {p.seq: p for p in received if p.command == "generic_nack"}
            assert nacks[41].status == P.ESME_RINVCMDID
            assert nacks[42].status == P.ESME_RINVCMDLEN
            assert any(p.command == "enquire_link_resp" and p.seq == 43 for p in received)
            assert engine.clients["evil"].bound_sessions == 1          # still bound, nothing crashed
    finally:
        server.close()


async def test_bad_command_length_closes_the_session_and_it_reconnects(tmp_path: Path, broker: Mosquitto) -> None:
    received: list[P.Pdu] = []
    done = asyncio.Event()
    server = await _hostile_smsc([struct.pack(">IIII", 8, P.DELIVER_SM, 0, 1)], received, done)
    port = server.sockets[0].getsockname()[1]
    try:
        cfg = make_config(str(tmp_path / "e.db"), broker.url, [smsc("evil", port)])
        async with running_engine(cfg) as engine:
            await eventually(lambda: engine.clients["evil"].reconnects >= 1, timeout=10, what="reconnect")
    finally:
        server.close()


async def test_enquire_link_both_ways_and_half_open_detection(tmp_path: Path, broker: Mosquitto) -> None:
    sim = Simulator(credentials={"acme": "secret"}, enquire_link_s=0.2)
    await sim.start()
    received: list[P.Pdu] = []
    done = asyncio.Event()
    silent = await _hostile_smsc([], received, done)      # binds, then never answers anything
    try:
        cfg = make_config(str(tmp_path / "e.db"), broker.url, [
            smsc("a", sim.port, enquire_link_s=0.2), smsc("mute", silent.sockets[0].getsockname()[1],
                                                         enquire_link_s=0.2, response_timeout_s=0.3)])
        async with running_engine(cfg) as engine:
            await eventually(lambda: sim.enquire_link_resps_received >= 2 and sim.enquire_links_received >= 2,
                             timeout=10, what="enquire_link answered both ways")
            await eventually(lambda: engine.clients["mute"].reconnects >= 1, timeout=10,
                             what="the half-open session closed and reconnected")
            assert any(p.command == "enquire_link" for p in received)
            assert engine.clients["a"].reconnects == 0
    finally:
        silent.close()
        await sim.stop()
