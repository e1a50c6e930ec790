"""What http.py (``/healthz``) and metrics.py (the live gauges) may read of a running engine: a narrow,
read-only view. The :class:`~smppengine.engine.Engine` provides it (the type checker proves it does); the
readers never see the engine itself, so they cannot reach into its parts, and they import nothing above
this module."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from .config import SmscConfig
from .throttle import AdaptiveRate


class SessionView(Protocol):
    """One SMPP session of an SMSC client (smpp/session.py)."""

    @property
    def id(self) -> str: ...
    @property
    def can_submit(self) -> bool: ...
    @property
    def reserved(self) -> int: ...      # window slots taken
    @property
    def window(self) -> int: ...


class SmscView(Protocol):
    """One SMSC account (smpp/client.py)."""

    @property
    def cfg(self) -> SmscConfig: ...
    @property
    def bound_sessions(self) -> int: ...
    @property
    def configured_sessions(self) -> int: ...
    @property
    def sessions(self) -> Sequence[SessionView]: ...
    @property
    def adaptive(self) -> AdaptiveRate: ...
    @property
    def throttle_pauses(self) -> int: ...
    @property
    def reconnects(self) -> int: ...


class EngineView(Protocol):
    """The engine as the health check and the metrics see it."""

    @property
    def instance(self) -> str: ...
    @property
    def mqtt_url(self) -> str: ...
    @property
    def mqtt_connected(self) -> bool: ...
    @property
    def mqtt_reconnects(self) -> int: ...
    @property
    def broker_dropped(self) -> int | None: ...     # the broker's $SYS dropped count, None before it said
    @property
    def smscs(self) -> Mapping[str, SmscView]: ...
    @property
    def backlog(self) -> int: ...                   # messages held by the dispatcher
    @property
    def events_published(self) -> int: ...
    @property
    def store_failed(self) -> bool: ...             # the store's last commit failed
