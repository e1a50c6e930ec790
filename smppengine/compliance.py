"""Compliance: opt-out (STOP) suppression and sender-ID rules (docs/compliance.md).

The pure part, no I/O: number normalisation, the classification of an MO text as an
opt-out / opt-in keyword, the in-memory opt-out cache the dispatcher consults on the hot
path, and the per-message check (sender allowed? recipient opted out?). The store applies
a classified change inside the MO's own transaction (store/optouts.py); the engine keeps
the cache in step (optout_runtime.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .config import ComplianceConfig, RouteConfig, SmscConfig
from .model import error

GLOBAL = "*"                      # the scope of a global opt-out: every sender
STOPALL = "stopall"               # always global, whatever optout_scope says
CONFIRM_PREFIX = "optout-confirm-"  # ids of the engine's own confirmation replies (reserved in ingress)

_NUMBER_JUNK = re.compile(r"[+\s\-().]")
_DIGITS = re.compile(r"[0-9]{1,20}")
_EDGE_PUNCT = ".!?,;:'\"()"


def normalise_number(raw: str) -> str:
    """``"+44 7700 900123"`` -> ``"447700900123"``: digits only. Raises ValueError when not a number."""
    digits = _NUMBER_JUNK.sub("", raw)
    if not _DIGITS.fullmatch(digits):
        raise ValueError(f"not a phone number: {raw!r}")
    return digits


def normalise_scope(raw: str) -> str:
    """A scope: ``"*"``, a number (digits only, as :func:`normalise_number`), or an alphanumeric
    sender ID kept as written (trimmed). ``""`` (no sender) stays ``""``."""
    raw = raw.strip()
    if raw == GLOBAL:
        return GLOBAL
    try:
        return normalise_number(raw)
    except ValueError:
        return raw


def keyword(text: str) -> str:
    """The MO text as compared with the keyword lists: trimmed, surrounding punctuation dropped, case-folded."""
    return text.strip().strip(_EDGE_PUNCT).strip().casefold()


@dataclass(frozen=True, slots=True)
class OptOutChange:
    """What an MO asks for. ``add``: insert (number, scopes[0]); else delete (number, s) for s in scopes."""

    number: str
    add: bool
    scopes: tuple[str, ...]
    keyword: str


def classify(text: str, source: str, dest: str, cfg: ComplianceConfig) -> OptOutChange | None:
    """The opt-out list change an MO from ``source`` to ``dest`` asks for, or None (not a keyword).

    Opt-out: scoped to ``dest`` (optout_scope "number") or global ("global", or the keyword STOPALL,
    or an MO without a destination). Opt-in removes both the ``dest`` entry and a global entry: the
    subscriber asked this number to write again, which a remaining global entry would prevent.
    """
    word = keyword(text)
    is_out = word in cfg.optout_keywords
    if not is_out and word not in cfg.optin_keywords:
        return None
    try:
        number = normalise_number(source)
    except ValueError:
        return None                       # an alphanumeric originator cannot be written to anyway
    scope = normalise_scope(dest) or GLOBAL
    if is_out:
        glob = cfg.optout_scope == "global" or word == STOPALL
        return OptOutChange(number, True, (GLOBAL if glob else scope,), word)
    return OptOutChange(number, False, tuple(dict.fromkeys((scope, GLOBAL))), word)


class OptOutCache:
    """Every (number, scope) on the opt-out list, in memory: the dispatcher's check costs no DB read."""

    def __init__(self, entries: Iterable[tuple[str, str]] = ()) -> None:
        self._by_number: dict[str, set[str]] = {}
        self.replace(entries)

    def replace(self, entries: Iterable[tuple[str, str]]) -> None:
        by_number: dict[str, set[str]] = {}
        for number, scope in entries:
            by_number.setdefault(number, set()).add(scope)
        self._by_number = by_number

    def apply(self, change: OptOutChange) -> None:
        if change.add:
            self._by_number.setdefault(change.number, set()).update(change.scopes)
            return
        scopes = self._by_number.get(change.number)
        if scopes is not None:
            scopes.difference_update(change.scopes)
            if not scopes:
                del self._by_number[change.number]

    def blocked(self, to: str, sender: str) -> bool:
        """Has ``to`` opted out of messages from ``sender`` (or of every sender)?"""
        try:
            scopes = self._by_number.get(normalise_number(to))
        except ValueError:
            return False
        if not scopes:
            return False
        return GLOBAL in scopes or normalise_scope(sender) in scopes

    def __len__(self) -> int:
        return sum(len(s) for s in self._by_number.values())


def sender_allowed(sender: str, allowed: tuple[str, ...]) -> bool:
    """``allowed == ()`` allows any sender; numbers compare by digits, alphanumeric IDs exactly."""
    if not allowed:
        return True
    want = normalise_scope(sender)
    return any(normalise_scope(a) == want for a in allowed)


def refusal(to: str, sender: str | None, msg_id: str, route: RouteConfig | None, smsc: SmscConfig,
            cache: OptOutCache | None) -> dict[str, Any] | None:
    """Why a message may not go out through ``smsc`` (an error for its ``rejected`` event), or None.

    ``sender`` is the request's ``from``; the effective sender falls back to the SMSC's default_from.
    """
    effective = sender or smsc.default_from
    if not sender_allowed(effective, smsc.senders):
        return error("sender_not_allowed", None, f"from {effective!r} is not in smsc {smsc.name!r} senders")
    if route is not None and not sender_allowed(effective, route.senders):
        return error("sender_not_allowed", None, f"from {effective!r} is not in the senders of route "
                     f"{route.prefix!r}")
    if cache is None or (route is not None and route.allow_opted_out) or msg_id.startswith(CONFIRM_PREFIX):
        return None
    if cache.blocked(to, effective):
        return error("opted_out", None, f"{to} has opted out of messages from {effective or 'this engine'}")
    return None


def screen(to: str, sender: str | None, msg_id: str, route: RouteConfig | None, names: list[str],
           smscs: Mapping[str, SmscConfig], cache: OptOutCache | None) -> tuple[list[str], dict[str, Any] | None]:
    """Keep the candidate SMSCs a message may go through; when none remains, the first one's refusal."""
    kept: list[str] = []
    first: dict[str, Any] | None = None
    for name in names:
        cfg = smscs.get(name)
        why = None if cfg is None else refusal(to, sender, msg_id, route, cfg, cache)
        if why is None:
            kept.append(name)
        elif first is None:
            first = why
    return kept, (first if not kept else None)
