"""Embedded MQTT broker for the zero-setup default: a private `mosquitto` child process.

Why mosquitto and not an in-process Python broker: amqtt (the only maintained one) rejects MQTT 5,
ignores `$share/` and queues nothing for offline sessions (DEPENDENCIES.md), which would make the demo
behave unlike production. Mosquitto is one `apt-get install mosquitto` away and is what users run.
"""

from __future__ import annotations

import asyncio
import getpass
import shutil
import socket
import tempfile
from pathlib import Path


class BrokerError(Exception):
    pass


def free_port(preferred: int | None = None, host: str = "127.0.0.1") -> int:
    """`preferred` when it is free, else any free port."""
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise BrokerError("no free port")


class Mosquitto:
    """A private mosquitto on 127.0.0.1 with persistence in its own directory.

    Its queue and in-flight limits are raised, unless ``stock_limits``: then mosquitto's own defaults apply
    (``max_inflight_messages 20``, ``max_queued_messages 1000``), as in a broker installed from a
    distribution and left as it came."""

    def __init__(self, port: int = 0, workdir: str | None = None, persistence: bool = True,
                 stock_limits: bool = False) -> None:
        self.port = port or free_port()
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="smppengine-mqtt-"))
        self.persistence = persistence
        self.stock_limits = stock_limits
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def _write_config(self) -> Path:
        conf = self.dir / "mosquitto.conf"
        lines = [
            # started as root, mosquitto switches to the "mosquitto" user, which cannot reach a private
            # temp directory (persistence, log): stay the user we are
            f"user {getpass.getuser()}",
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.dir}/",
            *([] if self.stock_limits else ["max_queued_messages 1000000", "max_inflight_messages 1000"]),
            "log_type error",
            "log_type warning",
            f"log_dest file {self.dir}/mosquitto.log",
        ]
        conf.write_text("\n".join(lines) + "\n")
        return conf

    async def start(self, timeout: float = 10.0) -> None:
        binary = mosquitto_binary()
        if binary is None:
            raise BrokerError("mosquitto is not installed (apt-get install mosquitto), "
                              "and no broker is configured: set mqtt.url in the config")
        conf = self._write_config()
        self.proc = await asyncio.create_subprocess_exec(
            binary, "-c", str(conf), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if self.proc.returncode is not None:
                raise BrokerError(f"mosquitto exited with {self.proc.returncode}; see {self.dir}/mosquitto.log")
            try:
                _, w = await asyncio.open_connection("127.0.0.1", self.port)
                w.close()
                return
            except OSError:
                await asyncio.sleep(0.05)
        raise BrokerError(f"mosquitto did not listen on {self.port} within {timeout}s")

    async def stop(self, kill: bool = False) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        await self.proc.wait()


class InProcessBroker:
    """Fallback when mosquitto is missing: amqtt in-process, MQTT 3.1.1 only, no queueing for offline
    sessions. Good enough to see the engine work; not a production broker (DEPENDENCIES.md)."""

    def __init__(self, port: int = 0) -> None:
        self.port = port or free_port()
        self._broker: object | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    async def start(self) -> None:
        from amqtt.broker import Broker

        broker = Broker({
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        })
        await broker.start()
        self._broker = broker

    async def stop(self) -> None:
        if self._broker is not None:
            await self._broker.shutdown()  # type: ignore[attr-defined]
            self._broker = None


def mosquitto_binary() -> str | None:
    """The mosquitto executable (Debian installs it in /usr/sbin, often not on a user's PATH)."""
    return shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)


def mosquitto_available() -> bool:
    return mosquitto_binary() is not None
