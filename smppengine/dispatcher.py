"""The dispatcher: takes stored messages, routes them, sends their parts, applies the retry policy.

A message is processed by one task at a time. Its parts go through one SMSC;
a part that already has an SMSC message id is never sent again. What counts as an
attempt is decided by retry.attempt_outcome (throttling and lost connections do not;
transient errors do).
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import TYPE_CHECKING, Any

import structlog

from . import compliance, logs, text, tlvs
from .addressing import address, parse_schedule, relative_validity, schedule_time
from .compliance import OptOutCache
from .model import EXPIRED, FAILED, REJECTED, RETRYING, Request, error
from .retry import CONNECTION_LOST, FINAL, GENERIC_NACK, RESEND, TIMEOUT, RetryPolicy, attempt_outcome
from .router import NoRoute, Router
from .smpp import pdu as P
from .smpp.client import SmscClient
from .smpp.session import ResponseTimeout, SessionClosed
from .smpp.status import classify, status_name
from .store import Active, Store, StoreError

if TYPE_CHECKING:
    from .metrics import Metrics

log = structlog.get_logger(__name__)

PartOutcome = tuple[str, dict[str, Any]] | None     # None = OK; else (outcome, error): retry.attempt_outcome
STOPPED = "stopped"                                  # not sent because the engine is shutting down


def _udh(req: Request) -> bytes:
    return bytes.fromhex(req.udh) if req.udh else b""


def _ports(req: Request) -> tuple[int, int] | None:
    return (int(req.ports["src"]), int(req.ports["dst"])) if req.ports else None


def _extra(client: SmscClient, req: Request) -> dict[str, Any]:
    """What every part of this attempt carries beside its own fields: the carrier's TLVs (the SMSC's, a
    request's value replacing the SMSC's for the same tag) and the schedule_delivery_time."""
    extra: dict[str, Any] = {}
    other = tlvs.to_raw(client.cfg.tlvs)
    if req.tlvs:
        other.update(tlvs.to_raw(req.tlvs))
    if other:
        extra[P.OTHER_TLVS] = other
    if req.schedule is not None:
        extra["schedule_delivery_time"] = schedule_time(parse_schedule(req.schedule), req.received_at, time.time())
    return extra


class Dispatcher:
    def __init__(self, store: Store, clients: dict[str, SmscClient], router: Router, policy: RetryPolicy,
                 max_in_flight: int = 2000, rng: random.Random | None = None, high_water: int = 20_000, *,
                 metrics: Metrics | None = None, optouts: OptOutCache | None = None) -> None:
        """``clients``: the engine's SMSC clients by name (a config reload replaces entries in this dict);
        ``optouts``: the opt-out list kept in step by optout_runtime.py (None: no opt-out check)."""
        self.store = store
        self.clients = clients
        self.router = router
        self.policy = policy
        self._rng = rng or random.Random()
        self._queue: asyncio.Queue[Active] = asyncio.Queue()
        self._slots = asyncio.Semaphore(max_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self.refs = text.ConcatRefs()
        self.stopping = False
        self._drained = asyncio.Event()
        self._wake_below = 0            # _drained is set when a message finishes with the backlog under this
        self.active = 0
        self.submitted_ok = 0
        self.metrics = metrics
        self.optouts = optouts
        # memory bound: at most `high_water` messages are held here; the rest of a backlog stays in the
        # store ("spilled") and is paged back in arrival order once the backlog is under half of it
        self.high_water = high_water
        self._inmem: set[str] = set()             # ids queued, being sent, or waiting for a retry here
        self._scheduled: set[str] = set()         # ids waiting for a retry timer
        self._spilled = asyncio.Event()
        self._spill_gen = 0
        self._cursor: tuple[float, str] = (0.0, "")
        # ids that stopped being held here while a page was being read: the page's snapshot may predate their
        # commit (a submit's resp, a final state) and show them still queued; paging them in would send again
        self._left_during_read: set[str] | None = None

    def reconfigure(self, router: Router | None = None, policy: RetryPolicy | None = None) -> None:
        """A config reload: new routes and/or retry policy, applied to the next attempt of every message."""
        if router is not None:
            self.router = router
        if policy is not None:
            self.policy = policy

    def halt(self) -> None:
        """Shutdown: nothing new leaves; what is in flight gets its resp (bounded by :meth:`drain`)."""
        self.stopping = True

    @property
    def backlog(self) -> int:
        return self._queue.qsize() + self.active + len(self._timers)

    async def below(self, level: int) -> None:
        """Return once the backlog has fallen under ``level`` (checked whenever a message finishes; the waiter
        is woken only then, not by every message that finishes above it)."""
        while self.backlog >= level:
            self._wake_below = level
            self._drained.clear()
            await self._drained.wait()

    def offer(self, item: Active) -> None:
        """A newly stored message: held here while there is room, else left in the store for paging."""
        if item.request.id in self._inmem:
            return          # a page read after its commit took it in already
        if self.backlog < self.high_water:
            self.enqueue(item)
        else:
            self.spill()

    def spill(self) -> None:
        """Stored messages wait that are not held here: page them in when there is room."""
        self._spill_gen += 1
        self._spilled.set()

    def enqueue(self, item: Active, delay: float = 0.0) -> None:
        msg_id = item.request.id
        self._inmem.add(msg_id)
        if delay <= 0:
            self._queue.put_nowait(item)
            return
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle
        self._scheduled.add(msg_id)

        def fire() -> None:
            self._timers.discard(handle)
            self._scheduled.discard(msg_id)
            self._queue.put_nowait(item)

        handle = loop.call_later(delay, fire)
        self._timers.add(handle)

    async def refill(self, page: int = 2000) -> None:
        """Page spilled messages (and, at start, the whole stored backlog) back in, in arrival order."""
        while True:
            await self._spilled.wait()
            await self.below(max(1, self.high_water // 2))
            gen = self._spill_gen
            self._left_during_read = left = set[str]()
            try:
                rows = await self.store.pending_page(self._cursor, page)
            finally:
                self._left_during_read = None
            now = time.time()
            for a in rows:
                if self.backlog >= self.high_water:
                    break       # new requests filled the room while the page was read: the rest waits its turn
                self._cursor = (a.created_at, a.request.id)
                if a.request.id in self._inmem or a.request.id in left:
                    continue
                delay = (a.next_attempt_at - now) if (a.state == RETRYING and a.next_attempt_at) else 0.0
                self.enqueue(a, delay)
            else:
                if len(rows) < page:             # reached the end of the stored backlog
                    self._cursor = (0.0, "")
                    if gen == self._spill_gen:   # nothing spilled meanwhile: done until the next spill
                        self._spilled.clear()

    async def run(self) -> None:
        while True:
            item = await self._queue.get()
            if self.stopping:
                continue            # stays in the store as it is: the next start resumes it
            await self._slots.acquire()
            task = asyncio.create_task(self._process(item))
            self._tasks.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()
        if self.backlog < self._wake_below:
            self._drained.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("dispatch_crashed", error=repr(task.exception()))

    async def drain(self, timeout: float) -> None:
        """Shutdown: start nothing new (no new message, no part that has not left yet — those stay in the
        store for the next start), and wait (bounded) for the submits in flight to get their resps."""
        self.stopping = True
        for h in self._timers:
            h.cancel()
        self._timers.clear()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    # ------------------------------------------------------------------ one message
    async def _process(self, a: Active) -> None:
        self.active += 1
        try:
            await self._attempt(a)
        finally:
            self.active -= 1
            if a.request.id not in self._scheduled:     # not waiting for a retry here: no longer held
                self._inmem.discard(a.request.id)
                if self._left_during_read is not None:
                    self._left_during_read.add(a.request.id)

    def _pick(self, a: Active) -> list[str]:
        if a.submitted and a.smsc:
            return [a.smsc]                       # every part of a message goes through one SMSC
        return self.router.candidates(a.request.to, a.request.route)

    async def _attempt(self, a: Active) -> None:
        req = a.request
        try:
            names = self._pick(a)
        except NoRoute as exc:
            await self.store.finish(req.id, REJECTED, error("no_route", None, str(exc) or f"no route for {req.to}"))
            return
        if not a.submitted:        # sender rules and the opt-out list (compliance.py); no DB read
            names, refused = compliance.screen(
                req.to, req.sender, req.id, self.router.route_for(req.to, req.route), names,
                {n: self.clients[n].cfg for n in names if n in self.clients}, self.optouts)
            if refused is not None:
                log.info("message_refused", msg_id=req.id, error=refused["code"])
                await self.store.finish(req.id, REJECTED, refused)
                return
        client = await self._available(names, a.ttl_at)
        if self.stopping:
            return
        if client is None:
            await self.store.finish(req.id, EXPIRED, error("ttl_expired", None, "no SMSC available before the ttl"))
            return
        if time.time() > a.ttl_at:
            await self.store.finish(req.id, EXPIRED, error("ttl_expired", None, "not submitted within the ttl"))
            return
        try:
            if req.binary is None:
                segments = text.segment(req.text, req.encoding, client.cfg.concat)
                data_coding = text.flash_data_coding(segments.encoding) if req.flash else segments.data_coding
            else:
                segments = text.segment_binary(bytes.fromhex(req.binary), _udh(req), _ports(req), client.cfg.concat)
                data_coding = segments.data_coding
        except ValueError as exc:      # TextEncodingError, MessageTooLongError (e.g. payload over 64 KiB)
            field = "text" if req.binary is None else "binary"
            await self.store.finish(req.id, REJECTED, error("invalid_request", None, f"{field}: {exc}"))
            return
        # One part on a store of one instance, or on a shared store while this instance's lease certainly holds
        # (store.lease_held: no other instance can have taken the message): nothing is written before the submit.
        # The attempt is recorded with the part's OK resp (store.submitted_one: one operation per message), or,
        # when the attempt fails, by begin_attempt before the retry policy runs. What a crash between the submit_sm
        # and the commit of its resp changes: that attempt is not counted (the message may get one attempt more than
        # max_attempts), and the message is sent again at the restart, as any part whose resp was not committed.
        # There is no concatenation reference to keep (one part has none; a later attempt in several parts takes
        # a new one).
        one = len(segments.chunks) == 1 and self.store.lease_held()
        if one:
            attempt, ref = a.attempt + 1, 0
        else:
            attempt, ref = await self.store.begin_attempt(req.id, client.name, len(segments.chunks),
                                                          self.refs.next(req.to))
        if attempt == 0:
            # not in the store, or (shared store) another instance took it over after this one's lease
            # expired: that instance sends it, this one must not
            log.warning("dispatch_dropped", msg_id=req.id, reason="not owned")
            return
        a.smsc, a.attempt = client.name, attempt
        if req.binary is None:
            parts = text.build_parts(segments, client.cfg.concat, ref)
        else:
            parts = text.build_binary_parts(segments, _udh(req), _ports(req), client.cfg.concat, ref)
        extra = _extra(client, req) if client.cfg.tlvs or req.tlvs or req.schedule is not None else None
        todo = [i for i in range(len(parts)) if i not in a.submitted]
        sends = [self._send_part(client, a, i, self._params(client, req, parts[i], data_coding, extra), one)
                 for i in todo]
        # the usual single part is awaited directly: gather would wrap it in a task
        outcomes = [await sends[0]] if len(sends) == 1 else await asyncio.gather(*sends)
        failures = [o for o in outcomes if o is not None]
        if not failures or (self.stopping and any(cls == STOPPED for cls, _ in failures)):
            return                  # done, or parts left unsent by a shutdown: resumed at the next start
        if one:                     # the failed attempt counts (and the part row exists) before what follows
            await self.store.begin_attempt(req.id, client.name, 1, None)
        permanent = [e for cls, e in failures if attempt_outcome(cls) == FINAL]
        if permanent:
            await self.store.finish(req.id, REJECTED, permanent[0])
            return
        err = failures[0][1]
        if self.policy.exhausted(attempt):
            await self.store.finish(req.id, FAILED, err)
            return
        delay = self.policy.delay(attempt, self._rng)
        next_at = time.time() + delay
        if next_at > a.ttl_at:
            await self.store.finish(req.id, EXPIRED, error("ttl_expired", None, f"next attempt after the ttl; "
                                                           f"last error {err['code']}"))
            return
        await self.store.retrying(req.id, next_at, err)
        log.info("retry_scheduled", msg_id=req.id, smsc=client.name, attempt=attempt, delay_s=round(delay, 3),
                 error=err["code"])
        self.enqueue(a, delay)

    async def _available(self, names: list[str], ttl_at: float) -> SmscClient | None:
        """The first listed SMSC that is bound and not paused; waits (until the ttl) while none is."""
        while not self.stopping:
            clients = [self.clients[n] for n in names if n in self.clients]   # a reload may replace clients
            for c in clients:
                if c.available:
                    return c
            remaining = ttl_at - time.time()
            if remaining <= 0 or not clients:
                return None
            waits = [asyncio.ensure_future(c.up.wait()) for c in clients]
            try:
                await asyncio.wait(waits, timeout=min(remaining, 1.0), return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
            if not any(c.available for c in clients):
                # bound but paused: wait for the shortest pause
                paused = [c.adaptive.paused_until() - time.monotonic() for c in clients if c.up.is_set()]
                if paused:
                    await asyncio.sleep(max(0.0, min(min(paused), remaining)))
        return None                                     # shutting down

    @staticmethod
    def _params(client: SmscClient, req: Request, part: text.PartSpec, data_coding: int,
                extra: dict[str, Any] | None = None) -> dict[str, Any]:
        src, src_ton, src_npi = address(req.sender or client.cfg.default_from)
        dst, dst_ton, dst_npi = address(req.to)
        params: dict[str, Any] = {
            "service_type": "", "source_addr_ton": src_ton, "source_addr_npi": src_npi, "source_addr": src,
            "dest_addr_ton": dst_ton, "dest_addr_npi": dst_npi, "destination_addr": dst,
            "esm_class": part.esm_class, "protocol_id": 0, "priority_flag": req.priority,
            "schedule_delivery_time": "", "validity_period": relative_validity(req.validity),
            "registered_delivery": 1 if req.dlr else 0, "replace_if_present_flag": 0,
            "data_coding": data_coding, "sm_default_msg_id": 0, "short_message": part.short_message,
        }
        params.update(part.tlvs)
        if extra:
            params.update(extra)
        return params

    async def _store_resp(self, msg_id: str, idx: int, smsc: str, smsc_id: str, one: bool) -> None:
        """Store a part's OK resp. The SMSC has the part now: until its resp is stored, the message must stay held
        here, or a read of the stored backlog (after a store reconnect) would find it still queued and send it
        again. So a store error -- a commit that failed, or whose outcome is unknown (PostgreSQL lost during the
        COMMIT) -- is retried, not passed up (a failed commit stored nothing; on PostgreSQL, storing a resp that did
        commit again changes nothing: pg_batch). At shutdown the error
        is passed up: the message is then sent again at the next start, as after a crash at this point."""
        delay = 0.1
        while True:
            try:
                if one:
                    await self.store.submitted_one(msg_id, smsc, smsc_id)
                else:
                    await self.store.part_submitted(msg_id, idx, smsc, smsc_id)
                return
            except StoreError as exc:
                if self.stopping:
                    raise
                log.warning("resp_not_stored", msg_id=msg_id, smsc=smsc, part=idx, smsc_message_id=smsc_id,
                            error=str(exc), retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _send_part(self, client: SmscClient, a: Active, idx: int, params: dict[str, Any],
                         one: bool = False) -> PartOutcome:
        """Send one part until it has an outcome; ``one``: the only part of a message whose attempt is not in
        the store yet (recorded with the OK resp by store.submitted_one)."""
        req = a.request
        while True:
            try:
                resp = await client.send(params)
            except SessionClosed as exc:
                if self.stopping:
                    return STOPPED, {}
                # the connection went away with the submit in flight: resent on the next bind (within the ttl)
                lost = CONNECTION_LOST, error("timeout", None, f"connection lost: {exc}")
                if attempt_outcome(CONNECTION_LOST) != RESEND or time.time() > a.ttl_at:
                    return lost
                client = self.clients.get(client.name, client)   # rebound by a config reload: use the new one
                try:
                    await asyncio.wait_for(client.up.wait(), timeout=max(0.1, a.ttl_at - time.time()))
                except TimeoutError:
                    return lost
                continue
            except ResponseTimeout as exc:
                return TIMEOUT, error("timeout", None, str(exc))
            if resp.command == "generic_nack":
                return GENERIC_NACK, error(status_name(resp.status), resp.status, "generic_nack for submit_sm")
            status = resp.status
            client.on_result(status)
            if status == 0:
                smsc_id = str(resp.params.get("message_id", ""))
                a.submitted[idx] = smsc_id
                self.submitted_ok += 1
                if self.metrics is not None:
                    self.metrics.part_submitted(client.name, smsc_id, req.received_at)
                await self._store_resp(req.id, idx, client.name, smsc_id, one)
                if logs.DEBUG:
                    log.debug("part_submitted", msg_id=req.id, smsc=client.name, part=idx, smsc_message_id=smsc_id)
                return None
            cls = classify(status, client.cfg.error_classes)
            if attempt_outcome(cls) == RESEND:      # throttled: the client paused; the part waits its turn
                continue
            name = status_name(status)
            log.info("submit_refused", msg_id=req.id, smsc=client.name, part=idx, command_status=status,
                     error=name, error_class=cls)
            return cls, error(name, status, f"submit_sm_resp {name} (0x{status:08X})")

