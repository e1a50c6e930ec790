"""The opt-out list's SQL, for both store backends (table ``optouts``, migration step 2).

Every function runs inside the caller's transaction (the stores' group-commit writers), so an
MO and the list change it asks for commit together. Every change bumps the counter
``optout_changes``: a running engine polls it to pick up changes made by ``smppengine optout``.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..compliance import OptOutChange, classify
from ..config import ComplianceConfig

if TYPE_CHECKING:
    import asyncpg

COUNTER = "optout_changes"

SQLITE_V2 = """
CREATE TABLE IF NOT EXISTS optouts (
    number TEXT NOT NULL,
    scope TEXT NOT NULL,
    source TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (number, scope)
) WITHOUT ROWID
"""

POSTGRES_V2 = """
CREATE TABLE optouts (
    number TEXT NOT NULL,
    scope TEXT NOT NULL,
    source TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (number, scope)
)
"""


@dataclass(frozen=True, slots=True)
class OptOut:
    """One row of the list: ``scope`` is the number opted out of, or ``"*"`` (every sender)."""

    number: str
    scope: str
    source: str       # "mo", "cli", "import"
    at: float


@dataclass(frozen=True, slots=True)
class Snapshot:
    version: int                                 # the optout_changes counter
    entries: list[tuple[str, str]] | None        # None: unchanged since the version asked about


# ---------------------------------------------------------------------------------------- SQLite
def _bump_sqlite(c: sqlite3.Connection, by: int) -> None:
    if by:
        c.execute("INSERT INTO counters(name, value) VALUES (?, ?) "
                  "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value", (COUNTER, by))


def apply_sqlite(c: sqlite3.Connection, change: OptOutChange, source: str, at: float) -> bool:
    """Apply an MO's change; True when the list changed."""
    if change.add:
        n = c.execute("INSERT OR IGNORE INTO optouts(number, scope, source, at) VALUES (?,?,?,?)",
                      (change.number, change.scopes[0], source, at)).rowcount
    else:
        marks = ",".join("?" * len(change.scopes))
        n = c.execute(f"DELETE FROM optouts WHERE number=? AND scope IN ({marks})",
                      (change.number, *change.scopes)).rowcount
    _bump_sqlite(c, int(n > 0))
    return n > 0


def add_sqlite(c: sqlite3.Connection, rows: list[OptOut]) -> int:
    """Insert (or refresh source and time of) many rows in one statement; returns the row count."""
    c.executemany("INSERT INTO optouts(number, scope, source, at) VALUES (?,?,?,?) "
                  "ON CONFLICT(number, scope) DO UPDATE SET source=excluded.source, at=excluded.at",
                  [(r.number, r.scope, r.source, r.at) for r in rows])
    _bump_sqlite(c, int(bool(rows)))
    return len(rows)


def remove_sqlite(c: sqlite3.Connection, keys: list[tuple[str, str]]) -> int:
    before = c.total_changes
    c.executemany("DELETE FROM optouts WHERE number=? AND scope=?", keys)
    n = c.total_changes - before
    _bump_sqlite(c, int(n > 0))
    return n


def list_sqlite(c: sqlite3.Connection) -> list[OptOut]:
    return [OptOut(str(r[0]), str(r[1]), str(r[2]), float(r[3]))
            for r in c.execute("SELECT number, scope, source, at FROM optouts ORDER BY number, scope")]


def snapshot_sqlite(c: sqlite3.Connection, known: int | None) -> Snapshot:
    row = c.execute("SELECT value FROM counters WHERE name=?", (COUNTER,)).fetchone()
    version = int(row[0]) if row else 0
    if version == known:
        return Snapshot(version, None)
    return Snapshot(version, [(str(r[0]), str(r[1])) for r in c.execute("SELECT number, scope FROM optouts")])


# ---------------------------------------------------------------------------------------- PostgreSQL
async def _bump_pg(c: asyncpg.Connection, by: int) -> None:
    if by:
        # the list's version: one row shared by every instance ('' in counter_rows, migration step 7)
        await c.execute("INSERT INTO counter_rows(instance, name, value) VALUES ('', $1, $2) ON CONFLICT(instance, "
                        "name) DO UPDATE SET value = counter_rows.value + excluded.value", COUNTER, by)


def _count(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1])     # "INSERT 0 1" / "DELETE 2"


async def apply_pg(c: asyncpg.Connection, change: OptOutChange, source: str, at: float) -> bool:
    if change.add:
        status = await c.execute("INSERT INTO optouts(number, scope, source, at) VALUES ($1,$2,$3,$4) "
                                 "ON CONFLICT DO NOTHING", change.number, change.scopes[0], source, at)
    else:
        status = await c.execute("DELETE FROM optouts WHERE number=$1 AND scope = ANY($2::text[])",
                                 change.number, list(change.scopes))
    n = _count(status)
    await _bump_pg(c, int(n > 0))
    return n > 0


async def add_pg(c: asyncpg.Connection, rows: list[OptOut]) -> int:
    await c.execute(
        "INSERT INTO optouts(number, scope, source, at) "
        "SELECT DISTINCT ON (n, s) n, s, src, t FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[]) "
        "AS u(n, s, src, t) "
        "ON CONFLICT (number, scope) DO UPDATE SET source=excluded.source, at=excluded.at",
        [r.number for r in rows], [r.scope for r in rows], [r.source for r in rows], [r.at for r in rows])
    await _bump_pg(c, int(bool(rows)))
    return len(rows)


async def remove_pg(c: asyncpg.Connection, keys: list[tuple[str, str]]) -> int:
    status = await c.execute(
        "DELETE FROM optouts o USING unnest($1::text[], $2::text[]) AS u(n, s) WHERE o.number=u.n AND o.scope=u.s",
        [k[0] for k in keys], [k[1] for k in keys])
    n = _count(status)
    await _bump_pg(c, int(n > 0))
    return n


async def list_pg(c: Any) -> list[OptOut]:
    rows = await c.fetch("SELECT number, scope, source, at FROM optouts ORDER BY number, scope")
    return [OptOut(str(r[0]), str(r[1]), str(r[2]), float(r[3])) for r in rows]


async def snapshot_pg(c: asyncpg.Connection, known: int | None) -> Snapshot:
    v = await c.fetchval("SELECT value FROM counters WHERE name=$1", COUNTER)
    version = int(v) if v is not None else 0
    if version == known:
        return Snapshot(version, None)
    rows = await c.fetch("SELECT number, scope FROM optouts")
    return Snapshot(version, [(str(r[0]), str(r[1])) for r in rows])


# ---------------------------------------------------------------------------------------- MO hook
def mo_sqlite(c: sqlite3.Connection, msg: dict[str, Any], rules: ComplianceConfig, at: float) -> None:
    """Called by SqliteStore._mo before the MO is queued for P/inbound: a keyword MO changes the list
    in the same transaction, and the published MO says so (``opt_out``) when the list changed."""
    change = classify(msg["text"], msg["from"], msg["to"], rules)
    if change is not None and apply_sqlite(c, change, "mo", at):
        msg["opt_out"] = change.add


async def mo_pg(c: asyncpg.Connection, msg: dict[str, Any], rules: ComplianceConfig, at: float) -> None:
    change = classify(msg["text"], msg["from"], msg["to"], rules)
    if change is not None and await apply_pg(c, change, "mo", at):
        msg["opt_out"] = change.add
