import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smppengine.retry import RetryPolicy, reconnect_delay


@given(attempt=st.integers(1, 10_000), seed=st.integers(0, 2**32))
def test_delay_within_full_jitter_bounds(attempt: int, seed: int) -> None:
    policy = RetryPolicy()
    d = policy.delay(attempt, random.Random(seed))
    cap = min(300.0, 1.0 * 2 ** min(attempt - 1, 100))
    assert 0.1 <= d <= cap


def test_delay_caps_double_then_stop() -> None:
    policy = RetryPolicy(max_attempts=20, backoff_initial=1.0, backoff_max=300.0)
    assert [policy.cap(n) for n in range(1, 11)] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300]


def test_delay_is_jittered_and_spreads_over_the_range() -> None:
    policy = RetryPolicy()
    rng = random.Random(42)
    samples = [policy.delay(4, rng) for _ in range(2000)]
    assert len(set(samples)) > 1900
    assert min(samples) < 0.5 and max(samples) > 7.5       # uniform over [0.1, 8]
    assert 0.1 <= min(samples) and max(samples) <= 8.0


def test_delay_is_deterministic_for_a_seeded_rng() -> None:
    policy = RetryPolicy()
    assert policy.delay(3, random.Random(7)) == policy.delay(3, random.Random(7))


def test_custom_policy() -> None:
    policy = RetryPolicy(max_attempts=3, backoff_initial=10.0, backoff_max=15.0)
    rng = random.Random(1)
    assert all(1.0 <= policy.delay(1, rng) <= 10.0 for _ in range(100))
    assert all(1.0 <= policy.delay(5, rng) <= 15.0 for _ in range(100))


def test_exhausted() -> None:
    policy = RetryPolicy(max_attempts=5)
    assert [policy.exhausted(n) for n in range(0, 7)] == [False, False, False, False, False, True, True]
    assert RetryPolicy(max_attempts=1).exhausted(1)


def test_invalid_policy_and_attempt() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(backoff_initial=10.0, backoff_max=5.0)
    with pytest.raises(ValueError):
        RetryPolicy().delay(0, random.Random(0))


@given(failures=st.integers(1, 10_000), seed=st.integers(0, 2**32))
def test_reconnect_delay_bounds(failures: int, seed: int) -> None:
    cap = min(60.0, 2.0 ** min(failures - 1, 100))
    assert cap / 2 <= reconnect_delay(failures, random.Random(seed)) <= cap
    bind_cap = min(300.0, 30.0 * 2.0 ** min(failures - 1, 100))
    assert bind_cap / 2 <= reconnect_delay(failures, random.Random(seed), bind_failed=True) <= bind_cap


def test_reconnect_delay_sequence() -> None:
    rng = random.Random(3)
    assert reconnect_delay(0, rng) == 0.0
    assert 0.5 <= reconnect_delay(1, rng) <= 1.0
    assert 1.0 <= reconnect_delay(2, rng) <= 2.0
    assert 30.0 <= reconnect_delay(7, rng) <= 60.0
    assert 30.0 <= reconnect_delay(100, rng) <= 60.0
    assert 15.0 <= reconnect_delay(1, rng, bind_failed=True) <= 30.0
    assert 150.0 <= reconnect_delay(5, rng, bind_failed=True) <= 300.0
    # bind refusals always back off longer than plain connection failures
    assert all(
        reconnect_delay(n, random.Random(n), bind_failed=True) > reconnect_delay(n, random.Random(n))
        for n in range(1, 30)
    )


def test_reconnect_delay_is_jittered() -> None:
    rng = random.Random(11)
    assert len({reconnect_delay(6, rng) for _ in range(100)}) == 100


def test_mqtt_reconnect_delay_doubles_from_1s_to_30s_with_equal_jitter() -> None:
    from smppengine.retry import mqtt_reconnect_delay

    assert mqtt_reconnect_delay(0, random.Random(1)) == 0.0
    for failures, cap in [(1, 1.0), (2, 2.0), (3, 4.0), (5, 16.0), (6, 30.0), (7, 30.0), (10_000, 30.0)]:
        rng = random.Random(failures)
        delays = [mqtt_reconnect_delay(failures, rng) for _ in range(500)]
        assert all(cap / 2 <= d <= cap for d in delays), failures
        assert max(delays) > cap * 0.95 and min(delays) < cap * 0.55      # spread over the whole range
    # the same draw as the link's former inline rule: min(30, 0.5 * 2**min(n, 6)) * (0.5 + random() / 2)
    for n in range(1, 12):
        a, b = random.Random(n), random.Random(n)
        assert mqtt_reconnect_delay(n, a) == pytest.approx(min(30.0, 0.5 * 2 ** min(n, 6)) * (0.5 + b.random() / 2))


def test_what_counts_as_an_attempt() -> None:
    """One rule (retry.attempt_outcome): throttling and a lost connection resend the part without counting an
    attempt; a timeout, a generic_nack and a transient status count; a permanent status ends the message."""
    from smppengine import retry
    from smppengine.smpp.status import PERMANENT, THROTTLE, TRANSIENT

    assert retry.attempt_outcome(THROTTLE) == retry.RESEND
    assert retry.attempt_outcome(retry.CONNECTION_LOST) == retry.RESEND
    assert retry.attempt_outcome(retry.TIMEOUT) == retry.COUNTED
    assert retry.attempt_outcome(retry.GENERIC_NACK) == retry.COUNTED
    assert retry.attempt_outcome(TRANSIENT) == retry.COUNTED
    assert retry.attempt_outcome(PERMANENT) == retry.FINAL
    assert retry.attempt_outcome("something new") == retry.COUNTED


def test_the_retry_section_is_the_policy() -> None:
    """[retry] is parsed into the RetryPolicy the dispatcher uses: built once, no second copy of its fields."""
    from smppengine.config import RetryConfig, parse_config

    assert RetryConfig is RetryPolicy
    smsc = [{"name": "a", "host": "127.0.0.1", "port": 2775, "system_id": "u", "password": "p"}]
    retry = parse_config({"smsc": smsc, "retry": {"max_attempts": 3, "backoff_initial": 2, "backoff_max": 9}}).retry
    assert retry == RetryPolicy(max_attempts=3, backoff_initial=2.0, backoff_max=9.0)
