"""Scale-out benchmark: msg/s through 1, 2 and 3 engine instances sharing one PostgreSQL store.

Each run: a private Mosquitto, the simulator in its own process (no TPS limit, receipts at once), k
`smppengine run` processes with the same store (a fresh schema per run), one `mqtt.share_group`, one SMSC
account bound by each instance (2 binds, window 50). N requests are published at once (QoS 1); the clock
runs from the first publish to the last final status event (full life: queued, submitted, delivered).

    python bench/scale.py [--n 3000] [--instances 1,2,3]

Prints one JSON line: {"n", "store", "cpus", "msg_s_1", "msg_s_2", "msg_s_3", ...}. On a machine with
fewer cores than processes (k engines + simulator + broker + PostgreSQL) the figures measure CPU
contention more than the engine: read them with "cpus".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

from smppengine.broker import Mosquitto  # noqa: E402
from tests.helpers import (  # noqa: E402
    PG_URL,
    EngineProcess,
    SimProcess,
    Watcher,
    drop_pg_schemas,
    pg_store_url,
    smsc,
    write_toml,
)


async def one_run(k: int, n: int, work: Path) -> tuple[float, int, int]:
    broker = Mosquitto(workdir=str(work / f"mqtt{k}"))
    (work / f"mqtt{k}").mkdir()
    await broker.start()
    sim = SimProcess("--no-record")
    await sim.start()
    url = pg_store_url()
    engines: list[EngineProcess] = []
    try:
        for i in range(k):
            cfg: dict[str, Any] = {
                "engine": {"instance": f"b{i}", "store": url, "instances": k, "lease_s": 10},
                "mqtt": {"url": broker.url, "share_group": "bench"},
                "http": {"listen": ""},
                "log": {"level": "info", "format": "json"},
                "smsc": [smsc("acct", sim.port, binds=2, window=50, tps=100_000)],
            }
            engines.append(EngineProcess(write_toml(str(work / f"k{k}-{i}.toml"), cfg)))
        for e in engines:
            await e.start()
        for e in engines:      # subscribed (a shared subscription queues nothing before that) and bound
            await e.wait_log("engine_ready", timeout=60)
            await e.wait_log("session_bound", n=2, timeout=60)
        async with Watcher(broker.url) as w:
            # ready: each engine answers a probe (queued + delivered) -- it is subscribed and bound
            probes = [f"probe-{k}-{i}" for i in range(4 * k)]
            for p in probes:
                await w.publish({"id": p, "to": "+447700900123", "text": "probe"})
            try:
                await w.wait_final(probes, timeout=60)
            except AssertionError:
                raise AssertionError(f"engines not ready: {[e.lines[-5:] for e in engines]}") from None
            ids = [f"s{k}-{i:06d}" for i in range(n)]
            t0 = time.perf_counter()
            for i in ids:
                await w.publish({"id": i, "to": "+447700900123", "text": f"bench {i}"})
            await w.wait_final(ids, timeout=600)
            elapsed = time.perf_counter() - t0
        schema = url.rsplit("schema=", 1)[1]
        conn = await asyncpg.connect(PG_URL, server_settings={"search_path": schema})
        try:
            counters = {str(r[0]): int(r[1]) for r in await conn.fetch("SELECT name, value FROM counters")}
        finally:
            await conn.close()
        replays = sum(e.count("store_batch_replayed") for e in engines)
        return n / elapsed, counters.get("receipts_rematched", 0), replays
    finally:
        for e in engines:
            if e.proc is not None and e.proc.returncode is None:
                await e.terminate()
        await sim.stop()
        await broker.stop()
        await drop_pg_schemas([url.rsplit("schema=", 1)[1]])


async def run(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"n": args.n, "store": "postgresql", "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="smpp-scale-") as tmp:
        for k in args.instances:
            rate, rematched, replays = await one_run(k, args.n, Path(tmp))
            out[f"msg_s_{k}"] = round(rate, 1)
            out[f"receipts_rematched_{k}"] = rematched     # receipts that raced their resp's commit elsewhere
            out[f"batches_replayed_{k}"] = replays         # writer batches that lost a deadlock and ran again
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=3000, help="messages per run")
    ap.add_argument("--instances", default="1,2,3", help="comma-separated instance counts")
    args = ap.parse_args(argv)
    args.instances = [int(x) for x in args.instances.split(",")]
    print(json.dumps(asyncio.run(run(args)), separators=(",", ":")), flush=True)


if __name__ == "__main__":
    main()
