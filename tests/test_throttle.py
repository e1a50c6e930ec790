import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smppengine.throttle import AdaptiveRate, SendLog, TokenBucket

EPS = 1e-9


def max_in_window(times: list[float], width: float = 1.0) -> int:
    """Most sends in any half-open window [t, t+width) (a maximal window starts at a send)."""
    best = 0
    j = 0
    for i, t in enumerate(times):
        j = max(j, i)
        while j < len(times) and times[j] < t + width - EPS:
            j += 1
        best = max(best, j - i)
    return best


def simulate(rate: float, events: list[tuple[float, float | None]]) -> tuple[list[float], list[float]]:
    """events: (gap since previous event, new rate or None = a send request).
    Returns the actual send times and, per send, the rate in force at its reservation."""
    now = 0.0
    bucket = TokenBucket(rate, now)
    sends: list[float] = []
    rates: list[float] = []
    for gap, new_rate in events:
        now += gap
        if new_rate is not None:
            bucket.set_rate(new_rate, now)
            continue
        wait = bucket.reserve(now)
        assert wait >= 0.0
        sends.append(now + wait)
        rates.append(bucket.rate)
    return sends, rates


gaps = st.one_of(st.just(0.0), st.floats(0.0, 0.05), st.floats(0.0, 3.0))
rates = st.one_of(st.integers(1, 200).map(float), st.floats(0.2, 300.0))


@settings(max_examples=300, deadline=None)
@given(rate=rates, events=st.lists(st.tuples(gaps, st.none()), min_size=1, max_size=400))
def test_constant_rate_never_exceeds_rate_in_any_window(rate: float, events: list) -> None:
    sends, _ = simulate(rate, events)
    assert sends == sorted(sends)
    assert max_in_window(sends) <= math.ceil(rate - EPS)
    for a, b in zip(sends, sends[1:], strict=False):
        assert b - a >= 1.0 / rate - EPS


@settings(max_examples=300, deadline=None)
@given(
    rate=rates,
    events=st.lists(
        st.tuples(gaps, st.one_of(st.none(), st.none(), st.none(), rates)), min_size=1, max_size=400
    ),
)
def test_rate_changes_keep_window_bound(rate: float, events: list) -> None:
    sends, in_force = simulate(rate, events)
    assert sends == sorted(sends)
    for a, b, r in zip(sends, sends[1:], in_force[1:], strict=False):
        assert b - a >= 1.0 / r - EPS          # the gap before a send honours the rate it was reserved at
    # any 1 s window holds at most ceil(R) sends, R = highest rate among that window's reservations
    j = 0
    for i, t in enumerate(sends):
        j = max(j, i)
        while j < len(sends) and sends[j] < t + 1.0 - EPS:
            j += 1
        assert j - i <= math.ceil(max(in_force[i:j]) - EPS)


@pytest.mark.parametrize("rate", [1.0, 7.0, 50.0, 2.5, 333.3])
def test_long_run_rate_equals_rate(rate: float) -> None:
    bucket = TokenBucket(rate, 100.0)
    n = 10_000
    waits = [bucket.reserve(100.0) for _ in range(n)]   # everything queued at once
    assert waits[0] == 0.0
    assert waits[-1] == pytest.approx((n - 1) / rate)
    # steady arrivals faster than the rate: throughput is exactly the rate
    bucket = TokenBucket(rate, 0.0)
    now, sends = 0.0, []
    for _ in range(n):
        now += 0.2 / rate
        sends.append(now + bucket.reserve(now))
    assert (len(sends) - 1) / (sends[-1] - sends[0]) == pytest.approx(rate)


def test_no_burst_after_idle() -> None:
    bucket = TokenBucket(10.0, 0.0)
    assert bucket.reserve(0.0) == 0.0
    assert bucket.reserve(1000.0) == 0.0
    assert bucket.reserve(1000.0) == pytest.approx(0.1)
    assert bucket.reserve(1000.0) == pytest.approx(0.2)


def test_set_rate_respaces_next_slot() -> None:
    bucket = TokenBucket(10.0, 0.0)
    assert bucket.reserve(0.0) == 0.0
    bucket.set_rate(1.0, 0.0)
    assert bucket.reserve(0.0) == pytest.approx(1.0)
    bucket.set_rate(100.0, 0.0)
    assert bucket.reserve(0.0) == pytest.approx(1.01)
    assert bucket.rate == 100.0


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_rejects_bad_rate(bad: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(bad, 0.0)
    with pytest.raises(ValueError):
        TokenBucket(1.0, 0.0).set_rate(bad, 0.0)
    with pytest.raises(ValueError):
        AdaptiveRate(bad, 0.0)


# --- AdaptiveRate -----------------------------------------------------------------------------

def test_throttle_halves_rate_and_pauses() -> None:
    a = AdaptiveRate(100.0, 0.0)
    assert a.rate == 100.0 and a.paused_until() == 0.0
    assert a.on_throttle(10.0) == 1.0
    assert a.rate == 50.0
    assert a.paused_until() == 11.0


def test_throttles_during_pause_count_once() -> None:
    a = AdaptiveRate(100.0, 0.0)
    a.on_throttle(10.0)
    # the rest of the window answers with 0x58 too: same episode
    assert a.on_throttle(10.25) == pytest.approx(0.75)
    assert a.rate == 50.0
    a.on_success(10.5)                      # answer to a pre-pause submit: no recovery, no reset
    assert a.rate == 50.0 and a.consecutive_throttles == 1


def test_consecutive_throttles_grow_pause_to_cap_and_floor_rate() -> None:
    a = AdaptiveRate(100.0, 0.0)
    now, pauses = 0.0, []
    for _ in range(12):
        pause = a.on_throttle(now)
        pauses.append(pause)
        now += pause                        # the next throttle comes right after the pause
    assert pauses[:6] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0]
    assert max(pauses) == 30.0
    assert a.rate == 1.0                    # floor


def test_success_resets_pause_growth() -> None:
    a = AdaptiveRate(100.0, 0.0)
    a.on_throttle(0.0)
    a.on_throttle(1.0)                      # second in a row: 2 s
    a.on_success(3.5)
    assert a.consecutive_throttles == 0
    assert a.on_throttle(4.0) == 1.0


def test_floor_below_one_when_configured_below_one() -> None:
    a = AdaptiveRate(0.5, 0.0)
    a.on_throttle(0.0)
    assert a.rate == 0.5


def test_recovers_gradually_to_exactly_configured() -> None:
    a = AdaptiveRate(40.0, 0.0)
    a.on_throttle(0.0)                       # 20/s, paused until 1.0
    assert a.rate == 20.0
    a.on_success(1.0)
    assert a.rate == 20.0                    # no time without throttle yet
    a.on_success(2.0)
    assert a.rate == pytest.approx(22.0)     # +5 % of 40 per second
    previous = a.rate
    now = 2.0
    while now < 20.0:
        now += 0.1
        a.on_success(now)
        assert previous <= a.rate <= 40.0
        previous = a.rate
    assert a.rate == 40.0                    # exactly, not approximately


@settings(max_examples=200, deadline=None)
@given(
    configured=st.floats(0.1, 1000.0),
    script=st.lists(st.tuples(st.floats(0.0, 5.0), st.booleans()), max_size=100),
)
def test_adaptive_rate_bounds(configured: float, script: list[tuple[float, bool]]) -> None:
    a = AdaptiveRate(configured, 0.0)
    now = 0.0
    for gap, throttled in script:
        now += gap
        before = a.rate
        if throttled:
            pause = a.on_throttle(now)
            assert 0.0 <= pause <= 30.0
            assert a.rate <= before
            assert a.paused_until() >= now
        else:
            a.on_success(now)
            assert a.rate >= before
        assert min(1.0, configured) <= a.rate <= configured
    a.on_success(now + 1000.0)
    a.on_success(now + 2000.0)
    assert a.rate == configured


# --------------------------------------------------------------------------- SendLog


def test_send_log_counts_a_late_write_when_it_left() -> None:
    """A send checked at 0 whose bytes leave at 0.5 (a busy loop) counts from 0.5: with limit 2 the third
    send waits until 0.5 + span, not 0 + span (then [0.5, 1.5) would hold three)."""
    log = SendLog(span=1.0)
    a = log.record(0.0, pending=True)
    assert log.wait(0.0, 2) == 0.0
    b = log.record(0.0, pending=True)
    assert log.wait(0.4, 2) == SendLog.PENDING_POLL_S        # a has not left yet: wait for it
    a.sent(0.5)
    b.sent(0.5)
    assert log.wait(1.0, 2) == pytest.approx(0.5)
    assert log.wait(1.5, 2) == 0.0
    b.sent(9.0)                                              # a second stamp changes nothing
    assert log.wait(1.5, 2) == 0.0


@settings(max_examples=300, deadline=None)
@given(
    limit=st.integers(1, 8),
    sends=st.lists(st.tuples(st.floats(0.0, 0.5), st.floats(0.0, 1.5)), min_size=1, max_size=60),
)
def test_send_log_bounds_every_window_of_actual_writes(limit: int, sends: list[tuple[float, float]]) -> None:
    """Sends pass the check in order but their bytes leave after any delay (up to 1.5 s, out of order): the
    write times never put more than ``limit`` in a window of ``span``."""
    log = SendLog(span=1.0)
    now = 0.0
    pending: list[tuple[float, object]] = []         # (write time, stamp)
    written: list[float] = []

    def write_due() -> None:
        pending.sort(key=lambda p: p[0])
        while pending and pending[0][0] <= now:
            t, stamp = pending.pop(0)
            stamp.sent(t)  # type: ignore[attr-defined]
            written.append(t)

    for gap, write_delay in sends:
        now += gap
        write_due()
        while (w := log.wait(now, limit)) > 0:
            now += w
            write_due()
        pending.append((now + write_delay, log.record(now, pending=True)))
    now = math.inf
    write_due()
    assert max_in_window(sorted(written)) <= limit
