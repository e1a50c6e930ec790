"""Hostile input: >= 100,000 malformed PDUs through FrameSplitter + decode (the framer and codec that the engine's
sessions and the simulator use).

Only EOFError / FrameError (from the FrameSplitter) and PduError (from decode) may escape; a PduError must carry
ESME_RINVCMDLEN or ESME_RINVCMDID (ESME_RSYSERR would mean an unexpected exception inside the decoder, i.e. a
bug) and the header's sequence number. Whatever decodes must re-encode (or be refused with ValueError), and the
re-encoding must be a fixpoint. Memory must stay bounded whatever command_length claims.
"""

from __future__ import annotations

import random
import struct
import tracemalloc
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smppengine.smpp import pdu as P
from smppengine.smpp.pdu import FLAG, INT, OSTR, STR, FrameError, Pdu, PduError, decode, encode

ALLOWED_STATUS = {P.ESME_RINVCMDLEN, P.ESME_RINVCMDID}
SEED = 20261124
N_CASES = 100_000


class Stats:
    def __init__(self) -> None:
        self.frames = 0
        self.decoded = 0
        self.pdu_errors = 0
        self.frame_errors = 0
        self.reencoded = 0


def check_decode(raw: bytes, stats: Stats) -> None:
    """decode() raises PduError only, with a sane status/seq; a decoded PDU re-encodes to a fixpoint."""
    try:
        pdu = decode(raw)
    except PduError as e:
        stats.pdu_errors += 1
        assert e.status in ALLOWED_STATUS, (raw.hex(), e)
        if len(raw) >= 16:
            assert e.seq == int.from_bytes(raw[12:16], "big"), raw.hex()
            assert e.command_id == int.from_bytes(raw[4:8], "big"), raw.hex()
        return
    stats.decoded += 1
    assert isinstance(pdu, Pdu)
    assert pdu.seq == int.from_bytes(raw[12:16], "big")
    try:
        again = encode(pdu)
    except ValueError:
        return  # e.g. short_message and message_payload both present: decodable, not re-encodable
    stats.reencoded += 1
    assert encode(decode(again)) == again, raw.hex()


def feed_stream(data: bytes, stats: Stats, max_len: int = P.MAX_PDU_LEN) -> None:
    """``data`` as a socket would hand it over (in two reads, cut in the middle), then EOF."""
    split = P.FrameSplitter(max_len)
    half = len(data) // 2
    frames = split.feed(data[:half])
    if split.error is None:
        frames += split.feed(data[half:])
    for frame in frames:
        stats.frames += 1
        assert 16 <= len(frame) <= max_len
        assert int.from_bytes(frame[:4], "big") == len(frame)
        check_decode(frame, stats)
    if split.error is not None:
        assert isinstance(split.error, FrameError)
        stats.frame_errors += 1
        return
    try:
        split.eof()
    except EOFError:
        return
    except FrameError:
        stats.frame_errors += 1
        return
    raise AssertionError("FrameSplitter.eof returned")


# --- a seeded generator of valid and broken PDUs -------------------------------------------------------------


def random_value(rng: random.Random, f: P.FieldSpec) -> Any:
    if f.kind == INT:
        return rng.choice([0, 1, (1 << (8 * f.size)) - 1, rng.getrandbits(8 * f.size)])
    if f.kind == STR:
        hi = 255 if f.tag is None else 127
        return "".join(chr(rng.randint(1, hi)) for _ in range(rng.randint(0, f.size - 1)))
    assert f.kind == OSTR
    return rng.randbytes(rng.randint(0, 254 if f.tag is None else 400))


def random_valid_pdu(rng: random.Random) -> bytes:
    command = rng.choice(sorted(P.SPECS))
    spec = P.SPECS[command]
    params: dict[str, Any] = {}
    for f in spec.mandatory + spec.tlvs:
        if f.name == "sm_length" or f.kind == FLAG:
            continue
        if f.tag is not None and rng.random() < 0.7:
            continue
        params[f.name] = random_value(rng, f)
    if params.get("short_message") and params.get("message_payload"):
        del params["message_payload"]
    if command == "query_sm" and not params.get("message_id"):
        params["message_id"] = "1"
    raw = encode(Pdu(command, rng.getrandbits(31), rng.choice([0, 0, 1, 0x58]), params))
    if rng.random() < 0.3:  # append vendor / foreign TLVs, which must be kept raw (other_tlvs)
        extra = b"".join(
            struct.pack(">HH", rng.choice([0x1400, 0x2150, 0xFFFF, 0x001E, 0x0427]), n) + rng.randbytes(n)
            for n in (rng.randint(0, 8) for _ in range(rng.randint(1, 3)))
        )
        raw = struct.pack(">I", len(raw) + len(extra)) + raw[4:] + extra
    return raw


def set_len(raw: bytes, n: int) -> bytes:
    return struct.pack(">I", n & 0xFFFFFFFF) + raw[4:]


def mutate(rng: random.Random, raw: bytes) -> bytes:
    """One malformation of a valid frame; most keep command_length consistent so decode gets exercised."""
    b = bytearray(raw)
    kind = rng.randrange(14) if len(b) > 16 else rng.choice([2, 12, 13])
    if kind == 0:  # command_length 0, < 16, > MAX, or just wrong
        n = rng.choice([0, 1, 4, 15, P.MAX_PDU_LEN + 1, 0xFFFFFFFF, 0x80000000, len(b) + rng.randint(-8, 8)])
        return set_len(raw, n)
    if kind == 1:  # truncated body, length fixed up
        cut = rng.randint(16, len(b))
        return set_len(raw[:cut], cut)
    if kind == 2:  # truncated stream, length not fixed up (EOF mid-frame)
        return raw[: rng.randint(1, len(b) - 1)] if len(b) > 1 else raw
    if kind == 3:  # unknown / odd command id
        cid = rng.choice([0, 0x0A, 0x0C, 0x7FFFFFFF, 0x80000099, 0xFFFFFFFF, rng.getrandbits(32)])
        b[4:8] = struct.pack(">I", cid)
        return bytes(b)
    if kind == 4:  # remove the NULs: C-strings run on
        body = bytes(b[16:]).replace(b"\0", b"A")
        return bytes(b[:16]) + body
    if kind == 5:  # flip bits in the body
        for _ in range(rng.randint(1, 4)):
            if len(b) > 16:
                i = rng.randrange(16, len(b))
                b[i] ^= 1 << rng.randrange(8)
        return bytes(b)
    if kind == 6:  # random bytes overwritten anywhere past the length field
        for _ in range(rng.randint(1, 6)):
            i = rng.randrange(4, len(b))
            b[i] = rng.randrange(256)
        return bytes(b)
    if kind == 7:  # append a TLV with a lying length
        tag = rng.choice([0x001E, 0x0427, 0x0423, 0x0424, 0x020C, 0x020E, 0x0210, 0x1400, rng.getrandbits(16)])
        real = rng.randbytes(rng.randint(0, 6))
        lie = rng.choice([0, 1, 2, 3, 5, 0xFFFF, len(real) + 1, max(len(real) - 1, 0)])
        out = raw + struct.pack(">HH", tag, lie) + real
        return set_len(out, len(out))
    if kind == 8:  # 1-3 stray octets after the body (partial TLV header)
        out = raw + rng.randbytes(rng.randint(1, 3))
        return set_len(out, len(out))
    if kind == 9:  # random garbage body on a real header
        body = rng.randbytes(rng.randint(0, 64))
        return set_len(raw[:16] + body, 16 + len(body))
    if kind == 10:  # insert / delete octets inside the body
        if len(b) > 17:
            i = rng.randrange(16, len(b))
            if rng.random() < 0.5:
                del b[i : i + rng.randint(1, 4)]
            else:
                b[i:i] = rng.randbytes(rng.randint(1, 4))
        return set_len(bytes(b), len(b))
    if kind == 11:  # sm_length / TLV-length-looking octets set to extremes
        if len(b) > 16:
            i = rng.randrange(16, len(b))
            b[i] = rng.choice([0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF])
        return bytes(b)
    if kind == 12:  # pure random bytes, with or without a plausible header
        n = rng.randint(0, 80)
        junk = rng.randbytes(n)
        return set_len(junk, n) if n >= 4 and rng.random() < 0.5 else junk
    # kind 13: header only, empty body, for every known command id
    cid = rng.choice(list(P.COMMAND_IDS.values()))
    return struct.pack(">IIII", 16, cid, rng.choice([0, 1, 0x58]), rng.getrandbits(32))


def generate_cases(seed: int, n: int) -> list[bytes]:
    rng = random.Random(seed)
    corpus = [random_valid_pdu(rng) for _ in range(400)]
    cases: list[bytes] = []
    for i in range(n):
        raw = rng.choice(corpus)
        if i % 10 == 9:  # two back-to-back frames, the second broken: the stream must survive the first
            cases.append(raw + mutate(rng, rng.choice(corpus)))
        else:
            bad = mutate(rng, raw)
            if rng.random() < 0.1:
                bad = mutate(rng, bad)  # double mutation
            cases.append(bad)
    return cases


def test_100k_malformed_pdus_through_frame_splitter_and_decode() -> None:
    cases = generate_cases(SEED, N_CASES)
    assert len(cases) >= 100_000
    stats = Stats()
    for data in cases:
        feed_stream(data, stats)
        check_decode(data, stats)  # the raw bytes straight into decode, length lies included
    # the fuzz really reached every outcome
    assert stats.frames > 50_000
    assert stats.decoded > 10_000
    assert stats.pdu_errors > 50_000
    assert stats.frame_errors > 5_000
    assert stats.reencoded > 5_000


def test_memory_stays_bounded_under_malformed_input() -> None:
    # tracemalloc makes Python ~5x slower: a 20,000-case run of the same generator (other seed) under it
    cases = generate_cases(SEED + 1, 20_000)
    stats = Stats()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        for data in cases:
            feed_stream(data, stats)
            check_decode(data, stats)
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stats.frame_errors > 1_000 and stats.pdu_errors > 10_000
    # nothing proportional to what command_length claims (up to 4 GiB) is allocated, and nothing accumulates
    assert peak - base < 1024 * 1024, peak - base
    assert current - base < 64 * 1024, current - base


def test_huge_command_length_allocates_nothing() -> None:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        for n in (P.MAX_PDU_LEN + 1, 0x7FFFFFFF, 0xFFFFFFFF):
            split = P.FrameSplitter()
            # no EOF: the length alone is refused, nothing is buffered for the rest
            assert split.feed(struct.pack(">IIII", n, P.SUBMIT_SM, 0, 1) + b"\0" * 100) == []
            assert isinstance(split.error, FrameError), f"accepted a frame of {n} octets"
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - base < 256 * 1024


# --- hypothesis on top of the seeded run ---------------------------------------------------------------------


@settings(max_examples=3000, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_hypothesis_random_bytes_decode(raw: bytes) -> None:
    check_decode(raw, Stats())


@settings(max_examples=3000, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(min_value=0, max_value=2**32 - 1),
    st.sampled_from(sorted(P.COMMAND_IDS.values()) + [0x99, 0x80000099]),
    st.integers(min_value=0, max_value=2**32 - 1),
    st.binary(max_size=200),
)
def test_hypothesis_consistent_header_random_body(status: int, cid: int, seq: int, body: bytes) -> None:
    raw = struct.pack(">IIII", 16 + len(body), cid, status, seq) + body
    check_decode(raw, Stats())


@settings(max_examples=600, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False), st.binary(max_size=120))
def test_hypothesis_stream(rng: random.Random, junk: bytes) -> None:
    data = random_valid_pdu(rng) + mutate(rng, random_valid_pdu(rng)) + junk
    feed_stream(data, Stats())


# --- regression tests: inputs that once broke the decoder (exact bytes) ---------------------------------------


def test_regression_smpplib_keyerror_on_foreign_known_tlv() -> None:
    # smpplib: KeyError ('receipted_message_id' is not a param of generic_nack); kept raw here
    raw = bytes.fromhex("00000017 80000000 00000000 00000001 001e 0003 616200")
    assert decode(raw) == Pdu("generic_nack", 1, 0, {"other_tlvs": {0x001E: b"ab\0"}})


def test_regression_smpplib_cstring_without_nul() -> None:
    # smpplib: data.find() == -1 silently yields a garbage message_id and a negative position
    raw = bytes.fromhex("00000014 80000004 00000000 00000002 61626364")
    try:
        decode(raw)
    except PduError as e:
        assert (e.status, e.seq) == (P.ESME_RINVCMDLEN, 2)
    else:
        raise AssertionError("accepted a C-string without NUL")


def test_regression_smpplib_struct_error_on_partial_tlv_header() -> None:
    raw = bytes.fromhex("00000017 80000004 00000000 00000003 6100 04 27 00")
    try:
        decode(raw)
    except PduError as e:
        assert (e.status, e.seq) == (P.ESME_RINVCMDLEN, 3)
    else:
        raise AssertionError("accepted a partial TLV header")
