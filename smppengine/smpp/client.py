"""One SMSC account: its binds (kept up with backoff), its TPS bucket and adaptive rate, its windows.

``send`` is the only way a submit_sm leaves: it waits for a pause to end,
takes a slot on the session with the most free window, takes a token from the
account-wide bucket, then sends.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import structlog

from ..config import SmscConfig
from ..receipts import receipt_id_keys
from ..retry import reconnect_delay
from ..throttle import AdaptiveRate, SendLog, TokenBucket
from . import pdu as P
from .session import BindFailed, DeliverHandler, ResponseTimeout, Session, SessionClosed

if TYPE_CHECKING:
    from ..metrics import Metrics

log = structlog.get_logger(__name__)

ANSWERED_KEYS_KEPT = 50_000    # receipt keys of recently answered submits (2-3 per submit)
ANSWERED_KEYS_SLACK = 6_250    # trimmed back to ANSWERED_KEYS_KEPT once this many more are held
RESP_WAIT_S = 0.1              # longest wait of a receipt for its resp (some SMSCs send the resp only after
                               # the receipt's deliver_sm_resp: then the store holds the receipt)


class SmscClient:
    def __init__(self, cfg: SmscConfig, on_deliver: DeliverHandler, rng: random.Random | None = None) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self._on_deliver = on_deliver
        self._rng = rng or random.Random()
        self.sessions: list[Session] = []
        now = time.monotonic()
        self.bucket = TokenBucket(cfg.tps, now)
        self.adaptive = AdaptiveRate(cfg.tps, now)
        self.sendlog = SendLog()
        self._changed = asyncio.Event()
        self._slot_waiters: deque[asyncio.Future[None]] = deque()   # senders waiting for a window slot, in order
        self._keepers: list[asyncio.Task[None]] = []
        self._stopping = False
        self.reconnects = 0
        self.throttle_pauses = 0
        self.up = asyncio.Event()
        self.metrics: Metrics | None = None       # set by the engine
        # submits sent and not answered yet (ordinals in send order), and the receipt keys of the SMSC message
        # ids answered lately: a receipt that overtook its resp waits for it here (resp_seen) instead of being
        # held in the store and matched again when the resp is committed
        self._sent = 0
        self._unanswered: dict[int, None] = {}
        self._answered_keys: dict[str, None] = {}
        self._key_waiters: dict[str, asyncio.Future[None]] = {}                # receipt key -> its waiter
        self._horizon_waiters: deque[tuple[int, asyncio.Future[None]]] = deque()  # (last ordinal sent before)

    # ------------------------------------------------------------------ binds
    def start(self) -> None:
        modes = ["transceiver"] if self.cfg.bind == "transceiver" else ["transmitter", "receiver"]
        for i in range(self.cfg.binds):
            for mode in modes:
                sid = f"{self.name}/{i}" + ("" if mode == "transceiver" else f"/{mode[0:2]}")
                self._keepers.append(asyncio.create_task(self._keep(sid, mode), name=f"bind-{sid}"))

    async def _keep(self, sid: str, mode: str) -> None:
        failures = 0
        while not self._stopping:
            session = Session(self.cfg, sid, mode, self._on_deliver, self._notify, self._slot_freed)
            bind_failed = False
            try:
                await session.open()
            except BindFailed as exc:
                bind_failed = True
                log.error("bind_failed", smsc=self.name, session=sid, command_status=exc.status, error=str(exc))
            except (OSError, ResponseTimeout, SessionClosed, TimeoutError) as exc:
                log.warning("connect_failed", smsc=self.name, session=sid, error=str(exc) or type(exc).__name__)
            else:
                failures = 0
                self.sessions.append(session)
                self._notify()
                try:
                    await session.closed.wait()
                finally:
                    if session in self.sessions:
                        self.sessions.remove(session)
                    self._notify()
                if self._stopping:
                    return
                self.reconnects += 1
            failures += 1
            delay = reconnect_delay(failures, self._rng, bind_failed=bind_failed)
            log.info("reconnect_scheduled", smsc=self.name, session=sid, delay_s=round(delay, 2))
            await asyncio.sleep(delay)

    async def stop(self, timeout: float = 5.0) -> None:
        """Unbind every session cleanly and stop reconnecting."""
        self._stopping = True
        for t in self._keepers:
            t.cancel()
        await asyncio.gather(*(s.unbind(timeout) for s in list(self.sessions)), return_exceptions=True)
        await asyncio.gather(*self._keepers, return_exceptions=True)

    def halt(self) -> None:
        """Shutdown: take no new submits (waiting senders get SessionClosed); sessions stay bound so the
        submits in flight still get their resps; :meth:`stop` unbinds."""
        self._stopping = True
        self._notify()

    async def retire(self, timeout: float) -> None:
        """Replaced by a config reload: take no new submits (callers get SessionClosed and resend through the
        new client), let the ones in flight get their resps (bounded by ``timeout``), then unbind."""
        self._stopping = True
        self._notify()
        deadline = time.monotonic() + timeout
        while self.window_in_use > 0 and time.monotonic() < deadline:
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                break
        await self.stop()

    def _notify(self) -> None:
        """A session bound, closed or the client halted: every sender waiting for a slot looks again."""
        self._changed.set()
        if any(s.bound and s.can_submit for s in self.sessions):
            self.up.set()
        else:
            self.up.clear()
        waiters, self._slot_waiters = self._slot_waiters, deque()
        for w in waiters:
            if not w.done():
                w.set_result(None)

    def _slot_freed(self) -> None:
        """A submit ended: one window slot is free; wake the longest-waiting sender only (not all of them,
        each to find the one slot taken)."""
        self._changed.set()
        waiters = self._slot_waiters
        while waiters:
            w = waiters.popleft()
            if not w.done():
                w.set_result(None)
                return

    # ------------------------------------------------------------------ state
    @property
    def bound_sessions(self) -> int:
        return sum(1 for s in self.sessions if s.bound)

    @property
    def window_in_use(self) -> int:
        return sum(s.reserved for s in self.sessions)

    @property
    def available(self) -> bool:
        """Bound for submitting and not paused by throttling."""
        return self.up.is_set() and time.monotonic() >= self.adaptive.paused_until()

    def set_tps(self, tps: float) -> None:
        now = time.monotonic()
        self.adaptive = AdaptiveRate(tps, now)
        self.bucket.set_rate(tps, now)

    # ------------------------------------------------------------------ sending
    async def send(self, params: dict[str, Any]) -> P.Pdu:
        """Send one submit_sm within window and TPS; returns the resp (or generic_nack).

        Raises SessionClosed when the connection dropped before the resp, ResponseTimeout when none came.
        """
        while True:
            if self._stopping:
                raise SessionClosed(f"smsc client {self.name} stopped")
            pause = self.adaptive.paused_until() - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
                continue
            best: Session | None = None
            for s in self.sessions:
                if s.free > 0 and (best is None or s.free > best.free):
                    best = s
            if best is None:                       # every window is full: wait in line for a slot
                waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._slot_waiters.append(waiter)
                try:
                    await waiter
                except BaseException:
                    if waiter.done() and not waiter.cancelled():
                        self._slot_freed()         # woken for a slot this sender will not take: pass it on
                    raise
                continue
            best.reserve()
            break
        try:
            now = time.monotonic()
            self.bucket.set_rate(self.adaptive.rate, now)
            wait = self.bucket.reserve(now)
            if wait > 0:
                await asyncio.sleep(wait)
            while (late := self.sendlog.wait(time.monotonic(), int(self.adaptive.rate))) > 0:  # noqa: ASYNC110
                await asyncio.sleep(late)
        except BaseException:
            best.reserved -= 1
            self._notify()
            raise
        if not best.bound:
            best.reserved -= 1
            raise SessionClosed(best.close_reason or "session closed while waiting for a token")
        # The send log counts the time the submit's bytes leave (stamped by the session after its write), not
        # this moment: under load the write can come tens of milliseconds later, and a late write must not
        # bunch up with the ones after it.
        stamp = self.sendlog.record(time.monotonic(), pending=True)
        self._sent += 1
        ordinal = self._sent
        self._unanswered[ordinal] = None
        resp: P.Pdu | None = None
        try:
            if self.metrics is not None:
                self.metrics.submit_sent(self.name, best.id)
            resp = await best.submit(params, on_sent=stamp.sent)
            if self.metrics is not None:
                self.metrics.resp(self.name, best.id, resp.command, resp.status)
            return resp
        finally:
            stamp.sent(time.monotonic())       # no-op when the session stamped it; else it never left (slow side)
            self._answered(ordinal, resp)

    # ------------------------------------------------------------------ receipts that overtake their resp
    def _answered(self, ordinal: int, resp: P.Pdu | None) -> None:
        """Called in the sending task as its submit ends, before the caller stores the resp: a receipt task
        woken here runs after that store operation was queued, so the receipt is applied after it."""
        del self._unanswered[ordinal]
        if resp is not None and resp.status == 0 and resp.command == "submit_sm_resp":
            keys = self._answered_keys
            waiting = self._key_waiters
            for k in receipt_id_keys(str(resp.params.get("message_id", ""))):
                keys[k] = None
                if waiting:
                    w = waiting.pop(k, None)
                    if w is not None and not w.done():
                        w.set_result(None)
            if len(keys) > ANSWERED_KEYS_KEPT + ANSWERED_KEYS_SLACK:
                # Trimmed in bulk, not a few keys per resp: a dict keeps the slots of deleted keys until it
                # grows again, and iterating it from the oldest end walks over every one of them. Trimming
                # 2-3 keys per resp made each trim walk tens of thousands of slots (~15 µs per message
                # once 50,000 keys were held); in bulk it is one walk per ~2,000 resps.
                for k in list(itertools.islice(keys, len(keys) - ANSWERED_KEYS_KEPT)):
                    del keys[k]
        hw = self._horizon_waiters
        if hw:
            lowest = next(iter(self._unanswered), self._sent + 1)
            while hw and hw[0][0] < lowest:
                w = hw.popleft()[1]
                if not w.done():
                    w.set_result(None)

    def resp_known(self, message_id: str) -> bool:
        """True when a receipt for ``message_id`` need not wait (:meth:`resp_seen` would return at once)."""
        if not self._unanswered:
            return True
        keys = receipt_id_keys(message_id)
        return not keys or not self._answered_keys.keys().isdisjoint(keys)

    def resp_seen(self, message_id: str) -> asyncio.Future[None]:
        """A receipt arrived for ``message_id``: a future resolved once the resp that carries this id has been
        handled (already resolved when it was, the usual case), or once every submit sent before the receipt
        arrived has been answered (the receipt is then for an older message, or a resp this process never
        saw: the store holds it), at most RESP_WAIT_S. SMSCs send receipts on any bind, often before the
        resp on another bind; waiting a few milliseconds here saves holding them in the store. A future (no
        task): the caller goes on in a done-callback."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        if self.resp_known(message_id):
            waiter.set_result(None)
            return waiter
        keys = receipt_id_keys(message_id)
        for k in keys:
            self._key_waiters[k] = waiter
        self._horizon_waiters.append((self._sent, waiter))
        timer = loop.call_later(RESP_WAIT_S, _resolve, waiter)

        def forget(_: asyncio.Future[None]) -> None:
            timer.cancel()
            for k in keys:
                if self._key_waiters.get(k) is waiter:
                    del self._key_waiters[k]

        waiter.add_done_callback(forget)
        return waiter

    def on_result(self, status: int) -> float:
        """Feed the adaptive rate with a resp's status; returns the pause (s) after a throttle, else 0."""
        now = time.monotonic()
        if status in (P.ESME_RTHROTTLED, P.ESME_RMSGQFUL):
            self.throttle_pauses += 1
            pause = self.adaptive.on_throttle(now)
            self.bucket.set_rate(self.adaptive.rate, now)
            log.warning("smsc_throttled", smsc=self.name, command_status=status, pause_s=round(pause, 3),
                        rate=round(self.adaptive.rate, 2))
            return pause
        if status == 0:
            self.adaptive.on_success(now)
        return 0.0


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
