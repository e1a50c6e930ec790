"""Carrier features, the pure parts: TLV value forms, flash data_coding, binary splitting with port and
concatenation IEs, schedule times, and the request validation of all of them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from smppengine import text, tlvs
from smppengine.addressing import parse_schedule, schedule_time
from smppengine.ingress import parse_request
from smppengine.model import Rejection, Request
from smppengine.smpp import pdu as P

# --- TLV value forms ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("value,octets", [
    ("1101234567890", b"1101234567890"),
    ("é", b"\xc3\xa9"),                               # UTF-8, no terminator
    ("", b""),
    ({"hex": "00ff0A"}, b"\x00\xff\x0a"),
    ({"hex": ""}, b""),
    ({"cstring": "abc"}, b"abc\0"),
    ({"int": 7, "size": 1}, b"\x07"),
    ({"int": 0x1234, "size": 2}, b"\x12\x34"),
    ({"int": 0xFFFFFFFF, "size": 4}, b"\xff\xff\xff\xff"),
])
def test_value_forms(value: Any, octets: bytes) -> None:
    assert tlvs.parse_value(value) == octets


@pytest.mark.parametrize("value,why", [
    (5, "expected a string"),                          # a bare number
    (None, "expected a string"),
    ([1], "expected a string"),
    ({"hex": "abc"}, "even number of hex digits"),
    ({"hex": "zz"}, "even number of hex digits"),
    ({"cstring": "a\0b"}, "without NUL"),
    ({"int": 256, "size": 1}, "0..255"),
    ({"int": -1, "size": 2}, "0..65535"),
    ({"int": 1, "size": 3}, "1, 2 or 4"),
    ({"int": 1}, "expected a string"),
    ({"int": True, "size": 1}, "0..255"),
    ({"hex": "00", "int": 1}, "expected a string"),
    ("x" * 65536, "over the 65535-octet limit"),       # the length field is 16 bits
    ({"hex": "00" * 65536}, "over the 65535-octet limit"),
])
def test_bad_value_forms(value: Any, why: str) -> None:
    with pytest.raises(ValueError, match=why.replace("(", r"\(").replace("|", r"\|")):
        tlvs.parse_value(value)


def test_tag_keys() -> None:
    assert tlvs.parse_tag("0x1400") == 0x1400
    assert tlvs.parse_tag("0X14aB") == 0x14AB
    assert tlvs.parse_tag("5120") == 0x1400
    for bad in ("0x140", "0x14000", "1400h", "65536", "", "-1", 5120):
        with pytest.raises(ValueError, match="not a tag"):
            tlvs.parse_tag(bad)
    assert tlvs.parse_tlvs({"5120": "a", "0x1401": {"hex": "01"}}) == {"0x1400": "a", "0x1401": {"hex": "01"}}
    with pytest.raises(ValueError, match="0x1400: given twice"):
        tlvs.parse_tlvs({"5120": "a", "0x1400": "b"})
    for tag, name in tlvs.MANAGED.items():
        with pytest.raises(ValueError, match=f"0x{tag:04x}: set by the engine itself \\({name}\\)"):
            tlvs.parse_tlvs({f"0x{tag:04x}": "1"})
    assert tlvs.to_raw({"0x1400": "ab", "0x1402": {"int": 1, "size": 2}}) == {0x1400: b"ab", 0x1402: b"\0\x01"}


def test_event_tlvs_from_a_decoded_deliver_sm() -> None:
    raw = P.encode(P.Pdu("deliver_sm", 3, 0, {
        "esm_class": 4, "short_message": b"id:1 stat:UNDELIV", "receipted_message_id": "1a",
        "message_state": 5, "network_error_code": b"\x03\x00\x2a", "message_payload": None,
        "other_tlvs": {0x1501: b"\xde\xad", 0x1400: b""}}))
    got = tlvs.event_tlvs(P.decode(raw).params)
    assert got == {
        "0x001e": {"cstring": "1a"}, "0x0427": {"int": 5, "size": 1}, "0x0423": {"hex": "03002a"},
        "0x1501": {"hex": "dead"}, "0x1400": {"hex": ""},
    }
    # every form reads back to the octets that were received
    assert tlvs.parse_value(got["0x0423"]) == b"\x03\x00\x2a"
    assert tlvs.parse_value(got["0x001e"]) == b"1a\0"
    assert tlvs.event_tlvs(P.decode(P.encode(P.Pdu("deliver_sm", 1, 0, {"short_message": b"x"}))).params) is None
    # message_payload is the message itself, not repeated here
    assert tlvs.event_tlvs({"message_payload": b"long text"}) is None


# --- flash, binary, ports ----------------------------------------------------------------------------------


def test_flash_data_coding() -> None:
    assert text.flash_data_coding("gsm7") == 0x10
    assert text.flash_data_coding("ucs2") == 0x18
    with pytest.raises(ValueError, match="latin1 cannot carry a message class"):
        text.flash_data_coding("latin1")


def test_binary_single_part_with_ports() -> None:
    data = bytes(range(100))
    segs = text.segment_binary(data, ports=(9200, 2948))
    assert segs.data_coding == 4 and segs.chunks == (data,)
    (part,) = text.build_binary_parts(segs, b"", (9200, 2948), "udh", ref=77)
    # UDHL 6, IE 0x05 len 4: destination port then source port
    assert part.short_message == bytes.fromhex("06 05 04 0b84 23f0") + data
    assert part.esm_class == 0x40 and part.tlvs == {}
    # no UDH at all: plain 8-bit data, 140 octets fit one part
    (plain,) = text.build_binary_parts(text.segment_binary(bytes(140)), b"", None, "udh", 1)
    assert plain.short_message == bytes(140) and plain.esm_class == 0


def test_binary_split_puts_concat_beside_the_port_ie_in_every_part() -> None:
    data = bytes(i % 251 for i in range(300))
    segs = text.segment_binary(data, ports=(1, 2))
    # 140 - (UDHL 1 + concat IE 5 + port IE 6) = 128 octets of data per part
    assert [len(c) for c in segs.chunks] == [128, 128, 44]
    parts = text.build_binary_parts(segs, b"", (1, 2), "udh", ref=0x1A7)
    for seq, part in enumerate(parts, 1):
        udh = part.short_message[:12]
        assert udh == bytes((11, 0x00, 3, 0xA7, 3, seq, 0x05, 4, 0, 2, 0, 1))
        assert len(part.short_message) <= 140 and part.esm_class == 0x40
        assert text.split_udh(part.short_message)[0] == text.ConcatInfo(0xA7, 3, seq)
    assert b"".join(p.short_message[12:] for p in parts) == data
    # 16-bit references with udh16
    parts16 = text.build_binary_parts(text.segment_binary(data, ports=(1, 2), concat="udh16"), b"", (1, 2),
                                      "udh16", ref=0x1A7)
    assert parts16[0].short_message[:7] == bytes((12, 0x08, 4, 0x01, 0xA7, 3, 1))
    assert b"".join(p.short_message[13:] for p in parts16) == data


def test_binary_with_caller_udh() -> None:
    udh = bytes.fromhex("0605040b8423f0")                # WAP push ports, written by the caller
    (part,) = text.build_binary_parts(text.segment_binary(b"\x01\x02", udh), udh, None, "udh", 5)
    assert part.short_message == udh + b"\x01\x02" and part.esm_class == 0x40
    long = bytes(200)
    parts = text.build_binary_parts(text.segment_binary(long, udh), udh, None, "udh", 5)
    assert parts[0].short_message[:12] == bytes((11, 0, 3, 5, 2, 1)) + udh[1:]
    with pytest.raises(ValueError, match="already has an application port IE"):
        text.segment_binary(b"\x01", udh, (1, 2))
    with pytest.raises(ValueError, match="UDH length"):
        text.segment_binary(b"\x01", bytes.fromhex("0705040b8423f0"))
    own_concat = bytes.fromhex("050003010201")
    assert text.segment_binary(b"x" * 10, own_concat).chunks == (b"x" * 10,)
    with pytest.raises(ValueError, match="its own concatenation IE"):
        text.segment_binary(bytes(200), own_concat)
    with pytest.raises(ValueError, match="over the maximum of 255"):
        text.segment_binary(bytes(134 * 256))


# --- schedule --------------------------------------------------------------------------------------------


def test_schedule_times() -> None:
    assert parse_schedule(3600) == 3600
    at = parse_schedule("2026-12-24T18:00:00.25+01:00")
    assert at == datetime(2026, 12, 24, 17, 0, 0, 250000, UTC).timestamp()
    assert parse_schedule("2026-12-24t17:00:00z") == datetime(2026, 12, 24, 17, tzinfo=UTC).timestamp()
    for bad, why in [(0, "1.."), (True, "expected a number"), (10**9, "1.."), ("2026-12-24", "not an RFC 3339"),
                     ("2026-12-24T18:00:00", "no UTC offset"), ("tomorrow", "not an RFC 3339"),
                     ("2100-01-01T00:00:00Z", "2000-2099"), (1.5, "expected a number")]:
        with pytest.raises(ValueError, match=why):
            parse_schedule(bad)
    now = 1_000_000.0
    # relative: what remains of the seconds counted from the request's arrival
    assert schedule_time(3600, now, now) == "000000010000000R"
    assert schedule_time(90061, now - 1, now) == "000001010100000R"
    assert schedule_time(10, now - 20, now) == ""                   # already due: sent at once
    assert schedule_time(None, now, now) == ""
    # absolute: UTC, tenths of a second, offset 00+
    assert schedule_time(at, now, now) == "261224170000200+"
    assert len(schedule_time(at, now, now)) == 16
    assert schedule_time(now - 1, now, now) == ""


# --- request validation ----------------------------------------------------------------------------------


def req(**fields: Any) -> Request | Rejection:
    doc: dict[str, Any] = {"id": "m1", "to": "+447700900123", "text": "hello"}
    doc.update(fields)
    return parse_request(orjson.dumps({k: v for k, v in doc.items() if v is not ...}))


def detail(r: Request | Rejection) -> str:
    assert isinstance(r, Rejection), r
    assert r.code == "invalid_request" and r.id == "m1"
    return r.detail


def test_request_fields_accepted_and_stored() -> None:
    r = req(tlvs={"0x1400": "1101", "5121": {"cstring": "T1"}}, flash=True, schedule="2026-12-24T18:00:00Z")
    assert isinstance(r, Request)
    assert r.tlvs == {"0x1400": "1101", "0x1401": {"cstring": "T1"}} and r.flash
    assert Request.from_json(orjson.loads(orjson.dumps(r.to_json()))) == r
    b = req(text=..., binary="0A0B", ports={"src": 0, "dst": 2948}, udh=None)
    assert isinstance(b, Request) and b.binary == "0a0b" and b.text == "" and b.ports == {"src": 0, "dst": 2948}
    assert Request.from_json(orjson.loads(orjson.dumps(b.to_json()))) == b
    # a plain request is stored exactly as before these fields existed; an old stored one loads
    plain = req()
    assert isinstance(plain, Request)
    assert set(plain.to_json()) == {"id", "to", "text", "from", "encoding", "dlr", "validity", "ttl", "route",
                                    "priority", "meta", "received_at"}
    old = {"id": "x", "to": "1", "text": "t", "from": None, "encoding": "auto", "dlr": True, "validity": None,
           "ttl": None, "route": None, "priority": 0, "meta": None, "received_at": 1.0}
    loaded = Request.from_json(old)
    assert loaded.tlvs is None and not loaded.flash and loaded.binary is None and loaded.schedule is None


@pytest.mark.parametrize("fields,start", [
    ({"tlvs": {"0x020c": "1"}}, "tlvs: 0x020c: set by the engine itself (sar_msg_ref_num)"),
    ({"tlvs": {"0x0424": {"hex": "00"}}}, "tlvs: 0x0424: set by the engine itself (message_payload)"),
    ({"tlvs": {"0x1400": 12}}, "tlvs: 0x1400: expected a string"),
    ({"tlvs": {"0x1400": {"int": 70000, "size": 2}}}, "tlvs: 0x1400: \"int\" must be an integer 0..65535"),
    ({"tlvs": {"foo": "1"}}, "tlvs: 'foo' is not a tag"),
    ({"tlvs": ["0x1400"]}, "tlvs: expected an object"),
    ({"flash": "yes"}, "flash: expected true or false"),
    ({"flash": True, "encoding": "latin1"}, "flash: latin1 cannot carry a message class"),
    ({"text": ..., "binary": "0102", "flash": True}, "flash: only for text messages"),
    ({"binary": "0102"}, "binary: text and binary are mutually exclusive"),
    ({"text": ..., "binary": "012"}, "binary: expected a non-empty string of hex digits"),
    ({"text": ..., "binary": ""}, "binary: expected a non-empty string of hex digits"),
    ({"text": ..., "binary": "01", "encoding": "gsm7"}, "encoding: not used with binary"),
    ({"udh": "0605040b8423f0"}, "udh: only with binary"),
    ({"ports": {"src": 1, "dst": 2}}, "ports: only with binary"),
    ({"text": ..., "binary": "01", "ports": {"src": 1}}, "ports: expected {\"src\": N, \"dst\": N}"),
    ({"text": ..., "binary": "01", "ports": {"src": 1, "dst": 70000}}, "ports: expected"),
    ({"text": ..., "binary": "01", "udh": "0705040b8423f0"}, "udh: the first octet (UDH length) is 7"),
    ({"text": ..., "binary": "01", "udh": "0605040b8423f0", "ports": {"src": 1, "dst": 2}},
     "binary: the udh already has an application port IE"),
    ({"schedule": -5}, "schedule: expected 1.."),
    ({"schedule": "next week"}, "schedule: 'next week' is not an RFC 3339 time"),
    ({"text": ...}, "text: required field missing"),
])
def test_bad_request_fields(fields: dict[str, Any], start: str) -> None:
    d = detail(req(**fields))
    assert d.startswith(start), d
    # the tlvs and tag a bad tlvs request names (the tag appears in the detail)
    if "tlvs" in fields and start.startswith("tlvs: 0x"):
        assert start[6:12] in d


# --- `smppengine parts` --------------------------------------------------------------------------------


def test_parts_command_covers_flash_and_binary(capsys: pytest.CaptureFixture[str]) -> None:
    from smppengine.cli import main

    assert main(["parts", "--json", "--flash", "Код"]) == 0
    info = orjson.loads(capsys.readouterr().out)
    assert info["encoding"] == "ucs2" and info["data_coding"] == 0x18 and info["parts"] == 1
    assert main(["parts", "--json", "--binary", "00" * 300, "--ports", "9200:2948"]) == 0
    info = orjson.loads(capsys.readouterr().out)
    assert info == {"encoding": "binary", "data_coding": 4, "parts": 3, "units": 300, "per_part": 128,
                    "remaining": 84}
    assert main(["parts", "--binary", "0102", "--udh", "0605040b8423f0"]) == 0
    assert capsys.readouterr().out.startswith("binary (data_coding 4): 1 part, 2 octets, 133 per part")
    assert main(["parts", "--flash", "--encoding", "latin1", "hi"]) == 1
    assert "latin1 cannot carry a message class" in capsys.readouterr().err
    assert main(["parts", "--binary", "01", "--ports", "1:99999"]) == 1
    assert "--ports" in capsys.readouterr().err
    assert main(["parts", "hi", "--ports", "1:2"]) == 1
    assert "go with --binary" in capsys.readouterr().err
