"""Retry and reconnect backoff, and what counts as an attempt: pure functions of the attempt count, of a
submit's outcome and of an injected RNG."""

from __future__ import annotations

import random
from dataclasses import dataclass

_MAX_EXPONENT = 62     # 2**62 s is far beyond any cap; keeps the float maths finite


def _exp_cap(initial: float, maximum: float, n: int) -> float:
    """min(maximum, initial * 2**(n-1)) for n >= 1, overflow-safe."""
    return min(maximum, initial * (2.0 ** min(n - 1, _MAX_EXPONENT)))


@dataclass(frozen=True)
class RetryPolicy:
    """When to retry a message after a transient error, and when to give up.

    ``delay(attempt)`` is "full jitter" with a small floor: uniform in
    ``[lo, cap]`` where ``cap = min(backoff_max, backoff_initial * 2**(attempt-1))``
    and ``lo = min(cap, backoff_initial / 10)``. Full jitter spreads a crowd of
    retries after an SMSC hiccup evenly instead of in synchronised waves; the
    floor keeps a retry from going out in the same millisecond as the failure.
    """

    max_attempts: int = 5
    backoff_initial: float = 1.0
    backoff_max: float = 300.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if not 0.0 <= self.backoff_initial <= self.backoff_max:
            raise ValueError("need 0 <= backoff_initial <= backoff_max")

    def cap(self, attempt: int) -> float:
        """The upper bound of ``delay(attempt)``."""
        if attempt < 1:
            raise ValueError(f"attempt counts attempts already made and must be >= 1, not {attempt}")
        return _exp_cap(self.backoff_initial, self.backoff_max, attempt)

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before the next attempt, ``attempt`` attempts having failed."""
        hi = self.cap(attempt)
        lo = min(hi, self.backoff_initial * 0.1)
        return rng.uniform(lo, hi)

    def exhausted(self, attempt: int) -> bool:
        """True when ``attempt`` attempts have been made and no more are allowed."""
        return attempt >= self.max_attempts


# ------------------------------------------------------------------ what counts as an attempt
# How one submit_sm of a part ended (besides OK): the class of its command_status (smpp/status.py: throttle,
# transient, permanent), or one of these.
CONNECTION_LOST = "connection_lost"    # the connection went away before the resp came
TIMEOUT = "timeout"                    # no resp within the SMSC's response_timeout_s
GENERIC_NACK = "generic_nack"          # the SMSC could not read the submit_sm

# What that outcome means for the message
RESEND = "resend"      # send the part again at once (when the SMSC can take it): not an attempt
COUNTED = "counted"    # the attempt failed and counts: the RetryPolicy decides between a retry and ``failed``
FINAL = "final"        # the SMSC refused for good: ``rejected``, no retry

_ATTEMPT_RULE = {
    "throttle": RESEND,        # the SMSC asked to slow down; the client pauses, the part waits its turn
    CONNECTION_LOST: RESEND,   # not the message's fault; sent again on the next bind (within the ttl)
    TIMEOUT: COUNTED,          # the SMSC may have taken it: counted, so a message that hangs one ends
    GENERIC_NACK: COUNTED,
    "transient": COUNTED,
    "permanent": FINAL,
}


def attempt_outcome(outcome: str) -> str:
    """What the outcome of one submit_sm (``outcome``: a status class or one of CONNECTION_LOST, TIMEOUT,
    GENERIC_NACK) means for its message: RESEND (not an attempt), COUNTED or FINAL. The one place that says
    what counts as an attempt; an unknown outcome counts (a wrong "counted" costs a few bounded retries)."""
    return _ATTEMPT_RULE.get(outcome, COUNTED)


RECONNECT_INITIAL = 1.0
RECONNECT_MAX = 60.0
BIND_FAILED_INITIAL = 30.0
BIND_FAILED_MAX = 300.0


def reconnect_delay(failures: int, rng: random.Random, *, bind_failed: bool = False) -> float:
    """Seconds to wait before reconnecting after ``failures`` consecutive failures.

    "Equal jitter": uniform in ``[cap/2, cap]`` with ``cap`` doubling from 1 s up
    to 60 s -- or, when the SMSC refused the bind (bad password, unknown system_id,
    already bound), from 30 s up to 300 s, since hammering a refusing SMSC gets
    accounts locked. ``failures <= 0`` (nothing failed yet) means connect now: 0.0.
    The jitter keeps the binds of one account from reconnecting in lockstep.
    """
    if failures <= 0:
        return 0.0
    if bind_failed:
        cap = _exp_cap(BIND_FAILED_INITIAL, BIND_FAILED_MAX, failures)
    else:
        cap = _exp_cap(RECONNECT_INITIAL, RECONNECT_MAX, failures)
    return rng.uniform(cap / 2.0, cap)


MQTT_RECONNECT_INITIAL = 1.0
MQTT_RECONNECT_MAX = 30.0


def mqtt_reconnect_delay(failures: int, rng: random.Random) -> float:
    """Seconds the MQTT link waits before reconnecting after ``failures`` consecutive failures.

    Equal jitter as :func:`reconnect_delay`: uniform in ``[cap/2, cap]`` with ``cap`` doubling from 1 s up to
    30 s (a broker is one's own: back within half a minute). ``failures <= 0`` means connect now: 0.0.
    """
    if failures <= 0:
        return 0.0
    cap = _exp_cap(MQTT_RECONNECT_INITIAL, MQTT_RECONNECT_MAX, failures)
    return rng.uniform(cap / 2.0, cap)
