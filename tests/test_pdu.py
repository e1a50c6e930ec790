"""SMPP 3.4 PDU codec: round trips, spec byte layouts, smpplib equivalence, error mapping, framing."""

from __future__ import annotations

import struct
from typing import Any

import pytest
import smpplib.smpp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smppengine.smpp import fastcodec
from smppengine.smpp import pdu as P
from smppengine.smpp.pdu import (
    FLAG,
    INT,
    OSTR,
    STR,
    FrameError,
    Pdu,
    PduError,
    decode,
    encode,
    generic_nack,
    next_seq,
    response_for,
)


def hdr(length: int, cid: int, status: int, seq: int) -> bytes:
    return struct.pack(">IIII", length, cid, status, seq)


def frame(cid: int, body: bytes, seq: int = 1, status: int = 0) -> bytes:
    return hdr(16 + len(body), cid, status, seq) + body


def tlv(tag: int, value: bytes) -> bytes:
    return struct.pack(">HH", tag, len(value)) + value


class _NoSeq:
    sequence = 0

    def next_sequence(self) -> int:
        return 0


def smpplib_encode(command: str, seq: int, status: int, params: dict[str, Any]) -> bytes:
    p = smpplib.smpp.make_pdu(command, client=_NoSeq())
    for k, v in params.items():
        setattr(p, k, v)
    p.sequence = seq
    p.status = status
    return p.generate()


def smpplib_decode(raw: bytes) -> tuple[str, int, int, dict[str, Any]]:
    # need_sequence=False breaks on response classes (they pass it themselves): give a dummy client instead
    p = smpplib.smpp.parse_pdu(raw, client=_NoSeq(), allow_unknown_opt_params=True)
    spec = P.SPECS[p.command]
    out: dict[str, Any] = {}
    for name, f in spec.by_name.items():
        if name == "sm_length":
            continue
        v = getattr(p, name, None)
        if v is None:
            continue
        out[name] = v.decode("latin-1") if f.kind == STR else v
    if "sm_length" in spec.by_name and getattr(p, "sm_length", None) == 0 and "short_message" not in out:
        # smpplib stops before a zero-length short_message at the end of the body; we report b"".
        out["short_message"] = b""
    return p.command, p.sequence, p.status, out


SUBMIT_DEFAULTS: dict[str, Any] = {
    "service_type": "",
    "source_addr_ton": 0,
    "source_addr_npi": 0,
    "source_addr": "",
    "dest_addr_ton": 0,
    "dest_addr_npi": 0,
    "destination_addr": "",
    "esm_class": 0,
    "protocol_id": 0,
    "priority_flag": 0,
    "schedule_delivery_time": "",
    "validity_period": "",
    "registered_delivery": 0,
    "replace_if_present_flag": 0,
    "data_coding": 0,
    "sm_default_msg_id": 0,
    "short_message": b"",
}
BIND_DEFAULTS: dict[str, Any] = {
    "system_id": "",
    "password": "",
    "system_type": "",
    "interface_version": 0x34,
    "addr_ton": 0,
    "addr_npi": 0,
    "address_range": "",
}

ROUND_TRIPS: list[tuple[Pdu, dict[str, Any]]] = [
    (Pdu("bind_transmitter", 1, 0, {"system_id": "acme", "password": "secret"}), BIND_DEFAULTS),
    (Pdu("bind_receiver", 2, 0, {"system_id": "acme", "password": "pw", "system_type": "SMPP"}), BIND_DEFAULTS),
    (
        Pdu(
            "bind_transceiver",
            3,
            0,
            {
                "system_id": "acme",
                "password": "secret",
                "system_type": "VMA",
                "interface_version": 0x34,
                "addr_ton": 1,
                "addr_npi": 1,
                "address_range": "^44",
            },
        ),
        BIND_DEFAULTS,
    ),
    (Pdu("bind_transmitter_resp", 1, 0, {"system_id": "SMSC"}), {}),
    (Pdu("bind_receiver_resp", 2, 0, {"system_id": "SMSC", "sc_interface_version": 0x34}), {}),
    (Pdu("bind_transceiver_resp", 3, 0, {"system_id": "SMSC", "sc_interface_version": 0x34}), {}),
    (Pdu("bind_transceiver_resp", 3, 0x0E, {"system_id": ""}), {}),
    (Pdu("unbind", 4), {}),
    (Pdu("unbind_resp", 4), {}),
    (Pdu("enquire_link", 0x7FFFFFFF), {}),
    (Pdu("enquire_link_resp", 0x7FFFFFFF), {}),
    (Pdu("generic_nack", 9, P.ESME_RINVCMDID), {}),
    (Pdu("generic_nack", 0, P.ESME_RINVCMDLEN), {}),
    (
        Pdu(
            "submit_sm",
            10,
            0,
            {
                "source_addr_ton": 5,
                "source_addr": "ACME",
                "dest_addr_ton": 1,
                "dest_addr_npi": 1,
                "destination_addr": "447700900123",
                "registered_delivery": 1,
                "validity_period": "000000010000000R",
                "short_message": b"Your code is 123456",
            },
        ),
        SUBMIT_DEFAULTS,
    ),
    (
        Pdu(
            "submit_sm",
            11,
            0,
            {
                "destination_addr": "447700900123",
                "esm_class": 0x40,
                "data_coding": 8,
                "priority_flag": 3,
                "short_message": b"\x05\x00\x03\x01\x02\x01" + "é€".encode("utf-16-be"),
                "user_message_reference": 0xBEEF,
            },
        ),
        SUBMIT_DEFAULTS,
    ),
    (
        Pdu(
            "submit_sm",
            12,
            0,
            {
                "destination_addr": "447700900123",
                "short_message": b"part one",
                "sar_msg_ref_num": 0x1234,
                "sar_total_segments": 3,
                "sar_segment_seqnum": 1,
            },
        ),
        SUBMIT_DEFAULTS,
    ),
    (
        Pdu("submit_sm", 13, 0, {"destination_addr": "1", "message_payload": bytes(range(256)) * 4}),
        SUBMIT_DEFAULTS,
    ),
    (Pdu("submit_sm_resp", 10, 0, {"message_id": "7f3a01"}), {}),
    (Pdu("submit_sm_resp", 10, P.ESME_RTHROTTLED, {"message_id": ""}), {}),
    (
        Pdu(
            "deliver_sm",
            20,
            0,
            {
                "source_addr_ton": 1,
                "source_addr_npi": 1,
                "source_addr": "447700900123",
                "destination_addr": "12345",
                "short_message": b"STOP",
            },
        ),
        SUBMIT_DEFAULTS,
    ),
    (
        Pdu(
            "deliver_sm",
            21,
            0,
            {
                "source_addr": "447700900123",
                "destination_addr": "ACME",
                "esm_class": 0x04,
                "short_message": b"id:7f3a01 sub:001 dlvrd:001 submit date:2611241200 done date:2611241200 "
                b"stat:DELIVRD err:000 text:Your code",
                "receipted_message_id": "7f3a01",
                "message_state": 2,
                "network_error_code": b"\x03\x00\x00",
            },
        ),
        SUBMIT_DEFAULTS,
    ),
    (
        Pdu(
            "deliver_sm",
            22,
            0,
            {
                "destination_addr": "12345",
                "data_coding": 8,
                "message_payload": "long MO ".encode("utf-16-be") * 40,
                "sar_msg_ref_num": 77,
                "sar_total_segments": 2,
                "sar_segment_seqnum": 2,
                "user_message_reference": 1,
            },
        ),
        SUBMIT_DEFAULTS,
    ),
    (Pdu("deliver_sm_resp", 21, 0, {"message_id": ""}), {}),
    (Pdu("deliver_sm_resp", 21, P.ESME_RSYSERR, {}), {}),
    (Pdu("outbind", 1, 0, {"system_id": "smsc", "password": "pw"}), {}),
    (Pdu("query_sm", 5, 0, {"message_id": "abc", "source_addr": "ACME"}), {}),
    (Pdu("query_sm_resp", 5, 0, {"message_id": "abc", "final_date": "", "message_state": 2, "error_code": 0}), {}),
]


@pytest.mark.parametrize("pdu,defaults", ROUND_TRIPS, ids=lambda x: getattr(x, "command", ""))
def test_round_trip(pdu: Pdu, defaults: dict[str, Any]) -> None:
    raw = encode(pdu)
    assert struct.unpack(">IIII", raw[:16]) == (len(raw), pdu.command_id, pdu.status, pdu.seq)
    back = decode(raw)
    expected = dict(defaults)
    expected.update(pdu.params)
    if pdu.command == "query_sm":
        expected.setdefault("source_addr_ton", 0)
        expected.setdefault("source_addr_npi", 0)
    if pdu.command == "deliver_sm_resp" and not pdu.params:
        expected = {"message_id": ""}  # smpplib always writes the message_id NUL
    assert back == Pdu(pdu.command, pdu.seq, pdu.status, expected)
    # encode(decode(x)) == x: decoded params are fit for re-encoding (unlike smpplib's)
    assert encode(back) == raw


@pytest.mark.parametrize("pdu,defaults", ROUND_TRIPS, ids=lambda x: getattr(x, "command", ""))
def test_round_trip_matches_smpplib(pdu: Pdu, defaults: dict[str, Any]) -> None:
    if pdu.command == "outbind":
        return
    raw = encode(pdu)
    assert raw == smpplib_encode(pdu.command, pdu.seq, pdu.status, dict(pdu.params))
    command, seq, status, params = smpplib_decode(raw)
    assert decode(raw) == Pdu(command, seq, status, params)


# --- byte layouts built by hand from SMPP 3.4 section 4 ------------------------------------------------------


def test_enquire_link_bytes() -> None:
    assert encode(Pdu("enquire_link", 1)) == bytes.fromhex("00000010 00000015 00000000 00000001")
    assert encode(Pdu("enquire_link_resp", 0x12345678)) == bytes.fromhex("00000010 80000015 00000000 12345678")
    assert encode(generic_nack(7, P.ESME_RINVCMDID)) == bytes.fromhex("00000010 80000000 00000003 00000007")
    assert encode(Pdu("unbind", 2)) == bytes.fromhex("00000010 00000006 00000000 00000002")


def test_bind_transceiver_bytes() -> None:
    body = (
        b"acme\0"  # system_id
        b"secret\0"  # password
        b"\0"  # system_type
        b"\x34"  # interface_version
        b"\x01\x01"  # addr_ton, addr_npi
        b"\0"  # address_range
    )
    raw = frame(P.BIND_TRANSCEIVER, body, seq=1)
    assert raw[:4] == b"\x00\x00\x00\x21"
    pdu = Pdu("bind_transceiver", 1, 0, {"system_id": "acme", "password": "secret", "addr_ton": 1, "addr_npi": 1})
    assert encode(pdu) == raw
    assert decode(raw).params["system_id"] == "acme"


def test_bind_resp_with_sc_interface_version_bytes() -> None:
    raw = frame(P.BIND_TRANSCEIVER_RESP, b"SMSC\0" + tlv(0x0210, b"\x34"), seq=1)
    assert encode(Pdu("bind_transceiver_resp", 1, 0, {"system_id": "SMSC", "sc_interface_version": 0x34})) == raw
    assert decode(raw) == Pdu("bind_transceiver_resp", 1, 0, {"system_id": "SMSC", "sc_interface_version": 0x34})


def test_submit_sm_bytes() -> None:
    body = (
        b"\0"  # service_type
        b"\x05\x00ACME\0"  # source ton, npi, addr
        b"\x01\x01447700900123\0"  # dest ton, npi, addr
        b"\x00\x00\x01"  # esm_class, protocol_id, priority_flag
        b"\0\0"  # schedule_delivery_time, validity_period
        b"\x01\x00\x00\x00"  # registered_delivery, replace_if_present, data_coding, sm_default_msg_id
        b"\x05hello"  # sm_length, short_message
        + tlv(0x020C, b"\x12\x34")  # sar_msg_ref_num
        + tlv(0x020E, b"\x02")  # sar_total_segments
        + tlv(0x020F, b"\x01")  # sar_segment_seqnum
    )
    raw = frame(P.SUBMIT_SM, body, seq=0x0102)
    params = {
        "source_addr_ton": 5,
        "source_addr": "ACME",
        "dest_addr_ton": 1,
        "dest_addr_npi": 1,
        "destination_addr": "447700900123",
        "priority_flag": 1,
        "registered_delivery": 1,
        "short_message": b"hello",
        "sar_msg_ref_num": 0x1234,
        "sar_total_segments": 2,
        "sar_segment_seqnum": 1,
    }
    assert encode(Pdu("submit_sm", 0x0102, 0, params)) == raw
    assert decode(raw).params == SUBMIT_DEFAULTS | params


def test_submit_sm_resp_bytes() -> None:
    raw = bytes.fromhex("00000017 80000004 00000000 0000002a") + b"7f3a01\0"
    assert encode(Pdu("submit_sm_resp", 42, 0, {"message_id": "7f3a01"})) == raw
    assert decode(raw) == Pdu("submit_sm_resp", 42, 0, {"message_id": "7f3a01"})


def test_error_submit_sm_resp_with_empty_body() -> None:
    # SMPP 3.4 5.1.3: the body of an error response may be omitted.
    raw = bytes.fromhex("00000010 80000004 00000058 0000002a")
    assert decode(raw) == Pdu("submit_sm_resp", 42, P.ESME_RTHROTTLED, {})


def test_deliver_sm_receipt_bytes() -> None:
    text = b"id:7f3a01 sub:001 dlvrd:001 submit date:2611241200 done date:2611241200 stat:DELIVRD err:000 text:x"
    body = (
        b"\0"
        b"\x01\x01447700900123\0"
        b"\x05\x00ACME\0"
        b"\x04\x00\x00"  # esm_class = SMSC delivery receipt
        b"\0\0"
        b"\x00\x00\x00\x00"
        + bytes([len(text)])
        + text
        # TLVs in smpplib's order: network_error_code, message_state, receipted_message_id
        + tlv(0x0423, b"\x03\x00\x00")
        + tlv(0x0427, b"\x02")
        + tlv(0x001E, b"7f3a01\0")
    )
    raw = frame(P.DELIVER_SM, body, seq=77)
    pdu = decode(raw)
    assert pdu.command == "deliver_sm" and pdu.seq == 77 and not pdu.is_response
    assert pdu.params["esm_class"] == 4
    assert pdu.params["short_message"] == text
    assert pdu.params["receipted_message_id"] == "7f3a01"
    assert pdu.params["message_state"] == 2
    assert pdu.params["network_error_code"] == b"\x03\x00\x00"
    assert encode(pdu) == raw
    assert encode(response_for(pdu)) == bytes.fromhex("00000011 80000005 00000000 0000004d 00")


def test_deliver_sm_tlv_variants_from_real_smscs() -> None:
    base = b"\0\x01\x01447700900123\0\x05\x00ACME\0\x04\x00\x00\0\0\x00\x00\x00\x00\x00"
    # receipted_message_id without its NUL, a vendor TLV (0x1400) and sar/payload TLVs, in any order
    body = (
        base
        + tlv(0x1400, b"vendor stuff")
        + tlv(0x001E, b"12345")
        + tlv(0x0424, b"id:12345 stat:DELIVRD")
        + tlv(0x020C, b"\x00\x07")
        + tlv(0x020E, b"\x02")
        + tlv(0x020F, b"\x01")
        + tlv(0x0427, b"\x02")
        + tlv(0xFFFF, b"")
    )
    p = decode(frame(P.DELIVER_SM, body, seq=5)).params
    assert p["receipted_message_id"] == "12345"
    assert p["message_payload"] == b"id:12345 stat:DELIVRD"
    assert (p["sar_msg_ref_num"], p["sar_total_segments"], p["sar_segment_seqnum"]) == (7, 2, 1)
    assert p["message_state"] == 2
    assert p["short_message"] == b""
    assert p["other_tlvs"] == {0x1400: b"vendor stuff", 0xFFFF: b""}


def test_known_tlv_foreign_to_command_is_kept_raw() -> None:
    # smpplib raises KeyError for this; receipted_message_id does not belong to enquire_link/submit_sm_resp:
    # such TLVs (and vendor ones) are kept, raw, in other_tlvs, and re-encode to the same bytes.
    raw = frame(P.ENQUIRE_LINK, tlv(0x001E, b"x\0"), seq=3)
    assert decode(raw) == Pdu("enquire_link", 3, 0, {"other_tlvs": {0x001E: b"x\0"}})
    assert encode(decode(raw)) == raw
    raw = frame(P.SUBMIT_SM_RESP, b"abc\0" + tlv(0x0427, b"\x02") + tlv(0x1501, b"v"), seq=3)
    assert decode(raw) == Pdu("submit_sm_resp", 3, 0, {"message_id": "abc",
                                                       "other_tlvs": {0x0427: b"\x02", 0x1501: b"v"}})
    assert encode(decode(raw)) == raw


def test_other_tlvs_are_sent_after_the_standard_ones() -> None:
    params = dict(SUBMIT_DEFAULTS, destination_addr="447700900123", short_message=b"hi",
                  sar_msg_ref_num=7, other_tlvs={0x1400: b"1101", 0x1401: b"", 0x1402: b"\x00\x01"})
    raw = encode(Pdu("submit_sm", 9, 0, params))
    plain = {k: v for k, v in params.items() if k != "other_tlvs"}
    expected = smpplib_encode("submit_sm", 9, 0, plain)
    extra = tlv(0x1400, b"1101") + tlv(0x1401, b"") + tlv(0x1402, b"\x00\x01")
    assert raw == struct.pack(">I", len(expected) + len(extra)) + expected[4:] + extra
    assert decode(raw).params == params
    # the generic (smpplib) path and the outbind encoder carry them too
    q = encode(Pdu("query_sm", 2, 0, {"message_id": "1", "other_tlvs": {0x2000: b"v"}}))
    assert decode(q).params["other_tlvs"] == {0x2000: b"v"}
    with pytest.raises(ValueError, match="other_tlvs"):
        encode(Pdu("submit_sm", 1, 0, {"other_tlvs": {0x10000: b""}}))
    with pytest.raises(ValueError, match="other_tlvs"):
        encode(Pdu("submit_sm", 1, 0, {"other_tlvs": {0x1400: "text"}}))
    with pytest.raises(ValueError, match="65535"):
        encode(Pdu("submit_sm", 1, 0, {"other_tlvs": {0x1400: bytes(65536)}}))


# --- decode errors ---------------------------------------------------------------------------------------------


def _err(raw: bytes) -> PduError:
    with pytest.raises(PduError) as ei:
        decode(raw)
    return ei.value


def test_unknown_command_id() -> None:
    e = _err(frame(0x00000099, b"", seq=1234))
    assert (e.status, e.seq, e.command_id) == (P.ESME_RINVCMDID, 1234, 0x99)
    e = _err(frame(0x80000042, b"xx", seq=5))
    assert (e.status, e.seq) == (P.ESME_RINVCMDID, 5)
    # known to SMPP 3.4 but not supported by this engine
    assert _err(frame(P.REPLACE_SM, b"", seq=6)).status == P.ESME_RINVCMDID


def test_short_or_inconsistent_frames() -> None:
    assert _err(b"").status == P.ESME_RINVCMDLEN
    assert _err(b"\x00\x00\x00\x10\x00\x00").status == P.ESME_RINVCMDLEN
    e = _err(hdr(20, P.ENQUIRE_LINK, 0, 9))  # says 20, is 16
    assert (e.status, e.seq) == (P.ESME_RINVCMDLEN, 9)
    assert _err(hdr(16, P.ENQUIRE_LINK, 0, 9) + b"x").status == P.ESME_RINVCMDLEN


def test_truncated_bodies() -> None:
    good = encode(ROUND_TRIPS[13][0])  # a submit_sm
    assert decode(good)
    for cut in range(16, len(good)):
        short = struct.pack(">I", cut) + good[4:cut]
        with pytest.raises(PduError) as ei:
            decode(short)
        assert ei.value.status == P.ESME_RINVCMDLEN
        assert ei.value.seq == 10


def test_sm_length_past_end() -> None:
    body = b"\0" * 16 + b"\x05abc"  # sm_length 5, only 3 octets follow
    assert _err(frame(P.SUBMIT_SM, body, seq=3)).status == P.ESME_RINVCMDLEN


def test_c_string_without_nul_within_max() -> None:
    # system_id max 16 including the NUL
    assert _err(frame(P.BIND_TRANSCEIVER, b"A" * 16 + b"\0pw\0\0\x34\0\0\0", seq=8)).seq == 8
    # 15 chars + NUL is fine
    assert decode(frame(P.BIND_TRANSCEIVER, b"A" * 15 + b"\0pw\0\0\x34\0\0\0")).params["system_id"] == "A" * 15
    # message_id with no NUL at all
    assert _err(frame(P.SUBMIT_SM_RESP, b"abc", seq=8)).status == P.ESME_RINVCMDLEN
    # destination_addr 21 octets incl. NUL max
    body = b"\0\0\0ACME\0\0\0" + b"1" * 21 + b"\0" + b"\0" * 9
    assert _err(frame(P.SUBMIT_SM, body)).status == P.ESME_RINVCMDLEN


def test_bad_tlv_lengths() -> None:
    resp = b"abc\0"
    base = b"\0" * 16 + b"\x00"  # 16 one-octet mandatory fields, then sm_length = 0
    for raw in (
        frame(P.SUBMIT_SM_RESP, resp + b"\x04"),  # 1 octet of TLV header
        frame(P.SUBMIT_SM_RESP, resp + b"\x04\x27\x00"),  # 3 octets of TLV header
        frame(P.SUBMIT_SM_RESP, resp + b"\x04\x27\x00\x05\x01"),  # value overruns
        frame(P.DELIVER_SM, base + b"\x04\x27\x00\x00"),  # message_state of length 0
        frame(P.DELIVER_SM, base + tlv(0x0427, b"\x00" * 5)),  # message_state of length 5
        frame(P.DELIVER_SM, base + tlv(0x001E, b"x\0") + b"\x04\x24\xff\xff"),
    ):
        assert _err(raw).status == P.ESME_RINVCMDLEN


def test_int_tlv_with_nonstandard_length_is_tolerated() -> None:
    base = b"\0" * 16 + b"\x00"  # 16 one-octet mandatory fields, then sm_length = 0
    p = decode(frame(P.DELIVER_SM, base + tlv(0x0427, b"\x00\x02") + tlv(0x020C, b"\x09"))).params
    assert p["message_state"] == 2 and p["sar_msg_ref_num"] == 9


# --- encode validation ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pdu",
    [
        Pdu("no_such_command", 1),
        Pdu("replace_sm", 1),
        Pdu("enquire_link", -1),
        Pdu("enquire_link", 1 << 32),
        Pdu("generic_nack", 1, -1),
        Pdu("submit_sm", 1, 0, {"destination": "x"}),
        Pdu("submit_sm", 1, 0, {"destination_addr": "1" * 21}),
        Pdu("submit_sm", 1, 0, {"destination_addr": b"123"}),
        Pdu("submit_sm", 1, 0, {"destination_addr": "12\x003"}),
        Pdu("submit_sm", 1, 0, {"source_addr": "€"}),
        Pdu("submit_sm", 1, 0, {"esm_class": 256}),
        Pdu("submit_sm", 1, 0, {"esm_class": -1}),
        Pdu("submit_sm", 1, 0, {"esm_class": "4"}),
        Pdu("submit_sm", 1, 0, {"short_message": "text"}),
        Pdu("submit_sm", 1, 0, {"short_message": b"x" * 255}),
        Pdu("submit_sm", 1, 0, {"short_message": b"x", "message_payload": b"y"}),
        Pdu("submit_sm", 1, 0, {"message_payload": b"y" * 65536}),
        Pdu("submit_sm", 1, 0, {"sar_msg_ref_num": 65536}),
        Pdu("submit_sm", 1, 0, {"alert_on_message_delivery": True}),
        Pdu("deliver_sm", 1, 0, {"receipted_message_id": "é"}),
        Pdu("deliver_sm", 1, 0, {"receipted_message_id": "x" * 65}),
        Pdu("bind_transceiver", 1, 0, {"system_id": "x" * 16}),
        Pdu("bind_transceiver", 1, 0, {"password": "x" * 9}),
    ],
    ids=lambda p: f"{p.command}-{sorted(p.params)}",
)
def test_encode_rejects(pdu: Pdu) -> None:
    with pytest.raises(ValueError):
        encode(pdu)


def test_latin1_c_string_round_trips() -> None:
    pdu = Pdu("submit_sm", 1, 0, {"source_addr": "Café", "destination_addr": "1"})
    assert decode(encode(pdu)).params["source_addr"] == "Café"


# --- helpers -------------------------------------------------------------------------------------------------


def test_response_for() -> None:
    sub = Pdu("submit_sm", 99, 0, {"destination_addr": "1"})
    assert response_for(sub, message_id="abc") == Pdu("submit_sm_resp", 99, 0, {"message_id": "abc"})
    assert response_for(sub, P.ESME_RTHROTTLED) == Pdu("submit_sm_resp", 99, P.ESME_RTHROTTLED, {})
    assert response_for(Pdu("enquire_link", 5)).command == "enquire_link_resp"
    assert response_for(Pdu("bind_transceiver", 1), system_id="smsc").command == "bind_transceiver_resp"
    assert response_for(Pdu("unbind", 6)) == Pdu("unbind_resp", 6)
    assert response_for(Pdu("deliver_sm", 7)) == Pdu("deliver_sm_resp", 7)
    for no_resp in ("submit_sm_resp", "generic_nack", "outbind"):
        with pytest.raises(ValueError):
            response_for(Pdu(no_resp, 1))


def test_generic_nack_and_properties() -> None:
    n = generic_nack(5, P.ESME_RINVCMDLEN)
    assert n == Pdu("generic_nack", 5, P.ESME_RINVCMDLEN, {})
    assert n.command_id == 0x80000000 and n.is_response
    assert Pdu("submit_sm", 1).command_id == P.SUBMIT_SM == 4 and not Pdu("submit_sm", 1).is_response
    assert Pdu("deliver_sm_resp", 1).command_id == P.DELIVER_SM_RESP == 0x80000005
    with pytest.raises(ValueError):
        _ = Pdu("bogus", 1).command_id


def test_next_seq_wraps() -> None:
    assert next_seq(1) == 2
    assert next_seq(0) == 1
    assert next_seq(0x7FFFFFFE) == 0x7FFFFFFF
    assert next_seq(0x7FFFFFFF) == 1
    seq = 0x7FFFFFFD
    seen = []
    for _ in range(4):
        seq = next_seq(seq)
        seen.append(seq)
    assert seen == [0x7FFFFFFE, 0x7FFFFFFF, 1, 2]


def test_constants() -> None:
    assert (P.ESME_ROK, P.ESME_RINVMSGLEN, P.ESME_RINVCMDLEN, P.ESME_RINVCMDID) == (0, 1, 2, 3)
    assert (P.ESME_RSYSERR, P.ESME_RUNKNOWNERR) == (8, 0xFF)
    assert P.MAX_PDU_LEN == 65536 and P.HEADER_LEN == 16
    for name, cid in P.COMMAND_IDS.items():
        assert getattr(P, name.upper()) == cid


# --- framing -------------------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=300), min_size=0, max_size=12), st.data())
def test_frame_splitter_cuts_any_chunking_into_the_same_pdus(bodies: list[bytes], data: st.DataObject) -> None:
    frames = [frame(0x80000004, b, seq=i + 1) for i, b in enumerate(bodies)]
    stream = b"".join(frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    split = P.FrameSplitter()
    out = [f for c in chunks for f in split.feed(c)]
    assert out == frames and split.error is None
    with pytest.raises(EOFError):
        split.eof()                           # ended between PDUs


def test_frame_splitter_eof_mid_frame_and_bad_length() -> None:
    a = encode(Pdu("submit_sm_resp", 2, 0, {"message_id": "xyz"}))
    for cut in range(1, len(a)):
        split = P.FrameSplitter()
        assert split.feed(a[:cut]) == []
        with pytest.raises(FrameError, match="EOF after"):
            split.eof()
    for length in (0, 1, 4, 15, P.MAX_PDU_LEN + 1, 0xFFFFFFFF):
        split = P.FrameSplitter()
        # the PDU before the bad length still comes out; then the stream is unusable
        assert split.feed(a + struct.pack(">I", length) + b"\x00" * 12 + a) == [a]
        assert isinstance(split.error, FrameError) and split.feed(a) == []
    big = encode(Pdu("submit_sm", 1, 0, {"message_payload": b"x" * 1000}))
    assert P.FrameSplitter().feed(big) == [big]
    assert P.FrameSplitter(max_len=500).feed(big) == []
    exact = frame(0x12345, b"\0" * (P.MAX_PDU_LEN - 16))    # exactly MAX_PDU_LEN: accepted
    assert P.FrameSplitter().feed(exact) == [exact]


# --- property tests: our codec == smpplib, both directions, every command smpplib knows ------------------


def _value_strategy(f: P.FieldSpec, command: str) -> st.SearchStrategy[Any]:
    if f.kind == INT:
        return st.integers(0, (1 << (8 * f.size)) - 1)
    if f.kind == STR:
        if f.tag is None:
            alphabet = st.characters(min_codepoint=1, max_codepoint=255)
        else:
            alphabet = st.characters(min_codepoint=1, max_codepoint=127)
        min_size = 1 if (command == "query_sm" and f.name == "message_id") else 0
        return st.text(alphabet, min_size=min_size, max_size=f.size - 1)
    assert f.kind == OSTR
    return st.binary(max_size=254 if f.tag is None else 600)


def _params_strategy(command: str) -> st.SearchStrategy[dict[str, Any]]:
    spec = P.SPECS[command]
    required: dict[str, st.SearchStrategy[Any]] = {}
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for f in spec.mandatory:
        if f.name == "sm_length":
            continue
        s = _value_strategy(f, command)
        if command == "query_sm" and f.name == "message_id":
            required[f.name] = s
        else:
            optional[f.name] = s
    for f in spec.tlvs:
        if f.kind != FLAG:
            optional[f.name] = _value_strategy(f, command)

    def fix(d: dict[str, Any]) -> dict[str, Any]:
        if d.get("short_message") and d.get("message_payload"):
            del d["message_payload"]
        return d

    return st.fixed_dictionaries(required, optional=optional).map(fix)


SMPPLIB_COMMANDS = sorted(n for n in P.SPECS if n != "outbind")


@st.composite
def any_pdu(draw: st.DrawFn) -> Pdu:
    command = draw(st.sampled_from(SMPPLIB_COMMANDS))
    return Pdu(
        command,
        draw(st.integers(0, 0xFFFFFFFF)),
        draw(st.sampled_from([0, 0, 0, 1, 0x58, 0xFFFFFFFF])),
        draw(_params_strategy(command)),
    )


@settings(max_examples=1500, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(any_pdu())
def test_property_identical_to_smpplib(pdu: Pdu) -> None:
    raw = encode(pdu)
    assert raw == smpplib_encode(pdu.command, pdu.seq, pdu.status, dict(pdu.params))
    command, seq, status, params = smpplib_decode(raw)
    back = decode(raw)
    assert back == Pdu(command, seq, status, params)
    assert encode(back) == raw


# --- the hot-path struct codec: byte-identical to smpplib, and to our generic decoder ------------------------

HOT_COMMANDS = sorted(fastcodec.ENCODERS)


@st.composite
def hot_pdu(draw: st.DrawFn) -> Pdu:
    command = draw(st.sampled_from(HOT_COMMANDS))
    return Pdu(
        command,
        draw(st.integers(0, 0xFFFFFFFF)),
        draw(st.sampled_from([0, 0, 0, 0x14, 0x58])),
        draw(_params_strategy(command)),
    )


def test_fast_codec_is_wired_in() -> None:
    assert set(HOT_COMMANDS) == {
        "submit_sm",
        "submit_sm_resp",
        "deliver_sm",
        "deliver_sm_resp",
        "enquire_link",
        "enquire_link_resp",
    }
    for name, fn in fastcodec.ENCODERS.items():
        assert P._FAST_ENCODERS[name] is fn
        assert P._FAST_DECODERS[P.COMMAND_IDS[name]] is fastcodec.DECODERS[P.COMMAND_IDS[name]]


@settings(max_examples=2500, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(hot_pdu())
def test_fastcodec_identical_to_smpplib_both_directions(pdu: Pdu) -> None:
    raw = fastcodec.ENCODERS[pdu.command](pdu)
    assert raw == smpplib_encode(pdu.command, pdu.seq, pdu.status, dict(pdu.params))
    fast = fastcodec.DECODERS[pdu.command_id](raw, pdu.status, pdu.seq)
    assert fast == Pdu(*smpplib_decode(raw))
    spec = P.SPECS[pdu.command]
    assert fast.params == P.decode_body(spec, raw[16:], pdu.seq, pdu.is_response)


def _outcome(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except PduError as e:
        return ("PduError", e.status, e.seq, e.command_id)


@settings(max_examples=2500, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(hot_pdu(), st.data())
def test_fastcodec_agrees_with_generic_decoder_on_broken_input(pdu: Pdu, data: st.DataObject) -> None:
    raw = bytearray(encode(pdu))
    op = data.draw(st.sampled_from(["cut", "flip", "insert", "nul"]))
    if op == "cut":
        del raw[data.draw(st.integers(16, len(raw))) :]
    elif op == "flip" and len(raw) > 16:
        i = data.draw(st.integers(16, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    elif op == "insert":
        i = data.draw(st.integers(16, len(raw)))
        raw[i:i] = data.draw(st.binary(min_size=1, max_size=6))
    else:
        raw[16:] = bytes(raw[16:]).replace(b"\0", b"\x01")
    raw[:4] = struct.pack(">I", len(raw))
    frame_ = bytes(raw)
    spec = P.SPECS[pdu.command]

    def generic() -> Pdu:
        return Pdu(spec.name, pdu.seq, pdu.status, P.decode_body(spec, frame_[16:], pdu.seq, pdu.is_response))

    fast = _outcome(fastcodec.DECODERS[pdu.command_id], frame_, pdu.status, pdu.seq)
    assert fast == _outcome(generic)
    assert _outcome(decode, frame_) == fast


# --- the declarative table (smpp/spec.py) against smpplib's command classes ----------------------------------

_SMPPLIB_CLASSES: dict[str, str] = {
    "bind_transmitter": "BindTransmitter", "bind_transmitter_resp": "BindTransmitterResp",
    "bind_receiver": "BindReceiver", "bind_receiver_resp": "BindReceiverResp",
    "bind_transceiver": "BindTransceiver", "bind_transceiver_resp": "BindTransceiverResp",
    "data_sm": "DataSM", "data_sm_resp": "DataSMResp", "generic_nack": "GenericNAck",
    "submit_sm": "SubmitSM", "submit_sm_resp": "SubmitSMResp", "deliver_sm": "DeliverSM",
    "deliver_sm_resp": "DeliverSMResp", "query_sm": "QuerySM", "query_sm_resp": "QuerySMResp",
    "unbind": "Unbind", "unbind_resp": "UnbindResp", "enquire_link": "EnquireLink",
    "enquire_link_resp": "EnquireLinkResp", "alert_notification": "AlertNotification",
}


def _smpplib_field(cls: type, name: str) -> P.FieldSpec:
    from smpplib import command as smpp_command
    from smpplib import consts as smpp_consts

    p = cls.params[name]  # type: ignore[attr-defined]
    optional = name in smpp_consts.OPTIONAL_PARAMS and name not in getattr(cls, "mandatory_fields", ())
    tag = smpp_consts.OPTIONAL_PARAMS[name] if optional else None
    if p.type is int:
        return P.FieldSpec(name, P.INT, p.size, tag)
    if p.type is str:
        return P.FieldSpec(name, STR, getattr(p, "max", getattr(p, "size", 256)), tag)
    if p.type is smpp_command.ostr:
        return P.FieldSpec(name, P.OSTR, getattr(p, "max", getattr(p, "size", 0)), tag, getattr(p, "len_field", None))
    return P.FieldSpec(name, FLAG, 0, tag)


def test_the_table_is_smpplibs_field_by_field() -> None:
    from smpplib import command as smpp_command

    assert set(P.SPECS) == set(_SMPPLIB_CLASSES) | {"outbind"}
    for name, cls_name in _SMPPLIB_CLASSES.items():
        cls = getattr(smpp_command, cls_name)
        fields = [_smpplib_field(cls, f) for f in cls.params_order]
        spec = P.SPECS[name]
        assert spec.mandatory == tuple(f for f in fields if f.tag is None), name
        assert spec.tlvs == tuple(f for f in fields if f.tag is not None), name      # emission order too
        assert spec.command_id == P.COMMAND_IDS[name]


def test_vendor_tlv_registry() -> None:
    from smppengine import tlvs
    from smppengine.smpp import spec

    with pytest.raises(ValueError, match="standard TLV receipted_message_id"):
        spec.register_vendor_tlv(0x001E, "x", spec.STR)
    with pytest.raises(ValueError, match="size 1, 2 or 4"):
        spec.register_vendor_tlv(0x3FF0, "x", spec.INT, 3)
    spec.register_vendor_tlv(0x3FF1, "test_counter", spec.INT, 2)
    spec.register_vendor_tlv(0x3FF2, "test_label", spec.STR)
    try:
        with pytest.raises(ValueError, match="already registered"):
            spec.register_vendor_tlv(0x3FF1, "other", spec.INT, 2)
        raw = encode(Pdu("deliver_sm", 1, 0, {"short_message": b"x",
                                              "other_tlvs": {0x3FF1: b"\x01\x02", 0x3FF2: b"ab\0", 0x3FF3: b"z"}}))
        assert tlvs.event_tlvs(decode(raw).params) == {
            "0x3ff1": {"int": 0x0102, "size": 2}, "0x3ff2": {"cstring": "ab"}, "0x3ff3": {"hex": "7a"}}
        # a registered tag whose value does not fit its kind is shown raw, never dropped
        raw = encode(Pdu("deliver_sm", 1, 0, {"other_tlvs": {0x3FF1: b"\x01"}}))
        assert tlvs.event_tlvs(decode(raw).params) == {"0x3ff1": {"hex": "01"}}
    finally:
        del spec.VENDOR_TLVS[0x3FF1], spec.VENDOR_TLVS[0x3FF2]
