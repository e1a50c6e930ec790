"""One SMSC account: its binds (kept up with backoff), its TPS bucket and adaptive rate, its windows.

``send`` is the only way a submit_sm leaves: it waits for a pause to end,
takes a slot on the session with the most free window, takes a token from the
account-wide bucket, then sends.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import structlog

from ..config import SmscConfig
from ..retry import reconnect_delay
from ..throttle import AdaptiveRate, SendLog, TokenBucket
from . import pdu as P
from .resp_order import RespOrder
from .session import BindFailed, DeliverHandler, ResponseTimeout, Session, SessionClosed

if TYPE_CHECKING:
    from ..metrics import Metrics

log = structlog.get_logger(__name__)


class SmscClient:
    def __init__(self, cfg: SmscConfig, on_deliver: DeliverHandler, rng: random.Random | None = None, *,
                 metrics: Metrics | None = None, reconnects: int = 0, throttle_pauses: int = 0) -> None:
        """``reconnects``, ``throttle_pauses``: the counts of the client this one replaces (a config reload
        that rebinds the account), so the metrics' counters do not go back."""
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
        self.reconnects = reconnects
        self.throttle_pauses = throttle_pauses
        self.up = asyncio.Event()
        self.metrics = metrics
        self.order = RespOrder()     # a receipt that overtook its resp waits for it there (deliver.py)

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
    def configured_sessions(self) -> int:
        """Sessions the config asks for: binds x modes (a transmitter and a receiver per bind, or one
        transceiver)."""
        return self.cfg.binds * (1 if self.cfg.bind == "transceiver" else 2)

    @property
    def window_in_use(self) -> int:
        return sum(s.reserved for s in self.sessions)

    @property
    def available(self) -> bool:
        """Bound for submitting and not paused by throttling."""
        return self.up.is_set() and time.monotonic() >= self.adaptive.paused_until()

    def reconfigure(self, cfg: SmscConfig) -> None:
        """A config reload changed only what applies without a new bind (reload.py): tps, error_classes,
        default_from, senders, tlvs."""
        self.cfg = cfg
        self.set_tps(cfg.tps)

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
        ordinal = self.order.sent()
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
            self.order.answered(ordinal, resp)    # before the caller stores the resp: see resp_order.py

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

