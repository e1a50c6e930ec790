"""Soak: does the engine's memory stay flat over many messages with a standing backlog? Prints ONE JSON line.

Same processes as bench/e2e.py (private Mosquitto, simulator process, engine process). The load client is
closed-loop: it keeps --backlog requests outstanding (published, no final status event yet), so the engine
always has work queued, while the engine's smsc.tps (--tps, default 600, below what the engine can do)
holds submission below the rate at which requests could arrive. The engine's VmRSS is sampled every
--interval seconds.

Figures: samples [[elapsed_s, messages_final, rss_mb], ...], rss_slope_mb_per_100k (least squares over
the samples after warm-up: the first --warmup fraction of messages), peak_rss_mb (VmHWM), lost, duplicates.

Usage: python bench/soak.py [--n 1000000] [--backlog 5000] [--tps 600] [--interval 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402
    BenchBroker,
    Child,
    StatusTracker,
    connect_load_clients,
    control_up,
    cpu_seconds,
    engine_child,
    engine_config,
    free_port,
    machine,
    request_payload,
    sim_child,
    slope,
    status_kb,
    wait_until,
)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    n = args.n
    work = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    (work / "mqtt").mkdir()
    broker = BenchBroker(str(work / "mqtt"))
    children: list[Child] = []
    try:
        await broker.start()
        sim_port, ctl_port = free_port(), free_port()
        sim = sim_child(work, sim_port, ctl_port, record=False)
        children.append(sim)
        await sim.start()
        await wait_until(lambda: control_up(ctl_port), 20, "the simulator's control API")
        cfg = engine_config(work / "engine.toml", mqtt_url=broker.url, smsc_port=sim_port,
                            store=str(work / "engine.db"), tps=args.tps, window=args.window, binds=args.binds)
        engine = engine_child(work, cfg, args.pin)
        children.append(engine)
        await engine.start()

        tag = f"s{os.getpid()}x{int(time.time()) % 100000}"
        tracker = StatusTracker(tag, n)
        room = asyncio.Event()
        tracker.on_final = lambda i: room.set()
        sub, pub = await connect_load_clients(broker.port, f"soak-{tag}", tracker, engine, ctl_port, args.binds)

        samples: list[list[float]] = []
        t0 = time.monotonic()
        cpu0 = cpu_seconds(engine.pid)

        async def sampler() -> None:
            while True:
                samples.append([round(time.monotonic() - t0, 1), tracker.final_count,
                                round(status_kb(engine.pid, "VmRSS") / 1024, 1)])
                print(f"soak: {samples[-1]}", file=sys.stderr, flush=True)
                await asyncio.sleep(args.interval)

        sampling = asyncio.ensure_future(sampler())
        published = 0
        deadline = t0 + (args.timeout or max(120.0, 3 * n / args.tps))
        while published < n:
            if not engine.alive():
                raise RuntimeError(f"engine exited during the soak: {engine.tail()}")
            if time.monotonic() > deadline:
                break
            allowed = min(n, tracker.final_count + args.backlog)
            if published < allowed:
                await pub.wait_capacity(20_000)
                for i in range(published, min(allowed, published + 500)):
                    pub.publish("sms/outbound", request_payload(tag, i))
                published = min(allowed, published + 500)
                await asyncio.sleep(0)
                continue
            room.clear()
            try:
                await asyncio.wait_for(room.wait(), 1.0)
            except TimeoutError:
                pass
        remaining = max(10.0, deadline - time.monotonic())
        try:
            await asyncio.wait_for(tracker.done.wait(), remaining)
        except TimeoutError:
            pass
        elapsed = time.monotonic() - t0
        cpu1 = cpu_seconds(engine.pid)
        samples.append([round(elapsed, 1), tracker.final_count, round(status_kb(engine.pid, "VmRSS") / 1024, 1)])
        hwm = status_kb(engine.pid, "VmHWM") / 1024
        sampling.cancel()
        await asyncio.sleep(args.grace)
        warm = [s for s in samples if s[1] >= args.warmup * n]
        rss_slope = slope([s[1] for s in warm], [s[2] for s in warm]) * 100_000
        sub.close()
        pub.close()
        return {
            "bench": "soak", "n": n, "backlog": args.backlog, "tps": args.tps,
            "msg_s": round(tracker.final_count / elapsed),
            "engine_cpu_s_per_1k": round((cpu1 - cpu0) / max(1, tracker.final_count) * 1000, 3),
            "rss_slope_mb_per_100k": round(rss_slope, 2),
            "rss_first_after_warmup_mb": warm[0][2] if warm else None,
            "rss_last_mb": samples[-1][2],
            "peak_rss_mb": round(hwm, 1),
            "lost": tracker.lost, "duplicates": tracker.duplicates,
            "samples": samples,
        }
    finally:
        for c in reversed(children):
            await c.stop()
        await broker.stop()
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--backlog", type=int, default=5_000, help="requests kept outstanding (published, not final)")
    ap.add_argument("--tps", type=float, default=600.0, help="engine smsc.tps: the standing backlog's drain rate")
    ap.add_argument("--binds", type=int, default=2)
    ap.add_argument("--window", type=int, default=200)
    ap.add_argument("--pin", default=None)
    ap.add_argument("--interval", type=float, default=10.0, help="seconds between RSS samples")
    ap.add_argument("--warmup", type=float, default=0.2, help="fraction of messages before the slope is fitted")
    ap.add_argument("--timeout", type=float, default=None)
    ap.add_argument("--grace", type=float, default=1.0)
    where = machine()
    out = asyncio.run(run(ap.parse_args(argv)))
    out["machine"] = where
    print(json.dumps(out, separators=(",", ":")), flush=True)


if __name__ == "__main__":
    main()
