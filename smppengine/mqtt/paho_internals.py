"""Every access of the engine to private members of paho-mqtt and aiomqtt: this module and no other.

The hot path (:mod:`.wire`) writes QoS 1 PUBLISH and PUBACK packets straight into paho's
out queue, takes the PUBACKs of its publishes and the requests before paho parses them,
and reads the socket in larger chunks: measured in the e2e profile, that is the engine's
speed (docs/performance.md). None of it has a public API, so each private member used is
listed in :data:`PAHO_MEMBERS`, read or written here only (each line marked ``PRIVATE``),
and checked by :func:`check`. A paho or aiomqtt release whose internals differ fails
loudly at the link's start (:class:`InternalsChanged`) and in tests/test_mqtt_internals.py,
instead of quietly running slower; pyproject.toml pins the tested range.

Nothing here patches a class: only the one paho client instance the link creates for a
connection gets its handlers and reads replaced (:meth:`PahoWire.hook_handlers`,
:meth:`PahoWire.hook_reads`).
"""

from __future__ import annotations

import inspect
import socket
from collections.abc import Callable
from typing import Any

import aiomqtt
import paho.mqtt
import paho.mqtt.client as paho_client
from paho.mqtt.enums import CallbackAPIVersion

# The releases these internals were read from and tested with (pyproject.toml pins this range).
TESTED = {"paho-mqtt": "2.2.0", "aiomqtt": "2.5.1"}

# paho.mqtt.client.Client's private members used, with the parameters of the callable ones.
PAHO_MEMBERS: dict[str, tuple[str, ...] | None] = {
    "_sock": None,                    # the socket, None when disconnected
    "_in_packet": None,               # the packet being read: {"command": 0 between packets, "packet": body}
    "_last_mid": None,                # paho's last packet id (1..65535)
    "_mid_generate_mutex": None,      # its lock
    "_packet_queue": ("command", "packet", "mid", "qos"),   # queue bytes for writing, in order
    "_handle_pubackcomp": ("cmd",),   # paho's PUBACK/PUBCOMP handler
    "_handle_publish": (),            # paho's PUBLISH handler
    "_sock_recv": ("bufsize",),       # one recv from the socket
}
# aiomqtt.Client's private members used.
AIOMQTT_MEMBERS = ("_client",)        # the wrapped paho client (aiomqtt has no public accessor)


class InternalsChanged(RuntimeError):
    """The installed paho-mqtt / aiomqtt is not shaped as the engine's MQTT hot path expects."""


def _versions() -> str:
    return (f"installed paho-mqtt {paho.mqtt.__version__}, aiomqtt {aiomqtt.__version__}; tested with "
            f"paho-mqtt {TESTED['paho-mqtt']}, aiomqtt {TESTED['aiomqtt']} (the range pinned in pyproject.toml)")


def _params(fn: Any) -> tuple[str, ...]:
    return tuple(inspect.signature(fn).parameters)


def check(paho: Any) -> None:
    """Raise :class:`InternalsChanged`, naming what differs, unless ``paho`` (one paho client instance) has
    every private member of :data:`PAHO_MEMBERS` in the expected shape."""
    problems: list[str] = []
    for name, params in PAHO_MEMBERS.items():
        if not hasattr(paho, name):                                            # PRIVATE (any of them)
            problems.append(f"{name} is missing")
            continue
        value = getattr(paho, name)                                            # PRIVATE (any of them)
        if params is not None:
            if not callable(value):
                problems.append(f"{name} is not callable")
            elif _params(value)[:len(params)] != params:
                problems.append(f"{name}{_params(value)} does not start with the parameters {params}")
    if not problems:
        packet = paho._in_packet                                               # PRIVATE
        if not (isinstance(packet, dict) and "command" in packet and "packet" in packet):
            problems.append("_in_packet is not a dict with 'command' and 'packet'")
        if not isinstance(paho._last_mid, int):                                # PRIVATE
            problems.append("_last_mid is not an int")
        if not hasattr(paho._mid_generate_mutex, "__enter__"):                 # PRIVATE
            problems.append("_mid_generate_mutex is not a lock")
    if problems:
        raise InternalsChanged(f"paho-mqtt internals changed: {'; '.join(problems)} ({_versions()})")


def check_installed() -> None:
    """:func:`check` on a fresh (never connected) paho client of the installed release."""
    check(paho_client.Client(CallbackAPIVersion.VERSION2))


def paho_of(client: aiomqtt.Client) -> Any:
    """The paho client an aiomqtt client wraps (checked with :func:`check`)."""
    paho = getattr(client, "_client", None)                                    # PRIVATE aiomqtt
    if not isinstance(paho, paho_client.Client):
        raise InternalsChanged(f"aiomqtt internals changed: Client._client is not a paho client ({_versions()})")
    check(paho)
    return paho


def prepare(client: aiomqtt.Client, on_connack: Callable[[Any], None]) -> PahoWire:
    """Set up the paho client of ``client`` for the engine, before it connects: manual PUBACK of received
    messages, no per-packet debug log formatting, ``on_connack(properties)`` before aiomqtt's own
    on_connect. Returns its :class:`PahoWire`."""
    paho = paho_of(client)
    # paho formats a debug log call for every packet (a logger check each time, 2 % of the CPU); aiomqtt
    # turns its failures into exceptions, which the link logs
    paho.disable_logger()
    paho.manual_ack_set(True)          # PUBACK of requests only after their commit (through PahoWire.queue)
    aiomqtt_on_connect = paho.on_connect      # aiomqtt's handler: it resolves `async with client`

    def on_connect(c: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None) -> None:
        _nodelay(c)
        on_connack(properties)
        aiomqtt_on_connect(c, userdata, flags, reason, properties)

    paho.on_connect = on_connect
    return PahoWire(paho)


def _nodelay(paho: Any) -> None:
    """TCP_NODELAY on the broker connection (paho leaves Nagle's algorithm on; asyncio's own sockets have it
    off): with Nagle, a PUBLISH written while the previous write is not yet ACKed waits for the broker's delayed
    ACK, up to 40 ms on Linux -- measured: the outbox's PUBACK p50 40 ms at 20 msg/s."""
    sock = paho.socket()
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):      # not a TCP socket (a websocket wrapper, a Unix socket)
        pass


class PahoWire:
    """One paho client instance, seen through the private members the hot path needs."""

    __slots__ = ("paho",)

    def __init__(self, paho: Any) -> None:
        check(paho)
        self.paho = paho

    def connected(self) -> bool:
        return self.paho._sock is not None                                    # PRIVATE

    def in_packet(self) -> dict[str, Any]:
        """The packet paho is reading (``command`` 0: between packets): a new dict after every packet."""
        packet: dict[str, Any] = self.paho._in_packet                          # PRIVATE
        return packet

    def take_mids(self, n: int) -> int:
        """Reserve ``n`` packet ids from paho's counter, as paho would take them; returns the id before the
        first (the ids are ``(first + k) % 65535 + 1``)."""
        paho = self.paho
        with paho._mid_generate_mutex:                                         # PRIVATE
            last: int = paho._last_mid                                         # PRIVATE
            paho._last_mid = (last + n - 1) % 65535 + 1                        # PRIVATE
        return last

    def queue(self, command: int, packet: bytes | bytearray, qos: int) -> None:
        """Queue bytes (whole packets) for writing, in order with paho's own."""
        self.paho._packet_queue(command, packet, 0, qos)                      # PRIVATE

    def hook_handlers(self, puback: Callable[[str], Any], publish: Callable[[], Any]
                      ) -> tuple[Callable[[str], Any], Callable[[], Any]]:
        """Replace this instance's PUBACK/PUBCOMP and PUBLISH handlers; returns paho's own."""
        paho = self.paho
        old = paho._handle_pubackcomp, paho._handle_publish                    # PRIVATE
        paho._handle_pubackcomp, paho._handle_publish = puback, publish        # PRIVATE
        return old

    def hook_reads(self, sock_recv: Callable[[int], bytes], loop_read: Callable[[int], Any]
                   ) -> tuple[Callable[[int], bytes], Callable[[int], Any]]:
        """Replace this instance's socket read and ``loop_read``; returns paho's own."""
        paho = self.paho
        old = paho._sock_recv, paho.loop_read                                  # PRIVATE (_sock_recv)
        paho._sock_recv, paho.loop_read = sock_recv, loop_read                 # PRIVATE (_sock_recv)
        return old
