"""Shared machinery of the end-to-end benchmarks (bench/e2e.py, bench/soak.py).

* a private Mosquitto with raised limits;
* the SMSC simulator and the engine, each in its own process (`python -m smppengine.cli ...`);
* a raw MQTT 3.1.1 load client (publisher + status subscriber on asyncio protocols: a few µs per
  message, so the load generator is never what is measured);
* a raw SMPP client that measures the simulator's own ceiling (submit_sm + receipt per second);
* /proc readers (CPU seconds, RSS, VmHWM) and py-spy helpers.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import re
import shutil
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from smppengine.broker import Mosquitto, free_port  # noqa: E402, F401 - re-exported
from smppengine.smpp import pdu as P  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
FINAL = frozenset({"delivered", "undelivered", "expired", "rejected", "failed"})


# ---------------------------------------------------------------------------------------------- /proc
def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def tcp_local_ports(pid: int) -> set[int]:
    """The local ports of the process's TCP sockets (its fds' socket inodes, looked up in /proc/net/tcp*)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    if cols[9] in inodes:
                        ports.add(int(cols[1].rsplit(":", 1)[1], 16))
        except OSError:
            pass
    return ports


class StoreBackends:
    """The PostgreSQL backends serving one process's connections (pg_stat_activity.client_port among the
    process's local ports): kept off the engine's CPUs like the other processes, and their CPU time summed."""

    def __init__(self, url: str, pid: int, cpus: set[int] | None) -> None:
        self.url, self.pid, self.cpus = url.split("?", 1)[0], pid, cpus
        self.base: dict[int, float] = {}          # backend pid -> CPU seconds when first counted
        self.seen: set[int] = set()
        self.conn: Any = None                     # one connection for every scan (not a backend per scan)

    async def scan(self) -> None:
        import asyncpg

        if self.conn is None:
            self.conn = await asyncpg.connect(self.url)
        ports = tcp_local_ports(self.pid)
        rows = await self.conn.fetch("SELECT pid, client_port FROM pg_stat_activity WHERE client_port IS NOT NULL "
                                     "AND pid <> pg_backend_pid()")
        for r in rows:
            pid = int(r["pid"])
            if r["client_port"] in ports and pid not in self.seen:
                self.seen.add(pid)
                if self.cpus:
                    os.sched_setaffinity(pid, self.cpus)

    def start_count(self) -> None:
        self.base = {pid: _cpu_or_none(pid) or 0.0 for pid in self.seen}

    def cpu_since_start(self) -> float:
        """CPU seconds since start_count() (a backend started later counts from its start)."""
        return sum((_cpu_or_none(pid) or 0.0) - self.base.get(pid, 0.0) for pid in self.seen)

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()
            self.conn = None


def _cpu_or_none(pid: int) -> float | None:
    try:
        return cpu_seconds(pid)
    except OSError:          # the backend ended
        return None


def status_kb(pid: int, key: str) -> int:
    """A `kB` line of /proc/<pid>/status: VmRSS, VmHWM, ..."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def machine() -> dict[str, Any]:
    """Which machine the figures come from: CPU model, cores, Python, and ``yardstick_ms``."""
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"nproc": os.cpu_count(), "cpu": model, "python": sys.version.split()[0], "yardstick_ms": yardstick_ms()}


def yardstick_ms(rounds: int = 5) -> float:
    """Milliseconds (best of ``rounds``) for a fixed pure-Python workload of the kind the engine is made of
    (dicts, f-strings, orjson): machines of the same name differ by 3x here, and the engine's figures move
    with it, so every figure carries it to be compared across machines."""
    def work() -> int:
        d: dict[str, dict[str, Any]] = {}
        for i in range(20_000):
            k = f"m{i}"
            d[k] = {"id": k, "n": i, "to": "+447700900123"}
            orjson.dumps(d[k])
        return len(d)

    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - t)
    return round(best * 1000, 2)


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, int(round(q / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs (0 when undefined)."""
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


# ---------------------------------------------------------------------------------------------- broker
class BenchBroker(Mosquitto):
    """Mosquitto with the limits raised for load: no persistence file, big queues, wide in-flight window;
    with ``stock_limits``, Mosquitto's defaults (in-flight 20, queue 1000, $SYS every 10 s)."""

    def __init__(self, workdir: str, inflight: int = 5000, stock_limits: bool = False) -> None:
        super().__init__(workdir=workdir, persistence=False, stock_limits=stock_limits)
        self.inflight = inflight

    def _write_config(self) -> Path:
        conf = super()._write_config()
        if self.stock_limits:
            return conf
        lines = [ln for ln in conf.read_text().splitlines()
                 if not ln.startswith(("max_queued_messages", "max_inflight_messages"))]
        lines += [f"max_inflight_messages {self.inflight}", "max_queued_messages 10000000",
                  "max_queued_bytes 0", "sys_interval 0", "set_tcp_nodelay true"]
        conf.write_text("\n".join(lines) + "\n")
        return conf


# ---------------------------------------------------------------------------------------------- children
class Child:
    """A child process whose stdout+stderr go to a log file."""

    def __init__(self, name: str, argv: list[str], log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        log = open(self.log_path, "wb")  # noqa: ASYNC230 - a local file, handed to the child
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv, stdout=log, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL)
        finally:
            log.close()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def tail(self, n: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        return ""

    async def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.terminate()
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


def sim_child(workdir: Path, port: int, control_port: int, record: bool, extra: list[str] | None = None) -> Child:
    argv = [sys.executable, "-m", "smppengine.cli", "sim", "--port", str(port), "--control-port", str(control_port)]
    if not record:
        argv.append("--no-record")
    return Child("simulator", argv + (extra or []), workdir / "sim.log")


def engine_config(path: Path, *, mqtt_url: str, smsc_port: int, store: str, tps: float, window: int, binds: int,
                  instance: str = "bench", level: str = "warning") -> Path:
    path.write_text(f"""[engine]
instance = "{instance}"
store = "{store}"

[mqtt]
url = "{mqtt_url}"
topic_prefix = "sms"

[http]
listen = ""

[log]
level = "{level}"
format = "json"

[[smsc]]
name = "sim"
host = "127.0.0.1"
port = {smsc_port}
system_id = "acme"
password = "secret"
binds = {binds}
window = {window}
tps = {tps}
enquire_link_s = 30
response_timeout_s = 10
default_from = "ACME"
""")
    return path


def engine_child(workdir: Path, config: Path, pin: str | None) -> Child:
    argv = [sys.executable, "-m", "smppengine.cli", "run", "--config", str(config)]
    if pin:
        taskset = shutil.which("taskset")
        if taskset:
            argv = [taskset, "-c", pin, *argv]   # taskset execs python: the pid stays the engine's
    return Child("engine", argv, workdir / "engine.log")


# ---------------------------------------------------------------------------------------------- control API
async def http_json(port: int, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """One request to the simulator's control API (HTTP/1.1, Connection: close)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    data = orjson.dumps(body) if body is not None else b""
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(data)}\r\n"
                 "Connection: close\r\n\r\n".encode() + data)
    raw = await reader.read()
    writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if status != 200:
        raise RuntimeError(f"{method} {path}: HTTP {status} {payload[:200]!r}")
    return orjson.loads(payload)


async def wait_until(cond: Callable[[], Any], timeout: float, what: str, step: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while True:
        res = cond()
        if asyncio.iscoroutine(res):
            res = await res
        if res:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(step)


async def control_up(port: int) -> bool:
    try:
        await http_json(port, "GET", "/stats")
        return True
    except OSError:
        return False


async def bound_sessions(port: int) -> int:
    return int((await http_json(port, "GET", "/stats")).get("bound_sessions", 0))


# ---------------------------------------------------------------------------------------------- raw MQTT
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def _str(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">H", len(b)) + b


def mqtt_publish_packet(topic: str, payload: bytes, pid: int) -> bytes:
    body = _str(topic) + struct.pack(">H", pid) + payload
    return b"\x32" + _varint(len(body)) + body


class RawMqtt(asyncio.Protocol):
    """A minimal MQTT 3.1.1 client: CONNECT, SUBSCRIBE, QoS 1 PUBLISH out, PUBLISH in (auto-PUBACK).

    on_publish(topic, payload, t_recv) is called for every incoming PUBLISH; t_recv is time.monotonic()
    at the data_received call that completed it.
    """

    def __init__(self, client_id: str, on_publish: Callable[[str, bytes, float], None] | None = None,
                 receive_maximum: int = 0) -> None:
        self.client_id = client_id
        self.receive_maximum = receive_maximum    # > 0: connect with MQTT 5 and announce this Receive Maximum
        self.on_publish = on_publish
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self.connack: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._subacks: dict[int, asyncio.Future[None]] = {}
        self.unacked: set[int] = set()          # our QoS 1 publishes awaiting PUBACK
        self.acked = 0
        self._ack_waiter: asyncio.Future[None] | None = None
        self._next_pid = 0
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.received = 0

    @classmethod
    async def connect(cls, host: str, port: int, client_id: str,
                      on_publish: Callable[[str, bytes, float], None] | None = None,
                      receive_maximum: int = 0) -> RawMqtt:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(lambda: cls(client_id, on_publish, receive_maximum), host, port)
        assert isinstance(proto, RawMqtt)
        rc = await asyncio.wait_for(proto.connack, 10)
        if rc != 0:
            raise RuntimeError(f"CONNACK {rc}")
        return proto

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.receive_maximum:     # MQTT 5: properties = Receive Maximum (0x21)
            props = b"\x03\x21" + struct.pack(">H", self.receive_maximum)
            body = _str("MQTT") + bytes([5, 0x02]) + struct.pack(">H", 0) + props + _str(self.client_id)
        else:
            body = _str("MQTT") + bytes([4, 0x02]) + struct.pack(">H", 0) + _str(self.client_id)
        transport.write(b"\x10" + _varint(len(body)) + body)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        if not self.connack.done():
            self.connack.set_exception(ConnectionError("closed before CONNACK"))

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        buf = self._buf
        buf += data
        pos, n = 0, len(buf)
        acks = bytearray()
        while pos + 2 <= n:
            head = buf[pos]
            mult, length, i = 1, 0, pos + 1
            complete = False
            while i < n:
                b = buf[i]
                i += 1
                length += (b & 0x7F) * mult
                mult *= 128
                if not b & 0x80:
                    complete = True
                    break
            if not complete:
                break
            end = i + length
            if end > n:
                break
            kind = head & 0xF0
            if kind == 0x30:
                tlen = (buf[i] << 8) | buf[i + 1]
                topic = bytes(buf[i + 2:i + 2 + tlen]).decode()
                p = i + 2 + tlen
                if (head >> 1) & 3:
                    acks += b"\x40\x02" + bytes(buf[p:p + 2])
                    p += 2
                if self.receive_maximum:         # MQTT 5: skip the properties
                    plen, shift = 0, 0
                    while True:
                        b = buf[p]
                        p += 1
                        plen |= (b & 0x7F) << shift
                        shift += 7
                        if not b & 0x80:
                            break
                    p += plen
                self.received += 1
                if self.on_publish is not None:
                    self.on_publish(topic, bytes(buf[p:end]), now)
            elif kind == 0x40:
                pid = (buf[i] << 8) | buf[i + 1]
                if pid in self.unacked:
                    self.unacked.discard(pid)
                    self.acked += 1
                    if self._ack_waiter is not None and not self._ack_waiter.done():
                        self._ack_waiter.set_result(None)
            elif kind == 0x20:
                if not self.connack.done():
                    self.connack.set_result(buf[i + 1])
            elif kind == 0x90:
                pid = (buf[i] << 8) | buf[i + 1]
                fut = self._subacks.pop(pid, None)
                if fut is not None and not fut.done():
                    fut.set_result(None)
            pos = end
        del buf[:pos]
        if acks and self.transport is not None:
            self.transport.write(bytes(acks))

    # -- operations
    def _pid(self) -> int:
        while True:
            self._next_pid = self._next_pid % 65535 + 1
            if self._next_pid not in self.unacked:
                return self._next_pid

    async def subscribe(self, *topics: str) -> None:
        assert self.transport is not None
        pid = self._pid()
        props = b"\x00" if self.receive_maximum else b""       # MQTT 5: no properties
        body = struct.pack(">H", pid) + props + b"".join(_str(t) + b"\x01" for t in topics)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._subacks[pid] = fut
        self.transport.write(b"\x82" + _varint(len(body)) + body)
        await asyncio.wait_for(fut, 10)

    def publish(self, topic: str, payload: bytes) -> None:
        """Queue one QoS 1 PUBLISH (written at once; the PUBACK is counted in `acked`)."""
        assert self.transport is not None
        pid = self._pid()
        self.unacked.add(pid)
        self.transport.write(mqtt_publish_packet(topic, payload, pid))

    async def wait_capacity(self, max_unacked: int) -> None:
        """Flow control: wait while too many publishes await their PUBACK, or the socket buffer is full."""
        while len(self.unacked) >= max_unacked or (
                self.transport is not None and self.transport.get_write_buffer_size() > 1 << 20):
            self._ack_waiter = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(self._ack_waiter, 0.05)
            except TimeoutError:
                pass

    async def wait_all_acked(self, timeout: float = 60.0) -> None:
        await wait_until(lambda: not self.unacked, timeout, "PUBACK of every publish", step=0.01)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"\xe0\x00")
            self.transport.close()


def bench_id(tag: str, i: int) -> str:
    """The id of request ``i``: ``{scatter}-{tag}-{i}``. Applications send random ids (UUIDs), so the ids
    must not arrive in key order: the 16 hex digits in front spread consecutive requests over the whole
    key space, as UUIDs do (a store index on sequential ids is far cheaper to write than on random ones)."""
    return f"{(i * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF:016x}-{tag}-{i}"


def request_payload(tag: str, i: int) -> bytes:
    # `{tag}-{i}` is in the text too, so a simulator submit record can be matched to its request
    return orjson.dumps({"id": bench_id(tag, i), "to": "+447700900123", "from": "ACME", "text": f"bench {tag}-{i}"})


class StatusTracker:
    """Follows sms/status/# for the ids ``bench_id(tag, i)``, i in range(n): what each got, and when."""

    def __init__(self, tag: str, n: int, keep_submit_at: bool = False) -> None:
        self.tag = tag
        self.prefix = "sms/status/"
        self.marker = f"-{tag}-"
        self.n = n
        self.finals = [0] * n
        self.final_count = 0          # ids with at least one final event
        self.extra_finals = 0
        self.states: collections.Counter[str] = collections.Counter()
        self.t_submitted = [0.0] * n  # recv time of the first `submitted` event
        self.submitted_at: list[str] | None = [""] * n if keep_submit_at else None
        self.last_submitted = 0.0
        self.last_final = 0.0
        self.last_queued = 0.0        # recv time of the last `queued` event (the engine took the request)
        self.foreign = 0
        self.events = 0
        self.done = asyncio.Event()
        self.on_final: Callable[[int], None] | None = None

    def __call__(self, topic: str, payload: bytes, t: float) -> None:
        if not topic.startswith(self.prefix):
            if topic.startswith("sms/status/"):
                self.foreign += 1
            return
        _, mark, tail = topic[len(self.prefix):].partition(self.marker)
        try:
            if not mark:
                raise ValueError(topic)
            i = int(tail)
        except ValueError:
            self.foreign += 1
            return
        if not 0 <= i < self.n:
            self.foreign += 1
            return
        self.events += 1
        doc = orjson.loads(payload)
        state = doc["state"]
        self.states[state] += 1
        if state == "queued":
            self.last_queued = t
        elif state == "submitted":
            if not self.t_submitted[i]:
                self.t_submitted[i] = t
                if self.submitted_at is not None:
                    self.submitted_at[i] = doc["at"]
            self.last_submitted = t
        elif state in FINAL:
            c = self.finals[i]
            self.finals[i] = c + 1
            if c == 0:
                self.final_count += 1
                self.last_final = t
                if self.on_final is not None:
                    self.on_final(i)
                if self.final_count == self.n:
                    self.done.set()
            else:
                self.extra_finals += 1

    @property
    def lost(self) -> int:
        return sum(1 for c in self.finals if c == 0)

    @property
    def duplicates(self) -> int:
        return sum(1 for c in self.finals if c > 1)


# ---------------------------------------------------------------------------------------------- sink ceiling
_SMPP_HEAD = struct.Struct(">IIII")


class _CeilingSession(asyncio.Protocol):
    def __init__(self, owner: SinkCeiling) -> None:
        self.owner = owner
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.bound: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.seq = 1

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(P.encode(P.Pdu("bind_transceiver", 1, 0, {
            "system_id": "ceiling", "password": "x", "system_type": "", "interface_version": 0x34,
            "addr_ton": 0, "addr_npi": 0, "address_range": ""})))

    def send_submits(self, k: int) -> None:
        assert self.transport is not None
        tpl = self.owner.template
        out = bytearray()
        for _ in range(k):
            self.seq += 1
            out += tpl[:12] + self.seq.to_bytes(4, "big") + tpl[16:]
        self.transport.write(bytes(out))

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        pos, n = 0, len(buf)
        out = bytearray()
        o = self.owner
        resps = 0
        while pos + 16 <= n:
            length, cmd, status, seq = _SMPP_HEAD.unpack_from(buf, pos)
            if pos + length > n:
                break
            if cmd == 0x80000004:
                resps += 1
            elif cmd == 0x00000005:
                out += _SMPP_HEAD.pack(17, 0x80000005, 0, seq) + b"\x00"
                o.receipts += 1
            elif cmd == 0x80000009:
                if not self.bound.done():
                    if status:
                        self.bound.set_exception(RuntimeError(f"bind refused {status:#x}"))
                    else:
                        self.bound.set_result(None)
            elif cmd == 0x00000015:
                out += _SMPP_HEAD.pack(16, 0x80000015, 0, seq)
            pos += length
        del buf[:pos]
        if out and self.transport is not None:
            self.transport.write(bytes(out))
        if resps:
            o.resps += resps
            more = min(resps, o.n - o.sent)
            if more > 0:
                o.sent += more
                self.send_submits(more)
        if o.receipts >= o.n and not o.done.done():
            o.done.set_result(time.monotonic())


class SinkCeiling:
    """How many submit_sm (each answered and receipted) per second the simulator takes from a minimal
    client: pre-encoded PDUs, a wide window, no store, no MQTT. The engine can never beat this."""

    def __init__(self, port: int, n: int, sessions: int = 2, window: int = 500) -> None:
        self.port, self.n, self.sessions, self.window = port, n, sessions, window
        self.template = P.encode(P.Pdu("submit_sm", 1, 0, {
            "source_addr_ton": 5, "source_addr_npi": 0, "source_addr": "ACME", "dest_addr_ton": 1,
            "dest_addr_npi": 1, "destination_addr": "447700900123", "registered_delivery": 1,
            "data_coding": 0, "short_message": b"bench ceiling 0123456789"}))
        self.sent = self.resps = self.receipts = 0
        self.done: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    async def run(self, timeout: float = 120.0) -> float:
        loop = asyncio.get_running_loop()
        protos: list[_CeilingSession] = []
        for _ in range(self.sessions):
            _, proto = await loop.create_connection(lambda: _CeilingSession(self), "127.0.0.1", self.port)
            assert isinstance(proto, _CeilingSession)
            await asyncio.wait_for(proto.bound, 10)
            protos.append(proto)
        t0 = time.monotonic()
        for proto in protos:
            k = min(self.window, self.n - self.sent)
            self.sent += k
            proto.send_submits(k)
        t_end = await asyncio.wait_for(self.done, timeout)
        for proto in protos:
            if proto.transport is not None:
                proto.transport.write(_SMPP_HEAD.pack(16, 0x00000006, 0, 0x7FFFFFFF))
                proto.transport.close()
        return self.n / (t_end - t0)


# ---------------------------------------------------------------------------------------------- py-spy
def pyspy_binary() -> str | None:
    return shutil.which("py-spy")


_LINE = re.compile(r":\d+\)$")


def _stacks(collapsed: Path) -> list[tuple[list[str], int]]:
    out = []
    for line in collapsed.read_text().splitlines():
        stack, _, num = line.rpartition(" ")
        if stack and num.isdigit():
            out.append(([_LINE.sub(")", f) for f in stack.split(";")], int(num)))
    return out


def profile_summary(collapsed: Path, top: int = 30) -> dict[str, Any]:
    """From py-spy's raw output (collapsed stacks): % of samples by function (line numbers dropped) as the
    innermost frame (self) and anywhere on the stack (inclusive); and the split between the event-loop
    thread and aiosqlite's database thread."""
    stacks = _stacks(collapsed)
    total = sum(k for _, k in stacks) or 1
    self_c: collections.Counter[str] = collections.Counter()
    incl_c: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    for frames, k in stacks:
        self_c[frames[-1]] += k
        for f in set(frames):
            incl_c[f] += k
        threads["sqlite thread" if any("_connection_worker_thread" in f for f in frames) else
                "event loop" if any("run_forever" in f for f in frames) else "other"] += k

    def pct(c: int) -> float:
        return round(100 * c / total, 1)

    return {
        "samples": total,
        "threads_pct": {t: pct(c) for t, c in threads.most_common()},
        "self_pct": [(f, pct(c)) for f, c in self_c.most_common(top)],
        "inclusive_pct": [(f, pct(c)) for f, c in incl_c.most_common(3 * top)
                          if "asyncio/" not in f and "runpy" not in f and "cli.py" not in f][:top],
    }


async def connect_load_clients(broker_port: int, tag: str, tracker: StatusTracker, engine: Child, ctl_port: int,
                               binds: int) -> tuple[RawMqtt, RawMqtt]:
    """The load client's subscriber (status events into ``tracker``) and publisher, once the engine is
    online (its retained presence) and has ``binds`` sessions bound at the simulator."""
    presence: dict[str, str] = {}

    def on_publish(topic: str, payload: bytes, t: float) -> None:
        if topic.startswith("sms/engine/"):
            presence[topic.rsplit("/", 1)[1]] = orjson.loads(payload).get("state", "")
        else:
            tracker(topic, payload, t)

    # MQTT 5 with a wide Receive Maximum: behind a broker with stock limits (in-flight 20, queue 1,000) a
    # 3.1.1 subscriber would have status events dropped by the broker, which measures the client
    sub = await RawMqtt.connect("127.0.0.1", broker_port, f"{tag}-sub", on_publish, receive_maximum=65535)
    await sub.subscribe("sms/status/#", "sms/engine/+")

    async def engine_up() -> bool:
        if not engine.alive():
            raise RuntimeError(f"engine exited: {engine.tail()}")
        return presence.get("bench") == "online" and await bound_sessions(ctl_port) >= binds

    await wait_until(engine_up, 30, "the engine online and bound")
    pub = await RawMqtt.connect("127.0.0.1", broker_port, f"{tag}-pub")
    return sub, pub
