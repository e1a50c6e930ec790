"""The hot path's QoS 1 publishes and PUBACKs written without paho's per-packet objects (smppengine/mqtt/wire.py).

Against a real Mosquitto, on MQTT 5 and 3.1.1: what is published arrives byte-exact and in order (topics
and payloads of every length class of MQTT's variable-length header), every batch is acknowledged, and the
requests the engine acknowledges are not delivered again after a reconnect. The PUBACK parsing from the
read buffer is checked byte by byte with a stand-in.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from smppengine.broker import Mosquitto
from smppengine.config import MqttConfig
from smppengine.mqtt import BatchAck, Incoming, MqttLink, paho_internals
from smppengine.mqtt.paho_internals import PahoWire
from smppengine.mqtt.wire import FastQos1, _length


def test_remaining_length_encoding_matches_the_mqtt_examples() -> None:
    # MQTT 3.1.1 §2.2.3: the boundaries of 1, 2, 3 and 4 bytes
    assert _length(0) == b"\x00"
    assert _length(127) == b"\x7f"
    assert _length(128) == b"\x80\x01"
    assert _length(16_383) == b"\xff\x7f"
    assert _length(16_384) == b"\x80\x80\x01"
    assert _length(2_097_151) == b"\xff\xff\x7f"
    assert _length(2_097_152) == b"\x80\x80\x80\x01"


class Counter:
    def __init__(self) -> None:
        self.remaining = 0
        self.mids: list[int] = []
        self.sets = 0

    def set(self) -> None:
        self.sets += 1
        self.remaining -= 1


class StandInPaho:
    """The paho internals FastQos1 uses, recording what it queues and what reaches paho's own handler."""

    def __init__(self) -> None:
        import threading

        self._sock: object | None = object()
        self._last_mid = 65534
        self._mid_generate_mutex = threading.Lock()
        self._in_packet: dict[str, object] = {"command": 0, "packet": bytearray()}
        self.queued: list[tuple[int, bytes, int]] = []
        self.paho_handled: list[str] = []

    def _packet_queue(self, command: int, packet: bytes, mid: int, qos: int) -> int:
        self.queued.append((command, bytes(packet), qos))
        return 0

    def _handle_pubackcomp(self, cmd: str) -> int:
        self.paho_handled.append(cmd)
        return 0

    def _handle_publish(self) -> int:
        self.paho_handled.append("PUBLISH")
        return 0

    def _sock_recv(self, bufsize: int) -> bytes:
        raise BlockingIOError


def test_publish_takes_ids_from_paho_wrapping_and_writes_one_buffer() -> None:
    paho = StandInPaho()
    fast = FastQos1(PahoWire(paho), v5=True)
    ack = Counter()
    fast.publish([("a/b", b"x"), ("c", b"y" * 200), ("d", b"")], ack)
    assert ack.mids == [65535, 1, 2] and paho._last_mid == 2      # paho's next id follows on: 3
    assert ack.remaining == 3 and set(fast.waiting) == {65535, 1, 2}
    assert len(paho.queued) == 1
    command, data, qos = paho.queued[0]
    assert (command, qos) == (0x32, 1)
    first = b"\x32\x09\x00\x03a/b\xff\xff\x00x"             # length 9 = 2+3 topic, 2 id, 1 props, 1 payload
    assert data.startswith(first)
    second = data[len(first):]
    assert second[:3] == b"\x32\xce\x01"                     # 206 = 2+1+2+1+200 → two length bytes
    assert data.endswith(b"\x32\x06\x00\x01d\x00\x02\x00")
    v311 = FastQos1(PahoWire(StandInPaho()), v5=False)
    v311.publish([("a/b", b"x")], Counter())
    assert v311._wire.paho.queued[0][1] == b"\x32\x08\x00\x03a/b\xff\xff" + b"x"


def test_publish_when_disconnected_raises_and_queues_nothing() -> None:
    paho = StandInPaho()
    paho._sock = None
    fast = FastQos1(PahoWire(paho), v5=True)
    with pytest.raises(ConnectionError):
        fast.publish([("t", b"p")], Counter())
    assert paho.queued == [] and fast.waiting == {}


def test_pubacks_in_the_read_buffer_are_answered_and_others_left_to_paho() -> None:
    paho = StandInPaho()
    fast = FastQos1(PahoWire(paho), v5=True)
    mine, other = Counter(), Counter()
    fast.waiting.update({7: mine, 8: mine, 9: mine, 300: other})
    data = (b"\x40\x02\x00\x07"              # ours, success without reason code
            b"\x40\x03\x00\x08\x97"          # ours, MQTT 5 "quota exceeded": counted as refused, still done
            b"\x40\x02\x00\x63"              # id 99: paho's own publish → stop here, paho reads it
            b"\x40\x02\x01\x2c")
    pos = fast.take_buffered(data, 0)
    assert pos == 9 and mine.sets == 2 and fast.refused == 1
    assert fast.take_buffered(data, 13) == 17 and other.sets == 1      # after paho took id 99
    assert fast.take_buffered(b"\x40\x02\x00", 0) == 0                  # cut: left for paho to complete
    assert fast.take_buffered(b"\x40\x04\x00\x09\x00\x00", 0) == 0      # with properties: paho parses it
    assert fast.take_buffered(b"\x30\x02\x00\x09", 0) == 0              # not a PUBACK


def test_paho_handler_answers_our_ids_and_passes_on_the_rest() -> None:
    paho = StandInPaho()
    fast = FastQos1(PahoWire(paho), v5=True)
    mine = Counter()
    fast.waiting[5] = mine
    paho._in_packet["packet"] = bytearray(b"\x00\x05")
    assert paho._handle_pubackcomp("PUBACK") == 0
    assert mine.sets == 1 and paho.paho_handled == []
    paho._in_packet["packet"] = bytearray(b"\x00\x06")
    paho._handle_pubackcomp("PUBACK")
    paho._handle_pubackcomp("PUBCOMP")
    assert paho.paho_handled == ["PUBACK", "PUBCOMP"] and mine.sets == 1


def publish_packet(topic: bytes, mid: int, payload: bytes, v5: bool, props: bytes = b"", flags: int = 0x32) -> bytes:
    body = len(topic).to_bytes(2, "big") + topic + mid.to_bytes(2, "big")
    if v5:
        body += _length(len(props)) + props
    return bytes([flags]) + _length(len(body) + len(payload)) + body + payload


@pytest.mark.parametrize("v5", [True, False])
def test_requests_in_the_read_buffer_go_to_the_engine_in_order(v5: bool) -> None:
    paho = StandInPaho()
    got: list[tuple[bytes, int]] = []
    fast = FastQos1(PahoWire(paho), v5=v5, topic="sms/outbound", on_request=lambda p, m: got.append((p, m)))
    mine = Counter()
    fast.waiting[9] = mine
    props = b"\x26\x00\x01k\x00\x01v" if v5 else b""            # a user property k=v
    big = b"x" * 300                                                # two length bytes
    data = (publish_packet(b"sms/outbound", 1, b'{"id":"a"}', v5, props)
            + b"\x40\x02\x00\x09"                                   # a PUBACK between them
            + publish_packet(b"sms/outbound", 2, big, v5, flags=0x3B)  # dup + retain flags
            + publish_packet(b"sms/other", 3, b"?", v5)                # another topic: paho's
            + publish_packet(b"sms/outbound", 4, b"later", v5))
    pos = fast.take_buffered(data, 0)
    assert got == [(b'{"id":"a"}', 1), (big, 2)] and mine.sets == 1
    assert data[pos:].startswith(publish_packet(b"sms/other", 3, b"?", v5))
    qos0 = publish_packet(b"sms/outbound", 5, b"q0", v5, flags=0x30)
    assert fast.take_buffered(qos0, 0) == 0                         # QoS 0: paho's
    whole = publish_packet(b"sms/outbound", 6, b"cut", v5)
    assert fast.take_buffered(whole[:-1], 0) == 0 and len(got) == 2  # cut: paho completes it
    # paho's handler path (the first packet of a read): the same hand-over
    paho._in_packet = {"command": 0x32, "packet": bytearray(whole[2:])}
    assert paho._handle_publish() == 0 and got[-1] == (b"cut", 6) and paho.paho_handled == []
    paho._in_packet = {"command": 0x32, "packet": bytearray(publish_packet(b"sms/x", 7, b"", v5)[2:])}
    paho._handle_publish()
    assert paho.paho_handled == ["PUBLISH"]


# ---------------------------------------------------------------------- against Mosquitto
@contextlib.asynccontextmanager
async def running_link(broker: Mosquitto, protocol: int, client_id: str,
                       inbox: asyncio.Queue[Incoming] | None = None) -> AsyncIterator[MqttLink]:
    cfg = MqttConfig(url=broker.url, topic_prefix="fast", protocol=protocol, client_id=client_id)
    link = MqttLink(cfg, "t1", (inbox.put_nowait if inbox is not None else lambda m: None))
    task = asyncio.create_task(link.run())
    try:
        await asyncio.wait_for(link.connected.wait(), 10)
        yield link
    finally:
        await link.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.mark.parametrize("protocol", [5, 4])
async def test_batches_arrive_in_order_byte_exact_and_are_acknowledged(broker: Mosquitto, protocol: int) -> None:
    payloads = [bytes([65 + i % 26]) * size for i, size in
                enumerate([0, 1, 100, 121, 122, 127, 128, 5_000, 16_370, 16_400, 70_000] * 30)]
    items = [(f"fast/status/m{i}" + "x" * (i % 50), p) for i, p in enumerate(payloads)]
    v5 = aiomqtt.ProtocolVersion.V5 if protocol == 5 else aiomqtt.ProtocolVersion.V311
    async with aiomqtt.Client("127.0.0.1", broker.port, protocol=v5, max_queued_incoming_messages=0) as sub:
        await sub.subscribe("fast/status/#", qos=1)
        async with running_link(broker, protocol, f"fast-{protocol}") as link:
            assert link._fast is not None
            acks = [link.publish_start(items[i:i + 100]) for i in range(0, len(items), 100)]
            for ack in acks:
                await link.publish_wait(ack, timeout=20)
            assert link._fast.waiting == {}
            received: list[tuple[str, bytes]] = []
            async with asyncio.timeout(20):
                async for m in sub.messages:
                    received.append((str(m.topic), bytes(m.payload)))  # type: ignore[arg-type]
                    if len(received) == len(items):
                        break
            assert received == items
            # paho's own publishes (presence, QoS 1) still complete beside the fast ones
            assert link.client is not None
            await link.client.publish("fast/other", b"paho", qos=1, timeout=10)


@pytest.mark.parametrize("protocol", [5, 4])
async def test_acknowledged_requests_are_not_delivered_again(broker: Mosquitto, protocol: int) -> None:
    inbox: asyncio.Queue[Incoming] = asyncio.Queue()
    async with aiomqtt.Client("127.0.0.1", broker.port) as pub:
        async with running_link(broker, protocol, f"acks-{protocol}", inbox) as link:
            for i in range(300):
                await pub.publish("fast/outbound", f"r{i}".encode(), qos=1)
            async with asyncio.timeout(20):
                got = [await inbox.get() for _ in range(300)]
            link.ack(got[:200])                     # the first 200 committed; the rest never acknowledged
        # the same persistent session again: only the 100 unacknowledged are delivered again, then the marker
        async with running_link(broker, protocol, f"acks-{protocol}", inbox):
            await pub.publish("fast/outbound", b"marker", qos=1)
            again: list[bytes] = []
            async with asyncio.timeout(20):
                while (m := await inbox.get()).payload != b"marker":
                    again.append(m.payload)
    assert sorted(again) == sorted(m.payload for m in got[200:])


def test_batch_ack_forget_unregisters_its_ids() -> None:
    loop = asyncio.new_event_loop()
    try:
        waiting: dict[int, object] = {}
        ack = BatchAck(loop.create_future(), waiting)
        fast = FastQos1(PahoWire(StandInPaho()), v5=True)
        fast.waiting = waiting  # type: ignore[assignment]
        fast.publish([("t", b"1"), ("t", b"2")], ack)
        assert len(waiting) == 2
        ack.forget()
        assert waiting == {}
    finally:
        loop.close()


def test_publishes_beyond_the_broker_window_wait_and_go_out_as_pubacks_free_it() -> None:
    paho = StandInPaho()
    paho._last_mid = 0
    fast = FastQos1(PahoWire(paho), v5=True)
    fast.window = 2                                   # the broker's Receive Maximum
    first, second = Counter(), Counter()
    fast.publish([("t", b"1"), ("t", b"2"), ("t", b"3")], first)
    fast.publish([("t", b"4")], second)
    assert first.remaining == 3 and second.remaining == 1        # all counted, two written
    assert first.mids == [1, 2] and len(paho.queued) == 1 and set(fast.waiting) == {1, 2}
    # one PUBACK in the read buffer: one more goes out, from the same read
    assert fast.take_buffered(b"\x40\x02\x00\x01", 0) == 4
    assert first.mids == [1, 2, 3] and len(paho.queued) == 2 and set(fast.waiting) == {2, 3}
    # a PUBACK paho parses itself (cut in the buffer) frees the window too
    paho._in_packet["packet"] = bytearray(b"\x00\x02")
    paho._handle_pubackcomp("PUBACK")
    assert second.mids == [4] and set(fast.waiting) == {3, 4}
    assert [data[-1:] for _, data, _ in paho.queued] == [b"2", b"3", b"4"]       # in order
    assert fast.take_buffered(b"\x40\x02\x00\x03\x40\x02\x00\x04", 0) == 8
    assert fast.waiting == {} and first.remaining == 0 and second.remaining == 0 and len(paho.queued) == 3


def test_a_batch_given_up_on_is_not_written_after_all() -> None:
    paho = StandInPaho()
    fast = FastQos1(PahoWire(paho), v5=True)
    fast.window = 1
    kept, dropped = Counter(), Counter()
    fast.publish([("t", b"1")], kept)
    fast.publish([("t", b"2"), ("t", b"3")], dropped)
    fast.forget(dropped)
    fast.take_buffered(b"\x40\x02" + kept.mids[0].to_bytes(2, "big"), 0)
    assert kept.remaining == 0 and len(paho.queued) == 1 and fast.waiting == {}


async def test_a_stock_broker_window_of_20_carries_a_large_batch_in_order(tmp_path: Path) -> None:
    """Mosquitto with its default limits announces Receive Maximum 20: a batch of 2,000 goes out 20 at a
    time, in order, and is acknowledged in full."""
    (tmp_path / "mqtt").mkdir()
    broker = Mosquitto(workdir=str(tmp_path / "mqtt"), stock_limits=True)
    await broker.start()
    try:
        items = [(f"fast/status/m{i}", f"event {i}".encode()) for i in range(2000)]
        props = Properties(PacketTypes.CONNECT)
        props.ReceiveMaximum = 65535                  # the subscriber takes them all at once
        async with aiomqtt.Client("127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5,
                                  properties=props) as sub:
            await sub.subscribe("fast/status/#", qos=1)
            async with running_link(broker, 5, "window-20") as link:
                assert link._fast is not None and link.broker_receive_maximum == 20
                assert link._fast.window == 20 and link.receive_maximum >= 2000
                ack = link.publish_start(items)
                assert len(link._fast.waiting) == 20
                await link.publish_wait(ack, timeout=30)
                received: list[tuple[str, bytes]] = []
                async with asyncio.timeout(20):
                    async for m in sub.messages:
                        received.append((str(m.topic), bytes(m.payload)))  # type: ignore[arg-type]
                        if len(received) == len(items):
                            break
                assert received == items
    finally:
        await broker.stop()


async def test_the_broker_connection_sends_without_nagle_delay(broker: Mosquitto) -> None:
    """TCP_NODELAY on the engine's broker socket (paho leaves Nagle on): with Nagle, a PUBLISH written while
    the previous write waited for its TCP ACK was held for the broker's delayed ACK, ~40 ms on Linux (the
    outbox's PUBACK p50 was 40 ms at 20 msg/s in bench/scale.py, 1 ms with it off)."""
    async with running_link(broker, 5, "nodelay") as link:
        assert link.client is not None
        sock = paho_internals.paho_of(link.client).socket()
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
