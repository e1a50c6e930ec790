"""Wiring: MQTT intake → store (group commit, then PUBACK) → dispatcher → SMSC clients;
deliver_sm → receipts / MO → store (commit, then deliver_sm_resp) → outbox publisher."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
from collections.abc import Coroutine
from typing import Any

import structlog

from . import text
from .config import Config, SmscConfig
from .http import serve as serve_http
from .ingress import parse_request
from .metrics import Metrics
from .model import QUEUED, RETRYING, Rejection, Request
from .mqtt import Incoming, MqttLink
from .optout_runtime import OptOutRuntime
from .publisher import Publisher
from .receipts import Receipt, is_receipt, parse_receipt
from .reload import ReloadPlan, effective, plan
from .router import Router
from .smpp import pdu as P
from .smpp.client import SmscClient
from .smpp.session import Session
from .store import Active, Store, StoreError, open_store
from .tlvs import event_tlvs

log = structlog.get_logger(__name__)

# Messages the dispatcher holds in memory (queued, in flight, waiting for a retry); beyond that a backlog
# stays in the store and is paged back in arrival order (bounds memory: about 2 KB each).
BACKLOG_HIGH_WATER = 20_000
# Requests parsed and committed per accept. Those received beyond it wait as they came (~0.3 KB each with
# a small payload; parsing adds ~0.45 KB, more with long text or meta): with a Receive Maximum of 65,535
# the broker may send that many at once, e.g. a backlog at connect.
INTAKE_BATCH = 5_000


class Engine:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.store: Store = open_store(config.engine.store, config.mqtt.topic_prefix, config.engine.instance,
                                       config.engine.lease_s)
        self.metrics = Metrics()
        self.clients = {s.name: self._new_client(s) for s in config.smsc}
        self.router = Router(config.route, [s.name for s in config.smsc])
        from .dispatcher import Dispatcher

        self.dispatcher = Dispatcher(self.store, self.clients, self.router, config.retry,
                                     high_water=BACKLOG_HIGH_WATER)
        self.dispatcher.metrics = self.metrics
        self.optouts = OptOutRuntime(self.store, self.dispatcher)    # compliance: opt-out cache + replies
        self.dispatcher.optouts = self.optouts.cache
        self.metrics.attach(self)
        self.link = MqttLink(config.mqtt, config.engine.instance, self._on_request)
        self.publisher = Publisher(self.store, self.link)
        self._intake: list[tuple[Incoming, float]] = []       # received, not yet committed: (message, time)
        self._intake_wake = asyncio.Event()
        self._accepting = True
        self._tasks: list[asyncio.Task[Any]] = []
        self.ready = asyncio.Event()
        self.counters: dict[str, int] = {"requests": 0, "duplicates": 0, "receipts": 0, "receipts_held": 0,
                                         "receipts_unparsable": 0, "mo": 0}
        self.http_server: asyncio.Server | None = None
        self.stats_interval = 5.0          # seconds between refreshes of the store's queue-depth gauges
        self._reload_lock = asyncio.Lock()

    def _share(self, cfg: SmscConfig) -> SmscConfig:
        """The SMSC as this instance uses it: ``tps`` is the whole account's, split evenly over the
        ``engine.instances`` instances that bind it (static split, docs/scaling.md)."""
        n = self.config.engine.instances
        return cfg if n <= 1 else dataclasses.replace(cfg, tps=cfg.tps / n)

    def _new_client(self, cfg: SmscConfig) -> SmscClient:
        client = SmscClient(self._share(cfg), self._on_deliver)
        client.metrics = self.metrics
        return client

    @property
    def http_address(self) -> tuple[str, int] | None:
        """(host, port) the HTTP endpoint listens on (the real port when the config said 0), or None."""
        if self.http_server is None or not self.http_server.sockets:
            return None
        host, port = self.http_server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        await self.store.open()
        await self.optouts.load()
        if self.store.shared:           # take this instance's lease, and what dead instances left
            self.store.on_reconnect = self.dispatcher.spill
            await self.store.heartbeat()
            self._dispatch_recovered(await self.store.claim_orphans())
        self.dispatcher.spill()         # what is stored and not final is paged in, oldest first
        if not self.store.shared and self.config.mqtt.share_group:
            # per-instance SQLite stores: a receipt correlates only on the instance that submitted the message
            log.warning("shared_stream_with_local_store", share_group=self.config.mqtt.share_group,
                        smsc=list(self.clients),
                        hint="bind each SMSC account from one instance only, or use a shared PostgreSQL store")
        for c in self.clients.values():
            c.start()
        self._tasks = [
            asyncio.create_task(self.dispatcher.run(), name="dispatcher"),
            asyncio.create_task(self.dispatcher.refill(), name="refill"),
            asyncio.create_task(self._intake_loop(), name="intake"),
            asyncio.create_task(self.link.run(), name="mqtt"),
            asyncio.create_task(self.publisher.run(), name="publisher"),
            asyncio.create_task(self._stats_loop(), name="stats"),
            asyncio.create_task(self.optouts.watch(), name="optouts"),
        ]
        if self.store.shared:
            self._tasks.append(asyncio.create_task(self._heartbeat_loop(), name="heartbeat"))
            self._tasks.append(asyncio.create_task(self._lease_loop(), name="lease"))
        if self.config.http.address is not None:
            self.http_server = await serve_http(self, *self.config.http.address)
        await self.link.connected.wait()
        self.ready.set()
        log.info("engine_ready", instance=self.config.engine.instance, smsc=list(self.clients),
                 topic=self.link.request_topic)

    async def stop(self, grace: float = 10.0) -> None:
        """Stop taking requests, let in-flight submits finish (bounded), unbind, flush events, go offline."""
        log.info("engine_stopping")
        self._accepting = False
        if self.http_server is not None:
            self.http_server.close()
        self.dispatcher.stopping = True       # nothing new leaves; what is in flight gets its resp (bounded)
        for c in self.clients.values():
            c.halt()
        await self.dispatcher.drain(grace)
        await asyncio.gather(*(c.stop() for c in self.clients.values()))
        await self.dispatcher.drain(min(grace, 5.0))   # resps that came after the unbind are stored too
        if self.link.connected.is_set():      # (not when stopped while the start waited for the broker)
            await self.publisher.flush(min(grace, 5.0))
        await self.link.stop()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.store.shared:
            try:
                await self.store.release()     # the other instances take what is left over at once
            except StoreError as exc:
                log.warning("lease_release_failed", error=str(exc))
        await self.store.close()
        log.info("engine_stopped")

    # ------------------------------------------------------------------ requests
    def _on_request(self, msg: Incoming) -> None:
        if not self._accepting:
            return              # not acknowledged: the broker keeps it for the next run
        self._intake.append((msg, time.time()))
        self._intake_wake.set()

    async def _intake_loop(self) -> None:
        while True:
            await self._intake_wake.wait()
            self._intake_wake.clear()
            default_ttl = self.config.engine.default_ttl       # read per batch: a reload may change it
            if len(self._intake) > INTAKE_BATCH:
                received, self._intake = self._intake[:INTAKE_BATCH], self._intake[INTAKE_BATCH:]
                self._intake_wake.set()                          # the rest in the next commit
            else:
                received, self._intake = self._intake, []
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
                self._intake = received + self._intake
                await asyncio.sleep(1.0)
                self._intake_wake.set()
                continue
            self.link.ack([msg for _, msg in batch])
            self.counters["requests"] += len(batch)
            self.counters["duplicates"] += len(result.duplicates)
            self.metrics.requests.labels("accepted").inc(len(result.new))
            self.metrics.requests.labels("duplicate").inc(len(result.duplicates))
            self.metrics.requests.labels("rejected").inc(len(rejections))
            for dup in result.duplicates:
                log.info("duplicate_request", msg_id=dup)
            for rej in rejections:
                log.info("request_rejected", msg_id=rej.id, error=rej.detail)
            for req in result.new:
                ttl_at = req.received_at + (req.ttl or default_ttl)
                self.dispatcher.offer(Active(req, QUEUED, ttl_at=ttl_at))

    # ------------------------------------------------------------------ deliver_sm
    def _on_deliver(self, session: Session, pdu: P.Pdu) -> int | asyncio.Future[Any] | Coroutine[Any, Any, int]:
        """A deliver_sm: a receipt is correlated through the store (a future: the session answers once it is
        committed); an MO is stored by :meth:`_on_mo`."""
        params = pdu.params
        smsc = session.smsc
        esm = int(params.get("esm_class", 0))
        if not is_receipt(esm, params):
            return self._on_mo(session, pdu)
        try:
            receipt = parse_receipt(params.get("short_message", b"") or b"", params)
        except ValueError as exc:
            self.counters["receipts_unparsable"] += 1
            self.metrics.receipt(smsc.name, "", "", "unparsable")
            log.warning("receipt_unparsable", smsc=smsc.name, session=session.id, seq=pdu.seq, error=str(exc))
            return 0
        client = self.clients.get(smsc.name)
        if client is not None and not client.resp_known(receipt.message_id):
            return self._receipt_after_resp(client, smsc.name, receipt)   # it overtook its resp: wait for it
        return self._store_receipt(smsc.name, receipt)

    def _receipt_after_resp(self, client: SmscClient, smsc: str, receipt: Receipt) -> asyncio.Future[str]:
        """Store the receipt once its resp was handled; callbacks, not a task (the usual receipt on a busy
        bind arrives in the same read as its resp, before the sender has stored that resp)."""
        out: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def stored(fut: asyncio.Future[str]) -> None:
            if out.done():
                return
            if fut.cancelled():
                out.cancel()
            elif (exc := fut.exception()) is not None:
                out.set_exception(exc)
            else:
                out.set_result(fut.result())

        def seen(_: asyncio.Future[None]) -> None:
            if not out.done():
                self._store_receipt(smsc, receipt).add_done_callback(stored)

        client.resp_seen(receipt.message_id).add_done_callback(seen)
        return out

    def _store_receipt(self, smsc: str, receipt: Receipt) -> asyncio.Future[str]:
        fut = self.store.receipt_nowait(smsc, receipt)
        fut.add_done_callback(functools.partial(self._receipt_stored, smsc, receipt))
        return fut

    def _receipt_stored(self, smsc: str, receipt: Receipt, fut: asyncio.Future[str]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            return                          # the session answers ESME_RSYSERR and logs it
        outcome = fut.result()
        self.counters["receipts"] += 1
        self.metrics.receipt(smsc, receipt.message_id, receipt.stat, outcome)
        if outcome == "held":
            self.counters["receipts_held"] += 1
            log.info("receipt_held", smsc=smsc, smsc_message_id=receipt.message_id, stat=receipt.stat)
        elif outcome == "late":
            log.info("receipt_late", smsc=smsc, smsc_message_id=receipt.message_id, stat=receipt.stat)

    async def _on_mo(self, session: Session, pdu: P.Pdu) -> int:
        params = pdu.params
        smsc = session.smsc
        esm = int(params.get("esm_class", 0))
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
                                  concat, smsc.default_alphabet, self.config.compliance,
                                  tlvs=event_tlvs(params))
        self.counters["mo"] += 1
        self.metrics.mo.labels(smsc.name).inc()
        if msg is not None:
            log.info("mo_received", smsc=smsc.name, session=session.id, mo_id=msg["id"])
            await self.optouts.on_mo(msg, self.config.compliance, self.config.engine.default_ttl)
        return 0

    # ------------------------------------------------------------------ several instances (shared store)
    def _dispatch_recovered(self, items: list[Active]) -> None:
        now = time.time()
        for a in items:
            delay = (a.next_attempt_at - now) if (a.state == RETRYING and a.next_attempt_at) else 0.0
            self.dispatcher.enqueue(a, delay)

    async def _heartbeat_loop(self) -> None:
        """Shared store: renew this instance's liveness lease every min(1 s, lease_s / 3), on its own: behind a
        takeover or a re-match in the same loop, a renewal came late on a busy host and the lease lapsed
        (measured with lease_s = 2 s: all three instances of tests/test_scale_out.py lapsed, 5,004 messages
        moved between live instances)."""
        tick = min(1.0, self.config.engine.lease_s / 3)
        while True:
            await asyncio.sleep(tick)
            try:
                await self.store.heartbeat()
            except Exception as exc:  # a failing store must not end the loop; fencing protects meanwhile
                log.warning("lease_renewal_failed", error=str(exc))

    async def _lease_loop(self) -> None:
        """Shared store: take over the messages (and unpublished events) of instances whose lease expired --
        the same path as recovery at start -- and apply receipts that raced another instance's commit of their
        submit_sm_resp. Every min(1 s, lease_s / 3)."""
        tick = min(1.0, self.config.engine.lease_s / 3)
        while True:
            await asyncio.sleep(tick)
            try:
                claimed = await self.store.claim_orphans()
                if claimed:
                    self._dispatch_recovered(claimed)
                    self.counters["claimed"] = self.counters.get("claimed", 0) + len(claimed)
                    log.info("orphans_claimed", instance=self.config.engine.instance, messages=len(claimed))
                await self.store.rematch_held()
            except Exception as exc:  # a failing store must not end the loop
                log.warning("takeover_failed", error=str(exc))

    # ------------------------------------------------------------------ housekeeping
    async def _stats_loop(self) -> None:
        """Refresh the store's queue-depth gauges every few seconds (store.stats is too slow per scrape)."""
        while True:
            try:
                # since=now: the "last hour's outcomes" part of stats() finds nothing and costs nothing
                self.metrics.store_stats(await self.store.stats(time.time()))
            except Exception as exc:  # a busy or failing store must not end the loop
                log.warning("stats_refresh_failed", error=str(exc))
            await asyncio.sleep(self.stats_interval)

    def status_line(self) -> str:
        """One line for systemd's STATUS= (``systemctl status``)."""
        binds = ", ".join(f"{n} {c.bound_sessions}/{c.cfg.binds * (1 if c.cfg.bind == 'transceiver' else 2)}"
                          for n, c in self.clients.items())
        mqtt = "connected" if self.link.connected.is_set() else "DISCONNECTED"
        return f"bound: {binds}; backlog {self.dispatcher.backlog}; mqtt {mqtt}"

    # ------------------------------------------------------------------ reload (SIGHUP)
    async def reload(self, new: Config) -> ReloadPlan:
        """Apply a new, already validated config (see reload.py): changed SMSCs are rebound, unchanged
        binds stay up, a tps-only change applies in place; routes, retry and default_ttl at once."""
        async with self._reload_lock:
            p = plan(self.config, new)
            self.config = effective(self.config, new)
            for s in p.update:
                client = self.clients[s.name]
                client.cfg = self._share(s)
                client.set_tps(client.cfg.tps)
            retired: list[SmscClient] = []
            for s in p.add + p.rebind:
                old = self.clients.get(s.name)
                client = self._new_client(s)
                if old is not None:
                    client.reconnects, client.throttle_pauses = old.reconnects, old.throttle_pauses
                    retired.append(old)
                self.clients[s.name] = client          # the dispatcher shares this dict
                client.start()
            for name in p.remove:
                retired.append(self.clients.pop(name))
            if p.routes:
                self.router = Router(self.config.route, [s.name for s in self.config.smsc])
                self.dispatcher.router = self.router
            if p.retry:
                self.dispatcher.policy = self.config.retry        # the policy, built when the file was parsed
            # old clients finish what they have in flight (bounded), then unbind
            await asyncio.gather(*(c.retire(c.cfg.response_timeout_s) for c in retired))
            log.info("config_reloaded", path=new.path, **p.summary())
            if p.restart_needed:
                log.warning("config_reload_restart_needed", keys=list(p.restart_needed))
            return p

