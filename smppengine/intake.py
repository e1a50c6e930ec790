"""MQTT requests in: parsed (ingress.parse_request), committed in batches (store.accept: one group commit),
acknowledged to the broker only after the commit (PUBACK), then offered to the dispatcher.

A request the engine received but has not committed is not acknowledged: after a crash or a stop the broker
sends it again (persistent session).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog

from .ingress import parse_request
from .metrics import Metrics
from .model import QUEUED, Rejection, Request
from .mqtt import Incoming
from .store import Active, Store, StoreError

log = structlog.get_logger(__name__)

# Requests parsed and committed per accept. Those received beyond it wait as they came (~0.3 KB each with
# a small payload; parsing adds ~0.45 KB, more with long text or meta): with a Receive Maximum of 65,535
# the broker may send that many at once, e.g. a backlog at connect.
INTAKE_BATCH = 5_000


class Intake:
    """``on_request`` is the MQTT link's callback; :meth:`run` commits what came, ``ack`` (MqttLink.ack) sends
    the PUBACKs of a committed batch, ``offer`` (Dispatcher.offer) takes each new message. ``default_ttl``: the
    current [engine] default_ttl (a reload may change it); ``counters``: the engine's (requests, duplicates)."""

    def __init__(self, store: Store, offer: Callable[[Active], None], metrics: Metrics,
                 default_ttl: Callable[[], int], counters: dict[str, int]) -> None:
        self.store = store
        self._offer = offer
        self.metrics = metrics
        self.default_ttl = default_ttl
        self.counters = counters
        self._received: list[tuple[Incoming, float]] = []      # received, not yet committed: (message, time)
        self._wake = asyncio.Event()
        self._accepting = True

    def on_request(self, msg: Incoming) -> None:
        if not self._accepting:
            return              # not acknowledged: the broker keeps it for the next run
        self._received.append((msg, time.time()))
        self._wake.set()

    def close(self) -> None:
        """Stop taking requests (shutdown): those that come now are not acknowledged."""
        self._accepting = False

    async def run(self, ack: Callable[[list[Incoming]], None]) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            default_ttl = self.default_ttl()                   # read per batch: a reload may change it
            if len(self._received) > INTAKE_BATCH:
                received, self._received = self._received[:INTAKE_BATCH], self._received[INTAKE_BATCH:]
                self._wake.set()                               # the rest in the next commit
            else:
                received, self._received = self._received, []
            if not received:
                continue
            batch = [(parse_request(msg.payload, at), msg) for msg, at in received]
            requests = [r for r, _ in batch if isinstance(r, Request)]
            rejections = [r for r, _ in batch if isinstance(r, Rejection)]
            try:
                result = await self.store.accept(requests, rejections, default_ttl)
            except StoreError as exc:
                # nothing acknowledged: the broker keeps the requests; try again shortly
                log.error("requests_not_committed", error=str(exc), count=len(batch))
                self._received = received + self._received
                await asyncio.sleep(1.0)
                self._wake.set()
                continue
            ack([msg for _, msg in batch])
            self.counters["requests"] += len(batch)
            self.counters["duplicates"] += len(result.duplicates)
            self.metrics.requests.labels("accepted").inc(len(result.new))
            self.metrics.requests.labels("duplicate").inc(len(result.duplicates))
            self.metrics.requests.labels("rejected").inc(len(rejections))
            for dup in result.duplicates:
                log.info("duplicate_request", msg_id=dup)
            for rej in rejections:
                log.info("request_rejected", msg_id=rej.id, error=rej.detail)
            offer = self._offer
            for req in result.new:
                offer(Active(req, QUEUED, ttl_at=req.received_at + (req.ttl or default_ttl)))
