"""systemd's sd_notify protocol (Type=notify units): READY=1, STATUS=..., WATCHDOG=1, STOPPING=1.

Why no library: the protocol is one datagram of ``KEY=value`` lines to the unix socket named by
``$NOTIFY_SOCKET`` (a leading ``@`` means the Linux abstract namespace). ``sdnotify`` (pure Python)
adds nothing we need, and ``systemd-python`` needs libsystemd-dev to build. Outside systemd
(``NOTIFY_SOCKET`` unset) every call is a cheap no-op, so the engine calls it unconditionally.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable, Mapping

import structlog

log = structlog.get_logger(__name__)


def socket_address(value: str) -> str:
    """The address to send to: ``@name`` is the abstract socket ``\\0name``."""
    return "\0" + value[1:] if value.startswith("@") else value


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of ``WATCHDOG_USEC``), or None when no watchdog is asked for.

    ``WATCHDOG_PID``, when set, must be this process (systemd sets it to the main PID).
    """
    env = os.environ if env is None else env
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 2_000_000


class Notifier:
    """Sends sd_notify messages; a no-op when ``$NOTIFY_SOCKET`` is not set."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.address = env.get("NOTIFY_SOCKET", "")
        self.watchdog_s = watchdog_interval(env)
        self._sock: socket.socket | None = None
        self._warned = False

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, *lines: str) -> bool:
        """Send one datagram of ``KEY=value`` lines; False when not under systemd or the send failed."""
        if not self.address:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
                self._sock.connect(socket_address(self.address))
            self._sock.send("\n".join(lines).encode())
            return True
        except OSError as exc:
            if not self._warned:   # once: a vanished socket must not flood the log every ping
                log.warning("sd_notify_failed", socket=self.address, error=str(exc))
                self._warned = True
            self.close()
            return False

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


async def keepalive(notifier: Notifier, status: Callable[[], str], status_every: float = 5.0) -> None:
    """Run until cancelled: WATCHDOG=1 at half of WATCHDOG_USEC, STATUS= every ``status_every`` seconds.

    The pings come from the event loop itself, so a blocked loop stops them and systemd restarts the unit.
    """
    if not notifier.enabled:
        return
    loop = asyncio.get_running_loop()
    tick = min(notifier.watchdog_s or status_every, status_every)
    next_status = loop.time()
    while True:
        now = loop.time()
        if notifier.watchdog_s is not None:
            notifier.watchdog()
        if now >= next_status:
            notifier.status(status())
            next_status = now + status_every
        await asyncio.sleep(tick)
