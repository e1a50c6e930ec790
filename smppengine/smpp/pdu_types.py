"""The PDU's types and tables, below both codecs: command ids and command_status values, :class:`Pdu` and
its errors, the field tables built from the declarative table (:mod:`smppengine.smpp.spec`), and the TLV
primitives both codecs share (:func:`decode_tlvs`, :func:`encode_other_tlvs`).

:mod:`smppengine.smpp.fastcodec` (the hot-path encoders and decoders) and :mod:`smppengine.smpp.pdu` (the
public codec: ``encode``, ``decode``, framing) are built on this module; ``pdu`` re-exports every name here, so
users write ``P.Pdu``, ``P.SPECS``, ``P.ESME_RTHROTTLED`` as before. Parameter conventions: see ``pdu``.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
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


def encode_other_tlvs(other: Mapping[int, bytes] | None) -> bytes:
    """The raw TLVs of ``other_tlvs`` (validated), in dict order."""
    if not other:
        return b""
    return b"".join(_TLV_HEAD.pack(tag, len(raw)) + bytes(raw) for tag, raw in other.items())


__all__ = [
    "MAX_PDU_LEN",
    "HEADER_LEN",
    "GENERIC_NACK",
    "BIND_RECEIVER",
    "BIND_RECEIVER_RESP",
    "BIND_TRANSMITTER",
    "BIND_TRANSMITTER_RESP",
    "QUERY_SM",
    "QUERY_SM_RESP",
    "SUBMIT_SM",
    "SUBMIT_SM_RESP",
    "DELIVER_SM",
    "DELIVER_SM_RESP",
    "UNBIND",
    "UNBIND_RESP",
    "REPLACE_SM",
    "REPLACE_SM_RESP",
    "CANCEL_SM",
    "CANCEL_SM_RESP",
    "BIND_TRANSCEIVER",
    "BIND_TRANSCEIVER_RESP",
    "OUTBIND",
    "ENQUIRE_LINK",
    "ENQUIRE_LINK_RESP",
    "SUBMIT_MULTI",
    "SUBMIT_MULTI_RESP",
    "ALERT_NOTIFICATION",
    "DATA_SM",
    "DATA_SM_RESP",
    "COMMAND_IDS",
    "COMMAND_NAMES",
    "ESME_ROK",
    "ESME_RINVMSGLEN",
    "ESME_RINVCMDLEN",
    "ESME_RINVCMDID",
    "ESME_RINVBNDSTS",
    "ESME_RALYBND",
    "ESME_RSYSERR",
    "ESME_RINVSRCADR",
    "ESME_RINVDSTADR",
    "ESME_RINVMSGID",
    "ESME_RBINDFAIL",
    "ESME_RINVPASWD",
    "ESME_RINVSYSID",
    "ESME_RMSGQFUL",
    "ESME_RSUBMITFAIL",
    "ESME_RTHROTTLED",
    "ESME_RINVPARLEN",
    "ESME_RUNKNOWNERR",
    "OTHER_TLVS",
    "SPECS",
    "SPECS_BY_ID",
    "Pdu",
    "PduError",
    "FrameError",
    "INT",
    "STR",
    "OSTR",
    "FLAG",
    "FieldSpec",
    "CommandSpec",
    "decode_tlvs",
    "encode_other_tlvs",
]
