"""sd_notify: the engine under a (fake) systemd gets READY=1, STATUS=, WATCHDOG=1 and STOPPING=1 right."""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import uuid
from pathlib import Path

from smppengine.broker import Mosquitto
from smppengine.sdnotify import Notifier, watchdog_interval
from smppengine.simulator import Simulator

from .helpers import EngineProcess, smsc, write_toml


class NotifySocket:
    """What systemd listens on: a unix datagram socket; records every message."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.setblocking(False)
        self.messages: list[str] = []

    async def wait(self, pred: str, n: int = 1, timeout: float = 20.0) -> list[str]:
        """Wait until ``n`` messages contain the line/prefix ``pred``; returns those messages."""
        loop = asyncio.get_running_loop()

        def hits() -> list[str]:
            return [m for m in self.messages if any(line.startswith(pred) for line in m.split("\n"))]

        async def loop_() -> list[str]:
            while len(hits()) < n:
                self.messages.append((await loop.sock_recv(self.sock, 4096)).decode())
            return hits()

        try:
            return await asyncio.wait_for(loop_(), timeout)
        except TimeoutError:
            raise AssertionError(f"no {n}x {pred!r} within {timeout}s; got {self.messages[-10:]}") from None

    def close(self) -> None:
        self.sock.close()


def test_notifier_sends_datagrams_to_a_path_socket() -> None:
    d = tempfile.mkdtemp(prefix="sdn", dir="/tmp")       # unix socket paths must stay short
    path = os.path.join(d, "notify")
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    rx.bind(path)
    rx.settimeout(5)
    try:
        n = Notifier({"NOTIFY_SOCKET": path})
        assert n.ready("starting") and n.watchdog() and n.stopping()
        assert rx.recv(1024) == b"READY=1\nSTATUS=starting"
        assert rx.recv(1024) == b"WATCHDOG=1"
        assert rx.recv(1024) == b"STOPPING=1"
        n.close()
    finally:
        rx.close()
        os.unlink(path)
        os.rmdir(d)


def test_notifier_is_a_no_op_outside_systemd_and_survives_a_missing_socket() -> None:
    assert Notifier({}).ready() is False
    assert Notifier({"NOTIFY_SOCKET": "/nonexistent/dir/notify"}).status("x") is False


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None   # not for us
    assert watchdog_interval({}) is None and watchdog_interval({"WATCHDOG_USEC": "0"}) is None


async def test_engine_reports_ready_status_watchdog_and_stopping(tmp_path: Path, broker: Mosquitto,
                                                                 sim: Simulator) -> None:
    cfg = write_toml(str(tmp_path / "engine.toml"), {
        "engine": {"instance": "sd", "store": str(tmp_path / "engine.db")},
        "mqtt": {"url": broker.url}, "http": {"listen": ""}, "log": {"level": "info", "format": "json"},
        "smsc": [smsc("a", sim.port)],
    })
    ns = NotifySocket(f"@smppengine-test-{uuid.uuid4().hex}")
    engine = EngineProcess(cfg)
    await engine.start(env={"NOTIFY_SOCKET": ns.address, "WATCHDOG_USEC": "200000"})
    try:
        ready = (await ns.wait("READY=1"))[0]
        # READY=1 only once the store is open and MQTT is connected
        await engine.wait_log("engine_ready")       # logged before READY=1 is sent
        assert "STATUS=bound: a " in ready and "mqtt connected" in ready
        await ns.wait("WATCHDOG=1", n=3, timeout=10)           # every 0.1 s (half of WATCHDOG_USEC)
        status = await ns.wait("STATUS=bound: a 1/1", timeout=15)
        assert "backlog 0" in status[0]
        assert await engine.terminate() == 0
        await ns.wait("STOPPING=1")
        assert ns.messages.index(next(m for m in ns.messages if m.startswith("READY=1"))) < \
            ns.messages.index("STOPPING=1")
    finally:
        await engine.terminate()
        ns.close()
