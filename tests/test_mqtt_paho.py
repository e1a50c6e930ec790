"""Speed-ups of paho (mqtt.py): shared Properties tables, buffered reads; behaviour unchanged."""

from __future__ import annotations

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import MQTTException, Properties

from smppengine import paho_speedups as mqtt


def test_tables_are_shared_once_the_engine_module_is_loaded() -> None:
    assert mqtt.share_property_tables() is True
    a, b = Properties(PacketTypes.PUBLISH), Properties(PacketTypes.PUBACK)
    assert a.names is b.names and a.properties is b.properties and a.types is b.types
    assert (a.packetType, b.packetType) == (PacketTypes.PUBLISH, PacketTypes.PUBACK)


def test_properties_still_pack_unpack_and_validate() -> None:
    mqtt.share_property_tables()
    p = Properties(PacketTypes.PUBLISH)
    p.MessageExpiryInterval = 60
    p.UserProperty = ("k", "v")
    p.UserProperty = ("k2", "v2")          # allowsMultiple: appended, not replaced
    back = Properties(PacketTypes.PUBLISH)
    back.unpack(p.pack())
    assert back.MessageExpiryInterval == 60
    assert back.UserProperty == [("k", "v"), ("k2", "v2")]
    with pytest.raises(MQTTException):
        p.ReceiveMaximum = 10              # a CONNACK/CONNECT property, not a PUBLISH one
    with pytest.raises(MQTTException):
        p.NoSuchProperty = 1
    fresh = Properties(PacketTypes.PUBLISH)
    assert not hasattr(fresh, "MessageExpiryInterval")   # values stay per instance
    connack = Properties(PacketTypes.CONNACK)
    connack.ReceiveMaximum = 20
    assert Properties(PacketTypes.CONNACK).json() == {}
    assert connack.json() == {"ReceiveMaximum": 20}


class FakePaho:
    """Stands in for paho: ``_packet_read`` takes one length-prefixed packet through ``_sock_recv``."""

    def __init__(self, chunks: list[bytes | type[BaseException]]) -> None:
        self.chunks = chunks
        self.recv_calls = 0
        self.packets: list[bytes] = []
        self._sock: object | None = object()

    def _sock_recv(self, bufsize: int) -> bytes:
        self.recv_calls += 1
        chunk = self.chunks.pop(0) if self.chunks else BlockingIOError
        if isinstance(chunk, type):
            raise chunk()
        return chunk

    def loop_read(self, max_packets: int = 1) -> int:      # paho: one packet per call here, then AGAIN
        try:
            n = self._sock_recv(1)
            if not n:
                return 7                                    # connection lost
            self.packets.append(self._sock_recv(n[0]))
        except BlockingIOError:
            return 0
        return 0


def test_buffered_reads_serve_every_packet_of_one_recv() -> None:
    paho = FakePaho([b"\x03abc\x02de\x01f", BlockingIOError])
    buf = mqtt.BufferedReads(paho)
    assert paho.loop_read() == 0        # the engine's socket callback: one call for the whole read
    assert paho.packets == [b"abc", b"de", b"f"]
    assert paho.recv_calls == 1 and buf.buffered == 0


def test_buffered_reads_pass_on_short_reads_eagain_and_eof() -> None:
    paho = FakePaho([b"\x05ab", BlockingIOError, b""])
    buf = mqtt.BufferedReads(paho)
    assert buf.sock_recv(1) == b"\x05"
    assert buf.sock_recv(5) == b"ab"            # a short read, as from the socket: paho keeps the partial packet
    with pytest.raises(BlockingIOError):
        buf.sock_recv(3)                         # nothing buffered, nothing on the socket
    assert buf.sock_recv(1) == b""               # EOF reaches paho as an empty read
    assert paho.recv_calls == 3


def test_message_infos_share_one_condition_and_still_resolve() -> None:
    from paho.mqtt.client import MQTTMessageInfo

    assert mqtt.share_message_info_condition() is True
    a, b = MQTTMessageInfo(1), MQTTMessageInfo(2)
    assert a._condition is b._condition
    assert (a.mid, b.mid, a.rc, a.is_published()) == (1, 2, 0, False)
    a._set_as_published()
    assert a.is_published() and not b.is_published()
    a.wait_for_publish(timeout=1)            # returns at once: published
    b.wait_for_publish(timeout=0.05)         # times out, not published: its own flag, not a's
    assert not b.is_published()
