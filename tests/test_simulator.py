"""The SMSC simulator, driven by a tiny SMPP client on asyncio streams (smppengine.smpp.pdu)."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest

from smppengine.simulator import (
    NoReceiverError,
    SimOptions,
    Simulator,
    parse_sim_args,
    run_simulator_cli,
    start_control,
)
from smppengine.smpp.pdu import Pdu, encode, next_seq

from .helpers import FrameReader

ESME_RINVBNDSTS = 0x04
ESME_RINVPASWD = 0x0E
ESME_RINVDSTADR = 0x0B
ESME_RTHROTTLED = 0x58
ESME_RINVCMDID = 0x03

T = 5.0  # seconds: the longest any single step may take


class Client:
    """A minimal ESME: bind, send, receive; no background tasks."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.frames = FrameReader(reader)
        self.seq = 0

    @classmethod
    async def connect(cls, port: int) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass

    async def send(self, command: str, *, seq: int | None = None, status: int = 0, **params: Any) -> int:
        if seq is None:
            self.seq = next_seq(self.seq)
            seq = self.seq
        self.writer.write(encode(Pdu(command, seq, status, params)))
        await self.writer.drain()
        return seq

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def recv(self, wait: float = T) -> Pdu:
        async with asyncio.timeout(wait):
            return await self.frames.pdu()

    async def bind(self, kind: str = "transceiver", system_id: str = "acme", password: str = "secret") -> Pdu:
        seq = await self.send(f"bind_{kind}", system_id=system_id, password=password, interface_version=0x34)
        resp = await self.recv()
        assert resp.command == f"bind_{kind}_resp" and resp.seq == seq
        return resp

    async def submit(self, to: str = "447700900123", text: bytes = b"hello world", rd: int = 1, **kw: Any) -> int:
        params: dict[str, Any] = {
            "source_addr_ton": 5,
            "source_addr_npi": 0,
            "source_addr": "ACME",
            "dest_addr_ton": 1,
            "dest_addr_npi": 1,
            "destination_addr": to,
            "registered_delivery": rd,
            "short_message": text,
        }
        params.update(kw)
        return await self.send("submit_sm", **params)

    async def submit_and_resp(self, **kw: Any) -> Pdu:
        seq = await self.submit(**kw)
        resp = await self.recv()
        assert resp.command == "submit_sm_resp" and resp.seq == seq, resp
        return resp


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    s = Simulator(credentials={"acme": "secret", "other": "pw"})
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


@pytest.fixture
async def client(sim: Simulator) -> AsyncIterator[Client]:
    c = await Client.connect(sim.port)
    try:
        yield c
    finally:
        await c.close()


# --------------------------------------------------------------------------- bind


async def test_bind_ok_and_bad_password(sim: Simulator, client: Client) -> None:
    resp = await client.bind()
    assert resp.status == 0
    assert resp.params["system_id"] == "sim"
    assert sim.binds == 1 and sim.bound_sessions == 1

    bad = await Client.connect(sim.port)
    try:
        resp = await bad.bind(password="wrong")
        assert resp.status == ESME_RINVPASWD
        resp = await bad.bind(system_id="nobody", password="secret")
        assert resp.status == ESME_RINVPASWD
    finally:
        await bad.close()
    assert sim.bind_failures == 2
    assert sim.binds == 1 and sim.bound_sessions == 1


async def test_refuse_binds_knob(sim: Simulator, client: Client) -> None:
    sim.refuse_binds(True)
    assert (await client.bind()).status == ESME_RINVPASWD
    sim.refuse_binds(False)
    assert (await client.bind()).status == 0


async def test_submit_requires_transmitter_bind(sim: Simulator, client: Client) -> None:
    resp = await client.submit_and_resp()  # not bound at all
    assert resp.status == ESME_RINVBNDSTS
    await client.bind("receiver")
    resp = await client.submit_and_resp()
    assert resp.status == ESME_RINVBNDSTS
    assert len(sim.submits) == 2 and sim.ok_submits() == []
    assert all(r.status == ESME_RINVBNDSTS for r in sim.submits)


# --------------------------------------------------------------------------- submit


async def test_submit_ids_hex_then_dec(sim: Simulator, client: Client) -> None:
    await client.bind("transmitter")
    r1 = await client.submit_and_resp(rd=0)
    r2 = await client.submit_and_resp(rd=0, text=b"second")
    id1, id2 = r1.params["message_id"], r2.params["message_id"]
    assert r1.status == 0 and r2.status == 0
    assert id1 != id2
    assert int(id2, 16) == int(id1, 16) + 1
    assert any(c in "abcdef" for c in id1)  # really hex (time-based start)
    sim.id_format = "dec"
    r3 = await client.submit_and_resp(rd=0)
    assert r3.params["message_id"].isdigit()
    assert int(r3.params["message_id"]) == int(id2, 16) + 1

    rec = sim.submits[0]
    assert rec.system_id == "acme" and rec.message_id == id1 and rec.status == 0
    assert rec.destination_addr == "447700900123" and rec.dest_addr_ton == 1 and rec.dest_addr_npi == 1
    assert rec.source_addr == "ACME" and rec.source_addr_ton == 5
    assert rec.short_message == b"hello world"
    assert [r.message_id for r in sim.ok_submits()] == [id1, id2, r3.params["message_id"]]


async def test_submit_records_tlvs(sim: Simulator, client: Client) -> None:
    await client.bind()
    await client.submit_and_resp(rd=0, sar_msg_ref_num=7, sar_total_segments=2, sar_segment_seqnum=1)
    assert sim.submits[0].tlvs == {"sar_msg_ref_num": 7, "sar_total_segments": 2, "sar_segment_seqnum": 1}


async def test_dec_id_format_constructor() -> None:
    async with Simulator(id_format="dec", first_message_id=0xABC) as s:
        c = await Client.connect(s.port)
        try:
            await c.bind()
            resp = await c.submit_and_resp(rd=0)
            assert resp.params["message_id"] == str(0xABC)
        finally:
            await c.close()


# --------------------------------------------------------------------------- receipts


async def test_receipt_has_id_stat_and_tlvs(sim: Simulator, client: Client) -> None:
    await client.bind()
    resp = await client.submit_and_resp(text=b"Your code is 123456 - do not share it")
    mid = resp.params["message_id"]
    dlr = await client.recv()
    assert dlr.command == "deliver_sm"
    assert dlr.params["esm_class"] == 0x04
    assert dlr.params["receipted_message_id"] == mid
    assert dlr.params["message_state"] == 2
    text = dlr.params["short_message"].decode()
    assert text.startswith(f"id:{mid} sub:001 dlvrd:001 submit date:")
    assert " stat:DELIVRD err:000 text:Your code is 123456 " in text
    assert text.endswith("text:Your code is 123456 ")  # first 20 characters
    # the receipt comes back from the handset: addresses swapped
    assert dlr.params["source_addr"] == "447700900123" and dlr.params["destination_addr"] == "ACME"
    await client.send("deliver_sm_resp", seq=dlr.seq, message_id="")
    await sim.wait_for(lambda: sim.receipts_acked == 1, T)
    assert sim.deliver_resps == [(dlr.seq, 0)]
    assert sim.pending_receipts() == 0


async def test_receipt_stat_and_decimal_id(sim: Simulator, client: Client) -> None:
    sim.set_receipt(stat="UNDELIV", id_format="dec")
    await client.bind()
    resp = await client.submit_and_resp()
    dlr = await client.recv()
    text = dlr.params["short_message"].decode()
    assert text.startswith(f"id:{int(resp.params['message_id'], 16)} ")
    assert "dlvrd:000" in text and "stat:UNDELIV" in text
    assert dlr.params["message_state"] == 5
    assert dlr.params["receipted_message_id"] == str(int(resp.params["message_id"], 16))


async def test_no_receipt_without_registered_delivery(sim: Simulator, client: Client) -> None:
    await client.bind()
    await client.submit_and_resp(rd=0)
    seq = await client.send("enquire_link")
    nxt = await client.recv()  # the enquire_link_resp, not a receipt
    assert nxt.command == "enquire_link_resp" and nxt.seq == seq
    assert sim.receipts_sent == 0


async def test_receipt_goes_to_receiver_of_same_system_id_and_waits_for_it(sim: Simulator) -> None:
    tx = await Client.connect(sim.port)
    other_rx = await Client.connect(sim.port)
    rx: Client | None = None
    try:
        await tx.bind("transmitter")
        await other_rx.bind("receiver", system_id="other", password="pw")
        resp = await tx.submit_and_resp()
        await sim.wait_for(lambda: sim.pending_receipts() == 1, T)
        assert sim.receipts_sent == 0  # queued: no receiver for "acme" yet
        rx = await Client.connect(sim.port)
        await rx.bind("receiver")
        dlr = await rx.recv()
        assert dlr.params["receipted_message_id"] == resp.params["message_id"]
        await rx.send("deliver_sm_resp", seq=dlr.seq)
        await sim.wait_for(lambda: sim.receipts_acked == 1, T)
        # nothing reached the other system_id's receiver
        seq = await other_rx.send("enquire_link")
        assert (await other_rx.recv()).seq == seq
    finally:
        for c in (tx, other_rx, rx):
            if c is not None:
                await c.close()


async def test_receipt_resent_after_error_and_after_reconnect() -> None:
    async with Simulator(receipt_retry_s=0.05) as s:
        c = await Client.connect(s.port)
        await c.bind()
        resp = await c.submit_and_resp()
        dlr = await c.recv()
        await c.send("deliver_sm_resp", seq=dlr.seq, status=ESME_RTHROTTLED)
        again = await c.recv()  # re-sent after receipt_retry_s
        assert again.command == "deliver_sm" and again.seq != dlr.seq
        assert again.params["receipted_message_id"] == resp.params["message_id"]
        await c.close()  # never answered: the receipt must survive the reconnect
        await s.wait_for(lambda: s.bound_sessions == 0, T)
        c2 = await Client.connect(s.port)
        try:
            await c2.bind()
            third = await c2.recv()
            assert third.params["receipted_message_id"] == resp.params["message_id"]
            await c2.send("deliver_sm_resp", seq=third.seq)
            await s.wait_for(lambda: s.receipts_acked == 1 and s.pending_receipts() == 0, T)
        finally:
            await c2.close()
        assert s.deliver_resps[0] == (dlr.seq, ESME_RTHROTTLED)


async def test_receipt_before_resp_ordering(sim: Simulator, client: Client) -> None:
    await client.bind()
    sim.receipt_before_resp(1)
    seq = await client.submit()
    first = await client.recv()
    assert first.command == "deliver_sm"
    mid = first.params["receipted_message_id"]
    await client.send("deliver_sm_resp", seq=first.seq)
    second = await client.recv()
    assert second.command == "submit_sm_resp" and second.seq == seq
    assert second.params["message_id"] == mid
    # only the next 1: back to normal order
    seq = await client.submit()
    assert (await client.recv()).command == "submit_sm_resp"
    assert (await client.recv()).command == "deliver_sm"


async def test_receipt_delay(sim: Simulator, client: Client) -> None:
    sim.set_receipt(delay=0.2)
    await client.bind()
    loop = asyncio.get_running_loop()
    await client.submit_and_resp()
    t0 = loop.time()
    dlr = await client.recv()
    assert dlr.command == "deliver_sm"
    assert loop.time() - t0 >= 0.15


# --------------------------------------------------------------------------- knobs


async def test_throttle_sliding_window(sim: Simulator, client: Client) -> None:
    await client.bind()
    sim.set_tps_limit(5)
    seqs = [await client.submit(rd=0, text=b"m%d" % i) for i in range(12)]
    statuses = {}
    for _ in seqs:
        p = await client.recv()
        statuses[p.seq] = p.status
    assert [statuses[s] for s in seqs] == [0] * 5 + [ESME_RTHROTTLED] * 7
    assert sim.throttled == 7
    assert len(sim.submits) == 12 and len(sim.ok_submits()) == 5
    sim.set_tps_limit(None)
    assert (await client.submit_and_resp(rd=0)).status == 0


def test_throttle_jitter_tolerance() -> None:
    """tps_jitter shortens the throttle window: 5 submits 0.2 s apart then a 6th 0.95 s after the first is a
    throttle in a strict 1 s window but not with 100 ms of jitter allowed; one 0.85 s after still is."""
    for jitter, at, throttled in ((0.0, 0.95, True), (0.1, 0.95, False), (0.1, 0.85, True)):
        s = Simulator(tps_limit=5, tps_jitter=jitter)
        assert [s._throttle(t) for t in (0.0, 0.2, 0.4, 0.6, 0.8)] == [False] * 5
        assert s._throttle(at) is throttled, (jitter, at)
    with pytest.raises(ValueError, match="tps_jitter"):
        Simulator(tps_jitter=1.0)


async def test_fail_destination_and_fail_next(sim: Simulator, client: Client) -> None:
    await client.bind()
    sim.fail_destination("4400", ESME_RINVDSTADR)
    assert (await client.submit_and_resp(to="4400")).status == ESME_RINVDSTADR
    assert (await client.submit_and_resp(to="4401", rd=0)).status == 0
    sim.fail_next(2, 0x14)
    assert (await client.submit_and_resp(rd=0)).status == 0x14
    assert (await client.submit_and_resp(rd=0)).status == 0x14
    assert (await client.submit_and_resp(rd=0)).status == 0
    assert [r.status for r in sim.submits] == [ESME_RINVDSTADR, 0, 0x14, 0x14, 0]
    assert sim.receipts_sent == 0  # failed submits get no receipt


async def test_drop_responses_and_response_delay(sim: Simulator, client: Client) -> None:
    await client.bind()
    sim.drop_responses(1)
    await client.submit(rd=0)
    seq2 = await client.submit(rd=0)
    resp = await client.recv()
    assert resp.seq == seq2  # the first was swallowed
    assert sim.submits[0].status == -1 and sim.submits[0].message_id == ""
    sim.set_response_delay(0.2)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await client.submit_and_resp(rd=0)
    assert loop.time() - t0 >= 0.15


async def test_duplicates_counted(sim: Simulator, client: Client) -> None:
    await client.bind()
    await client.submit_and_resp(rd=0, text=b"a")
    await client.submit_and_resp(rd=0, text=b"b")
    await client.submit_and_resp(rd=0, text=b"a")
    await client.submit_and_resp(rd=0, text=b"a", to="4499")
    await client.submit_and_resp(rd=0, text=b"b", sar_msg_ref_num=1, sar_total_segments=2, sar_segment_seqnum=1)
    assert sim.duplicates == 1


# --------------------------------------------------------------------------- connections


async def test_drop_connections(sim: Simulator) -> None:
    a, b = await Client.connect(sim.port), await Client.connect(sim.port)
    try:
        await a.bind()
        await b.bind("transmitter")
        assert sim.bound_sessions == 2
        assert await sim.drop_connections() == 2
        assert sim.bound_sessions == 0
        for c in (a, b):
            with pytest.raises((EOFError, ConnectionError, OSError)):
                await c.recv()
        # the server still accepts new sessions
        c = await Client.connect(sim.port)
        try:
            assert (await c.bind()).status == 0
        finally:
            await c.close()
    finally:
        await a.close()
        await b.close()


async def test_unbind_from_client_and_from_smsc(sim: Simulator, client: Client) -> None:
    await client.bind()
    seq = await client.send("unbind")
    resp = await client.recv()
    assert resp.command == "unbind_resp" and resp.seq == seq
    with pytest.raises((EOFError, ConnectionError)):
        await client.recv()
    assert sim.unbinds_received == 1

    c = await Client.connect(sim.port)
    try:
        await c.bind()
        task = asyncio.create_task(sim.unbind_all())
        unbind = await c.recv()
        assert unbind.command == "unbind"
        await c.send("unbind_resp", seq=unbind.seq)
        async with asyncio.timeout(T):
            await task
        assert sim.bound_sessions == 0
    finally:
        await c.close()


async def test_sim_sends_enquire_link() -> None:
    async with Simulator(enquire_link_s=0.05) as s:
        c = await Client.connect(s.port)
        try:
            await c.bind()
            el = await c.recv()
            assert el.command == "enquire_link"
            await c.send("enquire_link_resp", seq=el.seq)
            await s.wait_for(lambda: s.enquire_link_resps_received >= 1, T)
        finally:
            await c.close()


async def test_answers_enquire_link(sim: Simulator, client: Client) -> None:
    seq = await client.send("enquire_link")
    resp = await client.recv()
    assert resp.command == "enquire_link_resp" and resp.seq == seq and resp.status == 0


async def test_malformed_pdus_get_generic_nack(sim: Simulator, client: Client) -> None:
    await client.bind()
    # unknown command id
    await client.send_raw(struct.pack(">IIII", 16, 0x00000099, 0, 77))
    nack = await client.recv()
    assert nack.command == "generic_nack" and nack.seq == 77 and nack.status == ESME_RINVCMDID
    # submit_sm whose body ends in the middle of a C-string
    await client.send_raw(struct.pack(">IIII", 20, 0x00000004, 0, 78) + b"abcd")
    nack = await client.recv()
    assert nack.command == "generic_nack" and nack.seq == 78 and nack.status != 0
    # an unsupported but known request (query_sm)
    seq = await client.send("query_sm", message_id="1", source_addr="ACME")
    nack = await client.recv()
    assert nack.command == "generic_nack" and nack.seq == seq
    # the session still works
    assert (await client.submit_and_resp(rd=0)).status == 0


async def test_bad_frame_length_closes_only_that_session(sim: Simulator, client: Client) -> None:
    other = await Client.connect(sim.port)
    try:
        await other.bind()
        await client.send_raw(struct.pack(">I", 8) + b"\0" * 12)  # command_length < 16
        with pytest.raises((EOFError, ConnectionError)):
            await client.recv()
        assert (await other.submit_and_resp(rd=0)).status == 0
    finally:
        await other.close()


async def test_pdus_cut_anyhow_are_all_answered_and_a_bad_length_closes_after_the_pdus_before_it(
        sim: Simulator, client: Client) -> None:
    await client.bind()
    # ten enquire_links in one write, cut across three writes at odd places
    stream = b"".join(encode(Pdu("enquire_link", 100 + i)) for i in range(10))
    for part in (stream[:7], stream[7:90], stream[90:]):
        await client.send_raw(part)
    assert [(p.command, p.seq) for p in [await client.recv() for _ in range(10)]] == [
        ("enquire_link_resp", 100 + i) for i in range(10)]
    # one write: a whole enquire_link, then a PDU whose command_length is too large: the first is still answered
    await client.send_raw(encode(Pdu("enquire_link", 200)) + struct.pack(">IIII", 0xFFFFFFFF, 4, 0, 201))
    resp = await client.recv()
    assert (resp.command, resp.seq) == ("enquire_link_resp", 200)
    with pytest.raises((EOFError, ConnectionError)):
        await client.recv()
    assert sim.enquire_links_received == 11


# --------------------------------------------------------------------------- MO


async def test_inject_mo(sim: Simulator, client: Client) -> None:
    with pytest.raises(NoReceiverError):
        await sim.inject_mo("447700900123", "12345", "STOP")
    await client.bind()
    task = asyncio.create_task(sim.inject_mo("447700900123", "12345", "STOP @ £5"))
    mo = await client.recv()
    assert mo.command == "deliver_sm"
    assert mo.params["esm_class"] == 0 and mo.params["data_coding"] == 0
    assert mo.params["source_addr"] == "447700900123" and mo.params["destination_addr"] == "12345"
    assert mo.params["short_message"] == b"STOP \x00 \x015"  # GSM 03.38 unpacked
    assert not task.done()  # waits for the deliver_sm_resp
    await client.send("deliver_sm_resp", seq=mo.seq)
    async with asyncio.timeout(T):
        await task
    assert sim.deliver_resps == [(mo.seq, 0)]

    task = asyncio.create_task(sim.inject_mo("447700900123", "12345", "Привет", data_coding=8))
    mo = await client.recv()
    assert mo.params["short_message"].decode("utf-16-be") == "Привет" and mo.params["data_coding"] == 8
    await client.send("deliver_sm_resp", seq=mo.seq)
    async with asyncio.timeout(T):
        await task


# --------------------------------------------------------------------------- control API


async def _http(port: int, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    data = b"" if body is None else json.dumps(body).encode()
    writer.write(
        f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data
    )
    await writer.drain()
    async with asyncio.timeout(T):
        raw = await reader.read()  # the server closes after one response
    writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(payload)


async def test_control_api(sim: Simulator, client: Client) -> None:
    server = await start_control(sim, "127.0.0.1", 0)
    cport = server.sockets[0].getsockname()[1]
    try:
        await client.bind()
        await client.submit_and_resp(rd=0, text=b"\x01\x02")
        status, stats = await _http(cport, "GET", "/stats")
        assert status == 200
        assert stats["submits"] == 1 and stats["ok"] == 1 and stats["bound_sessions"] == 1
        assert stats["binds"] == 1 and stats["throttled"] == 0 and stats["duplicates"] == 0

        status, knobs = await _http(
            cport, "POST", "/knobs", {"tps_limit": 1, "receipt_stat": "EXPIRED", "receipt_delay": 0.5}
        )
        assert status == 200 and knobs["tps_limit"] == 1 and knobs["receipt_stat"] == "EXPIRED"
        assert sim.tps_limit == 1 and sim.receipt_stat == "EXPIRED" and sim.receipt_delay == 0.5
        s1 = await client.submit(rd=0)
        s2 = await client.submit(rd=0)
        resps = {p.seq: p.status for p in [await client.recv(), await client.recv()]}
        assert resps[s2] == ESME_RTHROTTLED  # at most 1 in any 1 s window

        status, body = await _http(cport, "POST", "/knobs", {"tps_limit": None, "refuse_binds": True})
        assert status == 200 and sim.tps_limit is None and body["refuse_binds"] is True
        status, body = await _http(cport, "POST", "/knobs", {"no_such_knob": 1})
        assert status == 400 and "no_such_knob" in body["error"]
        status, body = await _http(cport, "POST", "/knobs", {"receipt_stat": "BOGUS"})
        assert status == 400 and sim.receipt_stat == "EXPIRED"

        status, body = await _http(cport, "GET", "/submits?since=0")
        assert status == 200 and body["next"] == 3 and len(body["submits"]) == 3
        assert body["submits"][0]["short_message"] == "0102"
        assert body["submits"][2]["status"] == ESME_RTHROTTLED and body["submits"][2]["seq"] == s2
        assert resps[s1] == body["submits"][1]["status"]
        status, body = await _http(cport, "GET", "/submits?since=2")
        assert len(body["submits"]) == 1 and body["next"] == 3

        mo_task = asyncio.create_task(_http(cport, "POST", "/mo", {"from": "4477", "to": "123", "text": "HI"}))
        mo = await client.recv()
        assert mo.command == "deliver_sm" and mo.params["short_message"] == b"HI"
        await client.send("deliver_sm_resp", seq=mo.seq)
        status, body = await mo_task
        assert status == 200 and body["ok"] is True

        status, body = await _http(cport, "POST", "/drop")
        assert status == 200 and body["dropped"] == 1
        assert (await _http(cport, "GET", "/nope"))[0] == 404
    finally:
        server.close()
        await server.wait_closed()


# --------------------------------------------------------------------------- load


async def test_many_sessions_pipelined(sim: Simulator) -> None:
    clients = [await Client.connect(sim.port) for _ in range(4)]
    per_client = 500

    async def run(c: Client) -> None:
        await c.bind()
        for i in range(per_client):
            await c.submit(text=b"load %d" % i)
        resps = dlrs = 0
        while resps < per_client or dlrs < per_client:
            p = await c.recv()
            if p.command == "submit_sm_resp":
                assert p.status == 0
                resps += 1
            else:
                assert p.command == "deliver_sm"
                await c.send("deliver_sm_resp", seq=p.seq)
                dlrs += 1

    try:
        async with asyncio.timeout(30):
            await asyncio.gather(*(run(c) for c in clients))
        await sim.wait_for(lambda: sim.receipts_acked == 4 * per_client, T)
        assert len({r.message_id for r in sim.ok_submits()}) == 4 * per_client
    finally:
        for c in clients:
            await c.close()



# --------------------------------------------------------------------------- standalone entry point


def test_parse_sim_args() -> None:
    opts = parse_sim_args(
        ["--port", "2776", "--control-port", "0", "--credentials", "acme:secret", "--tps-limit", "50",
         "--id-format", "dec", "--receipt-stat", "UNDELIV", "--receipt-delay", "0.5", "--enquire-link-s", "5"]
    )
    assert opts.port == 2776 and opts.control_port is None
    kw = opts.simulator_kwargs()
    assert kw["credentials"] == {"acme": "secret"} and kw["tps_limit"] == 50.0 and kw["id_format"] == "dec"
    assert kw["receipt_stat"] == "UNDELIV" and kw["receipt_delay"] == 0.5 and kw["enquire_link_s"] == 5.0
    assert parse_sim_args([]).simulator_kwargs()["credentials"] is None
    opts = parse_sim_args(["--system-id", "x", "--password", "y", "--no-record"])
    assert opts.control_port == 8775
    assert opts.simulator_kwargs()["credentials"] == {"x": "y"}
    assert opts.simulator_kwargs()["record_submits"] is False
    assert parse_sim_args(["--tps-jitter-ms", "100"]).simulator_kwargs()["tps_jitter"] == 0.1
    with pytest.raises(SystemExit):
        parse_sim_args(["--credentials", "no-colon"])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_run_simulator_cli_serves_smpp_and_control_until_cancelled() -> None:
    port, cport = _free_port(), _free_port()
    opts = SimOptions(port=port, control_port=cport, credentials={"acme": "secret"})
    task = asyncio.create_task(run_simulator_cli(opts))
    try:
        async with asyncio.timeout(T):
            while True:  # wait until both listeners accept
                try:
                    status, stats = await _http(cport, "GET", "/stats")
                    break
                except OSError:
                    await asyncio.sleep(0.01)
        assert status == 200 and stats["port"] == port
        c = await Client.connect(port)
        try:
            assert (await c.bind()).status == 0
            assert (await c.submit_and_resp(rd=0)).status == 0
            task.cancel()  # graceful stop: the simulator unbinds its sessions
            unbind = await c.recv()
            assert unbind.command == "unbind"
            await c.send("unbind_resp", seq=unbind.seq)
        finally:
            await c.close()
        with pytest.raises(asyncio.CancelledError):
            async with asyncio.timeout(T):
                await task
    finally:
        task.cancel()
