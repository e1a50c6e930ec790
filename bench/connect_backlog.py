"""Memory when a large backlog waits in the broker and the engine connects: with MQTT 5 the broker sends up to
the engine's Receive Maximum (mqtt.receive_maximum) requests at once, and they are in memory until committed.

Starts a private Mosquitto (limits raised, so that it queues the whole backlog), the simulator and the engine
once (its persistent session subscribes), stops the engine, publishes --n requests with mosquitto_pub, starts
the engine again and waits until every request reached a final state. Prints ONE JSON line: the engine's peak
RSS (VmHWM), the time to take the backlog, lost / duplicated ids.

Usage: python bench/connect_backlog.py [--n 100000] [--receive-maximum 65535]
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
    RawMqtt,
    StatusTracker,
    control_up,
    engine_child,
    engine_config,
    free_port,
    machine,
    request_payload,
    sim_child,
    status_kb,
    wait_until,
)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-backlog-"))
    (work / "mqtt").mkdir()
    broker = BenchBroker(str(work / "mqtt"))
    children = []
    try:
        await broker.start()
        sim_port, ctl_port = free_port(), free_port()
        sim = sim_child(work, sim_port, ctl_port, record=False)
        children.append(sim)
        await sim.start()
        await wait_until(lambda: control_up(ctl_port), 20, "the simulator's control API")
        cfg = engine_config(work / "engine.toml", mqtt_url=broker.url, smsc_port=sim_port,
                            store=str(work / "engine.db"), tps=1_000_000.0, window=200, binds=2)
        text = cfg.read_text().replace('topic_prefix = "sms"\n',
                                       f'topic_prefix = "sms"\nreceive_maximum = {args.receive_maximum}\n')
        cfg.write_text(text)
        tag = f"b{os.getpid()}x{int(time.time()) % 100000}"
        tracker = StatusTracker(tag, args.n)
        presence: dict[str, str] = {}

        def on_publish(topic: str, payload: bytes, t: float) -> None:
            if topic.startswith("sms/engine/"):
                presence["state"] = json.loads(payload).get("state", "")
            else:
                tracker(topic, payload, t)

        sub = await RawMqtt.connect("127.0.0.1", broker.port, f"{tag}-sub", on_publish, receive_maximum=65535)
        await sub.subscribe("sms/status/#", "sms/engine/+")

        engine = engine_child(work, cfg, None)
        await engine.start()                              # once: the broker keeps its session from now on
        await wait_until(lambda: presence.get("state") == "online", 30, "the engine online")
        await engine.stop()
        await wait_until(lambda: presence.get("state") == "offline", 30, "the engine offline")

        # this process's raw client, not mosquitto_pub -l: fed 100,000 lines from a pipe, mosquitto_pub 2.0.11
        # published ~35,400 of them and exited 0
        pub = await RawMqtt.connect("127.0.0.1", broker.port, f"{tag}-pub")
        for i in range(args.n):
            if i % 500 == 0:
                await pub.wait_capacity(5000)
            pub.publish("sms/outbound", request_payload(tag, i))
        await pub.wait_all_acked(timeout=600)
        pub.close()

        engine = engine_child(work, cfg, None)
        children.append(engine)
        t0 = time.monotonic()
        await engine.start()
        peak = 0
        finished = asyncio.ensure_future(tracker.done.wait())
        while not finished.done() and time.monotonic() - t0 < args.timeout:
            await asyncio.wait({finished}, timeout=0.5)
            if not engine.alive():
                raise RuntimeError(f"engine exited: {engine.tail()}")
            peak = max(peak, status_kb(engine.pid, "VmHWM"))
        finished.cancel()
        t_queued = tracker.last_queued - t0 if tracker.states["queued"] == args.n else float("nan")
        out = {"bench": "connect_backlog", "n": args.n, "receive_maximum": args.receive_maximum,
               "peak_rss_mb": round(peak / 1024, 1), "taken_s": round(t_queued, 1),
               "full_life_s": round(tracker.last_final - t0, 1) if tracker.final_count == args.n else None,
               "lost": tracker.lost, "duplicates": tracker.duplicates}
        sub.close()
        return out
    finally:
        for c in reversed(children):
            await c.stop()
        await broker.stop()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--receive-maximum", type=int, default=65535)
    ap.add_argument("--timeout", type=float, default=900.0)
    args = ap.parse_args()
    where = machine()
    out = asyncio.run(run(args))
    out["machine"] = where
    print(json.dumps(out, separators=(",", ":")), flush=True)


if __name__ == "__main__":
    main()
