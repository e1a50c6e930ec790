"""MQTT link (aiomqtt): persistent session, manual PUBACK, retained presence with a last will, reconnects.

Manual acknowledgement goes through the wrapped paho client (aiomqtt has no
public call for it): ``manual_ack_set(True)`` before connecting, and PUBACKs
written by the hot path (:mod:`.wire`) after the store commit; covered by the
kill-before-commit test. Every private paho/aiomqtt member used is in
:mod:`.paho_internals`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiomqtt
import orjson
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ..config import MqttConfig
from ..model import iso
from ..retry import mqtt_reconnect_delay
from . import paho_internals
from .wire import BufferedReads, FastQos1

log = structlog.get_logger(__name__)

# aiomqtt logs a warning for every publish beyond ten in flight; the outbox publisher keeps hundreds
# in flight on purpose, so its chatter is kept to errors.
_paho_log = logging.getLogger("smppengine.mqtt.aiomqtt")
_paho_log.setLevel(logging.ERROR)

# Mosquitto's count of QoS 1/2 messages it dropped because a client's in-flight window and queue were full
# (all clients, since the broker started; refreshed every sys_interval, 10 s by default)
SYS_DROPPED = "$SYS/broker/publish/messages/dropped"
# Status events the publisher may hand the hot path unacknowledged: it writes as many as the broker's
# Receive Maximum allows and the rest as PUBACKs free the window (the publisher's 8 batches of 500)
PIPELINE = 4000


@dataclass(slots=True)
class Incoming:
    payload: bytes
    topic: str
    mid: int
    qos: int
    client: aiomqtt.Client


def parse_url(url: str) -> tuple[str, int, bool]:
    u = urlsplit(url)
    tls = u.scheme == "mqtts"
    return u.hostname or "127.0.0.1", u.port or (8883 if tls else 1883), tls


class MqttLink:
    """The engine's MQTT link: subscribe to requests, PUBACK them after the commit, publish status events."""

    def __init__(self, cfg: MqttConfig, instance: str, on_message: Callable[[Incoming], None]) -> None:
        paho_internals.check_installed()          # a paho whose internals changed: fail now, loudly
        self.cfg = cfg
        self.instance = instance
        self.prefix = cfg.topic_prefix
        self.on_message = on_message
        self.connected = asyncio.Event()
        self.disconnected = asyncio.Event()
        self.disconnected.set()
        self.client: aiomqtt.Client | None = None
        self.presence_topic = f"{self.prefix}/engine/{instance}"
        share = cfg.share_group
        self.request_topic = f"$share/{share}/{self.prefix}/outbound" if share else f"{self.prefix}/outbound"
        self._stopping = False
        self.reconnects = 0
        # publishes the publisher may have unacknowledged in the link's hands: the broker's MQTT 5 Receive
        # Maximum (read from its CONNACK), or with the hot path at least PIPELINE (it keeps to the broker's)
        self.receive_maximum = 1000
        self.broker_receive_maximum: int | None = None
        self.broker_dropped: int | None = None    # the broker's SYS_DROPPED, when it publishes it
        self._fast: FastQos1 | None = None        # the hot path's publishes and PUBACKs on self.client

    def _presence(self, state: str) -> bytes:
        return orjson.dumps({"state": state, "instance": self.instance, "at": iso(time.time())})

    def _make_client(self) -> tuple[aiomqtt.Client, FastQos1]:
        """The aiomqtt client of one connection, and the hot path on it."""
        host, port, tls = parse_url(self.cfg.url)
        v5 = self.cfg.protocol == 5
        props = None
        if v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.cfg.session_expiry_s
            # requests the broker may send before it waits for our PUBACKs: a burst flows into the store
            # instead of the broker's queue (Mosquitto drops beyond max_queued_messages, 1000 by default)
            props.ReceiveMaximum = self.cfg.receive_maximum
        tls_params = None
        if tls:
            tls_params = aiomqtt.TLSParameters(
                ca_certs=self.cfg.ca_file or None, certfile=self.cfg.cert_file or None,
                keyfile=self.cfg.key_file or None, cert_reqs=ssl.CERT_REQUIRED)
        client = aiomqtt.Client(
            host, port,
            identifier=self.cfg.client_id or f"smppengine-{self.instance}",
            username=self.cfg.username or None, password=self.cfg.password or None,
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            will=aiomqtt.Will(self.presence_topic, self._presence("offline"), qos=1, retain=True),
            clean_session=None if v5 else False,
            clean_start=False if v5 else 3,
            properties=props, tls_params=tls_params, keepalive=30, logger=_paho_log,
            max_inflight_messages=0,   # paho: unlimited, and no O(n) walk per PUBACK; the publisher keeps
        )                              # itself within the broker's Receive Maximum instead
        topic = f"{self.prefix}/outbound"           # as delivered, also through a $share subscription

        def on_request(payload: bytes, mid: int) -> None:
            self.on_message(Incoming(payload, topic, mid, 1, client))

        def on_connack(properties: Any) -> None:
            broker = int(getattr(properties, "ReceiveMaximum", 0) or 0)     # 0: not said (MQTT 3.1.1)
            self.broker_receive_maximum = broker or None
            fast.window = broker
            self.receive_maximum = max(broker or 1000, PIPELINE)

        wire = paho_internals.prepare(client, on_connack)
        fast = FastQos1(wire, v5, topic, on_request)
        BufferedReads(wire, fast.take_buffered)
        return client, fast

    def warn_limits(self) -> None:
        """MQTT 3.1.1 has no Receive Maximum: the broker's own limits decide what reaches the engine."""
        if self.cfg.protocol == 5:
            return
        log.warning("mqtt_no_receive_maximum", url=self.cfg.url, protocol="3.1.1",
                    limits="the broker's max_inflight_messages (Mosquitto default 20) bounds requests in flight "
                           "to the engine, and max_queued_messages (Mosquitto default 1000) what it queues for "
                           "it; beyond that the broker drops requests it has already acknowledged to the "
                           "application",
                    hint="use mqtt.protocol = 5, or raise max_inflight_messages (e.g. 1000) and "
                         "max_queued_messages (e.g. 1000000) in the broker; see docs/operations.md")

    def _on_sys(self, topic: str, payload: bytes) -> None:
        """The broker's count of dropped messages: a rise is said, with a caveat (it counts every client)."""
        if topic != SYS_DROPPED:
            return
        try:
            value = int(payload.decode().strip())
        except ValueError:
            return
        before, self.broker_dropped = self.broker_dropped, value
        if value > (before or 0):
            log.warning("broker_dropped_messages", dropped=value - (before or 0), total=value,
                        since="the broker started" if before is None else "the last report",
                        hint="the broker dropped QoS 1 messages of some client (requests for the engine if its "
                             "queue was full, e.g. while the engine was stopped); see docs/operations.md")

    async def run(self) -> None:
        failures = 0
        rng = random.Random()
        self.warn_limits()
        while not self._stopping:
            client, fast = self._make_client()
            try:
                async with client:
                    self.client, self._fast = client, fast
                    await client.subscribe(self.request_topic, qos=1)
                    try:
                        await client.subscribe(SYS_DROPPED, qos=0, timeout=5)
                    except (aiomqtt.MqttError, TimeoutError) as exc:   # a broker without it, or not allowed
                        log.info("broker_sys_unavailable", topic=SYS_DROPPED, error=str(exc))
                    await client.publish(self.presence_topic, self._presence("online"), qos=1, retain=True)
                    failures = 0
                    self.disconnected.clear()
                    self.connected.set()
                    log.info("mqtt_connected", url=self.cfg.url, topic=self.request_topic,
                             receive_maximum=self.cfg.receive_maximum if self.cfg.protocol == 5 else None,
                             broker_receive_maximum=self.broker_receive_maximum)
                    async for message in client.messages:
                        payload = message.payload if isinstance(message.payload, bytes) else \
                            str(message.payload or "").encode()
                        if message.topic.value.startswith("$SYS/"):
                            self._on_sys(message.topic.value, payload)
                            continue
                        self.on_message(Incoming(payload, str(message.topic), message.mid, message.qos, client))
            except aiomqtt.MqttError as exc:
                if self._stopping:
                    return
                log.warning("mqtt_disconnected", url=self.cfg.url, error=str(exc))
            finally:
                self.connected.clear()
                self.disconnected.set()
                self.client = self._fast = None
            if self._stopping:
                return
            failures += 1
            self.reconnects += 1
            await asyncio.sleep(mqtt_reconnect_delay(failures, rng))

    def ack(self, msgs: Sequence[Incoming]) -> None:
        """PUBACK requests, after their commit (one write for the batch). A request from an older connection is
        not acked: the broker redelivers it in the persistent session, and the store's idempotency absorbs the
        repeat."""
        client, fast = self.client, self._fast
        if client is None or fast is None:
            return
        fast.puback([m.mid for m in msgs if m.qos == 1 and m.client is client])

    def publish_start(self, items: Sequence[tuple[str, bytes]]) -> BatchAck:
        """Hand many QoS 1 messages to the broker, in order; the returned handle resolves once the broker
        acknowledged every one (:meth:`publish_wait`). Several batches may be in flight at once. One future
        per batch; the PUBACKs are counted by :class:`.wire.FastQos1`."""
        fast = self._fast
        if self.client is None or fast is None:
            raise aiomqtt.MqttError("not connected")
        ack = BatchAck(asyncio.get_running_loop().create_future(), fast.waiting)
        try:
            fast.publish(items, ack)
        except ConnectionError as exc:
            raise aiomqtt.MqttError(str(exc)) from exc
        if ack.remaining == 0:
            ack.done.set_result(None)
        return ack

    async def publish_wait(self, ack: BatchAck, timeout: float = 30.0) -> None:
        if ack.done.done():
            return
        gone = asyncio.ensure_future(self.disconnected.wait())
        either: set[asyncio.Future[Any]] = {ack.done, gone}
        try:
            finished, _ = await asyncio.wait(either, timeout=timeout,
                                             return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if ack.done not in finished:
            ack.forget()
            if self._fast is not None:
                self._fast.forget(ack)
            raise aiomqtt.MqttError("publish not acknowledged (disconnected or timed out)")

    async def stop(self) -> None:
        """Publish `offline` (retained), then disconnect."""
        self._stopping = True
        client = self.client
        if client is not None:
            try:
                await client.publish(self.presence_topic, self._presence("offline"), qos=1, retain=True, timeout=5)
            except (aiomqtt.MqttError, TimeoutError) as exc:
                log.warning("mqtt_offline_not_published", error=str(exc))


class BatchAck:
    """Counts the PUBACKs of one batch: ``set()`` is called once per acknowledged mid."""

    __slots__ = ("remaining", "done", "mids", "_pending")

    def __init__(self, done: asyncio.Future[None], pending: dict[int, Any]) -> None:
        self.remaining = 0
        self.done = done
        self.mids: list[int] = []
        self._pending = pending

    def set(self) -> None:
        self.remaining -= 1
        if self.remaining <= 0 and not self.done.done():
            self.done.set_result(None)

    def forget(self) -> None:
        """Given up on: unregister the mids still waiting."""
        for mid in self.mids:
            if self._pending.get(mid) is self:
                del self._pending[mid]
