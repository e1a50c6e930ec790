"""Schema migrations for both store backends: a small explicit runner.

Each backend has an ordered list of steps; step ``n`` (1-based) takes the schema
from version ``n - 1`` to ``n``. The applied versions are rows of a
``schema_version`` table. At open, the store applies every step above the
highest recorded version, each step and its version row in one transaction, so
a crash mid-migration leaves the previous version intact. A database whose
version is newer than this code knows is refused (an older engine must not
write into a schema it does not understand).

Adding a migration: append a step to BOTH lists (same number, same meaning),
never edit a step that has shipped. SQLite step 1 is the schema the store had
before migrations existed; it is written with ``IF NOT EXISTS`` so that such a
pre-migration database is adopted as version 1 unchanged.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import structlog

from .base import StoreError
from .optouts import POSTGRES_V2, SQLITE_V2

if TYPE_CHECKING:
    import aiosqlite
    import asyncpg

log = structlog.get_logger(__name__)

SQLITE_V1 = """
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    req BLOB NOT NULL,
    state TEXT NOT NULL,
    final INTEGER NOT NULL DEFAULT 0,
    smsc TEXT,
    parts INTEGER NOT NULL DEFAULT 0,
    attempt INTEGER NOT NULL DEFAULT 0,
    error BLOB,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    ttl_at REAL NOT NULL,
    next_attempt_at REAL,
    ref INTEGER
);
CREATE INDEX IF NOT EXISTS messages_active ON messages(final) WHERE final = 0;
CREATE INDEX IF NOT EXISTS messages_updated ON messages(updated_at);
CREATE TABLE IF NOT EXISTS parts (
    msg_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    smsc_message_id TEXT,
    state TEXT NOT NULL DEFAULT 'pending',
    submitted_at REAL,
    stat TEXT,
    receipt_at REAL,
    PRIMARY KEY (msg_id, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS part_keys (
    smsc TEXT NOT NULL,
    key TEXT NOT NULL,
    msg_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    PRIMARY KEY (smsc, key, msg_id, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    msg_id TEXT,
    state TEXT NOT NULL,
    at REAL NOT NULL,
    payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_msg ON events(msg_id);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS held_receipts (
    uid TEXT NOT NULL,
    smsc TEXT NOT NULL,
    key TEXT NOT NULL,
    receipt BLOB NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS held_key ON held_receipts(smsc, key);
CREATE TABLE IF NOT EXISTS mo_parts (
    smsc TEXT NOT NULL,
    source TEXT NOT NULL,
    dest TEXT NOT NULL,
    ref INTEGER NOT NULL,
    total INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    data BLOB NOT NULL,
    data_coding INTEGER NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (smsc, source, dest, ref, total, seq)
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""

# The same tables and meaning as SQLITE_V1, in PostgreSQL types.
POSTGRES_V1 = """
CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    req BYTEA NOT NULL,
    state TEXT NOT NULL,
    final BOOLEAN NOT NULL DEFAULT FALSE,
    smsc TEXT,
    parts INTEGER NOT NULL DEFAULT 0,
    attempt INTEGER NOT NULL DEFAULT 0,
    error BYTEA,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    ttl_at DOUBLE PRECISION NOT NULL,
    next_attempt_at DOUBLE PRECISION,
    ref INTEGER
);
CREATE INDEX messages_active ON messages(final) WHERE NOT final;
CREATE INDEX messages_updated ON messages(updated_at);
CREATE TABLE parts (
    msg_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    smsc_message_id TEXT,
    state TEXT NOT NULL DEFAULT 'pending',
    submitted_at DOUBLE PRECISION,
    stat TEXT,
    receipt_at DOUBLE PRECISION,
    PRIMARY KEY (msg_id, idx)
);
CREATE TABLE part_keys (
    smsc TEXT NOT NULL,
    key TEXT NOT NULL,
    msg_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    PRIMARY KEY (smsc, key, msg_id, idx)
);
CREATE TABLE events (
    seq BIGSERIAL PRIMARY KEY,
    msg_id TEXT,
    state TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    payload BYTEA NOT NULL
);
CREATE INDEX events_msg ON events(msg_id);
CREATE TABLE outbox (
    seq BIGSERIAL PRIMARY KEY,
    topic TEXT NOT NULL,
    payload BYTEA NOT NULL
);
CREATE TABLE held_receipts (
    uid TEXT NOT NULL,
    smsc TEXT NOT NULL,
    key TEXT NOT NULL,
    receipt BYTEA NOT NULL,
    at DOUBLE PRECISION NOT NULL
);
CREATE INDEX held_key ON held_receipts(smsc, key);
CREATE TABLE mo_parts (
    smsc TEXT NOT NULL,
    source TEXT NOT NULL,
    dest TEXT NOT NULL,
    ref INTEGER NOT NULL,
    total INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    data BYTEA NOT NULL,
    data_coding INTEGER NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (smsc, source, dest, ref, total, seq)
);
CREATE INDEX mo_parts_at ON mo_parts(at);
CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
"""

# step 3: several engine instances on one store (docs/scaling.md): which instance owns (drives) each
# non-final message and publishes each outbox row, and each instance's liveness lease. The SQLite store
# (one instance per file) has the columns for parity but does not use them.
SQLITE_V3 = """
ALTER TABLE messages ADD COLUMN owner TEXT;
ALTER TABLE outbox ADD COLUMN owner TEXT;
CREATE TABLE IF NOT EXISTS instances (
    instance TEXT PRIMARY KEY,
    alive_until REAL NOT NULL,
    started_at REAL NOT NULL
);
"""

POSTGRES_V3 = """
ALTER TABLE messages ADD COLUMN owner TEXT;
CREATE INDEX messages_owner ON messages(owner) WHERE NOT final;
ALTER TABLE outbox ADD COLUMN owner TEXT;
CREATE INDEX outbox_owner ON outbox(owner, seq);
CREATE TABLE instances (
    instance TEXT PRIMARY KEY,
    alive_until DOUBLE PRECISION NOT NULL,
    started_at DOUBLE PRECISION NOT NULL
);
"""

# the dispatcher pages through the stored backlog in arrival order (Store.pending_page)
SQLITE_V4 = """
CREATE INDEX IF NOT EXISTS messages_pending ON messages(created_at, id) WHERE final = 0;
"""

POSTGRES_V4 = """
CREATE INDEX messages_pending ON messages(created_at, id) WHERE NOT final;
"""

# step 5 (SQLite): the outbox is the event journal itself. An event was written twice (events for the history,
# outbox for publishing) and its outbox row deleted after the PUBACK: three statements per event. Now it is
# written once, with its topic, into `events` (seq without AUTOINCREMENT: no sqlite_sequence write per row),
# and `published` holds the seq up to which the broker acknowledged every event. Events that were waiting in
# the old outbox are appended after the mark (msg_id NULL: they are not part of a message's history twice).
# PostgreSQL keeps its owner-scoped outbox table (several instances publish from one store): a no-op there.
SQLITE_V5 = """
CREATE TABLE events_v5 (
    seq INTEGER PRIMARY KEY,
    msg_id TEXT,
    state TEXT NOT NULL,
    at REAL NOT NULL,
    topic TEXT,
    payload BLOB NOT NULL
);
INSERT INTO events_v5(seq, msg_id, state, at, topic, payload) SELECT seq, msg_id, state, at, NULL, payload FROM events;
CREATE TABLE published (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    seq INTEGER NOT NULL
);
INSERT INTO published(id, seq) SELECT 0, COALESCE(MAX(seq), 0) FROM events_v5;
INSERT INTO events_v5(msg_id, state, at, topic, payload)
    SELECT NULL, 'outbox', 0, topic, payload FROM outbox ORDER BY seq;
DROP TABLE events;
DROP TABLE outbox;
ALTER TABLE events_v5 RENAME TO events;
CREATE INDEX events_msg ON events(msg_id)
"""

POSTGRES_V5 = """
SELECT 1
"""

# step 6 (SQLite): a message's rows are keyed by an integer assigned in arrival order (messages.rid), not by
# its id. Applications send random ids (UUIDs): every index keyed by the id took each new row on a random page,
# so a group commit wrote about one page per row and index (parts, part_keys, events_msg), and the cost grew
# with the store. Keyed by rid, a commit's rows fall on the last few pages. Only messages' own id index (the
# idempotency check) stays random. Also: `messages_active` is gone (`messages_pending` covers final = 0) and
# `messages_updated` holds final messages only (the only query on it asks for those), so a state change of a
# message in flight no longer moves it. PostgreSQL: a no-op (its writes are not the bottleneck there).
SQLITE_V6 = """
CREATE TABLE messages_v6 (
    rid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    req BLOB NOT NULL,
    state TEXT NOT NULL,
    final INTEGER NOT NULL DEFAULT 0,
    smsc TEXT,
    parts INTEGER NOT NULL DEFAULT 0,
    attempt INTEGER NOT NULL DEFAULT 0,
    error BLOB,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    ttl_at REAL NOT NULL,
    next_attempt_at REAL,
    ref INTEGER,
    owner TEXT
);
INSERT INTO messages_v6(id, req, state, final, smsc, parts, attempt, error, created_at, updated_at, ttl_at,
                        next_attempt_at, ref, owner)
    SELECT id, req, state, final, smsc, parts, attempt, error, created_at, updated_at, ttl_at, next_attempt_at,
           ref, owner FROM messages ORDER BY created_at, rowid;
CREATE TABLE parts_v6 (
    rid INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    smsc_message_id TEXT,
    state TEXT NOT NULL DEFAULT 'pending',
    submitted_at REAL,
    stat TEXT,
    receipt_at REAL,
    PRIMARY KEY (rid, idx)
) WITHOUT ROWID;
INSERT INTO parts_v6(rid, idx, smsc_message_id, state, submitted_at, stat, receipt_at)
    SELECT m.rid, p.idx, p.smsc_message_id, p.state, p.submitted_at, p.stat, p.receipt_at
    FROM parts p JOIN messages_v6 m ON m.id = p.msg_id;
CREATE TABLE part_keys_v6 (
    smsc TEXT NOT NULL,
    key TEXT NOT NULL,
    rid INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    PRIMARY KEY (smsc, key, rid, idx)
) WITHOUT ROWID;
INSERT INTO part_keys_v6(smsc, key, rid, idx)
    SELECT k.smsc, k.key, m.rid, k.idx FROM part_keys k JOIN messages_v6 m ON m.id = k.msg_id;
ALTER TABLE events ADD COLUMN rid INTEGER;
UPDATE events SET rid = (SELECT m.rid FROM messages_v6 m WHERE m.id = events.msg_id) WHERE msg_id IS NOT NULL;
DROP INDEX events_msg;
CREATE INDEX events_rid ON events(rid);
DROP TABLE parts;
DROP TABLE part_keys;
DROP TABLE messages;
ALTER TABLE messages_v6 RENAME TO messages;
ALTER TABLE parts_v6 RENAME TO parts;
ALTER TABLE part_keys_v6 RENAME TO part_keys;
CREATE INDEX messages_pending ON messages(created_at, id) WHERE final = 0;
CREATE INDEX messages_updated ON messages(updated_at) WHERE final = 1
"""

POSTGRES_V6 = """
SELECT 1
"""

# step 7 (PostgreSQL): counters are kept per instance (counter_rows), so that the group commits of several
# instances do not queue on the same counter rows; `counters` is now a view of their sums (what readers used).
# SQLite (one instance): a no-op.
SQLITE_V7 = """
SELECT 1
"""

# Also (PostgreSQL): a message in flight is updated without touching its indexes (a HOT update): its rows no
# longer index `updated_at` (changed by every update) but `final_at`, set once it is final (what the "last hour's
# outcomes" query asks for); `messages_active` goes (messages_pending and messages_owner cover not-final rows,
# as on SQLite since step 6); pages keep room for the updated row versions (fillfactor); held receipts are
# taken by uid.
POSTGRES_V7 = """
ALTER TABLE messages ADD COLUMN final_at DOUBLE PRECISION;
UPDATE messages SET final_at = updated_at WHERE final;
DROP INDEX messages_updated;
DROP INDEX messages_active;
CREATE INDEX messages_final_at ON messages(final_at) WHERE final;
ALTER TABLE messages SET (fillfactor = 80);
ALTER TABLE parts SET (fillfactor = 70);
CREATE INDEX held_uid ON held_receipts(uid);
ALTER TABLE counters RENAME TO counter_rows;
ALTER TABLE counter_rows ADD COLUMN instance TEXT NOT NULL DEFAULT '';
ALTER TABLE counter_rows DROP CONSTRAINT counters_pkey;
ALTER TABLE counter_rows ADD PRIMARY KEY (instance, name);
CREATE VIEW counters AS SELECT name, SUM(value)::BIGINT AS value FROM counter_rows GROUP BY name
"""

# step 2: the opt-out list (compliance, store/optouts.py); step 3: ownership and leases; step 4: backlog paging;
# step 5: SQLite's outbox is its event journal; step 6: SQLite's rows keyed by arrival order; step 7: PostgreSQL
# counters per instance
SQLITE: list[str] = [SQLITE_V1, SQLITE_V2, SQLITE_V3, SQLITE_V4, SQLITE_V5, SQLITE_V6, SQLITE_V7]
POSTGRES: list[str] = [POSTGRES_V1, POSTGRES_V2, POSTGRES_V3, POSTGRES_V4, POSTGRES_V5, POSTGRES_V6, POSTGRES_V7]


class MigrationError(StoreError):
    """The store's schema cannot be brought to the version this code needs."""


def _statements(script: str) -> list[str]:
    """Split a DDL script into statements (ours have no semicolons inside statements)."""
    return [s.strip() for s in script.split(";") if s.strip()]


async def migrate_sqlite(db: aiosqlite.Connection, steps: list[str] | None = None) -> int:
    """Bring a SQLite store (a connection in autocommit mode) to the newest version; returns it."""
    steps = SQLITE if steps is None else steps
    await db.execute("CREATE TABLE IF NOT EXISTS schema_version "
                     "(version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)")
    # BEGIN IMMEDIATE takes the write lock before reading the version: two processes opening one
    # file at once cannot both apply the same step.
    await db.execute("BEGIN IMMEDIATE")
    try:
        rows = list(await db.execute_fetchall("SELECT COALESCE(MAX(version), 0) FROM schema_version"))
        current = int(rows[0][0])
        _check_known(current, len(steps), "sqlite")
        for n in range(current + 1, len(steps) + 1):
            for stmt in _statements(steps[n - 1]):
                await db.execute(stmt)
            await db.execute("INSERT INTO schema_version(version, applied_at) VALUES (?, ?)", (n, time.time()))
            log.info("store_migrated", backend="sqlite", version=n)
        await db.execute("COMMIT")
    except BaseException:
        await db.execute("ROLLBACK")
        raise
    return len(steps)


async def migrate_postgres(conn: asyncpg.Connection, steps: list[str] | None = None) -> int:
    """Bring a PostgreSQL store (the schema first on the connection's search_path) to the newest version."""
    steps = POSTGRES if steps is None else steps
    async with conn.transaction():
        # one migrator per schema at a time, across every engine instance sharing the database
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.smppengine.migrate'))")
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_version "
                           "(version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)")
        current = int(await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version"))
        _check_known(current, len(steps), "postgresql")
        for n in range(current + 1, len(steps) + 1):
            async with conn.transaction():          # a savepoint: the step and its version row together
                for stmt in _statements(steps[n - 1]):
                    await conn.execute(stmt)
                await conn.execute("INSERT INTO schema_version(version, applied_at) VALUES ($1, $2)", n, time.time())
            log.info("store_migrated", backend="postgresql", version=n)
    return len(steps)


def _check_known(current: int, known: int, backend: str) -> None:
    if current > known:
        raise MigrationError(f"the {backend} store is at schema version {current}, newer than this engine knows "
                             f"({known}); upgrade the engine")
