"""Speed-ups of paho-mqtt (under aiomqtt), each measured in the e2e profile (docs/performance.md).

paho does per-packet work that an asyncio engine publishing thousands of QoS 1
messages a second feels: lookup tables rebuilt in every ``Properties()``, a
``threading.Condition`` per published message that nobody waits on here, and
several ``recv`` calls per packet. Each patch checks the installed paho's shape
first and leaves it alone when it differs (returns False); ``apply()`` runs
them once when the engine's MQTT module is imported.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from paho.mqtt.client import MQTTMessageInfo
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


def share_property_tables() -> bool:
    """Make paho's ``Properties()`` cheap: it builds three lookup tables (40-odd entries) in every instance,
    once per MQTT 5 packet read or written (every request, every PUBACK): 6 % of the engine's CPU in the
    e2e profile. paho only ever reads those tables, so they are built once and shared. Checked against the
    installed paho: when its ``Properties`` holds anything else, it is left alone (returns False)."""
    if getattr(Properties.__init__, "_smppengine_shared", False):
        return True
    template = Properties(PacketTypes.PUBLISH)
    if set(vars(template)) != {"packetType", "types", "names", "properties"}:
        return False
    types, names, table = template.types, template.names, template.properties
    setattr_ = object.__setattr__

    def __init__(self: Properties, packetType: int) -> None:
        setattr_(self, "packetType", packetType)
        setattr_(self, "types", types)
        setattr_(self, "names", names)
        setattr_(self, "properties", table)

    __init__._smppengine_shared = True  # type: ignore[attr-defined]
    Properties.__init__ = __init__  # type: ignore[method-assign]
    return True


class BufferedReads:
    """Fewer system calls for paho's reads. paho reads every packet with several ``recv`` calls (the first
    byte, each byte of the length, then the rest): three for a 4-byte PUBACK, about 10 % of the engine's CPU
    in the e2e profile. This reads up to 64 KiB per call and serves paho from that buffer. The socket does
    not signal "readable" for packets already in the buffer, so ``loop_read`` is repeated until it is empty.

    ``take`` (mqtt_fast.FastQos1.take_buffered), when given, is offered the buffer whenever paho is between
    packets: it consumes the packets it answers itself and returns where paho goes on reading.
    """

    __slots__ = ("_recv", "_loop_read", "_paho", "_data", "_pos", "take")

    def __init__(self, paho: Any, take: Callable[[bytes, int], int] | None = None) -> None:
        self._paho = paho
        self._recv = paho._sock_recv
        self._loop_read = paho.loop_read
        self._data = b""
        self._pos = 0
        self.take = take
        paho._sock_recv = self.sock_recv
        paho.loop_read = self.loop_read

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
        paho, take = self._paho, self.take
        while rc == 0 and self._pos < len(self._data) and paho._sock is not None:
            if take is not None and paho._in_packet["command"] == 0:
                self._pos = take(self._data, self._pos)
                if self._pos >= len(self._data):
                    break
            rc = self._loop_read(max_packets)
        return rc


_SHARED_CONDITION = threading.Condition()
_INFO_SLOTS = {"_condition", "_iterpos", "_published", "mid", "rc"}


def share_message_info_condition() -> bool:
    """paho gives every published message an ``MQTTMessageInfo`` with its own ``threading.Condition`` (and
    RLock), 6-8 % of the engine's CPU; it exists for ``wait_for_publish()``, which a thread would call. The
    engine never does (aiomqtt resolves publishes from the PUBACK callback), so one shared Condition serves
    every info: ``_set_as_published`` still takes it and notifies, ``wait_for_publish`` still works (a
    waiter re-checks its own flag after every wake-up and its timeout)."""
    init = MQTTMessageInfo.__init__
    if getattr(init, "_smppengine_shared", False):
        return True
    if set(getattr(MQTTMessageInfo, "__slots__", ())) != _INFO_SLOTS:
        return False
    probe = MQTTMessageInfo(1)
    rc = probe.rc

    def __init__(self: MQTTMessageInfo, mid: int) -> None:
        self.mid = mid
        self._published = False
        self._condition = _SHARED_CONDITION
        self.rc = rc
        self._iterpos = 0

    __init__._smppengine_shared = True  # type: ignore[attr-defined]
    MQTTMessageInfo.__init__ = __init__  # type: ignore[method-assign]
    return True


def apply() -> None:
    share_property_tables()
    share_message_info_condition()
