"""Behind a Mosquitto with its default limits (max_inflight_messages 20, max_queued_messages 1000).

A distribution's Mosquitto drops a client's QoS 1 messages once more than 1,000 wait in its queue, after
it PUBACKed them to the publisher. The engine announces a large MQTT 5 Receive Maximum, so that a burst
flows into its store instead of that queue; on MQTT 3.1.1 it cannot, and says so, and reports the drops
the broker counts in ``$SYS/broker/publish/messages/dropped``.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import orjson
import pytest
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from smppengine import intake as intake_module
from smppengine.broker import Mosquitto
from smppengine.config import MqttConfig
from smppengine.mqtt import MqttLink
from smppengine.simulator import Simulator

from .helpers import FINAL, make_config, running_engine, smsc, wait_bound

BURST = 4000          # well over max_queued_messages + max_inflight_messages (1,020)
BURST_311 = 10_000    # so much more that even a fast engine with a window of 20 cannot take it in time


@pytest.fixture
async def stock_broker(tmp_path: Path) -> AsyncIterator[Mosquitto]:
    """A private mosquitto with Mosquitto's own default limits, as a distribution installs it."""
    (tmp_path / "mqtt").mkdir()
    m = Mosquitto(workdir=str(tmp_path / "mqtt"), stock_limits=True)
    await m.start()
    yield m
    await m.stop()


def request(tag: str, i: int) -> bytes:
    return orjson.dumps({"id": f"{tag}-{i}", "to": "+447700900123", "from": "ACME", "text": f"burst {i}"})


async def burst(broker: Mosquitto, tag: str, n: int) -> None:
    """n requests from mosquitto_pub -l (C, QoS 1, up to 1,000 unacknowledged): faster than the engine takes
    them; it exits once the broker acknowledged every one."""
    binary = shutil.which("mosquitto_pub")
    assert binary, "mosquitto_pub is not installed (apt-get install mosquitto-clients)"
    proc = await asyncio.create_subprocess_exec(
        binary, "-p", str(broker.port), "-q", "1", "-t", "sms/outbound", "-l", "-M", "1000",
        stdin=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(b"".join(request(tag, i) + b"\n" for i in range(n))), 120)
    assert proc.returncode == 0, err.decode(errors="replace")


class Finals:
    """An MQTT 5 subscriber with a wide Receive Maximum (so that the broker drops none of the status events
    it gets), counting final events per id."""

    def __init__(self, broker: Mosquitto) -> None:
        self.port = broker.port
        self.finals: Counter[str] = Counter()
        self.changed = asyncio.Event()
        self.ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Finals:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.ready.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass

    async def _run(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.ReceiveMaximum = 65535
        async with aiomqtt.Client("127.0.0.1", self.port, identifier=f"finals-{uuid.uuid4().hex[:6]}",
                                  protocol=aiomqtt.ProtocolVersion.V5, properties=props) as client:
            await client.subscribe("sms/status/#", qos=1)
            self.ready.set()
            async for m in client.messages:
                doc = orjson.loads(m.payload if isinstance(m.payload, bytes) else str(m.payload).encode())
                if doc.get("state") in FINAL:
                    self.finals[doc["id"]] += 1
                    self.changed.set()

    async def wait_all(self, ids: list[str], timeout: float) -> None:
        async def loop() -> None:
            while not all(i in self.finals for i in ids):
                self.changed.clear()
                await self.changed.wait()

        try:
            await asyncio.wait_for(loop(), timeout)
        except TimeoutError:
            missing = [i for i in ids if i not in self.finals]
            raise AssertionError(f"{len(missing)} of {len(ids)} requests reached no final state, "
                                 f"e.g. {missing[:3]}") from None


async def wait_for(cond: object, timeout: float, what: str) -> None:
    """Poll a condition (a counter another task moves) until it holds."""
    assert callable(cond)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


async def test_a_burst_over_the_broker_queue_limit_reaches_a_final_state_in_full(
        tmp_path: Path, stock_broker: Mosquitto, sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """A burst of 4,000 from a C publisher while the engine runs: all arrive (none dropped by the broker),
    each reaches exactly one final state. The engine commits at most INTAKE_BATCH received requests at a
    time; lowered here so that the burst also goes through the split."""
    monkeypatch.setattr(intake_module, "INTAKE_BATCH", 300)
    cfg = make_config(str(tmp_path / "e.db"), stock_broker.url, [smsc("a", sim.port, tps=100_000, window=100)])
    assert cfg.mqtt.protocol == 5 and cfg.mqtt.receive_maximum == 65535
    tag = uuid.uuid4().hex[:8]
    ids = [f"{tag}-{i}" for i in range(BURST)]
    async with Finals(stock_broker) as finals, running_engine(cfg) as engine:
        await wait_bound(engine)
        sizes: list[int] = []
        accept = engine.store.accept

        async def counted(requests: list[Any], rejections: list[Any], ttl: int) -> Any:
            sizes.append(len(requests) + len(rejections))
            return await accept(requests, rejections, ttl)

        engine.store.accept = counted                    # type: ignore[method-assign]
        await burst(stock_broker, tag, BURST)           # every one PUBACKed by the broker: "accepted"
        await finals.wait_all(ids, timeout=180)
        assert engine.counters["requests"] == BURST
        assert engine.link.broker_dropped in (None, 0)
    assert sum(sizes) == BURST and max(sizes) <= 300
    assert [i for i in ids if finals.finals[i] != 1] == []         # one final each, none twice
    assert len(sim.submits) == BURST


async def test_mqtt311_warns_of_the_broker_limits_and_reports_what_the_broker_dropped(
        tmp_path: Path, stock_broker: Mosquitto, sim: Simulator) -> None:
    """MQTT 3.1.1 has no Receive Maximum: the broker's in-flight window of 20 applies, a burst piles up in
    its queue and it drops what passes 1,000. The engine warns at start, naming the limits and the broker
    settings, and reports the broker's count of dropped messages in the log and in /metrics; with no other
    client on the broker, what arrived plus what the broker dropped is the whole burst."""
    cfg = make_config(str(tmp_path / "e.db"), stock_broker.url, [smsc("a", sim.port, tps=100_000, window=100)],
                      mqtt={"protocol": 4})
    tag = uuid.uuid4().hex[:8]
    with structlog.testing.capture_logs() as logs:
        async with running_engine(cfg) as engine:
            warning = [e for e in logs if e["event"] == "mqtt_no_receive_maximum"]
            assert len(warning) == 1 and warning[0]["log_level"] == "warning"
            for words in ("max_inflight_messages", "max_queued_messages", "drops"):
                assert words in warning[0]["limits"], warning[0]
            assert "protocol = 5" in warning[0]["hint"]
            await wait_bound(engine)
            await burst(stock_broker, tag, BURST_311)
            # the broker publishes its counter every sys_interval (10 s by default)
            await wait_for(lambda: (engine.link.broker_dropped or 0) + engine.counters["requests"] == BURST_311
                           and engine.link.broker_dropped, 60,
                           "the requests taken plus the broker's count of dropped ones to make the burst")
            dropped = engine.link.broker_dropped
            assert dropped is not None and dropped > 0
            scraped = engine.metrics.scrape().decode()
            assert f"smppengine_mqtt_broker_dropped {float(dropped)}" in scraped
    reports = [e for e in logs if e["event"] == "broker_dropped_messages"]
    assert reports and reports[-1]["total"] == dropped and sum(r["dropped"] for r in reports) == dropped
    assert reports[0]["log_level"] == "warning"


async def test_connect_announces_the_configured_receive_maximum() -> None:
    link = MqttLink(MqttConfig(receive_maximum=777), "x", lambda m: None)
    client, _ = link._make_client()
    assert client._properties is not None and client._properties.ReceiveMaximum == 777
    link4 = MqttLink(MqttConfig(protocol=4), "x", lambda m: None)
    client4, _ = link4._make_client()
    assert client4._properties is None                 # MQTT 3.1.1: no properties at all


def test_bench_e2e_behind_a_stock_broker_with_the_c_publisher_loses_nothing() -> None:
    """bench/e2e.py --stock-broker --c-publisher (the figures in docs/performance.md) runs and loses nothing
    with a burst over the stock queue limit."""
    import json
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, "bench/e2e.py", "--n", "1500", "--ceiling-n", "0", "--stock-broker",
                           "--c-publisher", "--timeout", "100"],
                          cwd=root, capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (doc["broker"], doc["publisher"]) == ("stock limits", "mosquitto_pub")
    assert doc["lost"] == 0 and doc["duplicates"] == 0 and doc["states"]["queued"] == 1500
    assert doc["full_life_msg_s"] > 0 and doc["queued_msg_s"] > 0
