"""End-to-end benchmark: MQTT requests in → engine → SMPP simulator → receipts → MQTT status events out.

Prints ONE JSON line. Processes: a private Mosquitto (limits raised), the simulator
(`python -m smppengine.cli sim`, receipts on, immediately), the engine (`python -m smppengine.cli run`),
and this process as the load client (a raw MQTT 3.1.1 publisher + status subscriber, a few µs per message).

Throughput mode (default): publish --n requests QoS 1 as fast as the broker takes them, then report
  submit_msg_s        n / (last `submitted` event received - first publish)
  full_life_msg_s     n / (last final event received - first publish)      (final = delivered here)
  engine_cpu_s_per_1k engine utime+stime (/proc/<pid>/stat, all threads) per 1,000 messages
  pg_backends_cpu_s_per_1k  with --store postgresql://...: the same for the PostgreSQL backends serving the
                      engine's connections (found by their client ports; the server's WAL writer, checkpointer
                      and autovacuum not counted; `pg_backends`: how many); with --pin they are kept off the
                      engine's CPUs like the rest
  peak_rss_mb         engine VmHWM
  lost, duplicates    ids with no final event / with more than one
  publish_msg_s       n / (the publisher's last PUBACK from the broker - first publish)
  queued_msg_s        n / (last `queued` event received - first publish): the engine's intake, committed
  sink_ceiling_msg_s  what the simulator takes (submit_sm + receipt) from a minimal pre-encoded SMPP client
Latency mode (--rate R): publish at R msg/s and also report, over all messages,
  p50_ms p99_ms max_ms              publish → submit_sm received by the simulator (its GET /submits record
                                    time; both sides read CLOCK_MONOTONIC, which is system-wide on Linux)
  event_p50_ms event_p99_ms event_max_ms   publish → `submitted` status event received by this client

With --pin CPUS the engine runs under `taskset -c CPUS` and the broker, the simulator, this client and (with
--store) the engine's PostgreSQL backends are kept on the other CPUs (`others_on`), so the engine has its core
to itself. --repeat K runs everything K
times and reports the median run (by full_life_msg_s) with every run's figure.

Usage: python bench/e2e.py [--n 50000] [--rate R] [--pin 0] [--repeat K] [--binds 2] [--window 200]
                           [--profile PREFIX] [--store postgresql://...] [--stock-broker] [--c-publisher]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402
    BenchBroker,
    Child,
    RawMqtt,
    SinkCeiling,
    StatusTracker,
    StoreBackends,
    connect_load_clients,
    control_up,
    cpu_seconds,
    engine_child,
    engine_config,
    free_port,
    http_json,
    machine,
    mqtt_publish_packet,
    percentile,
    profile_summary,
    pyspy_binary,
    request_payload,
    sim_child,
    status_kb,
    wait_until,
)

KEYS = ("n", "submit_msg_s", "full_life_msg_s", "engine_cpu_s_per_1k", "peak_rss_mb", "lost", "duplicates",
        "sink_ceiling_msg_s")
RATE_KEYS = ("rate", "p50_ms", "p99_ms", "max_ms", "event_p50_ms", "event_p99_ms", "event_max_ms")
CHUNK = 500


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=50_000, help="requests to publish (default 50,000)")
    ap.add_argument("--rate", type=float, default=0.0, help="publish at this many msg/s and report latencies")
    ap.add_argument("--binds", type=int, default=2)
    ap.add_argument("--window", type=int, default=200)
    ap.add_argument("--tps", type=float, default=1_000_000.0, help="engine smsc.tps (default: never limiting)")
    ap.add_argument("--pin", default=None, help="taskset -c CPUS for the engine process, e.g. 0")
    ap.add_argument("--ceiling-n", type=int, default=None,
                    help="messages for the simulator ceiling run (default min(20000, max(2000, n)); 0 = skip)")
    ap.add_argument("--timeout", type=float, default=None, help="give up after this many seconds (lost > 0)")
    ap.add_argument("--grace", type=float, default=1.0, help="seconds to wait after the last final, for duplicates")
    ap.add_argument("--max-unacked", type=int, default=20_000, help="publisher's QoS 1 in-flight cap")
    ap.add_argument("--profile", default=None,
                    help="py-spy the engine during the run: PREFIX.txt (collapsed stacks), PREFIX.top.json")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, store)")
    ap.add_argument("--store", default=None,
                    help="a PostgreSQL store URL (postgresql://...) instead of the SQLite file in the work "
                         "directory; each run gets a schema of its own, dropped afterwards")
    ap.add_argument("--stock-broker", action="store_true",
                    help="Mosquitto with its default limits (max_inflight_messages 20, max_queued_messages 1000), "
                         "as a distribution installs it, instead of raised limits")
    ap.add_argument("--c-publisher", action="store_true",
                    help="publish the burst with mosquitto_pub -l -q 1 (C, ~15,000 msg/s) instead of this "
                         "process's raw MQTT client")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run K times (fresh broker, simulator, engine and store each) and report the run with the "
                         "median full_life_msg_s, plus every run's figure: single runs on a shared machine vary "
                         "by 10-15 %%")
    return ap.parse_args(argv)


async def publish_burst(pub: RawMqtt, tag: str, n: int, max_unacked: int, times: list[float]) -> None:
    topic = "sms/outbound"
    for start in range(0, n, CHUNK):
        await pub.wait_capacity(max_unacked)
        end = min(n, start + CHUNK)
        out = bytearray()
        for i in range(start, end):
            pid = pub._pid()
            pub.unacked.add(pid)
            out += mqtt_publish_packet(topic, request_payload(tag, i), pid)
        assert pub.transport is not None
        t = time.monotonic()
        pub.transport.write(bytes(out))
        times[start] = t
        await asyncio.sleep(0)


async def publish_c(port: int, tag: str, n: int) -> None:
    """The burst from mosquitto_pub -l (one request per line, QoS 1, up to 1,000 unacknowledged); it exits
    once every publish was acknowledged."""
    lines = b"".join(request_payload(tag, i) + b"\n" for i in range(n))
    proc = await asyncio.create_subprocess_exec(
        "mosquitto_pub", "-p", str(port), "-q", "1", "-t", "sms/outbound", "-l", "-M", "1000", "-i", f"{tag}-cpub",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate(lines)
    if proc.returncode:
        raise RuntimeError(f"mosquitto_pub exited with {proc.returncode}: {err.decode(errors='replace')}")


async def publish_rate(pub: RawMqtt, tag: str, n: int, rate: float, times: list[float]) -> None:
    t_start = time.monotonic()
    i = 0
    while i < n:
        due = min(n, int((time.monotonic() - t_start) * rate) + 1)
        while i < due:
            times[i] = time.monotonic()
            pub.publish("sms/outbound", request_payload(tag, i))
            i += 1
        await asyncio.sleep(max(0.0, t_start + i / rate - time.monotonic()))


async def submit_times(ctl_port: int, tag: str, n: int) -> list[float]:
    """Simulator record time (monotonic) of the first OK submit_sm of each id."""
    out = [0.0] * n
    marker = f"bench {tag}-".encode()
    since = 0
    while True:
        page = await http_json(ctl_port, "GET", f"/submits?since={since}&limit=5000")
        for rec in page["submits"]:
            if rec["status"] != 0:
                continue
            sm = bytes.fromhex(rec["short_message"])
            if not sm.startswith(marker):
                continue
            i = int(sm[len(marker):])
            if 0 <= i < n and not out[i]:
                out[i] = rec["at"]
        since = page["next"]
        if since >= page["total"]:
            return out


def lat_stats(values: list[float], prefix: str) -> dict[str, float]:
    ms = sorted(v * 1000 for v in values)
    return {f"{prefix}p50_ms": round(percentile(ms, 50), 2), f"{prefix}p99_ms": round(percentile(ms, 99), 2),
            f"{prefix}max_ms": round(ms[-1], 2) if ms else float("nan")}


def pin_others(pin: str | None, pids: list[int | None]) -> str | None:
    """With the engine pinned, keep the broker, the simulator and this load client off its CPUs (on the
    rest), so that the engine has its core to itself; returns the CPUs they were given."""
    if not pin:
        return None
    engine_cpus: set[int] = set()
    for part in pin.split(","):
        lo, _, hi = part.partition("-")
        engine_cpus.update(range(int(lo), int(hi or lo) + 1))
    rest = set(os.sched_getaffinity(0)) - engine_cpus
    if not rest:
        return None
    for pid in pids:
        if pid is not None:
            os.sched_setaffinity(pid, rest)
    return ",".join(str(c) for c in sorted(rest))


async def rescan(backends: StoreBackends) -> None:
    """Connections the engine opens later (its read pool grows with the load) are found within 0.25 s."""
    while True:
        await asyncio.sleep(0.25)
        await backends.scan()


async def drop_schema(url: str, schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.split("?", 1)[0])
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    n = args.n
    work = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    (work / "mqtt").mkdir()
    broker = BenchBroker(str(work / "mqtt"), stock_limits=args.stock_broker)
    children: list[Child] = []
    profiler: asyncio.subprocess.Process | None = None
    pg_schema: str | None = None
    out: dict[str, Any] = {"bench": "e2e", "n": n}
    try:
        await broker.start()
        sim_port, ctl_port = free_port(), free_port()
        sim = sim_child(work, sim_port, ctl_port, record=args.rate > 0)
        children.append(sim)
        await sim.start()
        await wait_until(lambda: control_up(ctl_port), 20, "the simulator's control API")

        ceiling_n = args.ceiling_n if args.ceiling_n is not None else min(20_000, max(2_000, n))
        out["sink_ceiling_msg_s"] = round(await SinkCeiling(sim_port, ceiling_n).run()) if ceiling_n else None

        if args.store:
            pg_schema = f"bench_{os.getpid()}_{int(time.time() * 1000) % 10**9}"
            store = f"{args.store}{'&' if '?' in args.store else '?'}schema={pg_schema}"
            out["store"] = "postgresql"
        else:
            store = str(work / "engine.db")
        cfg = engine_config(work / "engine.toml", mqtt_url=broker.url, smsc_port=sim_port,
                            store=store, tps=args.tps, window=args.window, binds=args.binds)
        engine = engine_child(work, cfg, args.pin)
        children.append(engine)
        await engine.start()
        out["others_on"] = pin_others(args.pin, [broker.proc.pid if broker.proc else None, sim.pid, os.getpid()])
        backends = None
        if args.store:      # the engine's PostgreSQL backends join the others, off the engine's CPUs
            others = {int(c) for c in out["others_on"].split(",")} if out["others_on"] else None
            backends = StoreBackends(args.store, engine.pid, others)
            await backends.scan()

        tag = f"e{os.getpid()}x{int(time.time()) % 100000}"
        tracker = StatusTracker(tag, n, keep_submit_at=args.rate > 0)
        sub, pub = await connect_load_clients(broker.port, f"bench-{tag}", tracker, engine, ctl_port, args.binds)

        if args.profile:
            spy = pyspy_binary()
            if spy is None:
                raise RuntimeError("--profile needs py-spy (pip install py-spy)")
            profiler = await asyncio.create_subprocess_exec(
                spy, "record", "--pid", str(engine.pid), "--rate", "250", "--format", "raw",
                "-o", f"{args.profile}.txt", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
            await asyncio.sleep(1.0)

        cpu0 = cpu_seconds(engine.pid)
        scans: asyncio.Task[None] | None = None
        if backends is not None:
            await backends.scan()
            backends.start_count()
            scans = asyncio.ensure_future(rescan(backends))
        pub_times = [0.0] * n
        t0 = time.monotonic()
        if args.rate > 0:
            await publish_rate(pub, tag, n, args.rate, pub_times)
        elif args.c_publisher:
            await publish_c(broker.port, tag, n)
        else:
            await publish_burst(pub, tag, n, args.max_unacked, pub_times)
        await pub.wait_all_acked()
        t_published = time.monotonic()

        timeout = args.timeout or max(60.0, n / 500 + (n / args.rate if args.rate > 0 else 0))
        finished = asyncio.ensure_future(tracker.done.wait())
        while not finished.done():
            await asyncio.wait({finished}, timeout=0.5)
            if not engine.alive():
                finished.cancel()
                raise RuntimeError(f"engine exited during the run: {engine.tail()}")
            if time.monotonic() - t0 > timeout:
                finished.cancel()
                break
        cpu1 = cpu_seconds(engine.pid)
        if scans is not None:
            scans.cancel()
        pg_cpu = None
        if backends is not None:
            pg_cpu = backends.cpu_since_start()
            await backends.close()
        hwm_kb = status_kb(engine.pid, "VmHWM")
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            await asyncio.wait_for(profiler.wait(), 30)
            profiler = None
            report_profile(Path(f"{args.profile}.txt"))
        await asyncio.sleep(args.grace)

        end_sub = tracker.last_submitted or float("nan")
        end_final = tracker.last_final or float("nan")
        out.update({
            "submit_msg_s": round(n / (end_sub - t0)) if tracker.last_submitted else 0,
            "full_life_msg_s": round(n / (end_final - t0)) if tracker.final_count == n else 0,
            "engine_cpu_s_per_1k": round((cpu1 - cpu0) / n * 1000, 3),
            "peak_rss_mb": round(hwm_kb / 1024, 1),
            "pg_backends_cpu_s_per_1k": round(pg_cpu / n * 1000, 3) if pg_cpu is not None else None,
            "pg_backends": len(backends.seen) if backends is not None else None,
            "lost": tracker.lost,
            "duplicates": tracker.duplicates,
            "publish_msg_s": round(n / (t_published - t0)),
            "queued_msg_s": round(n / (tracker.last_queued - t0)) if tracker.states["queued"] == n else 0,
            "states": dict(tracker.states),
            "binds": args.binds, "window": args.window, "pinned": args.pin,
            "broker": "stock limits" if args.stock_broker else "raised limits",
            "publisher": "mosquitto_pub" if args.c_publisher else "raw",
        })
        if args.rate > 0:
            sub_at = await submit_times(ctl_port, tag, n)
            smsc = [s - p for s, p in zip(sub_at, pub_times, strict=True) if s and p]
            ev = [s - p for s, p in zip(tracker.t_submitted, pub_times, strict=True) if s and p]
            out["rate"] = args.rate
            out.update(lat_stats(smsc, ""))
            out.update(lat_stats(ev, "event_"))
            out["latency_samples"] = len(smsc)
        sub.close()
        pub.close()
        return out
    finally:
        if profiler is not None and profiler.returncode is None:
            profiler.send_signal(signal.SIGINT)
            await profiler.wait()
        for c in reversed(children):
            await c.stop()
        await broker.stop()
        if pg_schema is not None:
            await drop_schema(args.store, pg_schema)
        if args.keep:
            print(f"work directory kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def report_profile(collapsed: Path) -> None:
    if not collapsed.exists():
        print(f"no profile written to {collapsed}", file=sys.stderr)
        return
    doc = profile_summary(collapsed)
    collapsed.with_suffix(".top.json").write_text(json.dumps(doc, indent=1))
    print(f"profile: {doc['samples']} samples; threads {doc['threads_pct']}", file=sys.stderr)
    print("% of samples by innermost frame (self):", file=sys.stderr)
    for fn, pct in doc["self_pct"]:
        print(f"  {pct:5.1f}  {fn}", file=sys.stderr)
    print("% of samples with the frame on the stack (inclusive):", file=sys.stderr)
    for fn, pct in doc["inclusive_pct"]:
        print(f"  {pct:5.1f}  {fn}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    where = machine()        # before the runs: the yardstick is measured on a quiet machine
    runs = [asyncio.run(run(args)) for _ in range(max(1, args.repeat))]
    if len(runs) == 1:
        out = runs[0]
    else:
        ordered = sorted(runs, key=lambda r: r.get("full_life_msg_s") or 0)
        out = dict(ordered[len(ordered) // 2])
        out["runs_full_life_msg_s"] = [r.get("full_life_msg_s") for r in runs]
        out["runs_engine_cpu_s_per_1k"] = [r.get("engine_cpu_s_per_1k") for r in runs]
        out["lost"] = sum(int(r.get("lost") or 0) for r in runs)
        out["duplicates"] = sum(int(r.get("duplicates") or 0) for r in runs)
    out["machine"] = where
    print(json.dumps(out, separators=(",", ":")), flush=True)


if __name__ == "__main__":
    main()
