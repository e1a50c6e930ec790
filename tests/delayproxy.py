"""A userspace TCP proxy that adds a fixed delay to each direction, counts what it forwards, and can cut
its connections: the network between the engine and PostgreSQL, the broker and the SMSC, in benchmarks
(bench/scale.py) and resilience tests (tests/test_pg_restart.py). This kernel has no netem.

Each chunk read from one side is written to the other side ``delay`` seconds after it was read, in
order (a queue per connection side, one event-loop timer for its head). The process mode runs on a
select()-based event loop: select() takes its timeout in microseconds, where epoll (asyncio's default)
rounds it up to whole milliseconds and would hold every chunk ~1 ms whatever the delay. The hold actually
applied is measured per chunk and reported (``hold_p50_ms``, ``hold_p99_ms``): on this busy 2-core
machine a 0.5 ms delay holds ~0.6 ms at the median (the scheduler's wake-up slack). With ``delay = 0``
chunks are written at once.

Per link (one listening address, one target) the proxy counts connections, chunks and bytes in each
direction: ``up`` is client -> target, ``down`` target -> client. A chunk is one read() from the socket:
for a request/response protocol at low load, one chunk up and one down per round trip; under load
several messages share a chunk, so chunks are a lower bound of the round trips.

``cut(refuse_s)`` aborts every connection of the chosen links (RST both ways) and closes their listening
sockets for ``refuse_s`` seconds (new connections are refused), then listens again on the same port.

As a process (what the benchmarks run, so that its own CPU can be measured apart):

    python -m tests.delayproxy --delay-ms 0.5 --link pg=10.0.0.1:0=127.0.0.1:5432 [--link ...]

prints one JSON line ``{"ready": true, "ports": {"pg": N, ...}}`` and then reads commands from stdin, one
per line, each answered by one JSON line: ``stats``, ``reset`` (zero the counters), ``cut SECONDS
[LINK...]``, ``quit``.

    python -m tests.delayproxy --selftest [--delay-ms 0.5] [--rounds 2000]

measures the proxy itself: round-trip time of a 100-byte ping-pong to an echo server directly and through
the proxy (without delay and with it), and the proxy's CPU per forwarded chunk; prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import selectors
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

HIGH_WATER = 1 << 20
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class LinkStats:
    connections: int = 0
    refused: int = 0
    chunks_up: int = 0
    chunks_down: int = 0
    bytes_up: int = 0
    bytes_down: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class Link:
    name: str
    listen_host: str
    listen_port: int
    target_host: str
    target_port: int
    stats: LinkStats = field(default_factory=LinkStats)
    server: asyncio.base_events.Server | None = None
    pipes: set[_Pipe] = field(default_factory=set)
    refusing_until: float = 0.0


class _Pipe(asyncio.Protocol):
    """One side of a proxied connection; ``peer`` is the other side. ``up`` is True for the client side
    (what it reads goes to the target)."""

    def __init__(self, proxy: DelayProxy, link: Link, up: bool) -> None:
        self.proxy = proxy
        self.link = link
        self.up = up
        self.transport: asyncio.Transport | None = None
        self.peer: _Pipe | None = None
        self.closed = False
        self.held: collections.deque[tuple[float, bytes, float]] = collections.deque()   # (due, data, t_in)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.link.pipes.add(self)
        if self.up:     # a client: hold its bytes until the target is connected
            transport.pause_reading()
            self.link.stats.connections += 1
            asyncio.get_running_loop().create_task(self._connect_target())

    async def _connect_target(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, down = await loop.create_connection(lambda: _Pipe(self.proxy, self.link, False),
                                                   self.link.target_host, self.link.target_port)
        except OSError:
            if self.transport is not None:
                self.transport.abort()
            return
        assert isinstance(down, _Pipe)
        if self.closed:
            if down.transport is not None:
                down.transport.abort()
            return
        self.peer, down.peer = down, self
        if self.transport is not None:
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        st = self.link.stats
        if self.up:
            st.chunks_up += 1
            st.bytes_up += len(data)
        else:
            st.chunks_down += 1
            st.bytes_down += len(data)
        peer = self.peer
        if peer is None or peer.transport is None:
            return
        self.proxy.forward(peer, data)
        if peer.transport.get_write_buffer_size() > HIGH_WATER and self.transport is not None:
            self.transport.pause_reading()

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None and not self.peer.closed:
            self.peer.transport.resume_reading()

    def eof_received(self) -> bool:
        if self.peer is not None:
            self.proxy.forward(self.peer, b"")      # b"": close the other side once the data before it went
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.link.pipes.discard(self)
        if self.peer is not None and not self.peer.closed:
            self.proxy.forward(self.peer, b"")


class DelayProxy:
    """Links from listening addresses to targets, ``delay`` seconds each way."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.links: dict[str, Link] = {}
        self.holds: list[float] = []          # hold time of each delayed chunk (s), capped

    async def add(self, name: str, listen_host: str, listen_port: int, target_host: str, target_port: int) -> int:
        """Listen (port 0: any free port) and forward to the target; returns the port listened on."""
        link = Link(name, listen_host, listen_port, target_host, target_port)
        self.links[name] = link
        await self._listen(link)
        return link.listen_port

    async def _listen(self, link: Link) -> None:
        loop = asyncio.get_running_loop()
        link.server = await loop.create_server(lambda: _Pipe(self, link, True), link.listen_host, link.listen_port,
                                               reuse_address=True)
        link.listen_port = link.server.sockets[0].getsockname()[1]

    def forward(self, pipe: _Pipe, data: bytes) -> None:
        if self.delay <= 0:
            _deliver(pipe, data)
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        q = pipe.held
        q.append((now + self.delay, data, now))
        if len(q) == 1:
            loop.call_at(now + self.delay, self._flush, pipe)

    def _flush(self, pipe: _Pipe) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        q = pipe.held
        holds = self.holds
        horizon = now + 20e-6
        while q and q[0][0] <= horizon:
            _, data, t_in = q.popleft()
            if len(holds) < 200_000:
                holds.append(now - t_in)
            _deliver(pipe, data)
        if q:
            loop.call_at(q[0][0], self._flush, pipe)

    async def cut(self, refuse_s: float, names: Iterable[str] | None = None) -> int:
        """Abort every connection of the links (all by default) and refuse new ones for ``refuse_s``
        seconds; returns how many connections were cut. Listening again happens in the background."""
        links = [self.links[n] for n in names] if names else list(self.links.values())
        cut = 0
        for link in links:
            if link.server is not None:
                link.server.close()
                link.server = None
            for pipe in list(link.pipes):
                if pipe.transport is not None:
                    pipe.transport.abort()
                    cut += pipe.up
            link.refusing_until = time.monotonic() + refuse_s
        asyncio.get_running_loop().call_later(refuse_s, self._relisten, links)
        return cut

    def _relisten(self, links: list[Link]) -> None:
        for link in links:
            asyncio.get_running_loop().create_task(self._listen(link))

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: link.stats.as_dict() for name, link in self.links.items()}
        if self.holds:
            hs = sorted(self.holds)
            out["hold_p50_ms"] = round(hs[len(hs) // 2] * 1000, 3)
            out["hold_p99_ms"] = round(hs[min(len(hs) - 1, int(len(hs) * 0.99))] * 1000, 3)
            out["hold_samples"] = len(hs)
        return out

    def reset(self) -> None:
        for link in self.links.values():
            link.stats = LinkStats()
        self.holds = []

    async def close(self) -> None:
        for link in self.links.values():
            if link.server is not None:
                link.server.close()
                link.server = None
            for pipe in list(link.pipes):
                if pipe.transport is not None:
                    pipe.transport.abort()


def _deliver(pipe: _Pipe, data: bytes) -> None:
    t = pipe.transport
    if t is None or t.is_closing():
        return
    if data:
        t.write(data)
    else:
        t.close()           # flushes what is buffered, then closes


# ------------------------------------------------------------------------------------------------ process mode
async def _serve(args: argparse.Namespace) -> None:
    proxy = DelayProxy(args.delay_ms / 1000)
    ports: dict[str, int] = {}
    for spec in args.link:
        name, listen, target = spec.split("=")
        lh, lp = listen.rsplit(":", 1)
        th, tp = target.rsplit(":", 1)
        ports[name] = await proxy.add(name, lh, int(lp), th, int(tp))
    print(json.dumps({"ready": True, "pid": os.getpid(), "ports": ports}), flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while line := (await reader.readline()).decode().split():
            cmd, rest = line[0], line[1:]
            if cmd == "stats":
                reply: dict[str, Any] = proxy.stats()
            elif cmd == "reset":
                proxy.reset()
                reply = {"ok": True}
            elif cmd == "cut":
                reply = {"cut": await proxy.cut(float(rest[0]), rest[1:] or None)}
            elif cmd == "quit":
                break
            else:
                reply = {"error": f"unknown command {cmd!r}"}
            print(json.dumps(reply), flush=True)
    finally:
        await proxy.close()


class ProxyProcess:
    """``python -m tests.delayproxy`` as a child process, driven over its stdin/stdout."""

    def __init__(self, delay_ms: float, links: Iterable[str], pin: str | None = None) -> None:
        self.delay_ms = delay_ms
        self.links = list(links)
        self.pin = pin
        self.proc: asyncio.subprocess.Process | None = None
        self.ports: dict[str, int] = {}

    async def start(self) -> dict[str, int]:
        argv = [sys.executable, "-m", "tests.delayproxy", "--delay-ms", str(self.delay_ms)]
        for spec in self.links:
            argv += ["--link", spec]
        if self.pin:
            argv = ["taskset", "-c", self.pin, *argv]
        env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.PIPE,
                                                         stdout=asyncio.subprocess.PIPE, env=env)
        doc = await self._line(20)
        if not doc.get("ready"):
            raise RuntimeError(f"delay proxy did not start: {doc}")
        self.ports = {k: int(v) for k, v in doc["ports"].items()}
        return self.ports

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def _line(self, timeout: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not raw:
            raise RuntimeError("delay proxy exited")
        return dict(json.loads(raw))

    async def command(self, line: str, timeout: float = 10.0) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()
        return await self._line(timeout)

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(OSError, RuntimeError):
            assert self.proc.stdin is not None
            self.proc.stdin.write(b"quit\n")
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _selftest(args: argparse.Namespace) -> dict[str, Any]:
    """The proxy's own cost, the proxy in a process of its own (as in the benchmarks): the round trip it
    adds to a 100-byte ping-pong, the hold it applies, and its CPU per forwarded chunk."""
    async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await r.read(65536):
                w.write(data)
        w.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    eport = server.sockets[0].getsockname()[1]
    msg = b"x" * 100

    async def rtt(port: int) -> list[float]:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        out = []
        for _ in range(args.rounds):
            t = time.perf_counter()
            w.write(msg)
            got = 0
            while got < len(msg):
                got += len(await r.read(65536))
            out.append(time.perf_counter() - t)
        w.close()
        return sorted(out)

    def p(xs: list[float], q: float) -> float:
        return round(xs[min(len(xs) - 1, int(len(xs) * q))] * 1000, 3)

    res: dict[str, Any] = {"bench": "delayproxy", "rounds": args.rounds, "delay_ms": args.delay_ms}
    await rtt(eport)     # warm up
    direct = await rtt(eport)
    res["direct_rtt_p50_ms"] = p(direct, 0.5)
    res["direct_rtt_p99_ms"] = p(direct, 0.99)
    for label, delay in (("proxy0", 0.0), ("proxy_delay", args.delay_ms)):
        proxy = ProxyProcess(delay, [f"echo=127.0.0.1:0=127.0.0.1:{eport}"])
        ports = await proxy.start()
        try:
            await rtt(ports["echo"])
            await proxy.command("reset")
            c0 = proc_cpu_seconds(proxy.pid)
            times = await rtt(ports["echo"])
            used = proc_cpu_seconds(proxy.pid) - c0
            st = await proxy.command("stats")
        finally:
            await proxy.stop()
        chunks = st["echo"]["chunks_up"] + st["echo"]["chunks_down"]
        res[f"{label}_rtt_p50_ms"] = p(times, 0.5)
        res[f"{label}_rtt_p99_ms"] = p(times, 0.99)
        res[f"{label}_added_rtt_p50_ms"] = round(res[f"{label}_rtt_p50_ms"] - res["direct_rtt_p50_ms"], 3)
        res[f"{label}_cpu_us_per_chunk"] = round(used / max(1, chunks) * 1e6, 1)
        if "hold_p50_ms" in st:
            res[f"{label}_hold_p50_ms"] = st["hold_p50_ms"]
            res[f"{label}_hold_p99_ms"] = st["hold_p99_ms"]
    server.close()
    return res


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--delay-ms", type=float, default=0.0)
    ap.add_argument("--link", action="append", default=[], help="NAME=LISTEN_HOST:PORT=TARGET_HOST:PORT")
    ap.add_argument("--selftest", action="store_true")
    ap.add_argument("--rounds", type=int, default=2000)
    args = ap.parse_args(argv)
    if args.selftest:
        print(json.dumps(asyncio.run(_selftest(args)), separators=(",", ":")), flush=True)
    else:
        # select() takes its timeout in microseconds; epoll (asyncio's default) rounds it up to whole
        # milliseconds, which would hold every chunk ~1 ms whatever the delay asked for
        with asyncio.Runner(loop_factory=lambda: asyncio.SelectorEventLoop(selectors.SelectSelector())) as r:
            r.run(_serve(args))


if __name__ == "__main__":
    main()
