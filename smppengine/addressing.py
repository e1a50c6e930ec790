"""SMPP addressing and time fields for submit_sm (pure)."""

from __future__ import annotations

TON_UNKNOWN, TON_INTERNATIONAL, TON_NATIONAL, TON_NETWORK, TON_SUBSCRIBER, TON_ALPHANUMERIC = 0, 1, 2, 3, 4, 5
NPI_UNKNOWN, NPI_ISDN = 0, 1
SHORT_CODE_MAX_DIGITS = 8


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
