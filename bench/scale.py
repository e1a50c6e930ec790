"""Scale-out benchmark: 1, 2 and 3 engine instances on one PostgreSQL store, on loopback or each engine in
a network namespace of its own behind a link with added delay; where each instance's time goes.

Each run: a private Mosquitto (limits raised), the simulator in its own process (no TPS limit, receipts
at once, every submit recorded), k `smppengine run` processes sharing one store (a fresh schema per run in
the database `smppbench`, created when missing, each instance connecting as its own role
`smppbench_<i>` so that PostgreSQL's backends can be told apart), one `mqtt.share_group`, one SMSC account
(2 binds per instance, window 200). Each engine is pinned with `taskset` to core i % cores (--no-pin: not
pinned). N requests are published at once (QoS 1) by a raw MQTT client; the clock runs from the first
publish to the last final status event (full life: queued, submitted, delivered).

Modes (--modes, comma-separated, run interleaved: for each repeat, for each k, every mode in turn):
  loopback     the engines reach PostgreSQL, the broker and the simulator on 127.0.0.1 directly
  netns<D>     each engine in its own network namespace (`ip netns exec`), reaching the three through a veth
               pair and the delay proxy (tests/delayproxy.py, one process for all links) on the host side,
               which holds each chunk D ms in each direction: netns0 is the proxy's own cost, netns0.5 the
               0.5 ms link of issue 17. This kernel has no netem, hence the proxy.

Per run (in "runs"), beside msg_s (full life) and submit_msg_s:
  cpu_ms_per_msg   {engines, pg_backends, broker, simulator, proxy}: utime+stime from /proc per message;
                   pg_backends = the PostgreSQL backends of the engines' connections (pg_stat_activity by
                   role), not the server's background processes
  xact_per_msg     committed transactions per message (pg_stat_database.xact_commit of `smppbench`)
  deadlocks        pg_stat_database.deadlocks delta;  replays: `store_batch_replayed` lines of all engines
  receipt_to_delivered_{p50,p99,max}_ms  the simulator sends the receipt (right after its submit_sm_resp:
                   the submit's record time) -> `delivered` event received by the load client; an upper
                   bound of "receipt arrives at the engine -> delivered" (it includes the receipt's way to
                   the engine). Meaningful with --rate; in a burst it measures the queue.
  receipt_stages_ms  where that time goes (p50/p99/max): simulator -> the owner's writer applies the resp
                   (resp_applied) and the receipt (receipt_applied; receipt_after_resp: how long after the resp,
                   0 in the same group commit), the receipt applied -> `delivered` at the load client
                   (event_published: the commit, the outbox read, the publish); from the parts' submitted_at /
                   receipt_at and the events table, read before the schema is dropped
  receipt_counters receipts_held (no owner known yet), receipts_foreign (handed over to the owner),
                   receipts_rematched, receipts_late (the simulator re-sent a receipt not answered within 10 s)
  instances        per instance: messages it owns, msg share, engine CPU ms per own message, engine busy %
                   (CPU / wall time), its PostgreSQL backends' CPU ms per own message, and in netns modes
                   the chunks its PostgreSQL link carried per own message each way (round trips, lower bound)
  proxy            netns modes: hold p50/p99 actually applied, proxy CPU per message
  lost, duplicates ids with no final event / with more than one final event
  submitted_twice  ids the simulator accepted (OK submit_sm_resp) more than once

    PYTHONPATH=$PWD python bench/scale.py [--n 5000] [--instances 1,2,3] [--modes loopback,netns0.5]
                                          [--repeat 1] [--no-pin] [--store postgresql://postgres@127.0.0.1:5432/smppbench]

Prints one JSON line: {"bench": "scale", "n", "msg_s": {mode: {k: median}}, "ratio_to_1": {mode: {k: ...}},
"delay_vs_loopback": {k: ...}, "runs": [...], "machine": {...}}. Needs root and iproute2 for netns modes.
On a machine with fewer cores than processes (k engines + simulator + broker + PostgreSQL + proxy) the
figures measure CPU contention as much as the engine: read them with machine.nproc.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
if str(ROOT) not in sys.path:
    sys.path.insert(1, str(ROOT))
os.environ["PYTHONPATH"] = str(ROOT) + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")

import asyncpg  # noqa: E402
from harness import (  # noqa: E402
    BenchBroker,
    Child,
    RawMqtt,
    StatusTracker,
    control_up,
    cpu_seconds,
    free_port,
    http_json,
    machine,
    mqtt_publish_packet,
    percentile,
    request_payload,
    sim_child,
    wait_until,
)
from netns import Namespaces, Netns, netns_available, remove_stale  # noqa: E402

from tests.delayproxy import ProxyProcess  # noqa: E402

DEFAULT_STORE = "postgresql://postgres@127.0.0.1:5432/smppbench"
CHUNK = 500
BINDS = 2


# ---------------------------------------------------------------------------------------------- PostgreSQL
def split_url(url: str) -> tuple[str, str, int, str]:
    """postgresql://user@host:port/db -> (user, host, port, db) (no password: trust or .pgpass)."""
    rest = url.split("://", 1)[1].split("?", 1)[0]
    auth, _, hostpart = rest.rpartition("@")
    hostport, _, db = hostpart.partition("/")
    host, _, port = hostport.partition(":")
    return auth.split(":", 1)[0] or "postgres", host, int(port or 5432), db or "smppbench"


async def ensure_bench_db(url: str, roles: int) -> None:
    """The database and the per-instance roles (superusers: the first instance creates the schema and
    tables the others use; trust auth on a benchmark cluster)."""
    user, host, port, db = split_url(url)
    conn = await asyncpg.connect(user=user, host=host, port=port, database="postgres" if db != "postgres" else db)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", db):
            await conn.execute(f'CREATE DATABASE "{db}"')
        for i in range(roles):
            if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", f"smppbench_{i}"):
                await conn.execute(f"CREATE ROLE smppbench_{i} LOGIN SUPERUSER")
    finally:
        await conn.close()


class PgWatch:
    """pg_stat_database of the bench database and the CPU of the engines' backends."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.conn: asyncpg.Connection | None = None

    async def open(self) -> None:
        user, host, port, db = split_url(self.url)
        self.conn = await asyncpg.connect(user=user, host=host, port=port, database=db)

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()

    async def db_stats(self) -> dict[str, int]:
        assert self.conn is not None
        await self.conn.execute("SELECT pg_stat_clear_snapshot()")
        row = await self.conn.fetchrow("SELECT xact_commit, xact_rollback, deadlocks FROM pg_stat_database "
                                       "WHERE datname = current_database()")
        assert row is not None
        return {k: int(v) for k, v in row.items()}

    async def backend_cpu(self) -> dict[str, dict[int, float]]:
        """{role: {backend pid: CPU seconds}} for the smppbench_<i> roles."""
        assert self.conn is not None
        rows = await self.conn.fetch("SELECT pid, usename FROM pg_stat_activity WHERE datname = current_database() "
                                     "AND usename LIKE 'smppbench\\_%' AND pid <> pg_backend_pid()")
        out: dict[str, dict[int, float]] = {}
        for r in rows:
            try:
                out.setdefault(str(r["usename"]), {})[int(r["pid"])] = cpu_seconds(int(r["pid"]))
            except OSError:
                pass
        return out

    async def owners(self, schema: str) -> dict[str, int]:
        assert self.conn is not None
        rows = await self.conn.fetch(f'SELECT owner, count(*) AS n FROM "{schema}".messages GROUP BY owner')
        return {str(r["owner"]): int(r["n"]) for r in rows}

    async def receipt_times(self, schema: str, tag: str) -> dict[int, tuple[float, float, float]]:
        """{i: (submitted_at, receipt_at, delivered event at)} (wall clock, the engines' time.time()) of the
        one-part messages of this run: when the owner's writer applied the submit_sm_resp, the receipt, and
        wrote the `delivered` event."""
        assert self.conn is not None
        rows = await self.conn.fetch(
            f'SELECT p.msg_id, p.submitted_at, p.receipt_at, (SELECT min(e.at) FROM "{schema}".events e '
            f"WHERE e.msg_id = p.msg_id AND e.state = 'delivered') AS ev "
            f'FROM "{schema}".parts p WHERE p.idx = 0')
        marker = f"-{tag}-"
        out: dict[int, tuple[float, float, float]] = {}
        for r in rows:
            _, mark, tail = str(r["msg_id"]).partition(marker)
            if mark and r["submitted_at"] and r["receipt_at"] and r["ev"]:
                out[int(tail)] = (float(r["submitted_at"]), float(r["receipt_at"]), float(r["ev"]))
        return out

    async def counters(self, schema: str) -> dict[str, dict[str, int]]:
        """{instance: {counter: value}} (counter_rows, per instance)."""
        assert self.conn is not None
        rows = await self.conn.fetch(f'SELECT instance, name, value FROM "{schema}".counter_rows')
        out: dict[str, dict[str, int]] = {}
        for r in rows:
            out.setdefault(str(r["instance"]), {})[str(r["name"])] = int(r["value"])
        return out

    async def drop(self, schema: str) -> None:
        assert self.conn is not None
        await self.conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU of the backends between two samples (a backend new since `before` counts from 0; one gone since
    is not counted: the engines keep their connections open, so none should go)."""
    return sum(v - before.get(pid, 0.0) for pid, v in after.items())


def receipt_stages(sim_at: list[float], t_final: list[float], stamps: dict[int, tuple[float, float, float]],
                   wall_minus_mono: float) -> dict[str, dict[str, float]]:
    """Where the receipt -> `delivered` time goes, p50/p99/max per stage (ms), from the simulator's send (its
    submit_sm_resp and receipt leave together) to the load client's receipt of the event:
      resp_applied       simulator -> the owner's writer applies the submit_sm_resp (in a group commit)
      receipt_applied    simulator -> the owner's writer applies the receipt (directly, or after a hand-over
                         through held_receipts)
      receipt_after_resp the receipt applied after the resp (0 when in the same group commit)
      event_published    the receipt applied -> the `delivered` event at the load client (the commit, the
                         outbox read, the publish, the broker)"""
    stages: dict[str, list[float]] = {"resp_applied": [], "receipt_applied": [], "receipt_after_resp": [],
                                      "event_published": []}
    for i, (sub, rec, _ev) in stamps.items():
        s, f = sim_at[i], t_final[i]
        if not s or not f:
            continue
        stages["resp_applied"].append((sub - wall_minus_mono - s) * 1000)
        stages["receipt_applied"].append((rec - wall_minus_mono - s) * 1000)
        stages["receipt_after_resp"].append((rec - sub) * 1000)
        stages["event_published"].append((f - (rec - wall_minus_mono)) * 1000)
    out: dict[str, dict[str, float]] = {}
    for name, xs in stages.items():
        xs.sort()
        if xs:
            out[name] = {"p50": round(percentile(xs, 50), 1), "p99": round(percentile(xs, 99), 1),
                         "max": round(xs[-1], 1)}
    return out


# ---------------------------------------------------------------------------------------------- one run
def engine_toml(path: Path, *, i: int, k: int, store: str, mqtt_host: str, mqtt_port: int, smsc_host: str,
                smsc_port: int, window: int, log_level: str = "warning", lease_s: float = 30.0) -> Path:
    path.write_text(f"""[engine]
instance = "b{i}"
store = "{store}"
instances = {k}
lease_s = {lease_s}

[mqtt]
url = "mqtt://{mqtt_host}:{mqtt_port}"
topic_prefix = "sms"
share_group = "bench"

[http]
listen = ""

[log]
level = "{log_level}"
format = "json"

[[smsc]]
name = "sim"
host = "{smsc_host}"
port = {smsc_port}
system_id = "acme"
password = "secret"
binds = {BINDS}
window = {window}
tps = 1000000
enquire_link_s = 30
response_timeout_s = 10
default_from = "ACME"
""")
    return path


async def submit_times(ctl_port: int, tag: str, n: int) -> tuple[list[float], int]:
    """The simulator's record time (monotonic) of the first OK submit_sm of each request (its receipt is
    sent right after the submit_sm_resp, in the same turn of the simulator's loop), and how many requests
    it accepted more than once."""
    out = [0.0] * n
    twice: set[int] = set()
    marker = f"bench {tag}-".encode()
    since = 0
    while True:
        page = await http_json(ctl_port, "GET", f"/submits?since={since}&limit=5000")
        for rec in page["submits"]:
            sm = bytes.fromhex(rec["short_message"])
            if rec["status"] != 0 or not sm.startswith(marker):
                continue
            i = int(sm[len(marker):])
            if 0 <= i < n:
                if out[i]:
                    twice.add(i)
                else:
                    out[i] = rec["at"]
        since = page["next"]
        if not page["submits"] or since >= page["total"]:
            return out, len(twice)


async def publish_burst(pub: RawMqtt, tag: str, n: int) -> None:
    for start in range(0, n, CHUNK):
        await pub.wait_capacity(20_000)
        buf = bytearray()
        for i in range(start, min(n, start + CHUNK)):
            pid = pub._pid()
            pub.unacked.add(pid)
            buf += mqtt_publish_packet("sms/outbound", request_payload(tag, i), pid)
        assert pub.transport is not None
        pub.transport.write(bytes(buf))
        await asyncio.sleep(0)


async def publish_rate(pub: RawMqtt, tag: str, n: int, rate: float) -> None:
    t_start = time.monotonic()
    i = 0
    while i < n:
        due = min(n, int((time.monotonic() - t_start) * rate) + 1)
        while i < due:
            pub.publish("sms/outbound", request_payload(tag, i))
            i += 1
        await asyncio.sleep(max(0.0, t_start + i / rate - time.monotonic()))


async def one_run(k: int, mode: str, args: argparse.Namespace, work: Path, pg: PgWatch) -> dict[str, Any]:
    n = args.n
    delay_ms = float(mode[len("netns"):]) if mode.startswith("netns") else None
    run_dir = work / f"{mode}-k{k}-{time.monotonic_ns()}"
    (run_dir / "mqtt").mkdir(parents=True)
    broker = BenchBroker(str(run_dir / "mqtt"))
    children: list[Child] = []
    proxy: ProxyProcess | None = None
    schema = f"scale_{os.getpid()}_{time.monotonic_ns() % 10**9}"
    user, pg_host, pg_port, db = split_url(args.store)
    out: dict[str, Any] = {"mode": mode, "k": k, "n": n, "rate": args.rate or None}
    ns_ctx = Namespaces(k) if delay_ms is not None else None
    spaces: list[Netns] = []
    try:
        if ns_ctx is not None:
            spaces = ns_ctx.__enter__()
        await broker.start()
        assert broker.port is not None
        sim_port, ctl_port = free_port(), free_port()
        sim = sim_child(run_dir, sim_port, ctl_port, record=True)
        children.append(sim)
        await sim.start()
        await wait_until(lambda: control_up(ctl_port), 20, "the simulator's control API")

        # where each engine finds PostgreSQL, the broker and the simulator
        where: list[dict[str, Any]] = []
        if delay_ms is not None:
            links = []
            for ns in spaces:
                links += [f"pg{ns.index}={ns.host_ip}:0=127.0.0.1:{pg_port}",
                          f"mqtt{ns.index}={ns.host_ip}:0=127.0.0.1:{broker.port}",
                          f"smpp{ns.index}={ns.host_ip}:0=127.0.0.1:{sim_port}"]
            proxy = ProxyProcess(delay_ms, links)
            ports = await proxy.start()
            for ns in spaces:
                i = ns.index
                where.append({"pg": (ns.host_ip, ports[f"pg{i}"]), "mqtt": (ns.host_ip, ports[f"mqtt{i}"]),
                              "smpp": (ns.host_ip, ports[f"smpp{i}"]), "prefix": ns.exec_prefix()})
        else:
            for _ in range(k):
                where.append({"pg": (pg_host, pg_port), "mqtt": ("127.0.0.1", broker.port),
                              "smpp": ("127.0.0.1", sim_port), "prefix": []})

        cores = sorted(os.sched_getaffinity(0))
        engines: list[Child] = []
        for i in range(k):
            w = where[i]
            store = f"postgresql://smppbench_{i}@{w['pg'][0]}:{w['pg'][1]}/{db}?schema={schema}"
            cfg = engine_toml(run_dir / f"engine{i}.toml", i=i, k=k, store=store, mqtt_host=w["mqtt"][0],
                              mqtt_port=w["mqtt"][1], smsc_host=w["smpp"][0], smsc_port=w["smpp"][1],
                              window=args.window, log_level=args.log_level, lease_s=args.lease_s)
            argv = [*w["prefix"]]
            if args.pin and len(cores) > 1:
                argv += ["taskset", "-c", str(cores[i % len(cores)])]
            argv += [sys.executable, "-m", "smppengine.cli", "run", "--config", str(cfg)]
            e = Child(f"engine{i}", argv, run_dir / f"engine{i}.log")
            engines.append(e)
            children.append(e)
        # the first instance migrates the schema alone; the others start once it is up
        await engines[0].start()

        tag = f"s{os.getpid()}x{time.monotonic_ns() % 10**8}"
        tracker = StatusTracker(tag, n)
        t_final = [0.0] * n
        tracker.on_final = lambda i: t_final.__setitem__(i, tracker.last_final)
        presence: dict[str, str] = {}

        def on_publish(topic: str, payload: bytes, t: float) -> None:
            if topic.startswith("sms/engine/"):
                presence[topic.rsplit("/", 1)[1]] = json.loads(payload).get("state", "")
            else:
                tracker(topic, payload, t)

        sub = await RawMqtt.connect("127.0.0.1", broker.port, f"{tag}-sub", on_publish)
        await sub.subscribe("sms/status/#", "sms/engine/+")

        def alive_or_raise() -> None:
            for e in engines:
                if e.proc is not None and not e.alive():
                    raise RuntimeError(f"{e.name} exited: {e.tail()}")

        async def online(names: list[str], binds: int) -> bool:
            alive_or_raise()
            if not all(presence.get(x) == "online" for x in names):
                return False
            return int((await http_json(ctl_port, "GET", "/stats")).get("bound_sessions", 0)) >= binds

        await wait_until(lambda: online(["b0"], BINDS), 60, "instance b0 online and bound")
        for e in engines[1:]:
            await e.start()
        await wait_until(lambda: online([f"b{i}" for i in range(k)], k * BINDS), 60, "every instance online")
        pub = await RawMqtt.connect("127.0.0.1", broker.port, f"{tag}-pub")

        # before
        await asyncio.sleep(1.2)            # PostgreSQL flushes its statistics at most once a second
        pids = {"broker": broker.proc.pid if broker.proc else 0, "simulator": sim.pid}
        if proxy is not None:
            pids["proxy"] = proxy.pid
            await proxy.command("reset")
        cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
        eng0 = [cpu_seconds(e.pid) for e in engines]
        db0 = await pg.db_stats()
        be0 = await pg.backend_cpu()

        wall_minus_mono = time.time() - time.monotonic()
        t0 = time.monotonic()
        if args.rate > 0:
            await publish_rate(pub, tag, n, args.rate)
        else:
            await publish_burst(pub, tag, n)
        deadline = t0 + (args.timeout or max(300.0, n / 10))
        while not tracker.done.is_set() and time.monotonic() < deadline:
            alive_or_raise()
            try:
                await asyncio.wait_for(tracker.done.wait(), 0.5)
            except TimeoutError:
                pass
        t_end = tracker.last_final if tracker.done.is_set() else time.monotonic()
        elapsed = t_end - t0

        # after
        eng1 = [cpu_seconds(e.pid) for e in engines]
        cpu1 = {name: cpu_seconds(pid) for name, pid in pids.items()}
        be1 = await pg.backend_cpu()
        pstats = await proxy.command("stats") if proxy is not None else {}
        await asyncio.sleep(1.2)
        db1 = await pg.db_stats()
        await asyncio.sleep(args.grace)
        owners = await pg.owners(schema)
        stamps = await pg.receipt_times(schema, tag)
        counters = await pg.counters(schema)

        per_msg = 1000.0 / n
        pg_cpu_by_role = {role: cpu_delta(be0.get(role, {}), be1.get(role, {})) for role in be1}
        out.update({
            # a run that timed out reports what it finished in its time (and lost > 0)
            "msg_s": round(tracker.final_count / elapsed, 1),
            "complete": tracker.done.is_set(),
            "submit_msg_s": round(n / (tracker.last_submitted - t0), 1) if tracker.last_submitted else 0,
            "cpu_ms_per_msg": {
                "engines": round(sum(b - a for a, b in zip(eng0, eng1, strict=True)) * per_msg, 3),
                "pg_backends": round(sum(pg_cpu_by_role.values()) * per_msg, 3),
                **{name: round((cpu1[name] - cpu0[name]) * per_msg, 3) for name in pids},
            },
            "xact_per_msg": round((db1["xact_commit"] - db0["xact_commit"]) / n, 3),
            "rollbacks": db1["xact_rollback"] - db0["xact_rollback"],
            "deadlocks": db1["deadlocks"] - db0["deadlocks"],
            "replays": sum(e.log_path.read_text(errors="replace").count("store_batch_replayed") for e in engines),
            "lost": tracker.lost,
            "duplicates": tracker.duplicates,
            "states": dict(tracker.states),
        })
        at, out["submitted_twice"] = await submit_times(ctl_port, tag, n)
        lat = sorted((f - s) * 1000 for s, f in zip(at, t_final, strict=True) if s and f)
        out["receipt_to_delivered_p50_ms"] = round(percentile(lat, 50), 1)
        out["receipt_to_delivered_p99_ms"] = round(percentile(lat, 99), 1)
        out["receipt_to_delivered_max_ms"] = round(lat[-1], 1) if lat else None
        out["receipt_stages_ms"] = receipt_stages(at, t_final, stamps, wall_minus_mono)
        out["receipt_counters"] = {
            name: sum(c.get(name, 0) for c in counters.values())
            for name in ("receipts_held", "receipts_foreign", "receipts_rematched", "receipts_late")}
        inst = []
        for i, e in enumerate(engines):
            own = owners.get(f"b{i}", 0)
            d: dict[str, Any] = {
                "instance": f"b{i}", "messages": own, "share": round(own / n, 3),
                "engine_cpu_ms_per_msg": round((eng1[i] - eng0[i]) * 1000 / max(1, own), 3),
                "engine_busy_pct": round((eng1[i] - eng0[i]) / elapsed * 100, 1),
                "pg_cpu_ms_per_msg": round(pg_cpu_by_role.get(f"smppbench_{i}", 0.0) * 1000 / max(1, own), 3),
                "replays": e.log_path.read_text(errors="replace").count("store_batch_replayed"),
            }
            if pstats:
                for part in ("pg", "mqtt", "smpp"):
                    s = pstats[f"{part}{i}"]
                    d[f"{part}_chunks_per_msg"] = [round(s["chunks_up"] / max(1, own), 2),
                                                   round(s["chunks_down"] / max(1, own), 2)]
            inst.append(d)
        out["instances"] = inst
        if pstats:
            out["proxy"] = {"hold_p50_ms": pstats.get("hold_p50_ms"), "hold_p99_ms": pstats.get("hold_p99_ms"),
                            "chunks_per_msg": round(sum(v["chunks_up"] + v["chunks_down"] for key, v in pstats.items()
                                                        if isinstance(v, dict)) / n, 2)}
        sub.close()
        pub.close()
        return out
    finally:
        for c in reversed(children):
            await c.stop()
        if proxy is not None:
            await proxy.stop()
        await broker.stop()
        try:
            await pg.drop(schema)
        finally:
            if ns_ctx is not None:
                ns_ctx.__exit__(None, None, None)
            if args.keep:
                print(f"kept: {run_dir}", file=sys.stderr)
            else:
                shutil.rmtree(run_dir, ignore_errors=True)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    # SIGTERM / SIGHUP cancel the run: every run's `finally` stops its processes, drops its schema and
    # removes its namespaces (bench/netns.py's atexit hook is the last resort)
    task = asyncio.current_task()
    assert task is not None
    for sig in (signal.SIGTERM, signal.SIGHUP):
        asyncio.get_running_loop().add_signal_handler(sig, task.cancel)
    if any(m.startswith("netns") for m in args.modes):
        why = netns_available()
        if why:
            raise SystemExit(f"netns modes: {why}")
        remove_stale()
    await ensure_bench_db(args.store, max(args.instances))
    pg = PgWatch(args.store)
    await pg.open()
    runs: list[dict[str, Any]] = []
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    try:
        for _ in range(args.repeat):
            for k in args.instances:
                for mode in args.modes:
                    r = await one_run(k, mode, args, work, pg)
                    print(f"scale: {mode} k={k}: {r.get('msg_s')} msg/s", file=sys.stderr, flush=True)
                    runs.append(r)
    finally:
        await pg.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    msg_s: dict[str, dict[str, float]] = {}
    for mode in args.modes:
        msg_s[mode] = {str(k): statistics.median([r["msg_s"] for r in runs if r["mode"] == mode and r["k"] == k])
                       for k in args.instances}
    out: dict[str, Any] = {"bench": "scale", "pid": os.getpid(), "n": args.n, "rate": args.rate or None,
                           "store": "postgresql", "pinned": args.pin,
                           "repeat": args.repeat, "msg_s": msg_s}
    if 1 in args.instances:
        out["ratio_to_1"] = {m: {k: round(v / msg_s[m]["1"], 2) if msg_s[m]["1"] else None for k, v in d.items()}
                             for m, d in msg_s.items()}
    if "loopback" in msg_s:
        out["vs_loopback"] = {m: {k: round(v / msg_s["loopback"][k], 2) if msg_s["loopback"][k] else None
                                  for k, v in d.items()} for m, d in msg_s.items() if m != "loopback"}
    out["lost"] = sum(r["lost"] for r in runs)
    out["duplicates"] = sum(r["duplicates"] for r in runs)
    out["submitted_twice"] = sum(r.get("submitted_twice", 0) for r in runs)
    out["runs"] = runs
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=5000, help="messages per run")
    ap.add_argument("--instances", default="1,2,3", help="comma-separated instance counts")
    ap.add_argument("--modes", default="loopback,netns0.5", help="loopback, netns<DELAY_MS> (e.g. netns0, netns0.5)")
    ap.add_argument("--repeat", type=int, default=1, help="run every (k, mode) this many times, interleaved")
    ap.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin engine i to core i %% cores")
    ap.add_argument("--window", type=int, default=200)
    ap.add_argument("--rate", type=float, default=0.0,
                    help="publish at this many msg/s instead of all at once (for receipt_to_delivered latency; "
                         "msg_s is then at most the rate)")
    ap.add_argument("--timeout", type=float, default=None)
    ap.add_argument("--grace", type=float, default=1.0, help="seconds after the last final event, for duplicates")
    ap.add_argument("--store", default=DEFAULT_STORE, help="PostgreSQL URL of the bench database (created if missing)")
    ap.add_argument("--lease-s", type=float, default=30.0,
                    help="engine.lease_s (default 30, the engine's default): under this machine's load a group "
                         "commit of today's store can take longer than 10 s, and instances then take each "
                         "other's messages over")
    ap.add_argument("--log-level", default="warning", help="the engines' log level (logs kept with --keep)")
    ap.add_argument("--keep", action="store_true", help="keep the work directories (engine logs)")
    args = ap.parse_args(argv)
    args.instances = [int(x) for x in args.instances.split(",")]
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for m in args.modes:
        if m != "loopback" and not (m.startswith("netns") and m[5:].replace(".", "", 1).isdigit()):
            ap.error(f"unknown mode {m!r}")
    where = machine()
    out = asyncio.run(run(args))
    out["machine"] = where
    out["note"] = "2-core machine shared with other work: figures vary by 10-20 % run to run"
    print(json.dumps(out, separators=(",", ":")), flush=True)


if __name__ == "__main__":
    main()
