"""The private paho/aiomqtt members the MQTT hot path uses (smppengine/mqtt/paho_internals.py).

These tests fail loudly on a paho-mqtt or aiomqtt release whose internals changed, and check that no class
of either library is patched and that no other module of the engine reaches into them. The hot path's
behaviour on those internals against a real broker is in tests/test_mqtt_fast.py.
"""

from __future__ import annotations

import importlib.metadata
import re
import threading
import tomllib
from pathlib import Path

import aiomqtt
import aiomqtt.client
import paho.mqtt.client
import paho.mqtt.properties
import pytest
from packaging.requirements import Requirement

from smppengine.config import MqttConfig
from smppengine.mqtt import MqttLink, paho_internals
from smppengine.mqtt.paho_internals import AIOMQTT_MEMBERS, PAHO_MEMBERS, TESTED, InternalsChanged, PahoWire
from smppengine.mqtt.wire import BufferedReads

ROOT = Path(__file__).resolve().parent.parent


def pinned() -> dict[str, Requirement]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    reqs = [Requirement(d) for d in deps]
    return {r.name: r for r in reqs if r.name in ("paho-mqtt", "aiomqtt")}


def test_installed_and_tested_releases_are_within_the_range_pinned_in_pyproject() -> None:
    pins = pinned()
    assert set(pins) == {"paho-mqtt", "aiomqtt"}, "pyproject.toml must pin both paho-mqtt and aiomqtt"
    for name, req in pins.items():
        installed = importlib.metadata.version(name)
        assert req.specifier.contains(installed), f"{name} {installed} is outside the pinned {req.specifier}"
        assert req.specifier.contains(TESTED[name]), f"tested {name} {TESTED[name]} outside {req.specifier}"
        assert any(spec.operator in ("<", "<=", "==", "~=") for spec in req.specifier), \
            f"{name}: the pin {req.specifier} must have an upper bound (a new release may change the internals)"


def test_the_installed_paho_has_every_private_member_the_hot_path_uses() -> None:
    paho_internals.check_installed()          # raises InternalsChanged, naming what differs
    client = paho.mqtt.client.Client(paho.mqtt.client.CallbackAPIVersion.VERSION2)
    assert client._in_packet["command"] == 0 and client._sock is None


async def test_the_installed_aiomqtt_wraps_a_paho_client_the_hot_path_can_use() -> None:
    client = aiomqtt.Client("127.0.0.1", 1)
    inner = paho_internals.paho_of(client)
    assert inner is client._client
    seen: list[object] = []
    wire = paho_internals.prepare(client, seen.append)
    assert inner._manual_ack is True                  # PUBACK only when the engine says so (after the commit)
    inner.on_connect(inner, None, None, 0, "props")   # the CONNACK reaches the link, then aiomqtt
    assert seen == ["props"] and client._connected.done()
    assert not wire.connected()


def test_packet_ids_are_taken_from_paho_counter_as_paho_takes_them() -> None:
    inner = paho.mqtt.client.Client(paho.mqtt.client.CallbackAPIVersion.VERSION2)
    wire = PahoWire(inner)
    inner._last_mid = 65533
    first = wire.take_mids(3)                        # ids 65534, 65535, 1
    assert [(first + k) % 65535 + 1 for k in range(3)] == [65534, 65535, 1]
    assert inner._mid_generate() == 2                # paho's own next publish follows on


def test_a_paho_with_changed_internals_is_refused_loudly() -> None:
    def fresh() -> paho.mqtt.client.Client:
        return paho.mqtt.client.Client(paho.mqtt.client.CallbackAPIVersion.VERSION2)

    gone = fresh()
    del gone._in_packet
    with pytest.raises(InternalsChanged, match=r"_in_packet is missing .*tested with paho-mqtt 2\.2\.0"):
        PahoWire(gone)
    renamed = fresh()
    renamed._packet_queue = lambda packet, command, mid, qos: 0      # type: ignore[method-assign]
    with pytest.raises(InternalsChanged, match=r"_packet_queue\('packet', 'command'"):
        PahoWire(renamed)
    reshaped = fresh()
    reshaped._in_packet = ("command", 0)                              # type: ignore[assignment]
    with pytest.raises(InternalsChanged, match="_in_packet is not a dict"):
        PahoWire(reshaped)
    with pytest.raises(InternalsChanged, match="aiomqtt internals changed"):
        paho_internals.paho_of(object())                              # type: ignore[arg-type]


def test_the_link_refuses_to_start_on_a_paho_whose_internals_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    """No silent fallback to a slower path: the engine's link does not come up at all."""
    monkeypatch.delattr(paho.mqtt.client.Client, "_handle_publish")
    with pytest.raises(InternalsChanged, match="_handle_publish is missing"):
        MqttLink(MqttConfig(), "t1", lambda m: None)


def test_no_class_of_paho_or_aiomqtt_is_patched() -> None:
    """Importing the link and creating one leaves every function of both libraries' classes their own."""
    MqttLink(MqttConfig(), "t1", lambda m: None)
    for module in (paho.mqtt.client, paho.mqtt.properties, aiomqtt.client):
        for cls in vars(module).values():
            if not isinstance(cls, type) or not cls.__module__.startswith(("paho", "aiomqtt")):
                continue
            for name, attr in vars(cls).items():
                fn = getattr(attr, "__func__", getattr(attr, "fset", attr))
                module = getattr(fn, "__module__", None) or ""
                assert not module.startswith("smppengine"), f"{cls.__name__}.{name} is patched by {module}"


def test_no_other_module_reaches_into_paho_or_aiomqtt() -> None:
    names = "|".join(re.escape(n) for n in [*PAHO_MEMBERS, *AIOMQTT_MEMBERS, "_pending_publishes", "_out_packet",
                                            "_mid_generate"])
    private = re.compile(rf"\.({names})\b")
    offenders = []
    for path in (ROOT / "smppengine").rglob("*.py"):
        if path.name == "paho_internals.py":
            continue
        text = path.read_text()
        if not re.search(r"^\s*(import|from) (paho|aiomqtt)", text, re.M):
            continue
        offenders += [f"{path.relative_to(ROOT)}:{i}: {line.strip()}" for i, line in enumerate(text.splitlines(), 1)
                      if private.search(line)]
    assert offenders == []
    marked = (ROOT / "smppengine" / "mqtt" / "paho_internals.py").read_text().splitlines()
    unmarked = [line for line in marked if private.search(line) and "PRIVATE" not in line
                and not line.lstrip().startswith(("#", '"', "AIOMQTT_MEMBERS", "raise InternalsChanged"))]
    assert unmarked == []


class FakePaho:
    """Stands in for paho: ``loop_read`` takes one length-prefixed packet through ``_sock_recv``."""

    def __init__(self, chunks: list[bytes | type[BaseException]]) -> None:
        self.chunks = chunks
        self.recv_calls = 0
        self.packets: list[bytes] = []
        self._sock: object | None = object()
        self._in_packet: dict[str, object] = {"command": 0, "packet": bytearray()}
        self._last_mid = 0
        self._mid_generate_mutex = threading.Lock()

    def _packet_queue(self, command: int, packet: bytes, mid: int, qos: int) -> int:
        return 0

    def _handle_pubackcomp(self, cmd: str) -> int:
        return 0

    def _handle_publish(self) -> int:
        return 0

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
    buf = BufferedReads(PahoWire(paho))
    assert paho.loop_read() == 0        # the engine's socket callback: one call for the whole read
    assert paho.packets == [b"abc", b"de", b"f"]
    assert paho.recv_calls == 1 and buf.buffered == 0


def test_buffered_reads_pass_on_short_reads_eagain_and_eof() -> None:
    paho = FakePaho([b"\x05ab", BlockingIOError, b""])
    buf = BufferedReads(PahoWire(paho))
    assert buf.sock_recv(1) == b"\x05"
    assert buf.sock_recv(5) == b"ab"            # a short read, as from the socket: paho keeps the partial packet
    with pytest.raises(BlockingIOError):
        buf.sock_recv(3)                         # nothing buffered, nothing on the socket
    assert buf.sock_recv(1) == b""               # EOF reaches paho as an empty read
    assert paho.recv_calls == 3
