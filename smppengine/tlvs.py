"""Optional parameters (TLVs) as users write them and as events show them. Pure: no I/O.

A TLV is written as a JSON (or TOML) value, keyed by its tag (``"0x1400"`` or ``"5120"``):

* a string: its UTF-8 octets, no terminator (``"1101234567890"``);
* ``{"hex": "0a0b"}``: raw octets;
* ``{"cstring": "abc"}``: the UTF-8 octets and a NUL;
* ``{"int": 7, "size": 1|2|4}``: a big-endian unsigned integer of that many octets.

The engine sends them as ``other_tlvs`` (tag → octets) on every part of a message; see
:mod:`smppengine.smpp.pdu`. Tags the engine sets itself (:data:`MANAGED`) are refused. On a received
deliver_sm, :func:`event_tlvs` turns the decoded TLVs back into these forms (``{"hex": ...}`` for tags the
codec does not know, unless :func:`smppengine.smpp.spec.register_vendor_tlv` says what they hold).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .smpp import pdu as P
from .smpp.spec import VENDOR_TLVS

#: tags the engine sets itself: never taken from a request or the config
MANAGED: dict[int, str] = {
    0x020C: "sar_msg_ref_num",
    0x020E: "sar_total_segments",
    0x020F: "sar_segment_seqnum",
    0x0424: "message_payload",
}
MAX_VALUE_OCTETS = 0xFFFF
_HEX_KEY = re.compile(r"0[xX][0-9a-fA-F]{4}")
_DEC_KEY = re.compile(r"[0-9]{1,5}")
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")
_FORMS = 'a string, {"hex": "..."}, {"cstring": "..."} or {"int": N, "size": 1|2|4}'
_SIZES = (1, 2, 4)


def tag_key(tag: int) -> str:
    """The canonical key of a tag: ``"0x"`` and 4 lower-case hex digits."""
    return f"0x{tag:04x}"


def parse_tag(key: Any) -> int:
    """``"0x1400"`` (4 hex digits) or a decimal string 0-65535 → the tag; ValueError otherwise."""
    if isinstance(key, str):
        if _HEX_KEY.fullmatch(key):
            return int(key, 16)
        if _DEC_KEY.fullmatch(key) and int(key) <= 0xFFFF:
            return int(key)
    raise ValueError(f"{key!r} is not a tag: expected \"0x\" and 4 hex digits, or a decimal number 0-65535")


def parse_value(value: Any) -> bytes:
    """The octets of one TLV value in any of the forms above; ValueError (naming the problem) otherwise."""
    if isinstance(value, str):
        raw = value.encode("utf-8")
    elif isinstance(value, Mapping) and len(value) >= 1:
        keys = set(value)
        if keys == {"hex"}:
            h = value["hex"]
            if not isinstance(h, str) or not _HEX.fullmatch(h):
                raise ValueError('"hex" expects an even number of hex digits')
            raw = bytes.fromhex(h)
        elif keys == {"cstring"}:
            c = value["cstring"]
            if not isinstance(c, str) or "\0" in c:
                raise ValueError('"cstring" expects a string without NUL')
            raw = c.encode("utf-8") + b"\0"
        elif keys == {"int", "size"}:
            n, size = value["int"], value["size"]
            if isinstance(size, bool) or size not in _SIZES:
                raise ValueError('"size" must be 1, 2 or 4')
            if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n < 1 << (8 * size):
                raise ValueError(f'"int" must be an integer 0..{(1 << (8 * size)) - 1} for size {size}')
            raw = n.to_bytes(size, "big")
        else:
            raise ValueError(f"expected {_FORMS}")
    else:
        raise ValueError(f"expected {_FORMS}")
    if len(raw) > MAX_VALUE_OCTETS:
        raise ValueError(f"{len(raw)} octets, over the {MAX_VALUE_OCTETS}-octet limit of a TLV")
    return raw


def parse_tlvs(doc: Any) -> dict[str, Any]:
    """Validate a ``tlvs`` object; returns it with canonical keys (values as written).

    ValueError's message names the tag: ``0x020c: set by the engine itself (sar_msg_ref_num)``.
    """
    if not isinstance(doc, Mapping):
        raise ValueError("expected an object of tag → value")
    out: dict[str, Any] = {}
    for key, value in doc.items():
        try:
            tag = parse_tag(key)
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        name = tag_key(tag)
        if tag in MANAGED:
            raise ValueError(f"{name}: set by the engine itself ({MANAGED[tag]}), not allowed here")
        if name in out:
            raise ValueError(f"{name}: given twice ({key!r})")
        try:
            parse_value(value)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
        out[name] = value
    return out


def to_raw(forms: Mapping[str, Any] | None) -> dict[int, bytes]:
    """Validated forms (:func:`parse_tlvs`) → tag → octets, as the codec sends them."""
    if not forms:
        return {}
    return {parse_tag(k): parse_value(v) for k, v in forms.items()}


# ------------------------------------------------------------------------------------------ received TLVs

_DELIVER = P.SPECS["deliver_sm"]
_SKIP = frozenset({"message_payload"})  # the message body itself: shown as the text, not again here


def _form(f: P.FieldSpec, value: Any) -> Any:
    """The form of a decoded value (tolerant: a caller's mapping may hold other types; None = leave out)."""
    if isinstance(value, bool):
        return {"hex": ""} if f.kind == P.FLAG and value else None
    if isinstance(value, int):
        size = f.size if f.kind == P.INT else 4
        return {"int": value, "size": size} if 0 <= value < 1 << (8 * size) else None
    if isinstance(value, str):
        return {"cstring": value}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"hex": bytes(value).hex()}
    return None


def _vendor_form(tag: int, raw: bytes) -> dict[str, Any]:
    """A TLV the codec does not name: as its registered vendor kind when the octets fit it, else hex."""
    v = VENDOR_TLVS.get(tag)
    if v is not None:
        if v.kind == P.INT and len(raw) == v.size:
            return {"int": int.from_bytes(raw, "big"), "size": v.size}
        if v.kind == P.STR and raw.endswith(b"\0") and b"\0" not in raw[:-1]:
            try:
                return {"cstring": raw[:-1].decode("utf-8")}
            except UnicodeDecodeError:
                pass
    return {"hex": raw.hex()}


def _converter(f: P.FieldSpec) -> Any:
    """The form builder of one named TLV: the decoder's own type on the fast path, anything else tolerated."""
    if f.kind == P.INT:
        limit = 1 << (8 * f.size)
        size = f.size
        return lambda v: {"int": v, "size": size} if type(v) is int and 0 <= v < limit else _form(f, v)
    if f.kind == P.STR:
        return lambda v: {"cstring": v} if type(v) is str else _form(f, v)
    if f.kind == P.OSTR:
        return lambda v: {"hex": v.hex()} if type(v) is bytes else _form(f, v)
    return lambda v: _form(f, v)


# tag key and form builder per named deliver_sm TLV
_NAMED: dict[str, tuple[str, Any]] = {
    f.name: (tag_key(f.tag), _converter(f)) for f in _DELIVER.tlvs if f.tag is not None and f.name not in _SKIP
}
_NAMED_KEYS = frozenset(_NAMED)


def event_tlvs(params: Mapping[str, Any]) -> dict[str, Any] | None:
    """The TLVs of a decoded deliver_sm in the request forms, keyed by tag (``message_payload`` excluded);
    None when it has none."""
    out: dict[str, Any] = {}
    names = _NAMED_KEYS.intersection(params)                 # C-level: the usual receipt has two TLVs
    for name in sorted(names) if len(names) > 1 else names:
        key, convert = _NAMED[name]
        form = convert(params[name])
        if form is not None:
            out[key] = form
    other = params.get(P.OTHER_TLVS)
    if isinstance(other, Mapping):
        for tag, raw in other.items():
            if isinstance(tag, int) and 0 <= tag <= 0xFFFF and isinstance(raw, bytes | bytearray):
                out[tag_key(tag)] = _vendor_form(tag, bytes(raw))
    return out or None
