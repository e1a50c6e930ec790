"""Per-SMSC flow control: a smooth token bucket and an adaptive rate.

Pure logic: every method takes ``now`` (seconds, any monotonic origin) from the
caller, so the engine passes ``loop.time()`` and tests pass a fake clock.

The engine combines them per SMSC::

    bucket.set_rate(adaptive.rate, now)
    wait = max(0.0, adaptive.paused_until() - now)   # honour a throttle pause first
    ...then: wait += bucket.reserve(now + wait) ... sleep(wait), send
"""

from __future__ import annotations

import math


def _check_rate(rate: float) -> float:
    rate = float(rate)
    if not (rate > 0.0 and math.isfinite(rate)):
        raise ValueError(f"rate must be a positive finite number of messages per second, not {rate!r}")
    return rate


class TokenBucket:
    """Smooth token bucket shared by every bind of one SMSC account.

    Capacity is exactly one token, refilled continuously at ``rate`` tokens per
    second. That is the GCRA "virtual scheduling" form: consecutive sends are
    spaced at least ``1/rate`` seconds apart, and an idle period earns no burst.

    Guarantee (with gaps >= 1/r): any half-open window ``[t, t+1)`` holds at
    most ``ceil(r)`` sends -- exactly ``r`` for an integer rate -- because k sends
    in it span ``(k-1)/r < 1`` seconds. For non-integer rates no scheduler can do
    better while still averaging ``r`` per second. After ``set_rate`` the gap
    before the next send is ``1/new_rate``, so every window holds at most
    ``ceil(R)`` sends, R the highest rate in force when its sends were reserved.
    The long-run rate under continuous demand is exactly ``rate``.
    """

    __slots__ = ("rate", "_interval", "_last", "_next")

    rate: float

    def __init__(self, rate: float, now: float) -> None:
        self.rate = _check_rate(rate)
        self._interval = 1.0 / self.rate
        self._last: float | None = None    # time slot of the most recent reservation
        self._next = now                   # earliest slot the next reservation may take

    def set_rate(self, rate: float, now: float) -> None:
        """Change the rate; slots already handed out stay, the next one is re-spaced."""
        rate = _check_rate(rate)
        if rate == self.rate:
            return
        self.rate = rate
        self._interval = 1.0 / rate
        if self._last is not None:
            self._next = self._last + self._interval

    def reserve(self, now: float) -> float:
        """Take the next slot; return how many seconds to wait before sending (0.0 = now).

        A reservation is a commitment: a caller that gives up (cancelled, session
        lost) simply wastes its slot, which only ever errs on the slow side.
        """
        slot = self._next if self._next > now else now
        self._last = slot
        self._next = slot + self._interval
        return slot - now


class AdaptiveRate:
    """Adaptive effective rate for one SMSC, driven by its throttle responses.

    * ``on_throttle`` (ESME_RTHROTTLED 0x58 / ESME_RMSGQFUL 0x14): multiply the
      rate by ``decrease`` (0.5) with a floor of ``floor`` (1/s, or the configured
      rate if that is lower), and pause the SMSC for ``pause_initial`` seconds,
      doubling with each consecutive throttle up to ``pause_max``. Throttles that
      arrive *during* a pause are answers to submits sent before it: they neither
      lower the rate again nor lengthen the pause (one decrease per episode, like
      TCP's one cut per round trip), they just get the remaining pause back.
    * ``on_success``: after the pause, the rate climbs back additively by
      ``recover`` x configured per second without a throttle (5 %: from half rate
      to full in 10 s), capped at exactly the configured rate. The first success
      after a pause also resets the consecutive-throttle count.
    """

    __slots__ = (
        "configured", "decrease", "floor", "recover", "pause_initial", "pause_max",
        "_rate", "_since", "_paused_until", "_consecutive",
    )

    def __init__(
        self,
        configured: float,
        now: float,
        *,
        decrease: float = 0.5,
        floor: float = 1.0,
        recover: float = 0.05,
        pause_initial: float = 1.0,
        pause_max: float = 30.0,
    ) -> None:
        self.configured = _check_rate(configured)
        if not 0.0 < decrease < 1.0:
            raise ValueError("decrease must be in (0, 1)")
        if not (recover > 0.0 and pause_initial >= 0.0 and pause_max >= pause_initial and floor > 0.0):
            raise ValueError("recover and floor must be > 0 and 0 <= pause_initial <= pause_max")
        self.decrease = decrease
        self.floor = min(floor, self.configured)
        self.recover = recover
        self.pause_initial = pause_initial
        self.pause_max = pause_max
        self._rate = self.configured
        self._since = now                # recovery is counted from here
        self._paused_until = now
        self._consecutive = 0

    @property
    def rate(self) -> float:
        """The effective rate to give the bucket, in messages per second."""
        return self._rate

    def paused_until(self) -> float:
        """No submit to this SMSC before this time (it may be in the past)."""
        return self._paused_until

    @property
    def consecutive_throttles(self) -> int:
        return self._consecutive

    def on_throttle(self, now: float) -> float:
        """Record a throttle response; return the seconds to pause from ``now``."""
        if now < self._paused_until:
            return self._paused_until - now
        self._consecutive += 1
        self._rate = max(self.floor, self._rate * self.decrease)
        exponent = min(self._consecutive - 1, 62)
        pause = min(self.pause_max, self.pause_initial * (2.0 ** exponent))
        self._paused_until = now + pause
        self._since = self._paused_until
        return pause

    def on_success(self, now: float) -> None:
        """Record an OK (or non-throttle) response: recover toward the configured rate."""
        if now < self._paused_until:
            return            # answers to submits sent before the pause prove nothing
        self._consecutive = 0
        if self._rate >= self.configured:
            self._since = now
            return
        elapsed = now - self._since
        if elapsed <= 0.0:
            return
        self._rate = min(self.configured, self._rate + self.recover * self.configured * elapsed)
        self._since = now


class SendStamp:
    """One send in a :class:`SendLog`: when it left, once it has (see :meth:`SendLog.record`)."""

    __slots__ = ("at", "left")

    def __init__(self, at: float, left: bool) -> None:
        self.at = at
        self.left = left

    def sent(self, now: float) -> None:
        """The submit's bytes were handed to the kernel at ``now`` (a time taken after the write returned)."""
        if not self.left:
            self.at = max(self.at, now)
            self.left = True


class SendLog:
    """The last sends' actual times: the hard guarantee behind the bucket.

    The bucket spaces *reservations*; a send that leaves late (a busy loop) can
    bunch up with the next one. This log holds the times sends really left and
    delays a send until the one ``limit`` sends earlier is at least ``span``
    (+ 20 ms, 2 %, for the jitter between our send and the SMSC's clock) in the
    past, so no sliding window ever carries more than ``limit`` sends.

    "Left" means handed to the kernel: the engine records a send when it passes
    the check (``record(now, pending=True)``) and stamps it when its bytes were
    written (:meth:`SendStamp.sent`, after the write returned), which under load
    can be many milliseconds later. A check whose reference send has not left
    yet waits for it. Since every check runs at or after the previous one, send
    n leaves at or after every send up to n - limit left plus ``span``: no
    window of actual write times holds more than ``limit``, however late the
    writes are.
    """

    __slots__ = ("span", "_times")

    PENDING_POLL_S = 0.001  # wait while the reference send has been recorded but not written yet

    def __init__(self, span: float = 1.0 + 0.02) -> None:
        from collections import deque

        self.span = span
        self._times: deque[SendStamp] = deque()

    def wait(self, now: float, limit: int) -> float:
        """Seconds to wait before one more send keeps every window at ``limit`` sends or fewer."""
        limit = max(1, limit)
        times = self._times
        while len(times) > limit:
            times.popleft()
        if len(times) < limit:
            return 0.0
        first = times[0]
        if not first.left:
            return self.PENDING_POLL_S
        return max(0.0, first.at + self.span - now)

    def record(self, now: float, pending: bool = False) -> SendStamp:
        """Record a send that passed :meth:`wait` at ``now``. With ``pending`` its bytes have not left yet: call
        ``.sent(t)`` on the returned stamp once they have (until then, sends that are checked against it
        wait)."""
        stamp = SendStamp(now, not pending)
        self._times.append(stamp)
        return stamp
