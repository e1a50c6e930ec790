"""Prometheus metrics of one engine.

Each Engine owns a ``Metrics`` with its own ``CollectorRegistry`` (not the process-wide default), so
several engines in one process (the tests do this) never collide, and ``/metrics`` shows exactly one
engine. Three kinds of values:

* counters and histograms bumped where things happen (dispatcher, SMSC client, engine);
* live gauges read at scrape time (binds, windows, rates, backlog) from the engine's narrow view
  (view.EngineView) by a custom collector, so nothing has to keep them up to date;
* the store's queue depth, refreshed every few seconds by the engine (too slow for every scrape).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .receipts import FINAL_STATE, receipt_id_keys
from .smpp.status import status_name
from .view import EngineView

# publish → submit_sm_resp OK: from milliseconds (idle engine) to minutes (throttled, retried)
SUBMIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)
# submit_sm_resp OK → final receipt: seconds to days
RECEIPT_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)
RATE_WINDOW_S = 5            # tps_current averages over this many whole seconds
LATENCY_MEMORY = 200_000     # SMSC message id keys remembered for the receipt latency histogram


class Metrics:
    def __init__(self, live: EngineView | None = None) -> None:
        """``live``: what the live gauges read at scrape time (the engine; None: no live gauges)."""
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.requests = Counter("smppengine_requests", "Requests committed from MQTT, by result",
                                ["result"], registry=r)
        self.submits = Counter("smppengine_submits", "submit_sm sent", ["smsc", "session"], registry=r)
        self.resps = Counter("smppengine_submit_resps", "submit_sm_resp (or generic_nack) received, by command_status",
                             ["smsc", "session", "command_status"], registry=r)
        self.receipts = Counter("smppengine_receipts", "Delivery receipts received, by stat and correlation result "
                                "(matched, held = no submit known yet, late = message already final, unparsable)",
                                ["smsc", "stat", "result"], registry=r)
        self.mo = Counter("smppengine_mo", "MO messages (or MO parts) received", ["smsc"], registry=r)
        self.submit_latency = Histogram(
            "smppengine_submit_latency_seconds", "From the request's arrival to the OK submit_sm_resp of a part",
            ["smsc"], buckets=SUBMIT_BUCKETS, registry=r)
        self.receipt_latency = Histogram(
            "smppengine_receipt_latency_seconds", "From the OK submit_sm_resp of a part to its final receipt",
            ["smsc"], buckets=RECEIPT_BUCKETS, registry=r)
        self.queue = Gauge("smppengine_queue_depth", "Messages not yet final in the store, by state and SMSC "
                           "(refreshed every few seconds)", ["state", "smsc"], registry=r)
        self.outbox = Gauge("smppengine_outbox_depth", "Status/MO events committed but not yet acknowledged by the "
                            "broker (refreshed every few seconds)", registry=r)
        self.held_receipts = Gauge("smppengine_receipts_held", "Receipts waiting for their submit_sm_resp to be "
                                   "stored (refreshed every few seconds)", registry=r)
        self._rates: dict[str, list[list[int]]] = {}       # smsc -> [[second, count], ...]
        self._sent_at: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._queue_labels: set[tuple[str, str]] = set()
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._live = live
        r.register(_LiveCollector(self))

    def scrape(self) -> bytes:
        return generate_latest(self.registry)

    # ------------------------------------------------------------------ events
    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, looked up once: prometheus_client's labels() costs a few µs, and the
        hot path calls it several times per message."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def submit_sent(self, smsc: str, session: str) -> None:
        self._child(self.submits, smsc, session).inc()
        sec = int(time.monotonic())
        buckets = self._rates.setdefault(smsc, [])
        if buckets and buckets[-1][0] == sec:
            buckets[-1][1] += 1
        else:
            buckets.append([sec, 1])
            if len(buckets) > RATE_WINDOW_S + 1:
                del buckets[0]

    def resp(self, smsc: str, session: str, command: str, status: int) -> None:
        name = "generic_nack" if command == "generic_nack" else status_name(status)
        self._child(self.resps, smsc, session, name).inc()

    def part_submitted(self, smsc: str, smsc_message_id: str, received_at: float) -> None:
        now = time.time()
        if received_at > 0:
            self._child(self.submit_latency, smsc).observe(max(0.0, now - received_at))
        for key in receipt_id_keys(smsc_message_id):
            self._sent_at[(smsc, key)] = now
        while len(self._sent_at) > LATENCY_MEMORY:
            self._sent_at.popitem(last=False)

    def receipt(self, smsc: str, smsc_message_id: str, stat: str, result: str) -> None:
        self._child(self.receipts, smsc, stat, result).inc()
        if result != "matched" or FINAL_STATE.get(stat) == "enroute":
            return
        keys = receipt_id_keys(smsc_message_id)
        sent = next((self._sent_at[(smsc, k)] for k in keys if (smsc, k) in self._sent_at), None)
        if sent is None:
            return       # submitted before this process started: no latency to report
        self._child(self.receipt_latency, smsc).observe(max(0.0, time.time() - sent))
        for k in keys:
            self._sent_at.pop((smsc, k), None)

    def store_stats(self, stats: dict[str, Any]) -> None:
        """Refresh the queue gauges from ``store.stats()``; states that emptied go back to 0."""
        seen: set[tuple[str, str]] = set()
        for row in stats.get("queue", []):
            key = (str(row["state"]), str(row["smsc"] or ""))
            seen.add(key)
            self.queue.labels(*key).set(int(row["count"]))
        for key in self._queue_labels - seen:
            self.queue.labels(*key).set(0)
        self._queue_labels |= seen
        self.outbox.set(int(stats.get("outbox", 0)))
        self.held_receipts.set(int(stats.get("held_receipts", 0)))

    def tps_current(self, smsc: str) -> float:
        """submit_sm per second over the last RATE_WINDOW_S whole seconds."""
        now = int(time.monotonic())
        buckets = self._rates.get(smsc, [])
        return sum(n for sec, n in buckets if now - RATE_WINDOW_S <= sec < now) / RATE_WINDOW_S


class _LiveCollector:
    """Gauges read from the engine at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics

    def collect(self) -> Iterator[Metric]:
        engine = self.m._live
        if engine is None:
            return
        bound = GaugeMetricFamily("smppengine_sessions_bound", "SMPP sessions bound", labels=["smsc"])
        wanted = GaugeMetricFamily("smppengine_sessions_configured", "SMPP sessions configured (binds x modes)",
                                   labels=["smsc"])
        window = GaugeMetricFamily("smppengine_window_in_use", "submit_sm awaiting their resp (slots taken)",
                                   labels=["smsc", "session"])
        size = GaugeMetricFamily("smppengine_window_size", "Configured window per session",
                                 labels=["smsc", "session"])
        tps_cfg = GaugeMetricFamily("smppengine_tps_configured", "Configured tps", labels=["smsc"])
        tps_allowed = GaugeMetricFamily("smppengine_tps_allowed", "tps allowed now (lowered after throttling)",
                                        labels=["smsc"])
        tps_now = GaugeMetricFamily("smppengine_tps_current", f"submit_sm per second over the last {RATE_WINDOW_S}s",
                                    labels=["smsc"])
        paused = GaugeMetricFamily("smppengine_throttle_paused", "1 while the SMSC is paused after a throttle",
                                   labels=["smsc"])
        pauses = CounterMetricFamily("smppengine_throttle_pauses", "Throttle responses (ESME_RTHROTTLED, "
                                     "ESME_RMSGQFUL) that paused the SMSC", labels=["smsc"])
        reconnects = CounterMetricFamily("smppengine_reconnects", "Sessions lost and reconnected", labels=["smsc"])
        mono = time.monotonic()
        for name, c in engine.smscs.items():
            bound.add_metric([name], c.bound_sessions)
            wanted.add_metric([name], c.configured_sessions)
            for s in c.sessions:
                if s.can_submit:
                    window.add_metric([name, s.id], s.reserved)
                    size.add_metric([name, s.id], s.window)
            tps_cfg.add_metric([name], c.cfg.tps)
            tps_allowed.add_metric([name], c.adaptive.rate)
            tps_now.add_metric([name], self.m.tps_current(name))
            paused.add_metric([name], 1.0 if c.adaptive.paused_until() > mono else 0.0)
            pauses.add_metric([name], c.throttle_pauses)
            reconnects.add_metric([name], c.reconnects)
        yield from (bound, wanted, window, size, tps_cfg, tps_allowed, tps_now, paused, pauses, reconnects)
        yield GaugeMetricFamily("smppengine_dispatcher_backlog", "Messages queued, being sent or waiting for a "
                                "retry in the dispatcher", value=engine.backlog)
        yield GaugeMetricFamily("smppengine_mqtt_connected", "1 while connected to the MQTT broker",
                                value=1.0 if engine.mqtt_connected else 0.0)
        yield CounterMetricFamily("smppengine_mqtt_reconnects", "MQTT connections lost", value=engine.mqtt_reconnects)
        dropped = engine.broker_dropped
        if dropped is not None:
            yield GaugeMetricFamily("smppengine_mqtt_broker_dropped", "QoS 1/2 messages the broker says it dropped "
                                    "since it started, all clients ($SYS/broker/publish/messages/dropped; "
                                    "Mosquitto, every sys_interval)", value=dropped)
        yield CounterMetricFamily("smppengine_events_published", "Status and MO events published (PUBACKed)",
                                  value=engine.events_published)
