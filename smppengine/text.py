"""Text codec: GSM 03.38 / UCS-2 / Latin-1 encoding, splitting into parts, concatenation, MO decoding.

Pure logic, no I/O. GSM 7-bit text travels unpacked (one septet per octet), as usual in SMPP.

Units: septets for GSM (2 for an escaped character), UTF-16 code units for UCS-2, octets for Latin-1.

===========  ===========  ===========  =============
encoding     single part  udh / sar    udh16
===========  ===========  ===========  =============
gsm7         160          153          152
ucs2         70           67           66
latin1       140          134          133
===========  ===========  ===========  =============

Binary messages (:func:`segment_binary`, :func:`build_binary_parts`): octets as given, data_coding 4, an
optional user data header (the caller's IEs, the 16-bit application port IE 0x05) in front; 140 octets per
part, UDH included; longer ones split with the concatenation IE (8-bit, or 16-bit for ``udh16``) beside the
other IEs in every part.

``payload`` never splits: one chunk of any length (up to the 65535-octet message_payload TLV).
A split never separates an escape pair (ESC + code) or a UTF-16 surrogate pair, so decoding each
chunk on its own and joining the results gives back the original text.
"""

from __future__ import annotations

import codecs
import random
from collections import OrderedDict
from dataclasses import dataclass, field

from smppengine import gsm0338

__all__ = [
    "CONCAT_METHODS",
    "DC_ASCII",
    "DC_BINARY",
    "DC_DEFAULT",
    "DC_LATIN1",
    "DC_UCS2",
    "ENCODINGS",
    "MAX_PARTS",
    "MAX_PAYLOAD_OCTETS",
    "ConcatInfo",
    "ConcatRefs",
    "MessageTooLongError",
    "PartSpec",
    "PartsInfo",
    "Segments",
    "TextEncodingError",
    "build_binary_parts",
    "binary_parts_info",
    "build_parts",
    "flash_data_coding",
    "parse_udh",
    "segment_binary",
    "decode",
    "format_parts_info",
    "parts_info",
    "segment",
    "split_udh",
]

DC_DEFAULT = 0
DC_ASCII = 1
DC_LATIN1 = 3
DC_BINARY = 4
DC_UCS2 = 8

ENCODINGS = ("auto", "gsm7", "ucs2", "latin1")
CONCAT_METHODS = ("udh", "udh16", "sar", "payload")

#: concatenation (UDH and SAR) counts parts in one octet
MAX_PARTS = 255
#: the message_payload TLV length is 16 bits
MAX_PAYLOAD_OCTETS = 65535

_DATA_CODING = {"gsm7": DC_DEFAULT, "ucs2": DC_UCS2, "latin1": DC_LATIN1}
_OCTETS_PER_UNIT = {"gsm7": 1, "ucs2": 2, "latin1": 1}
_SINGLE = {"gsm7": 160, "ucs2": 70, "latin1": 140}
_MULTI = {
    "udh": {"gsm7": 153, "ucs2": 67, "latin1": 134},
    "sar": {"gsm7": 153, "ucs2": 67, "latin1": 134},
    "udh16": {"gsm7": 152, "ucs2": 66, "latin1": 133},
}
_UNIT_NAMES = {"gsm7": "septets", "ucs2": "UTF-16 code units", "latin1": "octets", "binary": "octets"}

_GSM_ENCODE_MAP = gsm0338.ENCODE_MAP
_REPLACEMENT = "\ufffd"
# octet → character for the basic table; ESC and 0x80-0xFF decode as U+FFFD when met outside a pair
_GSM_DECODE_TABLE = (
    gsm0338.BASIC[: gsm0338.ESC] + _REPLACEMENT + gsm0338.BASIC[gsm0338.ESC + 1 :] + _REPLACEMENT * 128
)
_ASCII_DECODE_TABLE = "".join(chr(i) for i in range(128)) + _REPLACEMENT * 128


class TextEncodingError(ValueError):
    """A character of the text cannot be written in the requested encoding."""

    def __init__(self, char: str, position: int, encoding: str) -> None:
        self.char = char
        self.position = position
        self.encoding = encoding
        super().__init__(
            f"character {char!r} (U+{ord(char):04X}) at position {position} does not fit {encoding}"
        )


class MessageTooLongError(ValueError):
    """The text needs more parts than concatenation can number (255), or exceeds message_payload."""

    def __init__(self, parts: int, units: int, encoding: str, concat: str) -> None:
        self.parts = parts
        self.units = units
        self.encoding = encoding
        self.concat = concat
        if concat == "payload":
            why = f"over the {MAX_PAYLOAD_OCTETS}-octet message_payload limit"
        else:
            why = f"{parts} parts, over the maximum of {MAX_PARTS}"
        super().__init__(f"text too long: {units} {_UNIT_NAMES[encoding]} in {encoding}, {why}")


@dataclass(frozen=True, slots=True)
class Segments:
    encoding: str  # resolved: "gsm7" | "ucs2" | "latin1"
    data_coding: int  # 0, 8 or 3
    chunks: tuple[bytes, ...]  # encoded text of each part, without any UDH


@dataclass(frozen=True, slots=True)
class PartSpec:
    short_message: bytes
    esm_class: int  # 0x40 (UDHI) when a UDH is prepended, else 0
    tlvs: dict[str, int | bytes] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ConcatInfo:
    ref: int
    total: int
    seq: int


@dataclass(frozen=True, slots=True)
class PartsInfo:
    encoding: str
    data_coding: int
    parts: int
    units: int  # total units of the text
    per_part: int  # the limit per part used (160 or 153, 70 or 67, ...)
    remaining: int  # units still free in the last part


# --------------------------------------------------------------------------------------------- encoding


def _check(encoding: str, concat: str) -> None:
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown encoding {encoding!r}; expected one of {', '.join(ENCODINGS)}")
    if concat not in CONCAT_METHODS:
        raise ValueError(f"unknown concat method {concat!r}; expected one of {', '.join(CONCAT_METHODS)}")


def _encode(text: str, encoding: str) -> tuple[str, bytes]:
    """Resolve ``encoding`` and encode the whole text. Raises TextEncodingError."""
    if encoding == "auto":
        try:
            return "gsm7", codecs.charmap_encode(text, "strict", _GSM_ENCODE_MAP)[0]
        except UnicodeEncodeError:
            encoding = "ucs2"
    try:
        if encoding == "gsm7":
            return "gsm7", codecs.charmap_encode(text, "strict", _GSM_ENCODE_MAP)[0]
        if encoding == "ucs2":
            return "ucs2", text.encode("utf-16-be")
        return "latin1", text.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise TextEncodingError(text[exc.start], exc.start, encoding) from None


def _split(data: bytes, encoding: str, concat: str) -> tuple[bytes, ...]:
    """Greedy split of encoded text into chunks; never splits an escape pair or a surrogate pair."""
    width = _OCTETS_PER_UNIT[encoding]
    if concat == "payload" or len(data) <= _SINGLE[encoding] * width:
        return (data,)
    step = _MULTI[concat][encoding] * width
    n = len(data)
    chunks: list[bytes] = []
    start = 0
    while start < n:
        end = start + step
        if end >= n:
            chunks.append(data[start:])
            break
        if encoding == "gsm7":
            # 0x1B is only ever emitted as the first octet of an escape pair
            if data[end - 1] == gsm0338.ESC:
                end -= 1
        elif encoding == "ucs2":
            if 0xD8 <= data[end - 2] <= 0xDB:  # high surrogate: keep the pair together
                end -= 2
        chunks.append(data[start:end])
        start = end
    return tuple(chunks)


def _segment(text: str, encoding: str, concat: str) -> Segments:
    _check(encoding, concat)
    resolved, data = _encode(text, encoding)
    return Segments(resolved, _DATA_CODING[resolved], _split(data, resolved, concat))


def segment(text: str, encoding: str = "auto", concat: str = "udh") -> Segments:
    """Encode ``text`` and split it into the chunks of its parts (no UDH).

    ``encoding``: "auto" (GSM 7-bit when every character fits, else UCS-2), "gsm7", "ucs2", "latin1".
    Raises TextEncodingError (a character does not fit), MessageTooLongError (over 255 parts, or over
    65535 octets with "payload"), ValueError (unknown encoding / concat method).
    """
    segs = _segment(text, encoding, concat)
    if len(segs.chunks) > MAX_PARTS or (concat == "payload" and len(segs.chunks[0]) > MAX_PAYLOAD_OCTETS):
        width = _OCTETS_PER_UNIT[segs.encoding]
        total = sum(len(c) for c in segs.chunks) // width
        raise MessageTooLongError(len(segs.chunks), total, segs.encoding, concat)
    return segs


# ------------------------------------------------------------------------------------------ PDU parts


def build_parts(segments: Segments, concat: str, ref: int) -> list[PartSpec]:
    """The submit_sm body of each part: short_message, esm_class and optional parameters.

    ``ref`` is the concatenation reference (``ConcatRefs.next``); 8-bit UDH uses ``ref & 0xFF``.
    """
    if concat not in CONCAT_METHODS:
        raise ValueError(f"unknown concat method {concat!r}; expected one of {', '.join(CONCAT_METHODS)}")
    chunks = segments.chunks
    if concat == "payload":
        body = b"".join(chunks)
        if len(body) <= _SINGLE[segments.encoding] * _OCTETS_PER_UNIT[segments.encoding]:
            return [PartSpec(body, 0, {})]
        if len(body) > MAX_PAYLOAD_OCTETS:
            width = _OCTETS_PER_UNIT[segments.encoding]
            raise MessageTooLongError(1, len(body) // width, segments.encoding, concat)
        return [PartSpec(b"", 0, {"message_payload": body})]
    total = len(chunks)
    if total == 1:
        return [PartSpec(chunks[0], 0, {})]
    if total > MAX_PARTS:
        width = _OCTETS_PER_UNIT[segments.encoding]
        raise MessageTooLongError(total, sum(len(c) for c in chunks) // width, segments.encoding, concat)
    limit = _MULTI[concat][segments.encoding] * _OCTETS_PER_UNIT[segments.encoding]
    for chunk in chunks:
        if len(chunk) > limit:
            raise ValueError(f"chunk of {len(chunk)} octets exceeds the {concat} part limit of {limit}")
    if concat == "udh":
        r = ref & 0xFF
        return [
            PartSpec(bytes((5, 0x00, 3, r, total, seq)) + chunk, 0x40, {})
            for seq, chunk in enumerate(chunks, 1)
        ]
    if concat == "udh16":
        hi, lo = (ref >> 8) & 0xFF, ref & 0xFF
        return [
            PartSpec(bytes((6, 0x08, 4, hi, lo, total, seq)) + chunk, 0x40, {})
            for seq, chunk in enumerate(chunks, 1)
        ]
    r16 = ref & 0xFFFF
    return [
        PartSpec(
            chunk, 0, {"sar_msg_ref_num": r16, "sar_total_segments": total, "sar_segment_seqnum": seq}
        )
        for seq, chunk in enumerate(chunks, 1)
    ]


class ConcatRefs:
    """Rotating concatenation reference per destination; bounded memory (an LRU of ``max_entries``).

    A destination seen for the first time starts at a random reference, so that a restart does not
    replay the same references; after that each call adds one, wrapping 65535 → 1.
    """

    def __init__(self, max_entries: int = 100_000, seed: int | None = None) -> None:
        self._max = max(1, max_entries)
        self._last: OrderedDict[str, int] = OrderedDict()
        self._rng = random.Random(seed)

    def next(self, destination: str) -> int:
        """The next reference for ``destination``: 1..65535, never the same as the previous one."""
        last = self._last.pop(destination, None)
        ref = self._rng.randint(1, 65535) if last is None else last % 65535 + 1
        self._last[destination] = ref
        if len(self._last) > self._max:
            self._last.popitem(last=False)
        return ref

    def __len__(self) -> int:
        return len(self._last)


# ------------------------------------------------------------------------------------- flash, binary

#: message class 0 ("flash") data_coding by resolved encoding (general data coding group, class 0)
_FLASH = {"gsm7": 0x10, "ucs2": 0x18}
#: octets of user data per part (UDH included)
BINARY_OCTETS = 140
_CONCAT_IES = (0x00, 0x08)
_PORT_IES = (0x04, 0x05)


def flash_data_coding(encoding: str) -> int:
    """data_coding of a class 0 (flash) message in the resolved ``encoding``; ValueError for Latin-1, which
    has no data coding with a message class."""
    dc = _FLASH.get(encoding)
    if dc is None:
        raise ValueError(f"{encoding} cannot carry a message class: a flash message must be gsm7 or ucs2 "
                         "(data_coding 0x10 or 0x18)")
    return dc


def parse_udh(udh: bytes) -> list[tuple[int, bytes]]:
    """The information elements of a whole UDH (length octet first); ValueError when malformed."""
    if not udh:
        raise ValueError("empty UDH")
    if udh[0] != len(udh) - 1:
        raise ValueError(f"the first octet (UDH length) is {udh[0]}, but {len(udh) - 1} octets follow it")
    ies: list[tuple[int, bytes]] = []
    i, n = 1, len(udh)
    while i < n:
        if i + 2 > n:
            raise ValueError(f"information element at octet {i} is cut short")
        iei, iel = udh[i], udh[i + 1]
        if i + 2 + iel > n:
            raise ValueError(f"information element 0x{iei:02x} at octet {i} overruns the UDH")
        ies.append((iei, udh[i + 2 : i + 2 + iel]))
        i += 2 + iel
    return ies


def _port_ie(ports: tuple[int, int]) -> bytes:
    src, dst = ports
    return bytes((0x05, 4)) + dst.to_bytes(2, "big") + src.to_bytes(2, "big")


def _binary_ies(udh: bytes, ports: tuple[int, int] | None) -> bytes:
    """The caller's IEs (without the length octet) and the port IE."""
    body = b""
    if udh:
        ies = parse_udh(udh)
        if ports is not None and any(iei in _PORT_IES for iei, _ in ies):
            raise ValueError("the udh already has an application port IE; do not give ports as well")
        body = udh[1:]
    if ports is not None:
        body += _port_ie(ports)
    return body


def segment_binary(data: bytes, udh: bytes = b"", ports: tuple[int, int] | None = None,
                   concat: str = "udh") -> Segments:
    """Split binary ``data`` into the chunks of its parts (no UDH): one part when the UDH (the caller's IEs
    and the port IE) and the data fit 140 octets, else parts that leave room for the concatenation IE
    (16-bit reference with ``concat`` "udh16", else 8-bit; binary always concatenates in the UDH).

    Raises ValueError (malformed UDH, a UDH with its own concatenation IE that needs splitting, too long for
    255 parts, nothing to send).
    """
    if not data:
        raise ValueError("binary: nothing to send")
    ies = _binary_ies(udh, ports)
    head = 1 + len(ies) if ies else 0
    if head + len(data) <= BINARY_OCTETS:
        return Segments("binary", DC_BINARY, (bytes(data),))
    if udh and any(iei in _CONCAT_IES for iei, _ in parse_udh(udh)):
        raise ValueError(f"the udh has its own concatenation IE, so the message must fit one part: "
                         f"{head + len(data)} octets, over {BINARY_OCTETS}")
    step = BINARY_OCTETS - (1 + len(ies) + (6 if concat == "udh16" else 5))
    if step <= 0:
        raise ValueError("the udh leaves no room for data beside the concatenation IE")
    chunks = tuple(bytes(data[i : i + step]) for i in range(0, len(data), step))
    if len(chunks) > MAX_PARTS:
        raise ValueError(f"binary too long: {len(data)} octets, {len(chunks)} parts, over the maximum of "
                         f"{MAX_PARTS}")
    return Segments("binary", DC_BINARY, chunks)


def build_binary_parts(segments: Segments, udh: bytes, ports: tuple[int, int] | None, concat: str,
                       ref: int) -> list[PartSpec]:
    """The submit_sm body of each part of a binary message (:func:`segment_binary`)."""
    ies = _binary_ies(udh, ports)
    chunks = segments.chunks
    total = len(chunks)
    if total == 1:
        if not ies:
            return [PartSpec(chunks[0], 0, {})]
        return [PartSpec(bytes((len(ies),)) + ies + chunks[0], 0x40, {})]
    out: list[PartSpec] = []
    for seq, chunk in enumerate(chunks, 1):
        if concat == "udh16":
            cie = bytes((0x08, 4, (ref >> 8) & 0xFF, ref & 0xFF, total, seq))
        else:
            cie = bytes((0x00, 3, ref & 0xFF, total, seq))
        head = cie + ies
        out.append(PartSpec(bytes((len(head),)) + head + chunk, 0x40, {}))
    return out


# ------------------------------------------------------------------------------------------- decoding


def _decode_gsm(data: bytes) -> str:
    if gsm0338.ESC not in data:
        return codecs.charmap_decode(data, "strict", _GSM_DECODE_TABLE)[0]
    table = _GSM_DECODE_TABLE
    ext = gsm0338.EXTENSION
    out: list[str] = []
    i = 0
    n = len(data)
    while True:
        j = data.find(gsm0338.ESC, i)
        if j < 0:
            out.append(codecs.charmap_decode(data[i:], "strict", table)[0])
            break
        if j > i:
            out.append(codecs.charmap_decode(data[i:j], "strict", table)[0])
        if j + 1 >= n:  # a lone ESC at the end
            out.append(_REPLACEMENT)
            break
        code = data[j + 1]
        if code in ext:
            out.append(ext[code])
        elif code == gsm0338.ESC:
            out.append(" ")  # SS2, reserved for another extension table: shown as a space (23.038)
        else:
            # no symbol in the extension table: show the basic table's character (23.038 §6.2.1.1)
            out.append(table[code])
        i = j + 2
    return "".join(out)


def _decode_ucs2(data: bytes) -> str:
    return data.decode("utf-16-be", "replace")


def decode(data: bytes, data_coding: int, default_alphabet: str = "gsm") -> str:
    """Text of a short_message / message_payload. Never raises.

    0 → ``default_alphabet`` ("gsm", "ascii" or "latin1"); 1 → ASCII; 3 → Latin-1; 6 → ISO-8859-5;
    7 → ISO-8859-8; 8 → UTF-16BE (surrogate pairs joined; a lone surrogate or odd octet → U+FFFD);
    10 → ISO-2022-JP; 14 → KS C 5601 (EUC-KR); 2, 4 and other 8-bit/binary or unknown codings → lowercase
    hex. Values above 14 are read as a GSM 03.38 data coding scheme (0xF0-0xFF: bit 2 set → hex, else GSM;
    general and message-waiting groups by their alphabet bits). Unknown GSM codes → U+FFFD.
    """
    data = bytes(data)
    dc = data_coding & 0xFF
    if dc == DC_DEFAULT:
        if default_alphabet == "latin1":
            return data.decode("latin-1")
        if default_alphabet == "ascii":
            return codecs.charmap_decode(data, "strict", _ASCII_DECODE_TABLE)[0]
        return _decode_gsm(data)
    if dc == DC_UCS2:
        return _decode_ucs2(data)
    if dc == DC_LATIN1:
        return data.decode("latin-1")
    if dc == DC_ASCII:
        return codecs.charmap_decode(data, "strict", _ASCII_DECODE_TABLE)[0]
    if dc == 6:
        return data.decode("iso8859_5", "replace")
    if dc == 7:
        return data.decode("iso8859_8", "replace")
    if dc == 10:
        return data.decode("iso2022_jp", "replace")
    if dc == 14:
        return data.decode("euc_kr", "replace")
    if dc <= 0x0F:  # 2, 4 (binary), 5, 9, 11, 12, 13, 15
        return data.hex()
    if dc >= 0xF0:  # data coding / message class group
        return data.hex() if dc & 0x04 else _decode_gsm(data)
    if 0xC0 <= dc <= 0xDF:  # message waiting indication, GSM 7-bit
        return _decode_gsm(data)
    if 0xE0 <= dc <= 0xEF:  # message waiting indication, UCS-2
        return _decode_ucs2(data)
    if dc < 0x80 and not dc & 0x20:  # general / automatic deletion group, uncompressed
        alphabet = (dc >> 2) & 0x03
        if alphabet == 0:
            return _decode_gsm(data)
        if alphabet == 2:
            return _decode_ucs2(data)
    return data.hex()


# ---------------------------------------------------------------------------------------- MO concat


def split_udh(short_message: bytes) -> tuple[ConcatInfo | None, bytes]:
    """Parse the UDH at the start of ``short_message`` (the caller saw UDHI in esm_class).

    Returns the concatenation IE (0x00, 8-bit ref; or 0x08, 16-bit ref) if any, and the body after the UDH.
    A malformed UDH gives ``(None, short_message)``; a concat IE with total 0 or seq outside 1..total is
    ignored (None). Never raises.
    """
    sm = bytes(short_message)
    if not sm:
        return None, sm
    udhl = sm[0]
    end = 1 + udhl
    if end > len(sm):
        return None, sm
    info: ConcatInfo | None = None
    i = 1
    while i < end:
        if i + 2 > end:
            return None, sm
        iei, iel = sm[i], sm[i + 1]
        data_start = i + 2
        i = data_start + iel
        if i > end:
            return None, sm
        if iei == 0x00 and iel == 3:
            ref, total, seq = sm[data_start], sm[data_start + 1], sm[data_start + 2]
        elif iei == 0x08 and iel == 4:
            ref = (sm[data_start] << 8) | sm[data_start + 1]
            total, seq = sm[data_start + 2], sm[data_start + 3]
        else:
            continue
        if total >= 1 and 1 <= seq <= total:
            info = ConcatInfo(ref, total, seq)
    return info, sm[end:]


# ------------------------------------------------------------------------------------------ parts info


def parts_info(text: str, encoding: str = "auto", concat: str = "udh") -> PartsInfo:
    """How ``text`` would be sent: encoding, number of parts, units, limit per part, room left.

    Does not enforce the 255-part maximum (``parts`` may exceed it); raises TextEncodingError / ValueError.
    """
    segs = _segment(text, encoding, concat)
    enc = segs.encoding
    width = _OCTETS_PER_UNIT[enc]
    total_units = sum(len(c) for c in segs.chunks) // width
    parts = len(segs.chunks)
    if parts > 1:
        per_part = _MULTI[concat][enc]
    elif concat == "payload" and total_units > _SINGLE[enc]:
        per_part = MAX_PAYLOAD_OCTETS // width
    else:
        per_part = _SINGLE[enc]
    last_units = len(segs.chunks[-1]) // width
    return PartsInfo(enc, segs.data_coding, parts, total_units, per_part, per_part - last_units)


def binary_parts_info(data: bytes, udh: bytes = b"", ports: tuple[int, int] | None = None,
                      concat: str = "udh") -> PartsInfo:
    """:func:`parts_info` of a binary message (units are octets of data, UDH not counted)."""
    segs = segment_binary(data, udh, ports, concat)
    per_part = len(segs.chunks[0]) if len(segs.chunks) > 1 else BINARY_OCTETS - (
        1 + len(_binary_ies(udh, ports)) if udh or ports else 0)
    return PartsInfo("binary", DC_BINARY, len(segs.chunks), len(data), per_part, per_part - len(segs.chunks[-1]))


def format_parts_info(info: PartsInfo) -> str:
    """One human-readable line for the ``smppengine parts`` command, e.g.

    ``gsm7 (data_coding 0): 2 parts, 200 septets, 153 per part, 106 left in the last part``
    """
    unit = _UNIT_NAMES.get(info.encoding, "units")
    noun = "part" if info.parts == 1 else "parts"
    line = (
        f"{info.encoding} (data_coding {info.data_coding}): {info.parts} {noun}, {info.units} {unit}, "
        f"{info.per_part} per part, {info.remaining} left in the last part"
    )
    if info.parts > MAX_PARTS:
        line += f" (over the maximum of {MAX_PARTS} parts)"
    elif info.remaining < 0:
        line += " (too long)"
    return line
