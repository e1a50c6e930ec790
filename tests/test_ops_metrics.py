"""/metrics and /healthz over real HTTP, on an engine carrying traffic."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import orjson

from smppengine.broker import Mosquitto, free_port
from smppengine.engine import Engine
from smppengine.simulator import Simulator

from .helpers import Watcher, make_config, running_engine, smsc, wait_bound


async def http_get(address: tuple[str, int], path: str) -> tuple[int, str, bytes]:
    reader, writer = await asyncio.open_connection(*address)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(h.lower().split(": ", 1) for h in lines[1:])
    return int(lines[0].split()[1]), headers.get("content-type", ""), body


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample of the exposition text, None when absent."""
    for line in text.splitlines():
        m = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(m.group(4))
    return None


async def test_metrics_move_with_traffic(tmp_path: Path, broker: Mosquitto, sim: Simulator) -> None:
    cfg = make_config(str(tmp_path / "e.db"), broker.url, [smsc("a", sim.port, tps=500)],
                      http={"listen": f"127.0.0.1:{free_port()}"})
    async with Watcher(broker.url) as w, running_engine(cfg) as engine:
        engine.stats_interval = 0.1
        await wait_bound(engine)
        assert engine.http_address is not None
        status, ctype, body = await http_get(engine.http_address, "/metrics")
        assert status == 200 and ctype.startswith("text/plain")
        before = body.decode()
        assert sample(before, "smppengine_submits_total", smsc="a") is None
        assert sample(before, "smppengine_sessions_bound", smsc="a") == 1
        assert sample(before, "smppengine_tps_configured", smsc="a") == 500

        ids = [f"m{i}" for i in range(5)]
        for i in ids:
            await w.publish({"id": i, "to": "+447700900123", "text": f"hello {i}"})
        await w.wait_final(ids)
        sim.set_receipt(delay=60)                    # one more that stays "submitted"
        await w.publish({"id": "waiting", "to": "+447700900123", "text": "no receipt yet"})
        await w.wait(lambda: "submitted" in w.states("waiting"), what="submitted")

        async def scraped() -> str:
            return (await http_get(engine.http_address, "/metrics"))[2].decode()  # type: ignore[arg-type]

        text = await scraped()
        assert sample(text, "smppengine_requests_total", result="accepted") == 6
        assert sample(text, "smppengine_submits_total", smsc="a", session="a/0") == 6
        assert sample(text, "smppengine_submit_resps_total", smsc="a", command_status="ESME_ROK") == 6
        assert sample(text, "smppengine_receipts_total", smsc="a", stat="DELIVRD", result="matched") == 5
        assert sample(text, "smppengine_submit_latency_seconds_count", smsc="a") == 6
        assert sample(text, "smppengine_receipt_latency_seconds_count", smsc="a") == 5
        assert sample(text, "smppengine_events_published_total") is not None
        assert sample(text, "smppengine_mqtt_connected") == 1
        # the store's queue depth is refreshed in the background
        for _ in range(100):
            if sample(text, "smppengine_queue_depth", state="submitted", smsc="a") == 1:
                break
            await asyncio.sleep(0.05)
            text = await scraped()
        assert sample(text, "smppengine_queue_depth", state="submitted", smsc="a") == 1


async def test_healthz_ok_then_unhealthy_when_the_smsc_is_gone(tmp_path: Path, broker: Mosquitto) -> None:
    sim = Simulator(credentials={"acme": "secret"})
    await sim.start()
    cfg = make_config(str(tmp_path / "e.db"), broker.url, [smsc("a", sim.port)],
                      http={"listen": f"127.0.0.1:{free_port()}"})
    try:
        async with running_engine(cfg) as engine:
            await wait_bound(engine)
            assert engine.http_address is not None
            status, ctype, body = await http_get(engine.http_address, "/healthz")
            doc = orjson.loads(body)
            assert (status, ctype) == (200, "application/json")
            assert doc["status"] == "ok" and doc["mqtt"] is True and doc["smsc"]["a"]["bound"] == 1
            await sim.stop()                       # the carrier goes away: no bind can come back
            for _ in range(200):
                status, _, body = await http_get(engine.http_address, "/healthz")
                if status == 503:
                    break
                await asyncio.sleep(0.05)
            doc = orjson.loads(body)
            assert status == 503 and doc["status"] == "unhealthy"
            assert doc["reasons"] == ["smsc a: no session bound"]
            assert (await http_get(engine.http_address, "/nope"))[0] == 404
    finally:
        await sim.stop()


async def test_two_engines_in_one_process_keep_separate_metrics(tmp_path: Path) -> None:
    cfgs = [make_config(str(tmp_path / f"e{i}.db"), "mqtt://127.0.0.1:1", [smsc("a", 1)]) for i in range(2)]
    one, two = Engine(cfgs[0]), Engine(cfgs[1])
    one.metrics.submit_sent("a", "a/0")
    assert sample(one.metrics.scrape().decode(), "smppengine_submits_total", smsc="a") == 1
    assert sample(two.metrics.scrape().decode(), "smppengine_submits_total", smsc="a") is None
