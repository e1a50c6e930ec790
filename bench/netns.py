"""Network namespaces for the benchmarks: each engine in a namespace of its own, reaching PostgreSQL, the
broker and the SMSC simulator (all on 127.0.0.1 of the host) through a veth pair and the delay proxy
(tests/delayproxy.py) listening on the host side of the pair.

    host namespace                                   namespace smppb<pid>-<i>
    127.0.0.1:5432 PostgreSQL  <-- proxy on 10.R.i.1 ===veth=== 10.R.i.2  engine i
    127.0.0.1:M    Mosquitto   <--   "                                      (ip netns exec ... python -m
    127.0.0.1:S    simulator   <--   "                                       smppengine.cli run)

R is 100 + pid % 100, so that two benchmarks running at once do not share addresses. Only addresses of
namespaces created here are used (10.R.i.0/30), and every namespace is removed on every exit path:
``Namespaces`` is a context manager, and an atexit hook plus SIGTERM/SIGHUP handlers remove whatever is
left when the process ends otherwise. ``remove_stale()`` removes namespaces of earlier runs of this
script whose process is gone (a SIGKILL).

Needs root and iproute2 (``ip``). This kernel has no netem: the delay comes from the proxy.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import signal
import subprocess
from dataclasses import dataclass
from types import FrameType, TracebackType

PREFIX = "smppb"
_LIVE: set[str] = set()        # namespaces this process created and has not removed yet


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


@dataclass
class Netns:
    """One namespace with a veth pair to the host: ``host_ip`` on the host side, ``ns_ip`` inside."""

    index: int
    name: str
    veth_host: str
    veth_ns: str
    host_ip: str
    ns_ip: str

    @classmethod
    def for_index(cls, i: int) -> Netns:
        pid = os.getpid()
        r = 100 + pid % 100
        tag = f"{pid % 100000}"
        return cls(i, f"{PREFIX}{tag}-{i}", f"sb{tag}h{i}", f"sb{tag}n{i}", f"10.{r}.{i}.1", f"10.{r}.{i}.2")

    def up(self) -> None:
        _LIVE.add(self.name)
        _ip("netns", "add", self.name)
        _ip("link", "add", self.veth_host, "type", "veth", "peer", "name", self.veth_ns)
        _ip("link", "set", self.veth_ns, "netns", self.name)
        _ip("addr", "add", f"{self.host_ip}/30", "dev", self.veth_host)
        _ip("link", "set", self.veth_host, "up")
        _ip("-n", self.name, "addr", "add", f"{self.ns_ip}/30", "dev", self.veth_ns)
        _ip("-n", self.name, "link", "set", self.veth_ns, "up")
        _ip("-n", self.name, "link", "set", "lo", "up")

    def down(self) -> None:
        _ip("netns", "del", self.name, check=False)        # removes the veth pair with it
        _ip("link", "del", self.veth_host, check=False)    # in case the namespace was never made
        _LIVE.discard(self.name)

    def exec_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]


class Namespaces:
    """``count`` namespaces, set up on enter and removed on exit (whatever the exit)."""

    def __init__(self, count: int) -> None:
        self.spaces = [Netns.for_index(i) for i in range(count)]

    def __enter__(self) -> list[Netns]:
        _install_handlers()
        try:
            for ns in self.spaces:
                ns.up()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self.spaces

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        for ns in self.spaces:
            ns.down()


def remove_all_live() -> None:
    for name in list(_LIVE):
        _ip("netns", "del", name, check=False)
        _LIVE.discard(name)


def remove_stale() -> list[str]:
    """Remove namespaces of earlier runs of this script whose process no longer exists."""
    removed = []
    out = _ip("netns", "list", check=False).stdout
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.fullmatch(rf"{PREFIX}(\d+)-\d+", name)
        if not m:
            continue
        tag = int(m.group(1))
        if tag == os.getpid() % 100000:
            continue
        if any(int(p) % 100000 == tag for p in os.listdir("/proc") if p.isdigit()):
            continue            # a live process with that tag: maybe another run
        _ip("netns", "del", name, check=False)
        removed.append(name)
    return removed


_installed = False


def _install_handlers() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    atexit.register(remove_all_live)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        remove_all_live()
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError):      # not the main thread
            if signal.getsignal(sig) in (signal.SIG_DFL, None):   # keep a handler the caller installed
                signal.signal(sig, on_signal)


def netns_available() -> str | None:
    """None when namespaces can be made here, else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if subprocess.run(["which", "ip"], capture_output=True).returncode != 0:
        return "iproute2 (`ip`) is not installed"
    return None
