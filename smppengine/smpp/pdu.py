"""SMPP 3.4 PDU codec and stream framing.

One module owns every byte that crosses an SMPP socket:

* :class:`FrameSplitter` cuts whole PDUs out of the bytes read from a socket (a bad command_length →
  :class:`FrameError`, the session must close; EOF between PDUs → :class:`EOFError`). It is the only framer:
  the engine's sessions and the simulator both use it.
* :func:`decode` turns one whole frame into a :class:`Pdu`. It never raises anything but :class:`PduError`:
  the session answers ``generic_nack(status=e.status, seq=e.seq)`` and carries on.
* :func:`encode` turns a :class:`Pdu` into bytes (``ValueError`` for parameters that cannot be encoded —
  a programming error, never a peer's fault).

The field tables come from the declarative table in :mod:`smppengine.smpp.spec` (commands, standard TLVs,
vendor registry). smpplib 2.2.4 is the reference codec, in the tests only: they prove the table equal to its
command classes, and every encoder byte-identical to it. The encoders live in :mod:`smppengine.smpp.fastcodec`:
the hot-path commands unrolled, every other command through one table-driven encoder. The types and tables
both are built on (:class:`Pdu`, the command ids and statuses, ``SPECS``, the TLV primitives) live below them
in :mod:`smppengine.smpp.pdu_types` and are re-exported here.
Decoding always goes through our own validating parser,
because smpplib's parser trusts the peer (a C-string without NUL, a truncated body or a short TLV are
silently mis-parsed, and a known TLV that does not belong to the command raises ``KeyError``); on
well-formed input the result equals smpplib's ``parse_pdu`` (bytes decoded to ``str`` for C-strings; a
zero-length ``short_message`` at the very end of the body is ``b""`` where smpplib leaves ``None``), which the
tests check.

Parameter conventions (encode and decode alike):

* C-Octet strings (``system_id``, ``source_addr``, ``message_id``, ``receipted_message_id``...) are ``str``
  (decoded as latin-1, which never fails; encoded as latin-1 for mandatory fields, ASCII for TLVs).
* integers (TON/NPI, ``esm_class``, ``data_coding``, ``message_state``, ``sar_*``...) are ``int``.
* octet strings (``short_message``, ``message_payload``, ``network_error_code``, ``callback_num``) are
  ``bytes``.
* ``sm_length`` is derived: never returned by :func:`decode`, ignored by :func:`encode`.
* On decode, a parameter absent from the PDU is absent from ``params`` — no smpplib defaults are filled in.
  Mandatory fields are always present in a decoded *request*; a *response* may end early (SMPP allows an
  empty body on an error response), and then the missing mandatory fields are absent too.
* On encode, a missing mandatory field is sent as 0 / empty string (``interface_version`` of a bind defaults
  to 0x34, as in smpplib); a missing TLV is not sent, nor is a TLV C-string/octet-string that is empty.
* Unknown TLVs (vendor tags, or standard tags that do not belong to the command) are kept on decode, raw, in
  ``params["other_tlvs"]`` (:data:`OTHER_TLVS`): a ``dict`` tag → value octets, in arrival order (a repeated
  tag keeps its last value). On encode, ``other_tlvs`` are sent after the standard TLVs, in dict order,
  octets exactly as given (empty ones too): the way to send a carrier's own tags (India's DLT 0x1400...).
* A TLV C-string without its terminating NUL is accepted (real SMSCs send ``receipted_message_id`` that way).
  An integer TLV whose length differs from the standard size is accepted when 1–4 octets long.
* ``alert_on_message_delivery`` (a zero-length flag TLV) decodes to ``True``; encoding it is not supported
  (smpplib silently drops it), so :func:`encode` raises ``ValueError``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import Any

from smppengine.smpp import fastcodec as _fastcodec
from smppengine.smpp import pdu_types as _types
from smppengine.smpp.pdu_types import *  # noqa: F403  (re-exported: P.Pdu, P.SPECS, P.ESME_RTHROTTLED...)
from smppengine.smpp.pdu_types import (
    COMMAND_IDS,
    COMMAND_NAMES,
    ESME_RINVCMDID,
    ESME_RINVCMDLEN,
    ESME_RSYSERR,
    HEADER_LEN,
    INT,
    MAX_PDU_LEN,
    OSTR,
    OTHER_TLVS,
    SPECS,
    SPECS_BY_ID,
    STR,
    CommandSpec,
    FrameError,
    Pdu,
    PduError,
    decode_tlvs,
)

_HEADER = struct.Struct(">IIII")
_U32 = struct.Struct(">I")

_RESPONSE_OF: dict[str, str] = {
    name: name + "_resp" for name in COMMAND_IDS if not name.endswith("_resp") and name + "_resp" in COMMAND_IDS
}


# --- decoding -------------------------------------------------------------------------------------
def decode_body(spec: CommandSpec, body: bytes, seq: int, is_response: bool) -> dict[str, Any]:
    """Generic validating parser of a PDU body (header stripped)."""
    params: dict[str, Any] = {}
    lengths: dict[str, int] = {}
    n = len(body)
    pos = 0
    cid = spec.command_id
    for f in spec.mandatory:
        kind = f.kind
        if pos == n and is_response:
            break
        if kind == INT:
            end = pos + f.size
            if end > n:
                raise PduError(f"body ends in {f.name}", status=ESME_RINVCMDLEN, seq=seq, command_id=cid)
            value = int.from_bytes(body[pos:end], "big")
            if f.name == "sm_length":
                lengths[f.name] = value
            else:
                params[f.name] = value
            pos = end
        elif kind == STR:
            z = body.find(b"\0", pos, pos + f.size)
            if z < 0:
                raise PduError(
                    f"{f.name}: no NUL within {f.size} octets",
                    status=ESME_RINVCMDLEN,
                    seq=seq,
                    command_id=cid,
                )
            params[f.name] = body[pos:z].decode("latin-1")
            pos = z + 1
        elif kind == OSTR:
            length = lengths.get(f.len_field or "", 0)
            end = pos + length
            if end > n:
                raise PduError(f"body ends in {f.name}", status=ESME_RINVCMDLEN, seq=seq, command_id=cid)
            params[f.name] = body[pos:end]
            pos = end
    if pos < n:
        decode_tlvs(spec, body, pos, params, seq)
    return params


def decode(frame: bytes) -> Pdu:
    """Decode one whole PDU (header included). Raises :class:`PduError` only."""
    try:
        if len(frame) < HEADER_LEN:
            raise PduError(f"frame of {len(frame)} octets", status=ESME_RINVCMDLEN)
        length, cid, status, seq = _HEADER.unpack_from(frame, 0)
        if length != len(frame):
            raise PduError(
                f"command_length {length} != frame length {len(frame)}",
                status=ESME_RINVCMDLEN,
                seq=seq,
                command_id=cid,
            )
        fast = _FAST_DECODERS.get(cid)
        if fast is not None:
            return fast(frame, status, seq)
        spec = SPECS_BY_ID.get(cid)
        if spec is None:
            raise PduError(f"unknown command_id 0x{cid:08x}", status=ESME_RINVCMDID, seq=seq, command_id=cid)
        body = frame[HEADER_LEN:]
        params = decode_body(spec, body, seq, bool(cid & 0x80000000))
        return Pdu(spec.name, seq, status, params)
    except PduError:
        raise
    except Exception as exc:  # defensive: nothing but PduError may escape
        seq = int.from_bytes(frame[12:16], "big") if len(frame) >= 16 else 0
        cid = int.from_bytes(frame[4:8], "big") if len(frame) >= 8 else 0
        raise PduError(f"undecodable PDU: {exc!r}", status=ESME_RSYSERR, seq=seq, command_id=cid) from exc


# --- encoding -------------------------------------------------------------------------------------
def validate_params(spec: CommandSpec, params: Mapping[str, Any]) -> None:
    """Raise ValueError for a parameter that cannot be encoded exactly (smpplib would truncate or crash)."""
    for name, value in params.items():
        if name == "sm_length":
            continue
        if name == OTHER_TLVS:
            validate_other_tlvs(value)
            continue
        f = spec.by_name.get(name)
        if f is None:
            raise ValueError(f"{spec.name} has no parameter {name!r}")
        if value is None:
            continue
        kind = f.kind
        if kind == INT:
            if not isinstance(value, int):
                raise ValueError(f"{name} must be int, not {type(value).__name__}")
            if not 0 <= value < (1 << (8 * f.size)):
                raise ValueError(f"{name}={value} does not fit in {f.size} octet(s)")
        elif kind == STR:
            if not isinstance(value, str):
                raise ValueError(f"{name} must be str, not {type(value).__name__}")
            if "\0" in value:
                raise ValueError(f"{name} contains NUL")
            limit = f.size - 1 if f.tag is None else min(f.size - 1, 0xFFFE)
            if len(value) > limit:
                raise ValueError(f"{name} is longer than {limit} characters")
            try:
                value.encode("latin-1" if f.tag is None else "ascii")
            except UnicodeEncodeError:
                raise ValueError(f"{name} is not {'latin-1' if f.tag is None else 'ASCII'}: {value!r}") from None
        elif kind == OSTR:
            if not isinstance(value, bytes | bytearray):
                raise ValueError(f"{name} must be bytes, not {type(value).__name__}")
            limit = 254 if f.tag is None else 0xFFFF
            if len(value) > limit:
                raise ValueError(f"{name} is longer than {limit} octets")
        else:
            raise ValueError(f"encoding the flag TLV {name} is not supported")
    if params.get("short_message") and params.get("message_payload"):
        raise ValueError("short_message and message_payload are mutually exclusive")


def validate_other_tlvs(value: Any) -> None:
    """``other_tlvs`` must be a dict of 16-bit tag → octet string of at most 65535 octets."""
    if value is None:
        return
    if not isinstance(value, Mapping):
        raise ValueError(f"{OTHER_TLVS} must be a dict of tag -> bytes, not {type(value).__name__}")
    for tag, raw in value.items():
        if not isinstance(tag, int) or isinstance(tag, bool) or not 0 <= tag <= 0xFFFF:
            raise ValueError(f"{OTHER_TLVS}: tag {tag!r} is not a 16-bit integer")
        if not isinstance(raw, bytes | bytearray):
            raise ValueError(f"{OTHER_TLVS}: the value of tag 0x{tag:04x} must be bytes, not {type(raw).__name__}")
        if len(raw) > 0xFFFF:
            raise ValueError(f"{OTHER_TLVS}: the value of tag 0x{tag:04x} is longer than 65535 octets")


def encode(pdu: Pdu) -> bytes:
    """Encode a PDU. ValueError for an unknown command or a parameter that cannot be encoded exactly."""
    spec = SPECS.get(pdu.command)
    if spec is None:
        raise ValueError(f"cannot encode SMPP command {pdu.command!r}")
    if not 0 <= pdu.seq <= 0xFFFFFFFF:
        raise ValueError(f"sequence number {pdu.seq} out of range")
    if not 0 <= pdu.status <= 0xFFFFFFFF:
        raise ValueError(f"command_status {pdu.status} out of range")
    validate_params(spec, pdu.params)
    fast = _FAST_ENCODERS.get(pdu.command)
    if fast is not None:
        return fast(pdu)
    return _GENERIC_ENCODERS[pdu.command](pdu)


# --- framing --------------------------------------------------------------------------------------
class FrameSplitter:
    """Cuts a byte stream into whole PDUs (pure: the caller reads the socket). One read of up to 64 KiB
    usually holds many PDUs: they are cut here in one go, not awaited one ``readexactly`` pair each."""

    __slots__ = ("_buf", "max_len", "error")

    def __init__(self, max_len: int = MAX_PDU_LEN) -> None:
        self._buf = b""
        self.max_len = max_len
        self.error: FrameError | None = None     # set once the stream is unusable; nothing more is cut

    def feed(self, data: bytes) -> list[bytes]:
        """Every whole PDU completed by ``data``, in order. A bad command_length sets :attr:`error` (the
        PDUs before it are still returned)."""
        if self.error is not None:
            return []
        buf = self._buf + data if self._buf else data
        frames: list[bytes] = []
        pos, end = 0, len(buf)
        while end - pos >= 4:
            (length,) = _U32.unpack_from(buf, pos)
            if length < HEADER_LEN or length > self.max_len:
                self.error = FrameError(f"command_length {length} outside {HEADER_LEN}..{self.max_len}")
                self._buf = b""
                return frames
            if end - pos < length:
                break
            frames.append(buf[pos:pos + length])
            pos += length
        self._buf = buf[pos:] if pos else buf
        return frames

    def eof(self) -> None:
        """The stream ended: EOFError when it ended between PDUs, FrameError inside one."""
        n = len(self._buf)
        if n == 0:
            raise EOFError("connection closed")
        if n < 4:
            raise FrameError(f"EOF after {n} octet(s) of command_length")
        (length,) = _U32.unpack_from(self._buf, 0)
        raise FrameError(f"EOF after {n} of {length} octets")


# --- helpers --------------------------------------------------------------------------------------
def response_for(pdu: Pdu, status: int = 0, **params: Any) -> Pdu:
    """The matching ``*_resp`` of a request PDU, with the same sequence number."""
    resp = _RESPONSE_OF.get(pdu.command)
    if resp is None:
        raise ValueError(f"{pdu.command} has no response PDU")
    return Pdu(resp, pdu.seq, status, dict(params))


def generic_nack(seq: int, status: int) -> Pdu:
    return Pdu("generic_nack", seq, status, {})


def next_seq(seq: int) -> int:
    """Next sequence number: 1..0x7FFFFFFF, wrapping back to 1."""
    return seq + 1 if 0 < seq < 0x7FFFFFFF else 1


# The codecs: the hot-path commands unrolled (fastcodec), every command through one table-driven encoder.
_FAST_ENCODERS: dict[str, Callable[[Pdu], bytes]] = _fastcodec.ENCODERS
_FAST_DECODERS: dict[int, Callable[[bytes, int, int], Pdu]] = _fastcodec.DECODERS   # (frame, status, seq)
_GENERIC_ENCODERS: dict[str, Callable[[Pdu], bytes]] = _fastcodec.GENERIC_ENCODERS

__all__ = [
    "MAX_PDU_LEN",
    "OTHER_TLVS",
    "HEADER_LEN",
    "COMMAND_IDS",
    "COMMAND_NAMES",
    "Pdu",
    "PduError",
    "FrameError",
    "encode",
    "decode",
    "FrameSplitter",
    "response_for",
    "generic_nack",
    "next_seq",
    "decode_body",
    "validate_params",
    "validate_other_tlvs",
]
__all__ += _types.__all__
