"""Destination routing: which SMSCs, in failover order, carry a message."""

from __future__ import annotations

from collections.abc import Sequence

from smppengine.config import RouteConfig


class NoRoute(Exception):
    """No configured SMSC can take this destination (or the named route is unknown)."""


def _digits(s: str) -> str:
    return s[1:] if s.startswith("+") else s


class Router:
    """Longest-prefix routing table over the configured SMSCs.

    A prefix is compared with the destination both as written and with a leading
    ``+`` ignored on either side, so ``"+44"`` matches ``"447700..."`` and ``"44"``
    matches ``"+447700..."``. The longest prefix (in digits) wins; between equally
    long ones, the one that matches the destination as written wins, then the
    first in the config. ``""`` is the default route. A bare ``"+"`` matches only
    destinations written with ``+``. The winning route's SMSC list is the
    failover order; less specific routes are never fallen through to.
    """

    def __init__(self, routes: Sequence[RouteConfig], smsc_names: Sequence[str]) -> None:
        self._smsc_names: tuple[str, ...] = tuple(dict.fromkeys(smsc_names))
        known = set(self._smsc_names)
        self._routes: list[tuple[str, str, tuple[str, ...]]] = []
        self._configs: tuple[RouteConfig, ...] = tuple(routes)
        for i, route in enumerate(routes):
            targets = tuple(dict.fromkeys(route.smsc))
            unknown = [name for name in targets if name not in known]
            if unknown:
                raise ValueError(f"route[{i}] (prefix {route.prefix!r}): unknown smsc {', '.join(unknown)}")
            if not targets:
                raise ValueError(f"route[{i}] (prefix {route.prefix!r}): no smsc listed")
            self._routes.append((route.prefix, _digits(route.prefix), targets))
        self._has_routes = bool(self._routes)

    def candidates(self, to: str, override: str | None = None) -> list[str]:
        """SMSC names to try for ``to``, in order. Raises NoRoute."""
        if override is not None:
            if override in self._smsc_names:
                return [override]
            raise NoRoute(f"route {override!r} is not a configured smsc")
        if not self._has_routes:
            if not self._smsc_names:
                raise NoRoute("no smsc configured")
            return list(self._smsc_names)
        return list(self._routes[self._best(to)][2])

    def route_for(self, to: str, override: str | None = None) -> RouteConfig | None:
        """The [[route]] entry that carries ``to`` (None with a named route, or when none matches)."""
        if override is not None or not self._has_routes:
            return None
        try:
            return self._configs[self._best(to)]
        except NoRoute:
            return None

    def _best(self, to: str) -> int:
        """Index of the winning route for ``to``. Raises NoRoute."""
        to_digits = _digits(to)
        best: tuple[int, int, int, int] | None = None
        best_index = -1
        for index, (raw, digits, _targets) in enumerate(self._routes):
            as_written = to.startswith(raw)
            if raw == "+" and not as_written:
                continue
            if not (as_written or to_digits.startswith(digits)):
                continue
            score = (len(digits), int(as_written), len(raw), -index)
            if best is None or score > best:
                best, best_index = score, index
        if best is None:
            raise NoRoute(f"no route matches destination {to!r}")
        return best_index
