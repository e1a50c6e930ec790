"""One ESME connection's state (:class:`_Session`), the deliver_sm it awaits responses for (a receipt,
:class:`_Receipt`, or an MO, :class:`_Mo`), and the header-only / submit_sm_resp PDUs packed with ``struct``."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from dataclasses import dataclass

from smppengine.smpp import pdu as P
from smppengine.smpp.pdu import Pdu, next_seq

# command ids and command_status values: the engine's codec tables (smppengine/smpp/pdu.py)
_CMD_SUBMIT_SM_RESP = P.SUBMIT_SM_RESP
_CMD_DELIVER_SM_RESP = P.DELIVER_SM_RESP
_CMD_UNBIND = P.UNBIND
_CMD_UNBIND_RESP = P.UNBIND_RESP
_CMD_ENQUIRE_LINK = P.ENQUIRE_LINK
_CMD_ENQUIRE_LINK_RESP = P.ENQUIRE_LINK_RESP
_CMD_GENERIC_NACK = P.GENERIC_NACK

_HEADER = struct.Struct(">IIII")


@dataclass(slots=True)
class _Receipt:
    system_id: str
    message_id: str  # as written in the receipt
    source_addr: str  # of the original submit (the receipt goes back from its destination)
    source_addr_ton: int
    source_addr_npi: int
    destination_addr: str
    dest_addr_ton: int
    dest_addr_npi: int
    submit_date: str
    text: bytes  # first 20 printable bytes of the original message
    stat: str
    tlvs: bool
    attempts: int = 0
    timer: asyncio.TimerHandle | None = None
    after_ack: Callable[[], None] | None = None  # receipt_before_resp: sends the held submit_sm_resp


@dataclass(slots=True)
class _Mo:
    pdu: Pdu
    future: asyncio.Future[int]


class _Session:
    __slots__ = (
        "id", "writer", "transport", "peer", "system_id", "can_tx", "can_rx", "seq",
        "outstanding", "closed", "unbind_waiter", "out", "loop", "held", "unbinding",
    )

    def __init__(self, sid: int, writer: asyncio.StreamWriter) -> None:
        self.id = sid
        self.writer = writer
        self.transport = writer.transport
        self.peer = writer.get_extra_info("peername")
        self.system_id: str | None = None
        self.can_tx = False
        self.can_rx = False
        self.seq = 0
        self.outstanding: dict[int, _Receipt | _Mo] = {}  # our deliver_sm awaiting deliver_sm_resp
        self.closed = False
        self.unbind_waiter: asyncio.Future[None] | None = None
        self.out: list[bytes] = []  # written at the end of this loop iteration, in one transport.write
        self.loop = asyncio.get_running_loop()
        self.held: list[tuple[bytes, _Receipt | None]] = []  # submit_sm_resps held by hold_responses()
        self.unbinding = False  # an unbind was sent or received under hold_responses(): closing soon

    @property
    def bound(self) -> bool:
        return self.system_id is not None

    def next_seq(self) -> int:
        self.seq = next_seq(self.seq)
        return self.seq

    def write(self, data: bytes) -> None:
        """Queue ``data``; everything queued in one loop iteration goes out in one transport.write()."""
        if self.closed:
            return
        if not self.out:
            self.loop.call_soon(self.flush)
        self.out.append(data)

    def flush(self) -> None:
        if self.out:
            data = b"".join(self.out)
            self.out.clear()
            if not self.transport.is_closing():
                self.transport.write(data)


def _submit_resp(seq: int, status: int, message_id: str) -> bytes:
    body = message_id.encode("ascii") + b"\x00"
    return _HEADER.pack(16 + len(body), _CMD_SUBMIT_SM_RESP, status, seq) + body


def _header_only(command_id: int, seq: int, status: int = 0) -> bytes:
    return _HEADER.pack(16, command_id, status, seq)
