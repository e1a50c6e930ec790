"""Tests for smppengine.text: GSM 03.38 / UCS-2 / Latin-1, splitting, concatenation, MO decoding."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smppengine.text import (
    CONCAT_METHODS,
    DC_ASCII,
    DC_BINARY,
    DC_DEFAULT,
    DC_LATIN1,
    DC_UCS2,
    ENCODINGS,
    ConcatInfo,
    ConcatRefs,
    MessageTooLongError,
    PartsInfo,
    PartSpec,
    Segments,
    TextEncodingError,
    build_parts,
    decode,
    format_parts_info,
    parts_info,
    segment,
    split_udh,
)

# ------------------------------------------------------------------------------------------------
# Reference tables, written independently of smppengine.gsm0338 (Unicode's GSM0338.TXT: code → U+)

GSM_BASIC_REF: dict[int, int] = {
    0x00: 0x0040, 0x01: 0x00A3, 0x02: 0x0024, 0x03: 0x00A5, 0x04: 0x00E8, 0x05: 0x00E9, 0x06: 0x00F9,
    0x07: 0x00EC, 0x08: 0x00F2, 0x09: 0x00C7, 0x0A: 0x000A, 0x0B: 0x00D8, 0x0C: 0x00F8, 0x0D: 0x000D,
    0x0E: 0x00C5, 0x0F: 0x00E5, 0x10: 0x0394, 0x11: 0x005F, 0x12: 0x03A6, 0x13: 0x0393, 0x14: 0x039B,
    0x15: 0x03A9, 0x16: 0x03A0, 0x17: 0x03A8, 0x18: 0x03A3, 0x19: 0x0398, 0x1A: 0x039E,
    0x1C: 0x00C6, 0x1D: 0x00E6, 0x1E: 0x00DF, 0x1F: 0x00C9, 0x20: 0x0020, 0x21: 0x0021, 0x22: 0x0022,
    0x23: 0x0023, 0x24: 0x00A4, 0x25: 0x0025, 0x26: 0x0026, 0x27: 0x0027, 0x28: 0x0028, 0x29: 0x0029,
    0x2A: 0x002A, 0x2B: 0x002B, 0x2C: 0x002C, 0x2D: 0x002D, 0x2E: 0x002E, 0x2F: 0x002F,
    **{0x30 + i: 0x0030 + i for i in range(10)},
    0x3A: 0x003A, 0x3B: 0x003B, 0x3C: 0x003C, 0x3D: 0x003D, 0x3E: 0x003E, 0x3F: 0x003F,
    0x40: 0x00A1,
    **{0x41 + i: 0x0041 + i for i in range(26)},
    0x5B: 0x00C4, 0x5C: 0x00D6, 0x5D: 0x00D1, 0x5E: 0x00DC, 0x5F: 0x00A7, 0x60: 0x00BF,
    **{0x61 + i: 0x0061 + i for i in range(26)},
    0x7B: 0x00E4, 0x7C: 0x00F6, 0x7D: 0x00F1, 0x7E: 0x00FC, 0x7F: 0x00E0,
}  # fmt: skip
GSM_EXT_REF: dict[int, int] = {
    0x0A: 0x000C, 0x14: 0x005E, 0x28: 0x007B, 0x29: 0x007D, 0x2F: 0x005C,
    0x3C: 0x005B, 0x3D: 0x007E, 0x3E: 0x005D, 0x40: 0x007C, 0x65: 0x20AC,
}  # fmt: skip

BASIC_CHARS = "".join(chr(u) for u in GSM_BASIC_REF.values())
EXT_CHARS = "".join(chr(u) for u in GSM_EXT_REF.values())
GSM_SET = set(BASIC_CHARS) | set(EXT_CHARS)

SINGLE = {"gsm7": 160, "ucs2": 70, "latin1": 140}
MULTI = {
    "udh": {"gsm7": 153, "ucs2": 67, "latin1": 134},
    "sar": {"gsm7": 153, "ucs2": 67, "latin1": 134},
    "udh16": {"gsm7": 152, "ucs2": 66, "latin1": 133},
}
WIDTH = {"gsm7": 1, "ucs2": 2, "latin1": 1}
DC = {"gsm7": 0, "ucs2": 8, "latin1": 3}


def ref_weight(ch: str, encoding: str) -> int:
    if encoding == "gsm7":
        return 2 if ch in EXT_CHARS else 1
    if encoding == "ucs2":
        return 2 if ord(ch) > 0xFFFF else 1
    return 1


def ref_resolve(text: str, encoding: str) -> str:
    if encoding != "auto":
        return encoding
    return "gsm7" if all(c in GSM_SET for c in text) else "ucs2"


def ref_parts(text: str, encoding: str, concat: str) -> tuple[int, int, int]:
    """(parts, total units, units in the last part): a per-character greedy fill, written independently."""
    weights = [ref_weight(c, encoding) for c in text]
    total = sum(weights)
    if concat == "payload" or total <= SINGLE[encoding]:
        return 1, total, total
    limit = MULTI[concat][encoding]
    parts, cur = 1, 0
    for w in weights:
        if cur + w > limit:
            parts += 1
            cur = 0
        cur += w
    return parts, total, cur


# ------------------------------------------------------------------------------------------------
# Strategies

gsm_char = st.sampled_from(BASIC_CHARS + EXT_CHARS)
ext_heavy_gsm_char = st.one_of(st.sampled_from(EXT_CHARS), st.sampled_from(BASIC_CHARS))
bmp_char = st.characters(max_codepoint=0xFFFF, exclude_categories=("Cs",))
astral_char = st.characters(min_codepoint=0x10000)
any_char = st.one_of(gsm_char, bmp_char, astral_char, st.sampled_from("😀𝄞"))

def with_long_runs(short: st.SearchStrategy[str], fills: str) -> st.SearchStrategy[str]:
    """Short random texts, and long ones: random head + a run of one fill character + random tail.

    Cheap to generate, and it puts random (escaped, astral) characters around the part boundaries.
    """
    long = st.builds(
        lambda head, fill, n, tail: head + fill * n + tail,
        short,
        st.sampled_from(fills),
        st.integers(0, 400),
        short,
    )
    return st.one_of(short, long)


gsm_text = with_long_runs(st.text(alphabet=ext_heavy_gsm_char, max_size=200), "a€{")
mixed_text = with_long_runs(st.text(alphabet=any_char, max_size=100), "aй😀€")
astral_heavy_text = with_long_runs(
    st.text(alphabet=st.one_of(st.sampled_from("й😀"), astral_char), max_size=100), "й😀"
)
latin1_text = with_long_runs(st.text(alphabet=st.characters(max_codepoint=0xFF), max_size=150), "aé")

PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_segments(text: str, encoding: str, concat: str) -> Segments:
    segs = segment(text, encoding, concat)
    resolved = ref_resolve(text, encoding)
    assert segs.encoding == resolved
    assert segs.data_coding == DC[resolved]
    w = WIDTH[resolved]
    # decode each chunk on its own, join: the original text
    assert "".join(decode(c, segs.data_coding) for c in segs.chunks) == text
    parts, total, last = ref_parts(text, resolved, concat)
    assert len(segs.chunks) == parts
    assert sum(len(c) for c in segs.chunks) == total * w
    assert len(segs.chunks[-1]) == last * w
    if parts == 1:
        if concat != "payload":
            assert len(segs.chunks[0]) <= SINGLE[resolved] * w
    else:
        for c in segs.chunks:
            assert 0 < len(c) <= MULTI[concat][resolved] * w
    for c in segs.chunks:
        if resolved == "gsm7":
            assert not c.endswith(b"\x1b")
        if resolved == "ucs2":
            assert len(c) % 2 == 0
            if c:
                assert not 0xDC <= c[0] <= 0xDF, "chunk starts with a low surrogate"
                assert not 0xD8 <= c[-2] <= 0xDB, "chunk ends with a high surrogate"
    info = parts_info(text, encoding, concat)
    assert (info.encoding, info.data_coding, info.parts, info.units) == (resolved, DC[resolved], parts, total)
    assert info.remaining == info.per_part - last
    return segs


def check_udh_roundtrip(text: str, encoding: str, concat: str, ref: int, seed: int) -> None:
    segs = segment(text, encoding, concat)
    specs = build_parts(segs, concat, ref)
    assert len(specs) == len(segs.chunks)
    if len(specs) == 1:
        assert specs[0] == PartSpec(segs.chunks[0], 0, {})
        return
    texts = []
    order = list(range(len(specs)))
    random.Random(seed).shuffle(order)
    by_seq: dict[int, str] = {}
    for i in order:
        spec = specs[i]
        assert spec.esm_class == 0x40
        assert spec.tlvs == {}
        assert len(spec.short_message) <= (160 if segs.encoding == "gsm7" else 140)
        info, body = split_udh(spec.short_message)
        assert info is not None
        want_ref = ref & 0xFF if concat == "udh" else ref & 0xFFFF
        assert info == ConcatInfo(want_ref, len(specs), i + 1)
        assert body == segs.chunks[i]
        part_text = decode(body, segs.data_coding)
        texts.append((i, part_text))
        by_seq[info.seq] = part_text
    assert "".join(t for _, t in sorted(texts)) == text
    assert "".join(by_seq[n] for n in range(1, len(specs) + 1)) == text     # joined by the UDH's numbering


# ------------------------------------------------------------------------------------------------
# Property tests


@PROPS
@given(text=mixed_text, concat=st.sampled_from(CONCAT_METHODS))
def test_property_auto_mixed(text: str, concat: str) -> None:
    check_segments(text, "auto", concat)


@PROPS
@given(text=gsm_text, concat=st.sampled_from(CONCAT_METHODS), encoding=st.sampled_from(["auto", "gsm7"]))
def test_property_gsm(text: str, concat: str, encoding: str) -> None:
    segs = check_segments(text, encoding, concat)
    assert segs.encoding == "gsm7"


@PROPS
@given(text=st.one_of(mixed_text, astral_heavy_text), concat=st.sampled_from(CONCAT_METHODS))
def test_property_ucs2(text: str, concat: str) -> None:
    segs = check_segments(text, "ucs2", concat)
    assert b"".join(segs.chunks) == text.encode("utf-16-be")


@PROPS
@given(text=latin1_text, concat=st.sampled_from(CONCAT_METHODS))
def test_property_latin1(text: str, concat: str) -> None:
    segs = check_segments(text, "latin1", concat)
    assert b"".join(segs.chunks) == text.encode("latin-1")


@PROPS
@given(
    text=st.one_of(gsm_text, mixed_text, astral_heavy_text),
    concat=st.sampled_from(["udh", "udh16"]),
    ref=st.integers(1, 65535),
    seed=st.integers(0, 2**32),
)
def test_property_build_parts_split_udh_reassemble(text: str, concat: str, ref: int, seed: int) -> None:
    check_udh_roundtrip(text, "auto", concat, ref, seed)


@PROPS
@given(text=st.one_of(gsm_text, mixed_text), ref=st.integers(1, 65535))
def test_property_sar(text: str, ref: int) -> None:
    segs = segment(text, "auto", "sar")
    specs = build_parts(segs, "sar", ref)
    if len(specs) == 1:
        assert specs == [PartSpec(segs.chunks[0], 0, {})]
        return
    for seq, (spec, chunk) in enumerate(zip(specs, segs.chunks, strict=True), 1):
        assert spec.esm_class == 0
        assert spec.short_message == chunk
        want = {"sar_msg_ref_num": ref, "sar_total_segments": len(specs), "sar_segment_seqnum": seq}
        assert spec.tlvs == want
    assert "".join(decode(s.short_message, segs.data_coding) for s in specs) == text


@PROPS
@given(
    data=st.binary(max_size=300), dc=st.integers(0, 255), alpha=st.sampled_from(["gsm", "ascii", "latin1"])
)
def test_property_decode_never_raises(data: bytes, dc: int, alpha: str) -> None:
    assert isinstance(decode(data, dc, alpha), str)


@PROPS
@given(data=st.binary(max_size=40))
def test_property_split_udh_never_raises(data: bytes) -> None:
    info, body = split_udh(data)
    if info is None:
        assert body == data or (data and body == data[1 + data[0] :])
    else:
        assert body == data[1 + data[0] :]
        assert 1 <= info.seq <= info.total


# ------------------------------------------------------------------------------------------------
# The GSM tables, every character, both directions


@pytest.mark.parametrize(("code", "cp"), sorted(GSM_BASIC_REF.items()))
def test_basic_table(code: int, cp: int) -> None:
    ch = chr(cp)
    segs = segment(ch, "gsm7")
    assert segs.chunks == (bytes([code]),)
    assert decode(bytes([code]), DC_DEFAULT) == ch
    assert segment(ch, "auto").encoding == "gsm7"


@pytest.mark.parametrize(("code", "cp"), sorted(GSM_EXT_REF.items()))
def test_extension_table(code: int, cp: int) -> None:
    ch = chr(cp)
    assert segment(ch, "gsm7").chunks == (bytes([0x1B, code]),)
    assert decode(bytes([0x1B, code]), DC_DEFAULT) == ch
    assert parts_info(ch).units == 2


def test_table_sizes() -> None:
    assert len(GSM_BASIC_REF) == 127 and 0x1B not in GSM_BASIC_REF
    all_gsm = BASIC_CHARS + EXT_CHARS
    assert len(set(all_gsm)) == 137
    assert "".join(decode(segment(all_gsm, "gsm7").chunks[0], 0)) == all_gsm


def test_gsm_specific_codes() -> None:
    assert segment("@", "gsm7").chunks == (b"\x00",)
    assert segment("$", "gsm7").chunks == (b"\x02",)
    assert segment("§", "gsm7").chunks == (b"\x5f",)
    assert segment("¿", "gsm7").chunks == (b"\x60",)
    assert segment("€").chunks == (b"\x1b\x65",)
    assert segment("\x0c").chunks == (b"\x1b\x0a",)
    assert segment("Ç").chunks == (b"\x09",)
    assert decode(b"\x09", 0) == "Ç"
    for ch in "{}[]~\\|^":
        assert segment(ch, "gsm7").chunks[0][0] == 0x1B


@pytest.mark.parametrize("ch", ["`", "ç", "й", "😀", "\t", "\x00", "\x1b", "á", "ą"])
def test_not_gsm(ch: str) -> None:
    segs = segment("ab" + ch)
    assert segs.encoding == "ucs2" and segs.data_coding == DC_UCS2
    with pytest.raises(TextEncodingError) as ei:
        segment("ab" + ch, "gsm7")
    assert ei.value.char == ch and ei.value.position == 2


def test_encoding_error_message() -> None:
    with pytest.raises(TextEncodingError) as ei:
        segment("abcй", "gsm7")
    assert str(ei.value) == "character 'й' (U+0439) at position 3 does not fit gsm7"
    assert isinstance(ei.value, ValueError)
    with pytest.raises(TextEncodingError) as ei:
        segment("10 €", "latin1")
    assert (ei.value.char, ei.value.position) == ("€", 3)
    assert "does not fit latin1" in str(ei.value)
    with pytest.raises(TextEncodingError) as ei:
        segment("a😀b😀", "latin1")
    assert (ei.value.char, ei.value.position) == ("😀", 1)
    with pytest.raises(TextEncodingError) as ei:
        segment("ok\ud800", "ucs2")
    assert (ei.value.char, ei.value.position) == ("\ud800", 2)
    with pytest.raises(TextEncodingError):
        segment("ok\ud800", "auto")


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        segment("x", "utf8")
    with pytest.raises(ValueError):
        segment("x", "auto", "smpp")
    with pytest.raises(ValueError):
        build_parts(segment("x"), "smpp", 1)
    assert ENCODINGS == ("auto", "gsm7", "ucs2", "latin1")
    assert CONCAT_METHODS == ("udh", "udh16", "sar", "payload")
    assert (DC_DEFAULT, DC_ASCII, DC_LATIN1, DC_BINARY, DC_UCS2) == (0, 1, 3, 4, 8)


# ------------------------------------------------------------------------------------------------
# Boundaries


def lens(segs: Segments) -> list[int]:
    return [len(c) for c in segs.chunks]


def test_gsm_single_part_boundary() -> None:
    assert lens(segment("a" * 160)) == [160]
    assert lens(segment("a" * 161)) == [153, 8]
    assert lens(segment("a" * 158 + "€")) == [160]
    assert lens(segment("a" * 159 + "€")) == [153, 8]
    assert lens(segment("a" * 161, concat="udh16")) == [152, 9]
    assert lens(segment("")) == [0]


@pytest.mark.parametrize(
    ("k", "concat", "first"),
    [
        (151, "udh", 153),  # the pair fills septets 152-153
        (152, "udh", 152),  # the pair would straddle 153/154: moved to part 2
        (153, "udh", 153),  # part 2 starts with the pair
        (150, "udh16", 152),
        (151, "udh16", 151),
        (152, "udh16", 152),
    ],
)
def test_gsm_escape_at_boundary(k: int, concat: str, first: int) -> None:
    text = "a" * k + "€" + "b" * 100
    segs = segment(text, "gsm7", concat)
    assert len(segs.chunks[0]) == first
    assert not segs.chunks[0].endswith(b"\x1b")
    assert "".join(decode(c, 0) for c in segs.chunks) == text


def test_gsm_escape_runs() -> None:
    text = "€" * 200  # 400 septets: parts of 152 (76 pairs), 152, 96
    segs = segment(text)
    assert lens(segs) == [152, 152, 96]
    assert "".join(decode(c, 0) for c in segs.chunks) == text
    assert parts_info(text) == PartsInfo("gsm7", 0, 3, 400, 153, 153 - 96)


def test_ucs2_single_part_boundary() -> None:
    assert lens(segment("й" * 70)) == [140]
    assert lens(segment("й" * 71)) == [134, 8]
    assert lens(segment("й" * 68 + "😀")) == [140]
    assert lens(segment("й" * 69 + "😀")) == [134, 8]
    assert lens(segment("й" * 71, concat="udh16")) == [132, 10]


@pytest.mark.parametrize(
    ("k", "concat", "first_units"),
    [
        (65, "udh", 67),  # the pair fills units 66-67
        (66, "udh", 66),  # the pair would straddle 67/68: moved to part 2
        (67, "udh", 67),
        (64, "udh16", 66),
        (65, "udh16", 65),
        (66, "udh16", 66),
    ],
)
def test_ucs2_surrogate_at_boundary(k: int, concat: str, first_units: int) -> None:
    text = "й" * k + "😀" + "й" * 10
    segs = segment(text, "auto", concat)
    assert segs.encoding == "ucs2"
    assert len(segs.chunks[0]) == 2 * first_units
    second = segs.chunks[1]
    assert not 0xDC <= second[0] <= 0xDF
    assert [decode(c, 8) for c in segs.chunks][0] == text[: first_units if first_units <= k else k + 1]
    assert "".join(decode(c, 8) for c in segs.chunks) == text


def test_latin1_boundary() -> None:
    assert lens(segment("é" * 140, "latin1")) == [140]
    assert lens(segment("é" * 141, "latin1")) == [134, 7]
    assert lens(segment("é" * 141, "latin1", "udh16")) == [133, 8]
    segs = segment("café ¿ÿ", "latin1")
    assert segs.data_coding == DC_LATIN1 and segs.chunks == (b"caf\xe9 \xbf\xff",)


def test_payload_never_splits() -> None:
    text = "x" * 1000
    segs = segment(text, concat="payload")
    assert lens(segs) == [1000]
    specs = build_parts(segs, "payload", 7)
    assert specs == [PartSpec(b"", 0, {"message_payload": b"x" * 1000})]
    short = build_parts(segment("hello", concat="payload"), "payload", 7)
    assert short == [PartSpec(b"hello", 0, {})]
    at_limit = build_parts(segment("й" * 70, concat="payload"), "payload", 7)
    assert at_limit == [PartSpec("й".encode("utf-16-be") * 70, 0, {})]
    over = build_parts(segment("й" * 71, concat="payload"), "payload", 7)
    assert over[0].short_message == b"" and len(over[0].tlvs["message_payload"]) == 142  # type: ignore[arg-type]
    info = parts_info("x" * 1000, concat="payload")
    assert (info.parts, info.units, info.per_part, info.remaining) == (1, 1000, 65535, 64535)


def test_too_long() -> None:
    text = "a" * (153 * 255)
    assert len(segment(text).chunks) == 255
    with pytest.raises(MessageTooLongError) as ei:
        segment(text + "a")
    assert ei.value.parts == 256 and isinstance(ei.value, ValueError)
    assert parts_info(text + "a").parts == 256
    assert "over the maximum of 255 parts" in format_parts_info(parts_info(text + "a"))
    with pytest.raises(MessageTooLongError):
        segment("a" * 65536, concat="payload")
    assert len(segment("a" * 65535, concat="payload").chunks[0]) == 65535


# ------------------------------------------------------------------------------------------------
# build_parts


def test_build_parts_udh_exact() -> None:
    segs = segment("a" * 200)
    specs = build_parts(segs, "udh", 0x12B4)
    assert specs[0].short_message == b"\x05\x00\x03\xb4\x02\x01" + b"a" * 153
    assert specs[1].short_message == b"\x05\x00\x03\xb4\x02\x02" + b"a" * 47
    assert all(s.esm_class == 0x40 and s.tlvs == {} for s in specs)


def test_build_parts_udh16_exact() -> None:
    segs = segment("a" * 200, concat="udh16")
    specs = build_parts(segs, "udh16", 0x1234)
    assert specs[0].short_message == b"\x06\x08\x04\x12\x34\x02\x01" + b"a" * 152
    assert specs[1].short_message == b"\x06\x08\x04\x12\x34\x02\x02" + b"a" * 48
    assert all(s.esm_class == 0x40 for s in specs)


def test_build_parts_sar_exact() -> None:
    specs = build_parts(segment("a" * 200, concat="sar"), "sar", 0x1234)
    tlvs = {"sar_msg_ref_num": 0x1234, "sar_total_segments": 2}
    assert specs == [
        PartSpec(b"a" * 153, 0, {**tlvs, "sar_segment_seqnum": 1}),
        PartSpec(b"a" * 47, 0, {**tlvs, "sar_segment_seqnum": 2}),
    ]


@pytest.mark.parametrize("concat", CONCAT_METHODS)
def test_build_parts_single(concat: str) -> None:
    assert build_parts(segment("hi €", concat=concat), concat, 9) == [PartSpec(b"hi \x1b\x65", 0, {})]


def test_build_parts_rejects_chunks_too_big_for_method() -> None:
    segs = segment("a" * 200, concat="udh")  # 153-septet chunk does not fit udh16's 152
    with pytest.raises(ValueError):
        build_parts(segs, "udh16", 1)


# ------------------------------------------------------------------------------------------------
# ConcatRefs


def test_concat_refs() -> None:
    refs = ConcatRefs(seed=1)
    a = [refs.next("+4477") for _ in range(70000)]
    assert all(1 <= r <= 65535 for r in a)
    assert all(x != y for x, y in zip(a, a[1:], strict=False))
    i = a.index(65535)
    assert a[i + 1] == 1
    b1, b2 = refs.next("+33"), refs.next("+33")
    assert b1 != b2 and (b1 & 0xFF) != (b2 & 0xFF)


def test_concat_refs_bounded() -> None:
    refs = ConcatRefs(max_entries=3, seed=2)
    for d in "abcdef":
        refs.next(d)
    assert len(refs) == 3
    x = refs.next("f")
    assert refs.next("f") == x % 65535 + 1


# ------------------------------------------------------------------------------------------------
# decode


def test_decode_data_codings() -> None:
    assert decode(b"\x00Hello \x1b\x65", 0) == "@Hello €"
    assert decode(b"Hello", 0, "ascii") == "Hello"
    assert decode(b"caf\xe9", 0, "latin1") == "café"
    assert decode(b"caf\xe9", 0, "ascii") == "caf\ufffd"
    assert decode(b"abc\x80", DC_ASCII) == "abc\ufffd"
    assert decode(b"caf\xe9 \xa4", DC_LATIN1) == "café ¤"
    assert decode(b"\x00\x01\xff", DC_BINARY) == "0001ff"
    assert decode(b"\xAB", 2) == "ab"
    assert decode("й😀".encode("utf-16-be"), DC_UCS2) == "й😀"
    assert decode(b"", 8) == "" and decode(b"", 0) == "" and decode(b"", 4) == ""


def test_decode_ucs2_malformed() -> None:
    assert decode(b"\xd8\x3d\x00\x41", 8) == "\ufffdA"  # lone high surrogate
    assert decode(b"\x00\x41\xde\x00", 8) == "A\ufffd"  # lone low surrogate
    assert decode(b"\x00\x41\x00", 8) == "A\ufffd"  # odd length
    assert decode(b"\x00\x41\xd8\x3d", 8) == "A\ufffd"  # pair cut at the end


def test_decode_gsm_unknown_codes() -> None:
    assert decode(b"a\x80b\xff", 0) == "a\ufffdb\ufffd"
    assert decode(b"ab\x1b", 0) == "ab\ufffd"  # lone ESC at the end
    assert decode(b"\x1b\x41", 0) == "A"  # no extension symbol: the basic table's character (23.038)
    assert decode(b"\x1b\x1bx", 0) == " x"  # SS2: shown as a space
    assert decode(b"\x1b\x80", 0) == "\ufffd"
    assert decode(b"\x1b\x0a\x0a", 0) == "\x0c\n"


def test_decode_dcs_groups() -> None:
    assert decode(b"\x00A", 0xF0) == "@A"  # class 0, GSM
    assert decode(b"\x00A", 0xF4) == "0041"  # 8-bit data
    assert decode(b"\x00A", 0x11) == "@A"  # general group, class set, GSM
    assert decode(b"\x00A", 0x18) == "A"  # general group, UCS-2
    assert decode(b"\x00A", 0x14) == "0041"  # general group, 8-bit
    assert decode(b"\x00A", 0x24) == "0041"  # compressed
    assert decode(b"\x00A", 0xE0) == "A"  # MWI, UCS-2
    assert decode(b"\x00A", 0xD0) == "@A"  # MWI, GSM


# ------------------------------------------------------------------------------------------------
# split_udh


def test_split_udh() -> None:
    assert split_udh(b"\x05\x00\x03\x2a\x03\x02hello") == (ConcatInfo(0x2A, 3, 2), b"hello")
    assert split_udh(b"\x06\x08\x04\x12\x34\x02\x01hi") == (ConcatInfo(0x1234, 2, 1), b"hi")
    # another IE before the concat IE
    assert split_udh(b"\x08\x0a\x01\xff\x00\x03\x07\x02\x02xy") == (ConcatInfo(7, 2, 2), b"xy")
    # UDH with no concat IE
    assert split_udh(b"\x03\x0a\x01\xffbody") == (None, b"body")
    # bad seq / total: IE ignored, body still split off
    assert split_udh(b"\x05\x00\x03\x01\x02\x00x") == (None, b"x")
    assert split_udh(b"\x05\x00\x03\x01\x02\x03x") == (None, b"x")
    assert split_udh(b"\x05\x00\x03\x01\x00\x00x") == (None, b"x")


@pytest.mark.parametrize(
    "sm",
    [b"", b"\x05\x00\x03\x01", b"\x09\x00\x03\x01\x02\x01", b"\x04\x00\x05\x01\x02", b"\x01\x00"],
)
def test_split_udh_malformed(sm: bytes) -> None:
    assert split_udh(sm) == (None, sm)


# ------------------------------------------------------------------------------------------------
# parts_info


def test_parts_info_and_format() -> None:
    assert parts_info("Your code is 123456") == PartsInfo("gsm7", 0, 1, 19, 160, 141)
    assert parts_info("a" * 200) == PartsInfo("gsm7", 0, 2, 200, 153, 106)
    assert parts_info("й" * 71) == PartsInfo("ucs2", 8, 2, 71, 67, 63)
    assert parts_info("é" * 141, "latin1", "udh16") == PartsInfo("latin1", 3, 2, 141, 133, 125)
    assert parts_info("") == PartsInfo("gsm7", 0, 1, 0, 160, 160)
    assert format_parts_info(parts_info("a" * 200)) == (
        "gsm7 (data_coding 0): 2 parts, 200 septets, 153 per part, 106 left in the last part"
    )
    assert format_parts_info(parts_info("hi 😀")) == (
        "ucs2 (data_coding 8): 1 part, 5 UTF-16 code units, 70 per part, 65 left in the last part"
    )
    with pytest.raises(TextEncodingError):
        parts_info("й", "gsm7")
