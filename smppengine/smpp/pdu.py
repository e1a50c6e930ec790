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
the hot-path commands unrolled, every other command through one table-driven encoder.
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
from dataclasses import dataclass, field
from typing import Any

from smppengine.smpp import spec as _spec

MAX_PDU_LEN: int = 65536
HEADER_LEN = 16

# --- command ids (SMPP 3.4, 5.1.2.1) --------------------------------------------------------------
GENERIC_NACK = 0x80000000
BIND_RECEIVER = 0x00000001
BIND_RECEIVER_RESP = 0x80000001
BIND_TRANSMITTER = 0x00000002
BIND_TRANSMITTER_RESP = 0x80000002
QUERY_SM = 0x00000003
QUERY_SM_RESP = 0x80000003
SUBMIT_SM = 0x00000004
SUBMIT_SM_RESP = 0x80000004
DELIVER_SM = 0x00000005
DELIVER_SM_RESP = 0x80000005
UNBIND = 0x00000006
UNBIND_RESP = 0x80000006
REPLACE_SM = 0x00000007
REPLACE_SM_RESP = 0x80000007
CANCEL_SM = 0x00000008
CANCEL_SM_RESP = 0x80000008
BIND_TRANSCEIVER = 0x00000009
BIND_TRANSCEIVER_RESP = 0x80000009
OUTBIND = 0x0000000B
ENQUIRE_LINK = 0x00000015
ENQUIRE_LINK_RESP = 0x80000015
SUBMIT_MULTI = 0x00000021
SUBMIT_MULTI_RESP = 0x80000021
ALERT_NOTIFICATION = 0x00000102
DATA_SM = 0x00000103
DATA_SM_RESP = 0x80000103

COMMAND_IDS: dict[str, int] = {
    "generic_nack": GENERIC_NACK,
    "bind_receiver": BIND_RECEIVER,
    "bind_receiver_resp": BIND_RECEIVER_RESP,
    "bind_transmitter": BIND_TRANSMITTER,
    "bind_transmitter_resp": BIND_TRANSMITTER_RESP,
    "query_sm": QUERY_SM,
    "query_sm_resp": QUERY_SM_RESP,
    "submit_sm": SUBMIT_SM,
    "submit_sm_resp": SUBMIT_SM_RESP,
    "deliver_sm": DELIVER_SM,
    "deliver_sm_resp": DELIVER_SM_RESP,
    "unbind": UNBIND,
    "unbind_resp": UNBIND_RESP,
    "replace_sm": REPLACE_SM,
    "replace_sm_resp": REPLACE_SM_RESP,
    "cancel_sm": CANCEL_SM,
    "cancel_sm_resp": CANCEL_SM_RESP,
    "bind_transceiver": BIND_TRANSCEIVER,
    "bind_transceiver_resp": BIND_TRANSCEIVER_RESP,
    "outbind": OUTBIND,
    "enquire_link": ENQUIRE_LINK,
    "enquire_link_resp": ENQUIRE_LINK_RESP,
    "submit_multi": SUBMIT_MULTI,
    "submit_multi_resp": SUBMIT_MULTI_RESP,
    "alert_notification": ALERT_NOTIFICATION,
    "data_sm": DATA_SM,
    "data_sm_resp": DATA_SM_RESP,
}
COMMAND_NAMES: dict[int, str] = {v: k for k, v in COMMAND_IDS.items()}

# --- command_status values (SMPP 3.4, 5.1.3) ------------------------------------------------------
ESME_ROK = 0x00000000
ESME_RINVMSGLEN = 0x00000001
ESME_RINVCMDLEN = 0x00000002
ESME_RINVCMDID = 0x00000003
ESME_RINVBNDSTS = 0x00000004
ESME_RALYBND = 0x00000005
ESME_RSYSERR = 0x00000008
ESME_RINVSRCADR = 0x0000000A
ESME_RINVDSTADR = 0x0000000B
ESME_RINVMSGID = 0x0000000C
ESME_RBINDFAIL = 0x0000000D
ESME_RINVPASWD = 0x0000000E
ESME_RINVSYSID = 0x0000000F
ESME_RMSGQFUL = 0x00000014
ESME_RSUBMITFAIL = 0x00000045
ESME_RTHROTTLED = 0x00000058
ESME_RINVPARLEN = 0x000000C2
ESME_RUNKNOWNERR = 0x000000FF

#: the params key of the TLVs a command's table does not name (see the module docstring)
OTHER_TLVS = "other_tlvs"

_HEADER = struct.Struct(">IIII")
_U32 = struct.Struct(">I")
_TLV_HEAD = struct.Struct(">HH")


# --- public types ---------------------------------------------------------------------------------
@dataclass(slots=True)
class Pdu:
    """One SMPP PDU. ``command`` is the smpplib command name; see the module docstring for ``params``."""

    command: str
    seq: int
    status: int = 0
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def command_id(self) -> int:
        try:
            return COMMAND_IDS[self.command]
        except KeyError:
            raise ValueError(f"unknown SMPP command {self.command!r}") from None

    @property
    def is_response(self) -> bool:
        return bool(self.command_id & 0x80000000)


class PduError(Exception):
    """A PDU that cannot be decoded.

    The session answers ``generic_nack(status=self.status, seq=self.seq)`` and goes on.
    """

    def __init__(self, message: str, *, status: int = ESME_RSYSERR, seq: int = 0, command_id: int = 0) -> None:
        super().__init__(message)
        self.status = status
        self.seq = seq
        self.command_id = command_id


class FrameError(Exception):
    """The byte stream itself is unusable (command_length < 16 or > MAX_PDU_LEN, EOF mid-frame).

    The session must close.
    """


# --- field tables (from the declarative table in smppengine.smpp.spec) -----------------------------
INT, STR, OSTR, FLAG = _spec.INT, _spec.STR, _spec.OSTR, _spec.FLAG


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    kind: int  # INT, STR, OSTR or FLAG
    size: int  # INT: octets; STR: max octets including the NUL; OSTR: max octets (0 = up to 65535)
    tag: int | None  # None for a mandatory (body) field
    len_field: str | None = None  # OSTR mandatory fields: the int field that carries the length


@dataclass(frozen=True, slots=True)
class CommandSpec:
    name: str
    command_id: int
    mandatory: tuple[FieldSpec, ...]
    tlvs: tuple[FieldSpec, ...]  # in smpplib's emission order
    by_tag: dict[int, FieldSpec]
    by_name: dict[str, FieldSpec]


def _make_spec(d: _spec.CommandDef) -> CommandSpec:
    mandatory = tuple(FieldSpec(m[0], m[1], m[2], None, m[3] if len(m) > 3 else None)
                      for m in d.mandatory)
    tlvs = []
    for name in d.tlvs:
        t = _spec.TLVS[name]
        kind, size = d.overrides.get(name, (t.kind, t.size))
        tlvs.append(FieldSpec(name, kind, size, t.tag))
    return CommandSpec(
        name=d.name,
        command_id=d.command_id,
        mandatory=mandatory,
        tlvs=tuple(tlvs),
        by_tag={f.tag: f for f in tlvs if f.tag is not None},
        by_name={f.name: f for f in (*mandatory, *tlvs)},
    )


SPECS: dict[str, CommandSpec] = {d.name: _make_spec(d) for d in (*_spec.COMMANDS, _spec.OUTBIND)}
SPECS_BY_ID: dict[int, CommandSpec] = {s.command_id: s for s in SPECS.values()}
assert all(COMMAND_IDS[s.name] == s.command_id for s in SPECS.values())

_RESPONSE_OF: dict[str, str] = {
    name: name + "_resp" for name in COMMAND_IDS if not name.endswith("_resp") and name + "_resp" in COMMAND_IDS
}


# --- decoding -------------------------------------------------------------------------------------
def decode_tlvs(spec: CommandSpec, body: bytes, pos: int, params: dict[str, Any], seq: int) -> None:
    """Parse the TLVs of ``body[pos:]`` into ``params`` (shared with the fast codec)."""
    n = len(body)
    by_tag = spec.by_tag
    cid = spec.command_id
    while pos < n:
        if pos + 4 > n:
            raise PduError("truncated TLV header", status=ESME_RINVCMDLEN, seq=seq, command_id=cid)
        tag, length = _TLV_HEAD.unpack_from(body, pos)
        pos += 4
        end = pos + length
        if end > n:
            raise PduError(f"TLV 0x{tag:04x} overruns the PDU", status=ESME_RINVCMDLEN, seq=seq, command_id=cid)
        f = by_tag.get(tag)
        if f is not None:
            kind = f.kind
            if kind == INT:
                if not 1 <= length <= 4:
                    raise PduError(f"TLV {f.name} has length {length}", status=ESME_RINVCMDLEN, seq=seq, command_id=cid)
                params[f.name] = int.from_bytes(body[pos:end], "big")
            elif kind == STR:
                z = body.find(b"\0", pos, end)
                params[f.name] = body[pos : (end if z < 0 else z)].decode("latin-1")
            elif kind == OSTR:
                params[f.name] = body[pos:end]
            else:
                params[f.name] = True
        else:
            other = params.get(OTHER_TLVS)
            if other is None:
                other = params[OTHER_TLVS] = {}
            other[tag] = body[pos:end]
        pos = end


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


def encode_other_tlvs(other: Mapping[int, bytes] | None) -> bytes:
    """The raw TLVs of ``other_tlvs`` (validated), in dict order."""
    if not other:
        return b""
    return b"".join(_TLV_HEAD.pack(tag, len(raw)) + bytes(raw) for tag, raw in other.items())


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


# The fast codec registers itself here (it imports this module, so the import must come last).
_FAST_ENCODERS: dict[str, Callable[[Pdu], bytes]] = {}
_FAST_DECODERS: dict[int, Callable[[bytes, int, int], Pdu]] = {}   # (frame, command_status, sequence)
_GENERIC_ENCODERS: dict[str, Callable[[Pdu], bytes]] = {}

from smppengine.smpp import fastcodec as _fastcodec  # noqa: E402,F401  (registers the hot-path codec)

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
]
