"""The durable store: one interface (:class:`Store`), SQLite as the zero-setup backend."""

from __future__ import annotations

from .base import AcceptResult, Active, Store, StoreError
from .sqlite import SqliteStore


def open_store(url: str, topic_prefix: str) -> Store:
    """A store for ``engine.store``: a file path (SQLite). PostgreSQL URLs are reserved for the scale-out backend."""
    if url.startswith(("postgresql://", "postgres://")):
        raise StoreError("the PostgreSQL store backend is not built yet; use a SQLite file path")
    return SqliteStore(url.removeprefix("sqlite://"), topic_prefix)


__all__ = ["Active", "AcceptResult", "SqliteStore", "Store", "StoreError", "open_store"]
