"""The engine's MQTT hot path on its paho client: QoS 1 publishes and PUBACKs without paho's per-packet
objects, and buffered reads. Private paho members are reached only through
:class:`.paho_internals.PahoWire`.

For every QoS 1 publish paho builds an ``MQTTMessage``, an ``MQTTMessageInfo`` and
the packet, and queues it on its own; for every PUBACK it parses a ``ReasonCode``
and ``Properties`` and runs a chain of callbacks: ~16 % of the engine's CPU in the
e2e profile (three status events and their PUBACKs per message). The outbox needs
none of it: its rows are the source of truth and are published again after a
reconnect, so paho's session store of outgoing messages is not needed either.

:class:`FastQos1` writes a batch of PUBLISH packets as one buffer into paho's out
queue (paho still owns the socket, the keepalive and the order of everything it
writes), takes packet ids from paho's own counter, and takes the PUBACKs of those
ids before paho parses them: straight from the read buffer (:class:`BufferedReads`)
when a whole PUBACK sits there, else in paho's PUBACK handler. The engine's
PUBACKs of requests (manual acknowledgement after the commit) are written the
same way, one buffer per committed batch.

The broker's Receive Maximum (MQTT 5 CONNACK) bounds the publishes that may await
their PUBACK: ``window``. What a batch has beyond it waits here, in order, and is
written as PUBACKs free the window, from the same read that took them: a stock
Mosquitto announces 20, and refilling that window through the publisher's tasks
(a wake-up, a fetch, a publish per 20 events) held the status events back.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import structlog

from .paho_internals import PahoWire

log = structlog.get_logger(__name__)

PUBLISH_QOS1 = 0x32
PUBACK = 0x40


class Acked(Protocol):
    """What a publish waits on: told once per acknowledged packet (``remaining`` counts them)."""

    remaining: int
    mids: list[int]

    def set(self) -> None: ...


def _length(n: int) -> bytes:
    """MQTT's variable-length "remaining length"."""
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


class FastQos1:
    """The outbox's publishes and the requests' PUBACKs on one paho client (one connection)."""

    __slots__ = ("_wire", "_v5", "waiting", "_handle_other", "refused", "_handle_other_publish", "topic",
                 "on_request", "window", "_queued")

    def __init__(self, wire: PahoWire, v5: bool, topic: str = "",
                 on_request: Callable[[bytes, int], None] | None = None) -> None:
        self._wire = wire
        self._v5 = v5
        self.waiting: dict[int, Acked] = {}      # packet id → the batch waiting for its PUBACK
        self.window = 0                           # publishes awaiting their PUBACK at most (0: no limit)
        self._queued: deque[tuple[bytes, bytes, Acked]] = deque()   # beyond the window, not yet written
        self.refused = 0                          # PUBACKs with an MQTT 5 failure reason code
        # QoS 1 PUBLISHes on ``topic`` (the requests) go to on_request(payload, packet id), acknowledged by
        # the caller (manual PUBACK after the commit); anything else goes to paho and aiomqtt
        self.topic = topic.encode()
        self.on_request = on_request
        self._handle_other, self._handle_other_publish = wire.hook_handlers(self.on_puback, self.on_publish)

    def publish(self, items: Sequence[tuple[str, bytes]], ack: Acked) -> None:
        """Queue QoS 1 PUBLISH packets, in order, as one write; ``ack`` is told of each PUBACK. Beyond the
        window they wait here and are written as PUBACKs come in."""
        if not items:
            return
        if not self._wire.connected():
            raise ConnectionError("not connected")
        ack.remaining += len(items)
        room = self.window - len(self.waiting) if self.window else len(items)
        if self._queued or room < len(items):
            self._queued.extend((topic.encode(), payload, ack) for topic, payload in items)
            self.pump()
            return
        self._write([(topic.encode(), payload, ack) for topic, payload in items])

    def pump(self) -> None:
        """Write what waits for the window, as far as the window allows (one write)."""
        queued = self._queued
        if not queued or not self._wire.connected():
            return
        room = self.window - len(self.waiting) if self.window else len(queued)
        if room > 0:
            self._write([queued.popleft() for _ in range(min(room, len(queued)))])

    def forget(self, ack: Acked) -> None:
        """A batch given up on: what of it still waits for the window is not written."""
        if self._queued:
            self._queued = deque(q for q in self._queued if q[2] is not ack)

    def _write(self, items: list[tuple[bytes, bytes, Acked]]) -> None:
        mid = self._wire.take_mids(len(items))   # ids 1..65535 from paho's counter, as paho would take them
        extra = 5 if self._v5 else 4             # topic length, packet id (and MQTT 5's empty properties)
        buf = bytearray()
        waiting = self.waiting
        for t, payload, ack in items:
            mid = mid % 65535 + 1
            buf.append(PUBLISH_QOS1)
            buf += _length(extra + len(t) + len(payload))
            buf += len(t).to_bytes(2, "big")
            buf += t
            buf += mid.to_bytes(2, "big")
            if extra == 5:
                buf.append(0)
            buf += payload
            waiting[mid] = ack
            ack.mids.append(mid)
        self._wire.queue(PUBLISH_QOS1, buf, 1)

    def puback(self, mids: Sequence[int]) -> None:
        """PUBACK received QoS 1 packets (the engine's manual acknowledgement), one write for all."""
        if not mids or not self._wire.connected():
            return
        buf = bytearray()
        for mid in mids:
            buf += b"\x40\x02"
            buf += mid.to_bytes(2, "big")
        self._wire.queue(PUBACK, buf, 0)

    # ------------------------------------------------------------------ PUBACKs
    def _acked(self, ack: Acked, reason: int, mid: int) -> None:
        if reason >= 0x80:
            # the broker refused the message (MQTT 5: not authorized, quota exceeded…); paho and aiomqtt
            # treat it as published too, so it is not retried forever, but it is said
            self.refused += 1
            log.warning("publish_refused", mid=mid, reason_code=reason)
        ack.set()

    def on_puback(self, cmd: str) -> Any:
        """paho's PUBACK/PUBCOMP handler: the ids published here are answered here, the rest go to paho."""
        if cmd == "PUBACK" and self.waiting:
            pkt = self._wire.in_packet()["packet"]
            if len(pkt) >= 2:
                mid = (pkt[0] << 8) | pkt[1]
                ack = self.waiting.pop(mid, None)
                if ack is not None:
                    self._acked(ack, pkt[2] if len(pkt) > 2 else 0, mid)
                    self.pump()
                    return 0
        return self._handle_other(cmd)

    # ------------------------------------------------------------------ requests (QoS 1 PUBLISH in)
    def _request(self, data: bytes | bytearray, pos: int, end: int) -> tuple[bytes, int] | None:
        """(payload, packet id) of a PUBLISH's variable header + payload in ``data[pos:end]`` when it is on
        the request topic; None for any other topic or a malformed packet (paho deals with those)."""
        if end - pos < 4:
            return None
        n = (data[pos] << 8) | data[pos + 1]
        pos += 2
        if data[pos:pos + n] != self.topic or end - pos < n + 2:
            return None
        pos += n
        mid = (data[pos] << 8) | data[pos + 1]
        pos += 2
        if self._v5:                             # skip the properties (a request may carry any)
            length, pos = _read_length(data, pos, end)
            if length < 0 or pos + length > end:
                return None
            pos += length
        return bytes(data[pos:end]), mid

    def on_publish(self) -> Any:
        """paho's PUBLISH handler: QoS 1 requests are handed on here, the rest go to paho (and aiomqtt)."""
        packet = self._wire.in_packet()
        if self.on_request is not None and packet["command"] & 0x06 == 0x02:
            got = self._request(packet["packet"], 0, len(packet["packet"]))
            if got is not None:
                self.on_request(*got)
                return 0
        return self._handle_other_publish()

    # ------------------------------------------------------------------ the read buffer
    def take_buffered(self, data: bytes, pos: int) -> int:
        """Take the whole packets starting at ``pos`` of paho's read buffer (paho is between packets) that
        are answered here: PUBACKs of ids published here, QoS 1 requests. Returns the position of the first
        byte left for paho."""
        waiting = self.waiting
        on_request = self.on_request
        end = len(data)
        acked = len(waiting)
        try:
            return self._take(data, pos, end, waiting, on_request)
        finally:
            if self._queued and len(waiting) < acked:
                self.pump()                       # the window has room again: refill it from this read

    def _take(self, data: bytes, pos: int, end: int, waiting: dict[int, Acked],
              on_request: Callable[[bytes, int], None] | None) -> int:
        while pos + 4 <= end:
            first = data[pos]
            if first == PUBACK:
                size = data[pos + 1]
                if size == 2:
                    reason = 0
                elif size == 3 and pos + 5 <= end:
                    reason = data[pos + 4]
                else:
                    break                        # with properties, or cut: paho reads it
                mid = (data[pos + 2] << 8) | data[pos + 3]
                ack = waiting.pop(mid, None)
                if ack is None:
                    break                        # one of paho's own publishes
                pos += 2 + size
                self._acked(ack, reason, mid)
            elif first & 0xF6 == PUBLISH_QOS1 and on_request is not None:     # any dup/retain flag
                length, body = _read_length(data, pos + 1, end)
                if length < 0 or body + length > end:
                    break                        # cut: paho reads it
                got = self._request(data, body, body + length)
                if got is None:
                    break
                pos = body + length
                on_request(*got)
            else:
                break
        return pos


def _read_length(data: bytes | bytearray, pos: int, end: int) -> tuple[int, int]:
    """MQTT's variable length at ``pos``: (value, position after it); (-1, pos) when cut or over 4 bytes."""
    value, shift = 0, 0
    for i in range(pos, min(pos + 4, end)):
        byte = data[i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i + 1
        shift += 7
    return -1, pos


class BufferedReads:
    """Fewer system calls for paho's reads. paho reads every packet with several ``recv`` calls (the first
    byte, each byte of the length, then the rest): three for a 4-byte PUBACK, about 10 % of the engine's CPU
    in the e2e profile. This reads up to 64 KiB per call and serves paho from that buffer. The socket does
    not signal "readable" for packets already in the buffer, so ``loop_read`` is repeated until it is empty.

    ``take`` (:meth:`FastQos1.take_buffered`), when given, is offered the buffer whenever paho is between
    packets: it consumes the packets it answers itself and returns where paho goes on reading.
    """

    __slots__ = ("_recv", "_loop_read", "_wire", "_data", "_pos", "take")

    def __init__(self, wire: PahoWire, take: Callable[[bytes, int], int] | None = None) -> None:
        self._wire = wire
        self._data = b""
        self._pos = 0
        self.take = take
        self._recv, self._loop_read = wire.hook_reads(self.sock_recv, self.loop_read)

    @property
    def buffered(self) -> int:
        return len(self._data) - self._pos

    def sock_recv(self, bufsize: int) -> bytes:
        if self._pos >= len(self._data):
            self._data, self._pos = b"", 0
            data = self._recv(65536)          # BlockingIOError / ConnectionError / b"" as paho expects
            if not data:
                return data
            self._data = data
        out = self._data[self._pos:self._pos + bufsize]
        self._pos += len(out)
        return out

    def loop_read(self, max_packets: int = 1) -> Any:
        rc = self._loop_read(max_packets)
        wire, take = self._wire, self.take
        while rc == 0 and self._pos < len(self._data) and wire.connected():
            if take is not None and wire.in_packet()["command"] == 0:
                self._pos = take(self._data, self._pos)
                if self._pos >= len(self._data):
                    break
            rc = self._loop_read(max_packets)
        return rc
