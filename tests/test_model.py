"""model.iso: the contract's timestamp format, with the per-second formatting cache."""

from __future__ import annotations

from datetime import UTC, datetime

from smppengine.model import iso


def _reference(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ts * 1000) % 1000:03d}Z"


def test_iso_matches_datetime_across_seconds_and_back_again() -> None:
    base = 1764460800.0                          # 2025-11-30T00:00:00Z
    for ts in (base, base + 0.001, base + 0.999, base + 1.0, base + 61.5, base - 0.25, base + 0.5, 0.0, 0.0005):
        assert iso(ts) == _reference(ts), ts
    assert iso(base + 0.25) == "2025-11-30T00:00:00.250Z"
    assert iso(base + 3600.007) == "2025-11-30T01:00:00.007Z"
