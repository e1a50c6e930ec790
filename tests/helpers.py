"""Test harness: a private mosquitto, the simulator, the engine in-process, and an MQTT watcher."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import aiomqtt
import orjson

from smppengine.config import Config, parse_config
from smppengine.engine import Engine
from smppengine.mqtt import parse_url
from smppengine.smpp import pdu as P

FINAL = {"delivered", "undelivered", "expired", "rejected", "failed"}

# PostgreSQL for the store tests (and, with SMPPENGINE_TEST_STORE=postgresql, the integration suite)
PG_URL = os.environ.get("SMPPENGINE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
PG_SCHEMAS: dict[str, str] = {}   # SQLite path asked for -> the PostgreSQL schema standing in for it


def pg_store_url(schema: str | None = None) -> str:
    """A store URL in a fresh PostgreSQL schema (the store creates it; drop_pg_schemas removes it)."""
    return f"{PG_URL}?schema={schema or 't_' + uuid.uuid4().hex[:16]}"


def store_for_test(path: str) -> str:
    """The store for a test: `path` (SQLite), or with SMPPENGINE_TEST_STORE=postgresql a fresh PostgreSQL
    schema -- the same one each time the same path is asked for, so a restarted engine finds its store."""
    kind = os.environ.get("SMPPENGINE_TEST_STORE", "sqlite")
    if kind == "sqlite" or path.startswith(("postgresql://", "postgres://")):
        return path         # a test that asks for a PostgreSQL store by URL gets that store
    if kind != "postgresql":
        raise ValueError(f"SMPPENGINE_TEST_STORE={kind!r}: use sqlite or postgresql")
    schema = PG_SCHEMAS.setdefault(path, "t_" + uuid.uuid4().hex[:16])
    return pg_store_url(schema)


async def drop_pg_schemas(schemas: Iterable[str]) -> None:
    import asyncpg

    names = list(schemas)
    if not names:
        return
    conn = await asyncpg.connect(PG_URL)
    try:
        for name in names:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        await conn.close()


def make_config(store: str, mqtt_url: str, smscs: Iterable[dict[str, Any]], **sections: Any) -> Config:
    data: dict[str, Any] = {
        "engine": {"instance": f"t{uuid.uuid4().hex[:6]}", "store": store_for_test(store)},
        "mqtt": {"url": mqtt_url},
        "http": {"listen": ""},
        "log": {"level": "warning"},
        "smsc": list(smscs),
    }
    for k, v in sections.items():
        data.setdefault(k, {})
        if isinstance(v, dict) and isinstance(data[k], dict):
            data[k].update(v)
        else:
            data[k] = v
    return parse_config(data, "<test>")


def smsc(name: str, port: int, **kw: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"name": name, "host": "127.0.0.1", "port": port, "system_id": "acme", "password": "secret",
                         "enquire_link_s": 30, "response_timeout_s": 5, "tps": 10000, "window": 50}
    d.update(kw)
    return d


class Watcher:
    """Subscribes to every status and MO topic and records what arrives."""

    def __init__(self, url: str, prefix: str = "sms", persistent: bool = False) -> None:
        self.host, self.port, _ = parse_url(url)
        self.persistent = persistent
        self.client_id = f"w-{uuid.uuid4().hex[:8]}"
        self.prefix = prefix
        self.events: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
        # ids with a final event, kept as events arrive: the waits below check thousands of ids on every
        # event, and scanning each id's events made the test process (simulator, watcher) the bottleneck
        self.final_ids: set[str | None] = set()
        self.inbound: list[dict[str, Any]] = []
        self.presence: dict[str, dict[str, Any]] = {}
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.client: aiomqtt.Client | None = None
        self._ready = asyncio.Event()
        self.reconnects = 0

    async def __aenter__(self) -> Watcher:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._ready.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await self._task

    async def _run(self) -> None:
        while True:
            client = aiomqtt.Client(self.host, self.port, identifier=self.client_id,
                                    clean_session=not self.persistent)
            try:
                async with client:
                    self.client = client
                    await client.subscribe(f"{self.prefix}/status/#", qos=1)
                    await client.subscribe(f"{self.prefix}/inbound", qos=1)
                    await client.subscribe(f"{self.prefix}/engine/+", qos=1)
                    self._ready.set()
                    async for m in client.messages:
                        self._record(m)
            except aiomqtt.MqttError:
                # paho acknowledged what sits in aiomqtt's queue already: record it before dropping the client
                while not client._queue.empty():
                    self._record(client._queue.get_nowait())
                self.client = None
                self.reconnects += 1
                await asyncio.sleep(0.1)

    def _record(self, m: aiomqtt.Message) -> None:
        payload = m.payload if isinstance(m.payload, bytes) else str(m.payload).encode()
        doc = orjson.loads(payload)
        topic = str(m.topic)
        if topic.endswith("/inbound"):
            self.inbound.append(doc)
        elif "/engine/" in topic:
            self.presence[topic.rsplit("/", 1)[1]] = doc
        else:
            self.events[doc.get("id")].append(doc)
            if doc.get("state") in FINAL:
                self.final_ids.add(doc.get("id"))
        self._changed.set()

    async def publish(self, payload: bytes | dict[str, Any]) -> None:
        assert self.client is not None
        data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        await self.client.publish(f"{self.prefix}/outbound", data, qos=1)

    async def wait(self, cond: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
        async def loop() -> None:
            while not cond():
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(loop(), timeout)
        except TimeoutError:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or cond}") from None

    def states(self, msg_id: str | None) -> list[str]:
        return [e["state"] for e in self.events.get(msg_id, [])]

    def final(self, msg_id: str) -> list[dict[str, Any]]:
        return [e for e in self.events.get(msg_id, []) if e["state"] in FINAL]

    async def wait_final(self, ids: Iterable[str], timeout: float = 30.0) -> None:
        ids = list(ids)
        await self.wait(lambda: self.final_ids.issuperset(ids), timeout,
                        what=f"final states of {len(ids)} ids; missing e.g. "
                             f"{[i for i in ids if not self.final(i)][:3]}")


@contextlib.asynccontextmanager
async def running_engine(cfg: Config) -> AsyncIterator[Engine]:
    engine = Engine(cfg)
    await asyncio.wait_for(engine.start(), 20)
    try:
        yield engine
    finally:
        await engine.stop(grace=2.0)


async def wait_bound(engine: Engine, timeout: float = 10.0) -> None:
    async def loop() -> None:
        for c in engine.clients.values():
            await c.up.wait()

    await asyncio.wait_for(loop(), timeout)


def write_toml(path: str, cfg: dict[str, Any]) -> str:
    """Write a config dict as TOML (enough of TOML for test configs)."""

    def val(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return orjson.dumps(v).decode()
        if isinstance(v, list | tuple):
            return "[" + ", ".join(val(x) for x in v) + "]"
        return str(v)

    lines: list[str] = []
    for section, body in cfg.items():
        if isinstance(body, list):
            for item in body:
                lines.append(f"[[{section}]]")
                lines += [f"{k} = {val(v)}" for k, v in item.items()]
        else:
            lines.append(f"[{section}]")
            lines += [f"{k} = {val(v)}" for k, v in body.items()]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


class EngineProcess:
    """`smppengine run --config PATH` as a child process, its JSON log lines collected."""

    def __init__(self, config_path: str, *extra: str) -> None:
        self.config_path = config_path
        self.extra = extra
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: list[dict[str, Any]] = []
        self._new = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    async def start(self, env: dict[str, str] | None = None) -> None:
        import os
        import sys

        self.lines = []
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "smppengine.cli", "run", "--config", self.config_path, *self.extra,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, **(env or {})})
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for raw in self.proc.stdout:
            try:
                doc = orjson.loads(raw)
            except orjson.JSONDecodeError:
                doc = {"event": "_text", "text": raw.decode(errors="replace")}
            self.lines.append(doc)
            self._new.set()

    def count(self, event: str) -> int:
        return sum(1 for d in self.lines if d.get("event") == event)

    async def wait_log(self, event: str, n: int = 1, timeout: float = 20.0) -> dict[str, Any]:
        async def loop() -> dict[str, Any]:
            while True:
                hits = [d for d in self.lines if d.get("event") == event]
                if len(hits) >= n:
                    return hits[n - 1]
                if self.proc is not None and self.proc.returncode is not None:
                    raise AssertionError(f"engine exited ({self.proc.returncode}) before {event}: {self.lines[-20:]}")
                self._new.clear()
                await self._new.wait()

        try:
            return await asyncio.wait_for(loop(), timeout)
        except TimeoutError:
            raise AssertionError(f"no {event!r} log line within {timeout}s; last lines {self.lines[-10:]}") from None

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        await self.proc.wait()
        if self._reader is not None:
            await self._reader

    async def terminate(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.terminate()
        try:
            rc = await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            # did not stop on SIGTERM: fail, but do not leave the process running after the test
            self.proc.kill()
            await self.proc.wait()
            raise AssertionError(f"the engine did not exit within {timeout}s of SIGTERM (killed)") from None
        if self._reader is not None:
            await self._reader
        return rc


class SimProcess:
    """`smppengine sim` in its own process (its clock and event loop are not the engine's), driven over
    its HTTP control API."""

    def __init__(self, *args: str) -> None:
        from smppengine.broker import free_port

        self.port = free_port()
        self.control_port = free_port()
        self.args = args
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        import sys

        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "smppengine.cli", "sim", "--port", str(self.port),
            "--control-port", str(self.control_port), "--system-id", "acme", "--password", "secret", *self.args,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        for _ in range(200):
            try:
                await self.get("/stats")
                return
            except OSError:
                await asyncio.sleep(0.05)
        raise AssertionError("simulator process did not start")

    async def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.control_port)
        data = orjson.dumps(body) if body is not None else b""
        writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n"
                     f"Connection: close\r\n\r\n".encode() + data)
        raw = await reader.read()
        writer.close()
        head, _, payload = raw.partition(b"\r\n\r\n")
        if not head.split()[1].startswith(b"2"):
            raise AssertionError(f"{method} {path}: {head[:100]!r} {payload[:200]!r}")
        return orjson.loads(payload)

    async def get(self, path: str) -> Any:
        return await self.request("GET", path)

    async def submits(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        since = 0
        while True:
            page = await self.get(f"/submits?since={since}&limit=5000")
            out += page["submits"]
            if not page["submits"]:
                return out
            since = page["next"]

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()


async def eventually(cond: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    """Wait for a condition on in-process state that has no event of its own (checked every 10 ms)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or cond}")
        await asyncio.sleep(0.01)


class FrameReader:
    """Whole PDUs off an asyncio stream, cut by the engine's own framer (:class:`P.FrameSplitter`), for the
    tests' hand-written ESMEs and SMSCs. :meth:`read` raises EOFError at EOF between PDUs and FrameError for a
    bad command_length or an EOF inside a PDU (after the whole PDUs before it)."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader
        self.split = P.FrameSplitter()
        self.frames: collections.deque[bytes] = collections.deque()

    async def read(self) -> bytes:
        while not self.frames:
            if self.split.error is not None:
                raise self.split.error
            data = await self.reader.read(65536)
            if not data:
                self.split.eof()  # raises EOFError or FrameError
            self.frames.extend(self.split.feed(data))
        return self.frames.popleft()

    async def pdu(self) -> P.Pdu:
        return P.decode(await self.read())
