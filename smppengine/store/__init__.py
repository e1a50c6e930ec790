"""The durable store: one interface (:class:`Store`), SQLite as the zero-setup backend, PostgreSQL as the other."""

from __future__ import annotations

from .base import AcceptResult, Active, Store, StoreError
from .sqlite import SqliteStore


def open_store(url: str, topic_prefix: str, instance: str = "gw1", lease_s: float = 30.0) -> Store:
    """A store for ``engine.store``: a file path (SQLite) or a ``postgresql://`` URL (PostgreSQL).

    ``instance`` and ``lease_s`` (``engine.instance``, ``engine.lease_s``) matter to PostgreSQL only, which
    several engine instances may share (docs/scaling.md)."""
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore  # asyncpg only loaded when PostgreSQL is asked for

        return PostgresStore(url, topic_prefix, instance, lease_s)
    return SqliteStore(url.removeprefix("sqlite://"), topic_prefix)


__all__ = ["Active", "AcceptResult", "SqliteStore", "Store", "StoreError", "open_store"]
