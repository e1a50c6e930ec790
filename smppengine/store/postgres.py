"""PostgreSQL store (asyncpg): the same store, for operators who run PostgreSQL anyway.

Behaviour is exactly :class:`~smppengine.store.sqlite.SqliteStore`'s (the reference: same
tables, same state machine, same events in the same order; tests/test_store.py runs one
conformance suite against both). Selected by ``engine.store = "postgresql://user@host/db"``;
``?schema=NAME`` puts the tables in that schema (created if missing) instead of the first
schema on the search_path.

Design, as in the SQLite store: one writer task and one dedicated connection apply every
change in group commits -- every operation that arrived while the previous transaction ran
goes into the next one, committed once; each caller's future resolves only after that
commit. Reads that change nothing (outbox_fetch, recover, trace, stats) use a small pool.
A batch first runs without savepoints (a savepoint is a round trip); if one operation
raises, the transaction is rolled back and the batch replayed with a savepoint per
operation, so one bad operation still cannot undo the others. The hot path (accept) is
set-based: a few statements per batch whatever its size, not per request.

Driver choice, measured (scripts/bench_pg_drivers.py: a batch of 1000 accept-like inserts,
message row + outbox row, one transaction, commit; PostgreSQL 15 on loopback, this 2-core
machine, best of 5):

    =============  ==========  ==========  =================  ===========  ===========
    driver         round trip  one by one  psycopg pipeline   executemany  unnest([])
    =============  ==========  ==========  =================  ===========  ===========
    asyncpg 0.32   53-68 us    6-7k/s      --                 61-63k/s     87-93k/s
    psycopg 3.3    109-119 us  4.5-5k/s    12-15k/s           37k/s        32-38k/s
    =============  ==========  ==========  =================  ===========  ===========

asyncpg is about twice as fast per round trip and 2.5x on the batched insert that is the
store's hot path, so asyncpg it is. (psycopg's pipeline mode would help the per-operation
statements, but still loses to asyncpg's plain round trips for the batch.)
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import orjson
import structlog

from .. import text
from ..config import ComplianceConfig
from ..model import (
    ENROUTE,
    QUEUED,
    REJECTED,
    RETRYING,
    SUBMITTED,
    Rejection,
    Request,
    error,
    iso,
)
from ..receipts import Receipt, receipt_id_keys
from . import optouts
from .base import AcceptResult, Active, StoreError
from .migrations import migrate_postgres
from .states import after_receipt, best_match, part_state, receipt_from_json, receipt_to_json, status_event
from .writer import GroupCommitWriter, Op

log = structlog.get_logger(__name__)

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# acknowledged outbox rows whose DELETE may wait for a commit without the publisher waiting too; above this
# it waits (each outbox read fetches and skips them: the bound keeps that read small)
OUTBOX_DELETING_MAX = 5_000

Conn = asyncpg.Connection

# Errors of the database or the connection, not of one operation: the whole batch fails.
_INFRA_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.PostgresSystemError,
    asyncpg.exceptions.TransactionRollbackError,
    asyncpg.exceptions.ReadOnlySQLTransactionError,
)

_ROW = ("SELECT id, req, state, final, smsc, parts, attempt, "
        "ARRAY(SELECT smsc_message_id FROM parts WHERE msg_id=$1 AND smsc_message_id IS NOT NULL ORDER BY idx) "
        "FROM messages WHERE id=$1")
# the outbox row goes to the message's owner (it publishes the message's events in order), else to the writer
_EMIT = ("WITH e AS (INSERT INTO events(msg_id, state, at, payload) VALUES ($1, $2, $3, $4)) "
         "INSERT INTO outbox(topic, payload, owner) VALUES ($5, $4, "
         "COALESCE((SELECT owner FROM messages WHERE id=$1), $6))")
# instances whose liveness lease expired: their messages and outbox rows may be claimed
_DEAD = "SELECT instance FROM instances WHERE alive_until < $2 AND instance <> $1"
_ACTIVE = "SELECT id, req, state, smsc, attempt, ttl_at, next_attempt_at, created_at FROM messages"


def parse_url(url: str) -> tuple[str, str | None]:
    """Split our own ``schema`` query parameter off a PostgreSQL URL: (dsn for asyncpg, schema)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = None
    rest = []
    for k, v in query:
        if k == "schema":
            schema = v
        else:
            rest.append((k, v))
    if schema is not None and not _SCHEMA_NAME.fullmatch(schema):
        raise StoreError(f"engine.store: schema {schema!r} must be 1-63 of a-z 0-9 _, not starting with a digit")
    return urlunsplit(parts._replace(query=urlencode(rest))), schema


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


class PostgresStore(GroupCommitWriter):
    """``instance`` names this engine in the shared store (``engine.instance``): the owner of the messages it
    accepts and of the outbox rows it publishes; ``lease_s`` is how long its liveness lease lasts without a
    heartbeat before other instances take its non-final messages and unpublished events over."""

    shared = True

    def __init__(self, url: str, topic_prefix: str, instance: str = "gw1", lease_s: float = 30.0) -> None:
        self.url = url
        self.instance = instance
        self.lease_s = lease_s
        self.dsn, self.schema = parse_url(url)
        self.prefix = topic_prefix
        self.outbox_ready = asyncio.Event()
        self._conn: Conn | None = None
        self._pool: asyncpg.Pool | None = None
        self._counts: dict[str, int] = {}   # counter increments of the running batch, written just before commit
        # outbox rows the broker acknowledged whose DELETE is queued and not committed yet: outbox_fetch skips
        # them, so that the publisher need not wait for that commit (see outbox_delete)
        self._deleting: set[int] = set()
        self._init_writer()

    # ---------------------------------------------------------------- lifecycle
    def _settings(self) -> dict[str, str]:
        s = {"application_name": "smppengine"}
        if self.schema:
            s["search_path"] = self.schema
        return s

    async def _connect(self) -> Conn:
        return await asyncpg.connect(self.dsn, server_settings=self._settings(), timeout=10)

    async def open(self) -> None:
        try:
            self._conn = await self._connect()
            if self.schema:
                try:
                    await self._conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                except asyncpg.UniqueViolationError:
                    pass    # instances starting together: IF NOT EXISTS is not atomic in PostgreSQL; it exists
            await migrate_postgres(self._conn)
            self._pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=3,
                                                   server_settings=self._settings(), timeout=10)
        except StoreError:
            await self._close_conns()
            raise
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            await self._close_conns()
            raise StoreError(f"cannot open the PostgreSQL store {redact(self.url)}: {exc}") from exc
        self._start_writer()
        self.outbox_ready.set()

    async def close(self) -> None:
        await self._stop_writer(_noop)
        await self._close_conns()

    async def _close_conns(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        if self._conn is not None:
            if self._conn.is_closed():
                self._conn.terminate()
            else:
                await self._conn.close()
            self._conn = None

    # ---------------------------------------------------------------- writer
    async def _commit_batch(self, batch: list[Op]) -> list[Any]:
        if self._conn is None or self._conn.is_closed():
            self._conn = await self._connect()
            log.warning("store_reconnected")
        return await self._apply_retrying(self._conn, batch)

    async def _apply_retrying(self, c: Conn, batch: list[Op]) -> list[Any]:
        """_apply, run again (up to 5 times) when PostgreSQL rolled the transaction back because it lost a
        deadlock or a serialization conflict -- with several instances on one store, two writers' batches
        may touch the same message rows in different orders. The rollback undid everything: a replay is safe."""
        for attempt in range(1, 6):
            try:
                return await self._apply(c, batch)
            except asyncpg.exceptions.TransactionRollbackError as exc:
                if attempt == 5:
                    raise
                log.warning("store_batch_replayed", error=type(exc).__name__, ops=len(batch), attempt=attempt)
                self._outbox_added = False
        raise AssertionError("unreachable")

    async def _apply(self, c: Conn, batch: list[Op]) -> list[Any]:
        """One transaction for the batch. Fast path without savepoints; on an operation's error,
        roll back and replay with a savepoint per operation (the SQLite store's semantics)."""
        try:
            self._counts = {}
            async with c.transaction():
                out = [await fn(c, *args) for fn, args, _ in batch]
                await self._write_counts(c)
                return out
        except _INFRA_ERRORS:
            raise
        except Exception:
            pass
        self._outbox_added = False
        self._counts = {}
        results: list[Any] = []
        async with c.transaction():
            for fn, args, _ in batch:
                before = dict(self._counts)
                try:
                    async with c.transaction():
                        results.append(await fn(c, *args))
                except _INFRA_ERRORS:
                    raise
                except Exception as exc:  # one bad operation must not undo the others
                    self._counts = before
                    results.append(exc)
            await self._write_counts(c)
        return results

    async def _write_counts(self, c: Conn) -> None:
        """The batch's counter increments, as the transaction's last statement: the counters rows are shared
        by every instance on the store, so their row locks are held only for the commit, not the batch."""
        if not self._counts:
            return
        names, values = zip(*sorted(self._counts.items()), strict=True)
        self._counts = {}
        await c.execute("INSERT INTO counters(name, value) SELECT * FROM unnest($1::text[], $2::bigint[]) "
                        "ON CONFLICT(name) DO UPDATE SET value = counters.value + excluded.value",
                        list(names), list(values))

    # ---------------------------------------------------------------- helpers (writer connection)
    async def _emit(self, c: Conn, row: asyncpg.Record | None, msg_id: str | None, state: str,
                    err: dict[str, Any] | None = None, extra: dict[str, Any] | None = None) -> None:
        """Record a status event and queue it for publishing, in the caller's transaction."""
        now = time.time()
        if row is not None:
            event = status_event(msg_id, state, now, orjson.loads(row[1]), row[4], row[5], row[6], list(row[7]),
                                 err, extra)
        else:
            event = status_event(msg_id, state, now, None, None, 0, 0, [], err, extra)
        payload = orjson.dumps(event)
        topic = f"{self.prefix}/status/{msg_id if msg_id is not None else '_invalid'}"
        await c.execute(_EMIT, msg_id, state, now, payload, topic, self.instance)
        self._outbox_added = True

    @staticmethod
    async def _row(c: Conn, msg_id: str) -> asyncpg.Record | None:
        return await c.fetchrow(_ROW, msg_id)

    async def _set_state(self, c: Conn, msg_id: str, state: str, final: bool,
                         err: dict[str, Any] | None = None, extra: dict[str, Any] | None = None) -> None:
        await c.execute("UPDATE messages SET state=$1, final=$2, error=$3, updated_at=$4 WHERE id=$5",
                        state, final, orjson.dumps(err) if err else None, time.time(), msg_id)
        await self._emit(c, await self._row(c, msg_id), msg_id, state, err, extra)

    async def _bump(self, c: Conn, name: str, by: int = 1) -> None:
        self._counts[name] = self._counts.get(name, 0) + by     # written by _write_counts before the commit

    # ---------------------------------------------------------------- operations
    async def accept(self, requests: list[Request], rejections: list[Rejection], default_ttl: int) -> AcceptResult:
        return await self._call(self._accept, requests, rejections, default_ttl)

    async def _accept(self, c: Conn, requests: list[Request], rejections: list[Rejection],
                      default_ttl: int) -> AcceptResult:
        result = AcceptResult()
        now = time.time()
        first: dict[str, Request] = {}
        for req in requests:
            first.setdefault(req.id, req)
        inserted: set[str] = set()
        if first:
            reqs = list(first.values())
            docs = [orjson.dumps(r.to_json()) for r in reqs]
            rows = await c.fetch(
                "INSERT INTO messages(id, req, state, created_at, updated_at, ttl_at, owner) "
                "SELECT i, r, $3, $4, $4, t, $6 FROM unnest($1::text[], $2::bytea[], $5::float8[]) AS u(i, r, t) "
                "ON CONFLICT (id) DO NOTHING RETURNING id",
                [r.id for r in reqs], docs, QUEUED, now, [r.received_at + (r.ttl or default_ttl) for r in reqs],
                self.instance)
            inserted = {r[0] for r in rows}
        ev_ids: list[str] = []
        payloads: list[bytes] = []
        at = iso(now)
        for req in requests:
            if req.id not in inserted or first.get(req.id) is not req:
                result.duplicates.append(req.id)
                continue
            # what _emit would build from the fresh row: no SMSC, no parts, no attempt yet
            payloads.append(orjson.dumps({
                "id": req.id, "state": QUEUED, "at": at, "to": req.to, "smsc": None, "parts": 0, "attempt": 0,
                "smsc_message_ids": [], "error": None, "meta": req.meta}))
            ev_ids.append(req.id)
            result.new.append(req)
        if ev_ids:
            await c.execute(
                "WITH u AS (SELECT * FROM unnest($1::text[], $2::bytea[]) WITH ORDINALITY AS u(i, p, n)), "
                "e AS (INSERT INTO events(msg_id, state, at, payload) SELECT i, $3, $4, p FROM u ORDER BY n) "
                "INSERT INTO outbox(topic, payload, owner) SELECT $5 || i, p, $6 FROM u ORDER BY n",
                ev_ids, payloads, QUEUED, now, f"{self.prefix}/status/", self.instance)
            self._outbox_added = True
        for rej in rejections:
            err = error(rej.code, None, rej.detail)
            if rej.id is None:
                await self._emit(c, None, None, REJECTED, err, {"raw": rej.raw.decode("utf-8", "replace")})
                continue
            doc = {"id": rej.id, "to": rej.to, "text": None, "meta": rej.meta}
            got = await c.fetchval(
                "INSERT INTO messages(id, req, state, final, error, created_at, updated_at, ttl_at, owner) "
                "VALUES ($1, $2, $3, TRUE, $4, $5, $5, $5, $6) ON CONFLICT (id) DO NOTHING RETURNING id",
                rej.id, orjson.dumps(doc), REJECTED, orjson.dumps(err), now, self.instance)
            if got is None:
                result.duplicates.append(rej.id)
                continue
            await self._emit(c, await self._row(c, rej.id), rej.id, REJECTED, err)
        return result

    async def begin_attempt(self, msg_id: str, smsc: str, parts: int, ref: int | None) -> tuple[int, int]:
        """Bind the message to an SMSC, its part count and concatenation reference (kept from the first
        attempt, so that re-sent parts still join their siblings); returns (attempt number, reference)."""
        return await self._call(self._begin_attempt, msg_id, smsc, parts, ref)  # type: ignore[no-any-return]

    async def _begin_attempt(self, c: Conn, msg_id: str, smsc: str, parts: int, ref: int | None) -> tuple[int, int]:
        # fencing: only the message's owner may send it (another instance took it over when this one's lease
        # expired); attempt 0 tells the dispatcher to drop it
        owner = await c.fetchval("SELECT owner FROM messages WHERE id=$1", msg_id)
        if owner is not None and owner != self.instance:
            log.warning("message_not_owned", msg_id=msg_id, owner=owner, instance=self.instance)
            return 0, ref or 0
        row = await c.fetchrow(
            "UPDATE messages SET smsc=$1, parts=$2, attempt=attempt+1, ref=COALESCE(ref, $3), updated_at=$4 "
            "WHERE id=$5 RETURNING attempt, ref", smsc, parts, ref, time.time(), msg_id)
        if row is None:
            return 0, ref or 0
        await c.execute("INSERT INTO parts(msg_id, idx) SELECT $1, generate_series(0, $2 - 1) ON CONFLICT DO NOTHING",
                        msg_id, parts)
        return int(row[0]), int(row[1] or 0)

    async def part_submitted(self, msg_id: str, idx: int, smsc: str, smsc_id: str) -> None:
        await self._call(self._part_submitted, msg_id, idx, smsc, smsc_id)

    async def _part_submitted(self, c: Conn, msg_id: str, idx: int, smsc: str, smsc_id: str) -> None:
        now = time.time()
        prev = await c.fetchrow(
            "UPDATE parts p SET smsc_message_id=$3,"
            " state=CASE WHEN p.state='pending' THEN 'submitted' ELSE p.state END, submitted_at=$4"
            " FROM parts o WHERE p.msg_id=$1 AND p.idx=$2 AND o.msg_id=p.msg_id AND o.idx=p.idx"
            " RETURNING o.smsc_message_id", msg_id, idx, smsc_id, now)
        if prev is not None and prev[0] is not None:
            await self._bump(c, "resubmits_after_ok")
        keys = list(receipt_id_keys(smsc_id))
        await c.execute("INSERT INTO part_keys(smsc, key, msg_id, idx) SELECT $1, k, $3, $4 FROM unnest($2::text[]) k"
                        " ON CONFLICT DO NOTHING", smsc, keys, msg_id, idx)
        row = await self._row(c, msg_id)
        if row is None:
            return
        pending = await c.fetchval("SELECT COUNT(*) FROM parts WHERE msg_id=$1 AND smsc_message_id IS NULL", msg_id)
        if pending == 0 and not row[3] and row[2] not in (SUBMITTED, ENROUTE):
            dlr = orjson.loads(row[1]).get("dlr", True)
            await self._set_state(c, msg_id, SUBMITTED, final=not dlr)
        # receipts that arrived before this resp was stored (oldest first, as they came)
        held = await c.fetch("SELECT uid, receipt FROM held_receipts WHERE smsc=$1 AND key = ANY($2::text[])"
                             " GROUP BY uid, receipt ORDER BY MIN(at), uid", smsc, keys)
        for uid, blob in held:
            await c.execute("DELETE FROM held_receipts WHERE uid=$1", uid)
            await self._apply_receipt(c, msg_id, idx, receipt_from_json(orjson.loads(blob)))

    async def submitted_one(self, msg_id: str, smsc: str, smsc_id: str) -> None:
        """``begin_attempt(msg_id, smsc, 1, None)`` and ``part_submitted(msg_id, 0, smsc, smsc_id)`` in one
        operation (the store interface's; the dispatcher uses it on a store of one instance only)."""
        await self._call(self._submitted_one, msg_id, smsc, smsc_id)

    async def _submitted_one(self, c: Conn, msg_id: str, smsc: str, smsc_id: str) -> None:
        attempt, _ = await self._begin_attempt(c, msg_id, smsc, 1, None)
        if attempt:         # 0: not in the store, or owned by another instance
            await self._part_submitted(c, msg_id, 0, smsc, smsc_id)

    async def retrying(self, msg_id: str, next_at: float, error: dict[str, Any]) -> None:
        await self._call(self._retrying, msg_id, next_at, error)

    async def _retrying(self, c: Conn, msg_id: str, next_at: float, err: dict[str, Any]) -> None:
        row = await self._row(c, msg_id)
        if row is None or row[3]:
            return
        await c.execute("UPDATE messages SET next_attempt_at=$1 WHERE id=$2", next_at, msg_id)
        await self._set_state(c, msg_id, RETRYING, False, err, {"next_attempt_at": iso(next_at)})

    async def finish(self, msg_id: str, state: str, error: dict[str, Any] | None) -> None:
        """End a message in a final state of the engine's own (rejected, failed, expired)."""
        await self._call(self._finish, msg_id, state, error)

    async def _finish(self, c: Conn, msg_id: str, state: str, err: dict[str, Any] | None) -> None:
        row = await self._row(c, msg_id)
        if row is None or row[3]:
            return
        await self._set_state(c, msg_id, state, True, err)

    async def receipt(self, smsc: str, receipt: Receipt) -> str:
        """Correlate a delivery receipt: returns "matched", "held" (no submit known yet) or "late" (already final)."""
        return await self.receipt_nowait(smsc, receipt)  # type: ignore[no-any-return]

    def receipt_nowait(self, smsc: str, receipt: Receipt) -> asyncio.Future[str]:
        """:meth:`receipt` as a future (no coroutine, no task): the session answers the deliver_sm from its
        done-callback."""
        return self._submit(self._receipt, smsc, receipt)

    async def _receipt(self, c: Conn, smsc: str, receipt: Receipt) -> str:
        keys = list(receipt_id_keys(receipt.message_id))
        rows = await c.fetch("SELECT key, msg_id, idx FROM part_keys WHERE smsc=$1 AND key = ANY($2::text[])"
                             " ORDER BY key, msg_id, idx", smsc, keys)
        if not rows:
            blob = orjson.dumps(receipt_to_json(receipt))
            await c.execute("INSERT INTO held_receipts(uid, smsc, key, receipt, at) "
                            "SELECT $1, $2, k, $4, $5 FROM unnest($3::text[]) k",
                            uuid.uuid4().hex, smsc, keys, blob, time.time())
            await self._bump(c, "receipts_held")
            return "held"
        if len({(m, i) for _, m, i in rows}) == 1:
            _, msg_id, idx = rows[0]
        else:
            cands = []
            for k, m, i in rows:
                f = await c.fetchrow("SELECT m.final, p.submitted_at FROM messages m JOIN parts p ON "
                                     "p.msg_id = m.id AND p.idx = $1 WHERE m.id = $2", i, m)
                cands.append((k, m, i, int(f[0]) if f else 1, f[1] if f else 0.0))
            msg_id, idx = best_match(cands)
        outcome = await self._apply_receipt(c, msg_id, idx, receipt)
        owner = await c.fetchval("SELECT owner FROM messages WHERE id=$1", msg_id)
        if owner is not None and owner != self.instance:
            # the SMSC delivered the receipt on this instance's bind, another instance owns the message:
            # correlated here through the shared store, published by the owner (outbox row owner)
            await self._bump(c, "receipts_foreign")
        return outcome

    async def _apply_receipt(self, c: Conn, msg_id: str, idx: int, receipt: Receipt) -> str:
        await c.execute("UPDATE parts SET state=$1, stat=$2, receipt_at=$3 WHERE msg_id=$4 AND idx=$5",
                        part_state(receipt), receipt.stat, time.time(), msg_id, idx)
        row = await self._row(c, msg_id)
        if row is None or row[3]:
            await self._bump(c, "receipts_late")
            return "late"
        states = [r[0] for r in await c.fetch("SELECT state FROM parts WHERE msg_id=$1", msg_id)]
        change = after_receipt(states, receipt, row[2])
        if change is not None:
            await self._set_state(c, msg_id, *change)
        return "matched"

    async def mo(self, smsc: str, source: str, dest: str, data: bytes, data_coding: int,
                 concat: tuple[int, int, int] | None, default_alphabet: str,
                 optout: ComplianceConfig | None = None,
                 tlvs: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """Store an MO (or one part of it). Returns the published message once complete, else None."""
        return await self._call(self._mo, smsc, source, dest, data, data_coding, concat, default_alphabet, optout,
                                tlvs)

    async def _mo(self, c: Conn, smsc: str, source: str, dest: str, data: bytes, data_coding: int,
                  concat: tuple[int, int, int] | None, default_alphabet: str,
                  optout: ComplianceConfig | None = None,
                  tlvs: dict[str, Any] | None = None) -> dict[str, Any] | None:
        now = time.time()
        if concat is not None:
            ref, total, seq = concat
            await c.execute(
                "INSERT INTO mo_parts VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) "
                "ON CONFLICT (smsc, source, dest, ref, total, seq) DO UPDATE "
                "SET data=excluded.data, data_coding=excluded.data_coding, at=excluded.at",
                smsc, source, dest, ref, total, seq, data, data_coding, now)
            key = (smsc, source, dest, ref, total)
            got = await c.fetch("SELECT seq, data FROM mo_parts WHERE smsc=$1 AND source=$2 AND dest=$3 AND ref=$4"
                                " AND total=$5 ORDER BY seq", *key)
            if len(got) < total:
                return None
            await c.execute("DELETE FROM mo_parts WHERE smsc=$1 AND source=$2 AND dest=$3 AND ref=$4 AND total=$5",
                            *key)
            await c.execute("DELETE FROM mo_parts WHERE at < $1", now - 3600)
            data = b"".join(bytes(r[1]) for r in got)
        msg = {"id": str(uuid.uuid4()), "from": source, "to": dest,
               "text": text.decode(data, data_coding, default_alphabet), "smsc": smsc, "received_at": iso(now)}
        if tlvs:
            msg["tlvs"] = tlvs      # the deliver_sm's TLVs (of the part that completed it)
        if optout is not None:
            await optouts.mo_pg(c, msg, optout, now)
        await c.execute("INSERT INTO outbox(topic, payload, owner) VALUES ($1, $2, $3)", f"{self.prefix}/inbound",
                        orjson.dumps(msg), self.instance)
        await self._bump(c, "mo_received")
        self._outbox_added = True
        return msg

    # ---------------------------------------------------------------- opt-out list (store/optouts.py)
    async def optout_snapshot(self, known: int | None) -> optouts.Snapshot:
        return await self._call(optouts.snapshot_pg, known)

    async def optout_list(self) -> list[optouts.OptOut]:
        return await optouts.list_pg(self._read())

    async def optout_add(self, rows: list[optouts.OptOut]) -> int:
        return await self._call(optouts.add_pg, rows)

    async def optout_remove(self, keys: list[tuple[str, str]]) -> int:
        return await self._call(optouts.remove_pg, keys)

    async def outbox_fetch(self, after: int, limit: int) -> list[tuple[int, str, bytes]]:
        # only this instance's rows: every outbox row has exactly one publishing instance (docs/scaling.md)
        skip = set(self._deleting)      # as of before the read: a DELETE committed during it may be in the rows
        rows = await self._read().fetch("SELECT seq, topic, payload FROM outbox WHERE owner = $3 AND seq > $1 "
                                        "ORDER BY seq LIMIT $2", after, limit + len(skip), self.instance)
        out = [(int(r[0]), str(r[1]), bytes(r[2])) for r in rows]
        if skip:
            out = [r for r in out if r[0] not in skip]
        return out[:limit]

    async def outbox_delete(self, seqs: list[int]) -> None:
        """The broker acknowledged these rows: they are not handed out again, and their DELETE goes into the
        next group commit without being waited for (under load a commit takes long, and the publisher reads
        the next batch only once this one is deleted). Not committed before a crash: published again."""
        if not seqs:
            return
        batch = set(seqs)
        self._deleting |= batch

        def done(fut: asyncio.Future[Any]) -> None:
            self._deleting -= batch
            if not fut.cancelled():
                fut.exception()     # a failed commit is logged by the writer; the rows are published again

        fut = self._submit(self._outbox_delete, seqs)
        fut.add_done_callback(done)
        if len(self._deleting) > OUTBOX_DELETING_MAX:
            await fut           # far ahead of the commits: wait for this one (StoreError if it failed)

    @staticmethod
    async def _outbox_delete(c: Conn, seqs: list[int]) -> None:
        await c.execute("DELETE FROM outbox WHERE seq = ANY($1::bigint[])", seqs)

    def _read(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreError("the PostgreSQL store is not open")
        return self._pool

    async def recover(self) -> list[Active]:
        """At start: take this instance's liveness lease, claim what no live instance owns (rows of instances
        whose lease expired, rows from before ownership existed), and return every non-final message this
        instance owns -- its own from before a restart included."""
        await self.heartbeat()
        await self._call(self._claim)
        return await self._load("WHERE NOT final AND owner = $1", self.instance)

    # ---------------------------------------------------------------- several instances (docs/scaling.md)
    async def heartbeat(self) -> None:
        """Renew this instance's liveness lease (one row): while it holds, nobody takes its messages."""
        await self._call(self._heartbeat)

    async def _heartbeat(self, c: Conn) -> None:
        now = time.time()
        await c.execute("INSERT INTO instances(instance, alive_until, started_at) VALUES ($1, $2, $3) "
                        "ON CONFLICT (instance) DO UPDATE SET alive_until = excluded.alive_until",
                        self.instance, now + self.lease_s, now)

    async def release(self) -> None:
        """A clean stop: give the lease up, so other instances take the remaining messages over at once."""
        await self._call(self._release)

    async def _release(self, c: Conn) -> None:
        await c.execute("UPDATE instances SET alive_until = 0 WHERE instance = $1", self.instance)

    async def _claim(self, c: Conn) -> list[str]:
        """Take over the non-final messages and the outbox rows of dead instances (and unowned ones). SKIP
        LOCKED: rows another writer holds right now are left for the next sweep; two instances claiming at
        once each get distinct rows."""
        now = time.time()
        rows = await c.fetch(
            f"UPDATE messages SET owner = $1 WHERE id IN (SELECT id FROM messages WHERE NOT final AND "
            f"(owner IS NULL OR owner IN ({_DEAD})) FOR UPDATE SKIP LOCKED) RETURNING id", self.instance, now)
        moved = await c.execute(
            f"UPDATE outbox SET owner = $1 WHERE seq IN (SELECT seq FROM outbox WHERE owner IS NULL OR "
            f"owner IN ({_DEAD}) FOR UPDATE SKIP LOCKED)", self.instance, now)
        if moved != "UPDATE 0":
            self._outbox_added = True
        ids = [r[0] for r in rows]
        if ids or moved != "UPDATE 0":
            log.info("store_claimed", instance=self.instance, messages=len(ids), events=int(moved.split()[-1]))
        return ids

    async def claim_orphans(self) -> list[Active]:
        """The non-final messages of instances whose lease expired, now this instance's (to dispatch)."""
        ids = await self._call(self._claim)
        if not ids:
            return []
        return await self._load("WHERE NOT final AND owner = $1 AND id = ANY($2::text[])", self.instance, ids)

    async def rematch_held(self) -> int:
        """Receipts held while their submit_sm_resp was being committed by another instance's writer (the two
        transactions ran concurrently and neither saw the other): apply the ones whose key is now known."""
        return await self._call(self._rematch_held)

    async def _rematch_held(self, c: Conn) -> int:
        uids = await c.fetch("SELECT DISTINCT h.uid FROM held_receipts h JOIN part_keys k ON k.smsc = h.smsc "
                             "AND k.key = h.key LIMIT 1000")
        n = 0
        for (uid,) in uids:
            got = await c.fetch("DELETE FROM held_receipts WHERE uid = $1 RETURNING smsc, receipt", uid)
            if not got:
                continue            # another instance applied it
            await self._receipt(c, got[0][0], receipt_from_json(orjson.loads(got[0][1])))
            n += 1
        if n:
            await self._bump(c, "receipts_rematched", n)
        return n

    async def _load(self, where: str, *args: Any) -> list[Active]:
        async with self._read().acquire() as c, c.transaction(isolation="repeatable_read", readonly=True):
            msgs = await c.fetch(f"{_ACTIVE} {where}", *args)
            ids = [r[0] for r in msgs]
            parts = await c.fetch(
                "SELECT msg_id, idx, smsc_message_id FROM parts WHERE msg_id = ANY($1::text[]) "
                "AND smsc_message_id IS NOT NULL", ids)
        submitted: dict[str, dict[int, str]] = {}
        for msg_id, idx, smsc_id in parts:
            submitted.setdefault(msg_id, {})[int(idx)] = smsc_id
        return [
            Active(Request.from_json(orjson.loads(r[1])), r[2], r[3], int(r[4]), float(r[5]),
                   submitted.get(r[0], {}), r[6], float(r[7]))
            for r in msgs
        ]

    async def pending_page(self, after: tuple[float, str], limit: int) -> list[Active]:
        """Up to ``limit`` of this instance's non-final messages stored after ``after`` = (created_at, id), in
        arrival order (the dispatcher pages through a backlog too large to hold in memory)."""
        return await self._load("WHERE NOT final AND state IN ('queued', 'retrying') AND owner = $1 "
                                "AND (created_at, id) > ($2, $3) "
                                "ORDER BY created_at, id LIMIT $4", self.instance, after[0], after[1], limit)

    async def trace(self, msg_id: str) -> dict[str, Any] | None:
        async with self._read().acquire() as c, c.transaction(isolation="repeatable_read", readonly=True):
            r = await c.fetchrow(
                "SELECT id, req, state, final, smsc, parts, attempt, error, created_at, updated_at, ttl_at "
                "FROM messages WHERE id=$1", msg_id)
            if r is None:
                return None
            parts = await c.fetch("SELECT idx, smsc_message_id, state, submitted_at, stat, receipt_at FROM parts "
                                  "WHERE msg_id=$1 ORDER BY idx", msg_id)
            events = await c.fetch("SELECT payload FROM events WHERE msg_id=$1 ORDER BY seq", msg_id)
        return {
            "id": r[0], "request": orjson.loads(r[1]), "state": r[2], "final": bool(r[3]), "smsc": r[4],
            "parts": r[5], "attempt": r[6], "error": orjson.loads(r[7]) if r[7] else None,
            "created_at": iso(r[8]), "updated_at": iso(r[9]), "ttl_at": iso(r[10]),
            "part_rows": [
                {"idx": p[0], "smsc_message_id": p[1], "state": p[2],
                 "submitted_at": iso(p[3]) if p[3] else None, "stat": p[4],
                 "receipt_at": iso(p[5]) if p[5] else None} for p in parts
            ],
            "events": [orjson.loads(e[0]) for e in events],
        }

    async def stats(self, since: float) -> dict[str, Any]:
        # acknowledged rows whose DELETE is not committed yet are not waiting (outbox_delete); taken before the
        # snapshot, which a DELETE committed meanwhile would otherwise miss as the set loses its rows
        deleting = list(self._deleting)
        async with self._read().acquire() as c, c.transaction(isolation="repeatable_read", readonly=True):
            active = await c.fetch(
                "SELECT state, COALESCE(smsc, ''), COUNT(*) FROM messages WHERE NOT final GROUP BY 1, 2")
            recent = await c.fetch(
                "SELECT state, COALESCE(smsc, ''), COUNT(*) FROM messages WHERE final AND updated_at >= $1 "
                "GROUP BY 1, 2", since)
            counters = await c.fetch("SELECT name, value FROM counters")
            outbox = await c.fetchval("SELECT COUNT(*) FROM outbox WHERE NOT (seq = ANY($1::bigint[]))", deleting)
            held = await c.fetchval("SELECT COUNT(DISTINCT uid) FROM held_receipts")
        return {
            "queue": [{"state": s, "smsc": m, "count": n} for s, m, n in active],
            "outcomes": [{"state": s, "smsc": m, "count": n} for s, m, n in recent],
            "counters": {str(k): int(v) for k, v in counters},
            "outbox": int(outbox),
            "held_receipts": int(held),
        }


async def _noop(c: Conn) -> None:
    return None
