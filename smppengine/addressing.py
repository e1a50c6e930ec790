"""SMPP addressing and time fields for submit_sm (pure)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

TON_UNKNOWN, TON_INTERNATIONAL, TON_NATIONAL, TON_NETWORK, TON_SUBSCRIBER, TON_ALPHANUMERIC = 0, 1, 2, 3, 4, 5
NPI_UNKNOWN, NPI_ISDN = 0, 1
SHORT_CODE_MAX_DIGITS = 8

# A sender (a request's "from", an SMSC's default_from, an entry of senders = [...]): one rule for all three.
_NUMERIC_SENDER = re.compile(r"\+?[0-9]{1,20}")
_ALNUM_SENDER = re.compile(r"[A-Za-z0-9 .\-_&]{1,11}")
SENDER_RULE = "up to 11 characters of A-Z a-z 0-9 space . - _ &, or an optional '+' then 1-20 digits"


def valid_sender(sender: str) -> bool:
    """Digits (international number or short code) or up to 11 alphanumeric characters (not all blank): see
    SENDER_RULE. ``address`` turns it into the source_addr TON/NPI."""
    return bool(_NUMERIC_SENDER.fullmatch(sender) or (_ALNUM_SENDER.fullmatch(sender) and sender.strip()))


def address(addr: str) -> tuple[str, int, int]:
    """(address, TON, NPI): '+' → international (1/1, '+' dropped); letters → alphanumeric (5/0);
    up to 8 digits → short code (3/0); other digits → unknown TON, ISDN NPI (0/1); empty → (0/0)."""
    if not addr:
        return "", TON_UNKNOWN, NPI_UNKNOWN
    if addr.startswith("+") and addr[1:].isdigit():
        return addr[1:], TON_INTERNATIONAL, NPI_ISDN
    if not addr.isdigit():
        return addr, TON_ALPHANUMERIC, NPI_UNKNOWN
    if len(addr) <= SHORT_CODE_MAX_DIGITS:
        return addr, TON_NETWORK, NPI_UNKNOWN
    return addr, TON_UNKNOWN, NPI_ISDN


def relative_validity(seconds: int | None) -> str:
    """SMPP 3.4 relative time "YYMMDDhhmmss000R" (days capped at 99); "" when not set."""
    if not seconds:
        return ""
    seconds = min(int(seconds), 99 * 86400 + 86399)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"0000{days:02d}{hours:02d}{minutes:02d}{secs:02d}000R"


MAX_RELATIVE_S = 99 * 86400 + 86399


def parse_schedule(value: object) -> float | int:
    """A request's ``schedule``: a positive number of seconds (int), or an RFC 3339 date-time with a UTC offset
    (returned as a POSIX timestamp, float). ValueError with the reason otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 < value <= MAX_RELATIVE_S:
            raise ValueError(f"expected 1..{MAX_RELATIVE_S} seconds (99 days), or an RFC 3339 time")
        return value
    if isinstance(value, str):
        try:
            if len(value) < 19 or value[10] not in "Tt ":
                raise ValueError
            at = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{value!r} is not an RFC 3339 time such as 2026-12-24T18:00:00Z") from None
        if at.tzinfo is None:
            raise ValueError(f"{value!r} has no UTC offset (add Z or +hh:mm)")
        if not 2000 <= at.astimezone(UTC).year <= 2099:
            raise ValueError(f"{value!r} is outside the years 2000-2099 that SMPP time can carry")
        return at.timestamp()
    raise ValueError("expected a number of seconds from now, or an RFC 3339 time")


def schedule_time(schedule: float | int | None, received_at: float, now: float) -> str:
    """``schedule_delivery_time`` of a part sent at ``now``: "" when not set or already due; seconds (an int,
    counted from ``received_at``) as relative time "YYMMDDhhmmss000R" of what remains; a timestamp (float) as
    absolute UTC time "YYMMDDhhmmsst00+"."""
    if schedule is None:
        return ""
    if isinstance(schedule, int):
        remaining = round(received_at + schedule - now)
        return relative_validity(remaining) if remaining > 0 else ""
    if schedule <= now:
        return ""
    at = datetime.fromtimestamp(schedule, UTC)
    return at.strftime("%y%m%d%H%M%S") + f"{at.microsecond // 100_000}00+"
