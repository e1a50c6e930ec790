"""Embedded MQTT broker for the zero-setup default: a private `mosquitto` child process.

Why mosquitto and not an in-process Python broker: amqtt (the only maintained one) rejects MQTT 5,
ignores `$share/` and queues nothing for offline sessions (DEPENDENCIES.md), which would make the demo
behave unlike production. Mosquitto is one `apt-get install mosquitto` away and is what users run.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import getpass
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:              # amqtt is imported only when the fallback broker starts
    from amqtt.broker import Broker

TEMP_PREFIX = "smppengine-mqtt-"
OWNER_FILE = "owner.pid"         # in a private broker's temp directory: the process that made it


class BrokerError(Exception):
    pass


def free_port(preferred: int | None = None, host: str = "127.0.0.1", tries: int = 20) -> int:
    """`preferred` when it is free, else the next free one of the ``tries`` ports after it, else any free port."""
    candidates = list(range(preferred, min(preferred + tries, 65536))) if preferred else []
    for port in candidates + [0]:
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise BrokerError("no free port")


class Mosquitto:
    """A private mosquitto on 127.0.0.1 with persistence in its own directory.

    Without ``workdir`` that directory is a temp directory ``smppengine-mqtt-*`` which :meth:`stop` removes
    (with what it persisted); the mosquitto process gets SIGKILL when the process that started it dies.

    Its queue and in-flight limits are raised, unless ``stock_limits``: then mosquitto's own defaults apply
    (``max_inflight_messages 20``, ``max_queued_messages 1000``), as in a broker installed from a
    distribution and left as it came."""

    def __init__(self, port: int = 0, workdir: str | None = None, persistence: bool = True,
                 stock_limits: bool = False) -> None:
        self.port = port or free_port()
        self._own_dir = workdir is None        # a temp directory made here is removed by stop()
        self.dir = Path(workdir or tempfile.mkdtemp(prefix=TEMP_PREFIX))
        if self._own_dir:
            (self.dir / OWNER_FILE).write_text(f"{os.getpid()}\n")
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
        if self._own_dir and not self.dir.exists():      # started again after stop() removed it
            self.dir.mkdir(parents=True)
            (self.dir / OWNER_FILE).write_text(f"{os.getpid()}\n")
        conf = self._write_config()
        self.proc = await asyncio.create_subprocess_exec(
            binary, "-c", str(conf), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            preexec_fn=die_with_parent(os.getpid()))
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
        if self.proc is not None and self.proc.returncode is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            await self.proc.wait()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


def die_with_parent(parent: int) -> Callable[[], None]:
    """A ``preexec_fn``: the child gets SIGKILL when the process that started it dies, however it dies
    (Linux PR_SET_PDEATHSIG; elsewhere nothing). ``parent`` is the starting process's pid, checked after the
    call in case it died during the fork."""

    def pre() -> None:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)   # 1 = PR_SET_PDEATHSIG
        if os.getppid() != parent:
            os._exit(1)

    return pre


def remove_stale_dirs() -> list[Path]:
    """Remove private broker directories whose owner process is gone (a SIGKILLed demo cannot clean up)."""
    removed: list[Path] = []
    for d in Path(tempfile.gettempdir()).glob(f"{TEMP_PREFIX}*"):
        try:
            pid = int((d / OWNER_FILE).read_text())
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
        except (OSError, ValueError):
            continue          # no owner file (made by an older version, or not ours), or not ours to judge
    return removed


class InProcessBroker:
    """Fallback when mosquitto is missing: amqtt in-process, MQTT 3.1.1 only, no queueing for offline
    sessions. Good enough to see the engine work; not a production broker (DEPENDENCIES.md)."""

    def __init__(self, port: int = 0) -> None:
        self.port = port or free_port()
        self._broker: Broker | None = None

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
            await self._broker.shutdown()
            self._broker = None


def mosquitto_binary() -> str | None:
    """The mosquitto executable (Debian installs it in /usr/sbin, often not on a user's PATH)."""
    return shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)


def mosquitto_available() -> bool:
    return mosquitto_binary() is not None
