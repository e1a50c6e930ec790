"""Wiring: MQTT intake → store (group commit, then PUBACK) → dispatcher → SMSC clients;
deliver_sm → receipts / MO → store (commit, then deliver_sm_resp) → outbox publisher."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog

from . import text
from .config import Config
from .ingress import parse_request
from .model import QUEUED, RETRYING, Rejection, Request
from .mqtt import Incoming, MqttLink
from .publisher import Publisher
from .receipts import is_receipt, parse_receipt
from .retry import RetryPolicy
from .router import Router
from .smpp import pdu as P
from .smpp.client import SmscClient
from .smpp.session import Session
from .store import Active, Store, StoreError, open_store

log = structlog.get_logger(__name__)


class Engine:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.store: Store = open_store(config.engine.store, config.mqtt.topic_prefix)
        self.clients = {s.name: SmscClient(s, self._on_deliver) for s in config.smsc}
        self.router = Router(config.route, [s.name for s in config.smsc])
        r = config.retry
        from .dispatcher import Dispatcher

        self.dispatcher = Dispatcher(self.store, self.clients, self.router,
                                     RetryPolicy(r.max_attempts, r.backoff_initial, r.backoff_max))
        self.link = MqttLink(config.mqtt, config.engine.instance, self._on_request)
        self.publisher = Publisher(self.store, self.link)
        self._intake: list[tuple[Request | Rejection, Incoming]] = []
        self._intake_wake = asyncio.Event()
        self._accepting = True
        self._tasks: list[asyncio.Task[Any]] = []
        self.ready = asyncio.Event()
        self.counters: dict[str, int] = {"requests": 0, "duplicates": 0, "receipts": 0, "receipts_held": 0,
                                         "receipts_unparsable": 0, "mo": 0}

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        await self.store.open()
        recovered = await self.store.recover()
        now = time.time()
        for a in recovered:
            delay = (a.next_attempt_at - now) if (a.state == RETRYING and a.next_attempt_at) else 0.0
            self.dispatcher.enqueue(a, delay)
        if recovered:
            log.info("recovered", messages=len(recovered))
        for c in self.clients.values():
            c.start()
        self._tasks = [
            asyncio.create_task(self.dispatcher.run(), name="dispatcher"),
            asyncio.create_task(self._intake_loop(), name="intake"),
            asyncio.create_task(self.link.run(), name="mqtt"),
            asyncio.create_task(self.publisher.run(), name="publisher"),
        ]
        await self.link.connected.wait()
        self.ready.set()
        log.info("engine_ready", instance=self.config.engine.instance, smsc=list(self.clients),
                 topic=self.link.request_topic)

    async def stop(self, grace: float = 10.0) -> None:
        """Stop taking requests, let in-flight submits finish (bounded), unbind, flush events, go offline."""
        log.info("engine_stopping")
        self._accepting = False
        await self.dispatcher.drain(grace)
        await asyncio.gather(*(c.stop() for c in self.clients.values()))
        await self.publisher.flush(min(grace, 5.0))
        await self.link.stop()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.store.close()
        log.info("engine_stopped")

    # ------------------------------------------------------------------ requests
    def _on_request(self, msg: Incoming) -> None:
        if not self._accepting:
            return              # not acknowledged: the broker keeps it for the next run
        self._intake.append((parse_request(msg.payload), msg))
        self._intake_wake.set()

    async def _intake_loop(self) -> None:
        default_ttl = self.config.engine.default_ttl
        while True:
            await self._intake_wake.wait()
            self._intake_wake.clear()
            batch, self._intake = self._intake, []
            if not batch:
                continue
            requests = [r for r, _ in batch if isinstance(r, Request)]
            rejections = [r for r, _ in batch if isinstance(r, Rejection)]
            try:
                result = await self.store.accept(requests, rejections, default_ttl)
            except StoreError as exc:
                # nothing acknowledged: the broker keeps the requests; try again shortly
                log.error("requests_not_committed", error=str(exc), count=len(batch))
                self._intake = batch + self._intake
                await asyncio.sleep(1.0)
                self._intake_wake.set()
                continue
            for _, msg in batch:
                self.link.ack(msg)
            self.counters["requests"] += len(batch)
            self.counters["duplicates"] += len(result.duplicates)
            for dup in result.duplicates:
                log.info("duplicate_request", msg_id=dup)
            for rej in rejections:
                log.info("request_rejected", msg_id=rej.id, error=rej.detail)
            for req in result.new:
                ttl_at = req.received_at + (req.ttl or default_ttl)
                self.dispatcher.enqueue(Active(req, QUEUED, ttl_at=ttl_at))

    # ------------------------------------------------------------------ deliver_sm
    async def _on_deliver(self, session: Session, pdu: P.Pdu) -> int:
        params = pdu.params
        smsc = session.smsc
        esm = int(params.get("esm_class", 0))
        if is_receipt(esm, params):
            try:
                receipt = parse_receipt(params.get("short_message", b"") or b"", params)
            except ValueError as exc:
                self.counters["receipts_unparsable"] += 1
                log.warning("receipt_unparsable", smsc=smsc.name, session=session.id, seq=pdu.seq, error=str(exc))
                return 0
            outcome = await self.store.receipt(smsc.name, receipt)
            self.counters["receipts"] += 1
            if outcome == "held":
                self.counters["receipts_held"] += 1
                log.info("receipt_held", smsc=smsc.name, smsc_message_id=receipt.message_id, stat=receipt.stat)
            elif outcome == "late":
                log.info("receipt_late", smsc=smsc.name, smsc_message_id=receipt.message_id, stat=receipt.stat)
            return 0
        data = params.get("short_message") or params.get("message_payload") or b""
        concat: tuple[int, int, int] | None = None
        if esm & 0x40:
            info, data = text.split_udh(data)
            if info is not None:
                concat = (info.ref, info.total, info.seq)
        elif "sar_msg_ref_num" in params and "sar_total_segments" in params:
            concat = (int(params["sar_msg_ref_num"]), int(params["sar_total_segments"]),
                      int(params.get("sar_segment_seqnum", 1)))
        if concat is not None and concat[1] <= 1:
            concat = None
        msg = await self.store.mo(smsc.name, str(params.get("source_addr", "")),
                                  str(params.get("destination_addr", "")), data, int(params.get("data_coding", 0)),
                                  concat, smsc.default_alphabet)
        self.counters["mo"] += 1
        if msg is not None:
            log.info("mo_received", smsc=smsc.name, session=session.id, mo_id=msg["id"])
        return 0


async def run_engine(config: Config, stop: asyncio.Event) -> None:
    """Run until `stop` is set, then shut down cleanly."""
    engine = Engine(config)
    try:
        await engine.start()
    except StoreError as exc:
        log.error("engine_start_failed", error=str(exc))
        raise
    await stop.wait()
    await engine.stop()
