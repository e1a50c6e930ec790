"""Wiring and lifecycle: MQTT intake → store (group commit, then PUBACK) → dispatcher → SMSC clients;
deliver_sm → deliver.py (receipt / MO) → store (commit, then deliver_sm_resp) → outbox publisher.

The engine builds its parts, each given what it needs in its constructor, starts and stops them, and
applies a reload. The narrow view http.py and metrics.py read (view.EngineView) is its properties."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Mapping
from typing import Any

import structlog

from .compliance import OptOutCache
from .config import Config, SmscConfig
from .deliver import Deliveries
from .dispatcher import Dispatcher
from .http import serve as serve_http
from .intake import Intake
from .metrics import Metrics
from .model import RETRYING
from .mqtt import MqttLink
from .optout_runtime import OptOutRuntime
from .publisher import Publisher
from .reload import ReloadPlan, effective, plan
from .router import Router
from .smpp.client import SmscClient
from .store import Active, Store, StoreError, open_store

log = structlog.get_logger(__name__)

# Messages the dispatcher holds in memory (queued, in flight, waiting for a retry); beyond that a backlog
# stays in the store and is paged back in arrival order (bounds memory: about 2 KB each).
BACKLOG_HIGH_WATER = 20_000


class Engine:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.store: Store = open_store(config.engine.store, config.mqtt.topic_prefix, config.engine.instance,
                                       config.engine.lease_s)
        self.counters: dict[str, int] = {"requests": 0, "duplicates": 0, "receipts": 0, "receipts_held": 0,
                                         "receipts_unparsable": 0, "mo": 0}
        self.metrics = Metrics(live=self)           # the live gauges read this engine's view at scrape time
        self.clients: dict[str, SmscClient] = {}    # shared with the dispatcher and deliveries; a reload updates it
        self.router = Router(config.route, [s.name for s in config.smsc])
        optout_cache = OptOutCache()                # compliance: the dispatcher reads it, optouts keeps it
        self.dispatcher = Dispatcher(self.store, self.clients, self.router, config.retry,
                                     high_water=BACKLOG_HIGH_WATER, metrics=self.metrics, optouts=optout_cache)
        self.optouts = OptOutRuntime(self.store, optout_cache, self.dispatcher.enqueue)
        self.deliveries = Deliveries(self.store, self.clients, self.metrics, self.optouts, lambda: self.config,
                                     self.counters)
        self.clients.update((s.name, self._new_client(s)) for s in config.smsc)
        self.intake = Intake(self.store, self.dispatcher.offer, self.metrics, lambda: self.config.engine.default_ttl,
                             self.counters)
        self.link = MqttLink(config.mqtt, config.engine.instance, self.intake.on_request)
        self.publisher = Publisher(self.store, self.link)
        self._tasks: list[asyncio.Task[Any]] = []
        self.ready = asyncio.Event()
        self.http_server: asyncio.Server | None = None
        self.stats_interval = 5.0          # seconds between refreshes of the store's queue-depth gauges
        self._reload_lock = asyncio.Lock()

    def _share(self, cfg: SmscConfig) -> SmscConfig:
        """The SMSC as this instance uses it: ``tps`` is the whole account's, split evenly over the
        ``engine.instances`` instances that bind it (static split, docs/scaling.md)."""
        n = self.config.engine.instances
        return cfg if n <= 1 else dataclasses.replace(cfg, tps=cfg.tps / n)

    def _new_client(self, cfg: SmscConfig, replaces: SmscClient | None = None) -> SmscClient:
        return SmscClient(self._share(cfg), self.deliveries.on_deliver, metrics=self.metrics,
                          reconnects=replaces.reconnects if replaces else 0,
                          throttle_pauses=replaces.throttle_pauses if replaces else 0)

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
            asyncio.create_task(self.intake.run(self.link.ack), name="intake"),
            asyncio.create_task(self.link.run(), name="mqtt"),
            asyncio.create_task(self.publisher.run(), name="publisher"),
            asyncio.create_task(self._stats_loop(), name="stats"),
            asyncio.create_task(self.optouts.watch(), name="optouts"),
        ]
        if self.store.shared:
            self._tasks.append(asyncio.create_task(self._heartbeat_loop(), name="heartbeat"))
            self._tasks.append(asyncio.create_task(self._lease_loop(), name="lease"))
        if self.config.http.address is not None:
            self.http_server = await serve_http(self, self.metrics.scrape, *self.config.http.address)
        await self.link.connected.wait()
        self.ready.set()
        log.info("engine_ready", instance=self.config.engine.instance, smsc=list(self.clients),
                 topic=self.link.request_topic)

    async def stop(self, grace: float = 10.0) -> None:
        """Stop taking requests, let in-flight submits finish (bounded), unbind, flush events, go offline."""
        log.info("engine_stopping")
        self.intake.close()
        if self.http_server is not None:
            self.http_server.close()
        self.dispatcher.halt()                # nothing new leaves; what is in flight gets its resp (bounded)
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
        binds = ", ".join(f"{n} {c.bound_sessions}/{c.configured_sessions}" for n, c in self.clients.items())
        mqtt = "connected" if self.mqtt_connected else "DISCONNECTED"
        return f"bound: {binds}; backlog {self.backlog}; mqtt {mqtt}"

    # ------------------------------------------------------------------ the view http.py and metrics.py read
    @property
    def instance(self) -> str:
        return self.config.engine.instance

    @property
    def mqtt_url(self) -> str:
        return self.config.mqtt.url

    @property
    def mqtt_connected(self) -> bool:
        return self.link.connected.is_set()

    @property
    def mqtt_reconnects(self) -> int:
        return self.link.reconnects

    @property
    def broker_dropped(self) -> int | None:
        return self.link.broker_dropped

    @property
    def smscs(self) -> Mapping[str, SmscClient]:
        return self.clients

    @property
    def backlog(self) -> int:
        return self.dispatcher.backlog

    @property
    def events_published(self) -> int:
        return self.publisher.published

    @property
    def store_failed(self) -> bool:
        return bool(getattr(self.store, "failed", False))

    # ------------------------------------------------------------------ reload (SIGHUP)
    async def reload(self, new: Config) -> ReloadPlan:
        """Apply a new, already validated config (see reload.py): changed SMSCs are rebound, unchanged
        binds stay up, a tps-only change applies in place; routes, retry and default_ttl at once."""
        async with self._reload_lock:
            p = plan(self.config, new)
            self.config = effective(self.config, new)
            for s in p.update:
                self.clients[s.name].reconfigure(self._share(s))
            retired: list[SmscClient] = []
            for s in p.add + p.rebind:
                old = self.clients.get(s.name)
                client = self._new_client(s, replaces=old)
                if old is not None:
                    retired.append(old)
                self.clients[s.name] = client          # the dispatcher and deliveries share this dict
                client.start()
            for name in p.remove:
                retired.append(self.clients.pop(name))
            if p.routes:
                self.router = Router(self.config.route, [s.name for s in self.config.smsc])
            # the retry policy was built when the file was parsed (config.retry is a RetryPolicy)
            self.dispatcher.reconfigure(router=self.router if p.routes else None,
                                        policy=self.config.retry if p.retry else None)
            # old clients finish what they have in flight (bounded), then unbind
            await asyncio.gather(*(c.retire(c.cfg.response_timeout_s) for c in retired))
            log.info("config_reloaded", path=new.path, **p.summary())
            if p.restart_needed:
                log.warning("config_reload_restart_needed", keys=list(p.restart_needed))
            return p

