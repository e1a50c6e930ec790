"""PostgreSQL store (asyncpg): the store for operators who run PostgreSQL anyway, and the one several
engine instances can share (docs/scaling.md).

Same behaviour as :class:`~smppengine.store.sqlite.SqliteStore` (the reference): the same state machine
-- the rules live once, in store/states.py, and both backends apply them -- and the same events in the same
order; tests/test_store.py runs one conformance suite against both. Not the same tables: each backend keeps
its own schema (store/migrations.py; SQLite keys a message's rows by an arrival-order integer since step 6,
PostgreSQL keeps owner-scoped outbox rows and per-instance counters). Selected by
``engine.store = "postgresql://user@host/db"``; ``?schema=NAME`` puts the tables in that schema (created if
missing) instead of the first schema on the search_path.

Design: one writer task and one dedicated connection apply every change in group commits -- every
operation that arrived while the previous transaction ran goes into the next one, committed once; each
caller's future resolves only after that commit. A group commit is one unit of work (store/pg_batch.py):
its rows are read and locked in one statement, read in a second, changed in memory by the shared rules, and
written back in one statement of data-modifying CTEs over arrays -- a handful of round trips per commit
whatever it holds, where each operation used to pay one per statement (~12 per message). If one operation
raises, the transaction is rolled back and the batch applied again with a savepoint per operation, so one
bad operation cannot undo the others. Reads that change nothing (outbox_fetch, recover, trace, stats) use a
small pool. A third connection LISTENs (other instances wake this one: a receipt to apply, outbox rows to
publish) and holds this instance name's lock (a second engine with the same ``engine.instance`` is refused).
A lost connection is reconnected (``store_reconnected``); a group commit lost before its COMMIT was sent is
applied again, one lost during its COMMIT fails its callers (nothing was acknowledged on the strength of it).

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
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import orjson
import structlog

from .. import text
from ..config import ComplianceConfig
from ..model import (
    Rejection,
    Request,
    iso,
)
from ..receipts import Receipt, receipt_id_keys
from . import optouts
from .base import AcceptResult, Active, StoreError
from .migrations import migrate_postgres
from .pg_batch import HELD_NOTE, NEEDS, Batch, foreign_head, parse_held_note
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

# The connection is gone (PostgreSQL restarted, network): reconnect, and apply the batch again when it was lost
# before the COMMIT was sent. Connecting goes on for up to RECONNECT_S per batch.
_CONN_LOST: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.InternalClientError,     # the protocol broke off mid-operation (connection killed)
)
RECONNECT_S = 60.0
# An acknowledged outbox row's DELETE waits up to this long for another operation to commit with (it wakes no
# commit of its own: at moderate rates one commit per PUBACKed batch was ~2 of the ~7 commits per message)
OUTBOX_DELETE_LAZY_S = 0.05
# The correlation keys of the submit_sm_resps this instance took or committed in the last RECENT_KEYS_S to
# 2 x RECENT_KEYS_S seconds: a receipt held by another instance for one of them (its commit raced this one's)
# is re-matched here at once; for older ones the lease loop's re-match (every min(1 s, lease_s / 3)) remains
RECENT_KEYS_S = 5.0
# outbox_fetch queries at least this often even when it knows nothing new can be there (a safety net)
OUTBOX_REREAD_S = 1.0

T = TypeVar("T")


class _CommitUnknown(Exception):
    """The connection was lost while the COMMIT was in flight: it may or may not have committed."""


async def _rollback(tr: Any) -> None:
    try:
        await tr.rollback()
    except Exception:  # noqa: BLE001 - the connection may be gone; the server rolls back on its own then
        pass


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
        self._lease_from = 0.0              # monotonic time the last committed lease renewal was sent
        self._lease_lapsed = False          # a renewal came after the lease had run out (or it was released)
        self.on_reconnect: Callable[[], None] | None = None   # called when the writer reconnected
        self._lost = False                  # the writer lost its connection and has not reconnected yet
        self._ns = self.schema or "public"  # the schema the tables are in (current_schema(), at open)
        self._channel = "smppengine"        # NOTIFY channel of this schema's instances (set at open)
        self._listen: Conn | None = None    # LISTENs, and holds the instance name's lock
        self._rematch_wake = asyncio.Event()
        self._rematch_keys: set[tuple[str, str]] = set()     # to look for, named by NOTIFYs
        self._rematch_all = False                            # look through every held receipt of this instance
        self._foreign_head = foreign_head(instance)
        self._listen_task: asyncio.Task[None] | None = None
        self._writer_pid = 0                # the writer connection's backend: its own NOTIFYs are not news
        # hashes of (smsc, key) of the resps taken lately, in two generations (see RECENT_KEYS_S)
        self._keys_new: set[int] = set()
        self._keys_old: set[int] = set()
        self._keys_turn = 0.0
        self._lazy_wake: asyncio.TimerHandle | None = None
        # outbox_fetch answers "nothing new" without a query when nothing can have been added since its last
        # query (see outbox_fetch): _outbox_gen counts what may have added rows for this instance (its commits
        # that wrote outbox rows, another instance's NOTIFY, a reconnect); _gone: rows whose DELETE committed
        self._outbox_gen = 0
        self._seen: tuple[int, list[int], bool, float] | None = None    # gen, seqs, complete, when
        self._gone: set[int] = set()
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
            self._writer_pid = self._conn.get_server_pid()
            if self.schema:
                try:
                    await self._conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                except asyncpg.UniqueViolationError:
                    pass    # instances starting together: IF NOT EXISTS is not atomic in PostgreSQL; it exists
            await migrate_postgres(self._conn)
            self._ns = str(await self._conn.fetchval("SELECT current_schema()"))
            self._channel = f"smppengine.{self._ns}"
            self._listen = await self._listener()
            # reset=_no_reset: a connection handed back to the pool is not reset on the server (asyncpg's default
            # sends pg_advisory_unlock_all, CLOSE ALL, UNLISTEN *, RESET ALL: a round trip and a transaction after
            # every read, half of PostgreSQL's transactions at moderate rates); the pool's reads take no locks,
            # open no cursors, LISTEN to nothing and SET nothing, and an open transaction is still rolled back
            self._pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=3, reset=_no_reset,
                                                   server_settings=self._settings(), timeout=10)
        except StoreError:
            await self._close_conns()
            raise
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            await self._close_conns()
            raise StoreError(f"cannot open the PostgreSQL store {redact(self.url)}: {exc}") from exc
        self._start_writer()
        self._listen_task = asyncio.create_task(self._listen_loop(), name="store-listen")
        self.outbox_ready.set()

    async def _listener(self) -> Conn:
        """A connection of its own that holds this instance name's lock for as long as it lives (a second
        engine with the same ``engine.instance`` on this store is refused at its start) and LISTENs for the
        other instances' news: a receipt held (look for its part), outbox rows written for this instance."""
        c = await self._connect()
        try:
            key = f"smppengine.instance.{self._ns}.{self.instance}"
            if not await c.fetchval("SELECT pg_try_advisory_lock(hashtextextended($1, 0))", key):
                raise StoreError(
                    f"engine.instance {self.instance!r} is already running on this store (schema {self._ns!r}): "
                    "another engine holds its lock. Give every instance sharing a store its own engine.instance")
            await c.add_listener(self._channel, self._on_notify)
        except BaseException:
            c.terminate()
            raise
        return c

    def _on_notify(self, conn: asyncpg.Connection[Any] | asyncpg.pool.PoolConnectionProxy[Any], pid: int,
                   channel: str, note: object) -> None:
        payload = str(note)
        if payload == "outbox:" + self.instance:
            self._outbox_gen += 1
            self.outbox_ready.set()
        elif pid == self._writer_pid:
            return      # this instance's own hold: a resp of its own that comes later finds it in its commit
        elif payload.startswith(self._foreign_head):
            # receipts for this instance's messages, handed over: take those held for these keys
            self._rematch_keys.update(parse_held_note(payload, self._foreign_head))
            self._rematch_wake.set()
        elif payload.startswith(HELD_NOTE):
            # held with no owner known: look only when one of its keys is of a resp this instance took lately
            # (its commit may have raced the hold); a resp not taken yet finds the held receipt in its commit
            mine = [(smsc, key) for smsc, key in parse_held_note(payload) if self._recent_key(smsc, key)]
            if mine:
                self._rematch_keys.update(mine)
                self._rematch_wake.set()
        elif payload == "held" or payload == self._foreign_head.rstrip("\n"):
            self._rematch_all = True        # no keys said: look through every held receipt of this instance
            self._rematch_wake.set()

    def _note_keys(self, smsc: str, smsc_id: str) -> None:
        """Remember the correlation keys of a resp this instance is about to commit (see RECENT_KEYS_S)."""
        now = time.monotonic()
        if now >= self._keys_turn:
            self._keys_old, self._keys_new = self._keys_new, set()
            self._keys_turn = now + RECENT_KEYS_S
        for k in receipt_id_keys(smsc_id):
            self._keys_new.add(hash((smsc, k)))

    def _recent_key(self, smsc: str, key: str) -> bool:
        h = hash((smsc, key))
        return h in self._keys_new or h in self._keys_old

    async def _listen_loop(self) -> None:
        """Re-match held receipts when another instance held one (its part may be committed here); keep the
        listening connection up (it reconnects after PostgreSQL restarted)."""
        while True:
            try:
                await asyncio.wait_for(self._rematch_wake.wait(), timeout=1.0)
            except TimeoutError:
                pass
            if self._listen is None or self._listen.is_closed():
                if self._listen is not None:
                    self._listen.terminate()
                    self._listen = None
                try:
                    self._listen = await self._listener()
                except StoreError as exc:
                    log.error("instance_name_in_use", instance=self.instance, error=str(exc))
                    await asyncio.sleep(5.0)
                    continue
                except Exception as exc:  # noqa: BLE001 - PostgreSQL is not back yet: try again
                    log.warning("store_listen_failed", instance=self.instance, error=str(exc) or type(exc).__name__)
                    continue
                log.warning("store_reconnected", instance=self.instance, connection="listener")
                self._rematch_all = True        # what was held meanwhile (its NOTIFY was lost)
                self._rematch_wake.set()
                self._outbox_gen += 1           # rows written for this one meanwhile (their NOTIFY was lost)
                self.outbox_ready.set()
            if self._rematch_wake.is_set():
                self._rematch_wake.clear()
                keys, self._rematch_keys = self._rematch_keys, set()
                full, self._rematch_all = self._rematch_all, False
                try:
                    if full:
                        await self.rematch_held()
                    elif keys:
                        await self._call(Batch.rematch, sorted(keys))
                except Exception as exc:  # noqa: BLE001 - logged by the writer; the lease loop tries again
                    log.warning("rematch_failed", error=str(exc))

    async def close(self) -> None:
        if self._listen_task is not None:
            self._listen_task.cancel()
            try:
                await self._listen_task
            except asyncio.CancelledError:
                pass
            self._listen_task = None
        await self._stop_writer(_noop)      # commits what is queued, lazy operations included
        if self._lazy_wake is not None:
            self._lazy_wake.cancel()
            self._lazy_wake = None
        await self._close_conns()

    async def _close_conns(self) -> None:
        if self._listen is not None:
            if self._listen.is_closed():
                self._listen.terminate()
            else:
                await self._listen.close()      # releases the instance name's lock
            self._listen = None
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
        """Apply the batch in one transaction. A connection lost before the COMMIT was sent rolled everything
        back: reconnect and apply it again (the callers wait; nothing was acknowledged), for up to
        RECONNECT_S; lost during the COMMIT, the outcome is unknown and the callers get a StoreError."""
        deadline = time.monotonic() + RECONNECT_S
        delay = 0.1
        while True:
            try:
                if self._conn is None or self._conn.is_closed():
                    lost = self._conn is not None or self._lost
                    if self._conn is not None:
                        self._conn.terminate()
                        self._conn = None
                    self._conn = await self._connect()
                    self._writer_pid = self._conn.get_server_pid()
                    if lost:
                        self._lost = False
                        self._outbox_gen += 1
                        log.warning("store_reconnected", instance=self.instance, connection="writer")
                        if self.on_reconnect is not None:
                            # a commit lost in flight may have committed after all: its requests were not
                            # acknowledged and come again as duplicates, so the dispatcher reads the stored
                            # backlog again (it skips what it holds)
                            self.on_reconnect()
                return await self._apply_retrying(self._conn, batch)
            except _CommitUnknown as exc:
                raise StoreError(f"the connection was lost during the commit: {exc.__cause__}") from exc
            except _CONN_LOST as exc:
                if not self._lost:
                    log.error("store_connection_lost", instance=self.instance, error=str(exc) or type(exc).__name__,
                              ops=len(batch))
                self._lost = True
                if self._conn is not None:
                    self._conn.terminate()
                    self._conn = None
                if time.monotonic() + delay > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _apply_retrying(self, c: Conn, batch: list[Op]) -> list[Any]:
        """_apply, run again (up to 5 times) when PostgreSQL rolled the transaction back because it lost a
        deadlock or a serialization conflict. The rollback undid everything: a replay is safe. (Rows are
        locked in id order in one statement per group commit and counters are per instance, so two instances
        should not deadlock: store_batch_replayed is watched by bench/scale.py.)"""
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
        """One transaction for the batch: its operations set-based (pg_batch.Batch). When one operation
        raises, everything is rolled back and applied again with a savepoint per operation, so that one bad
        operation does not undo the others (the SQLite store's semantics)."""
        ops = [(fn, args) for fn, args, _ in batch]
        for each in (False, True):
            self._counts = {}
            self._outbox_added = False
            tr = c.transaction()
            await tr.start()
            try:
                out = await self._run(c, ops, each)
                await self._write_counts(c)
            except _INFRA_ERRORS + _CONN_LOST:
                await _rollback(tr)
                raise
            except Exception:
                await _rollback(tr)
                if each or c.is_closed():
                    raise
                continue
            try:
                await tr.commit()
            except _CONN_LOST as exc:
                self._outbox_gen += 1           # it may have committed rows
                raise _CommitUnknown() from exc
            if self._outbox_added:
                self._outbox_gen += 1
            return out
        raise AssertionError("unreachable")

    async def _run(self, c: Conn, ops: list[tuple[Any, tuple[Any, ...]]], each: bool) -> list[Any]:
        """The operations in order: runs of Batch operations set-based, the others (mo, opt-out list,
        claim, re-match, release) as they come; ``each``: every operation in a savepoint of its own."""
        results: list[Any] = [None] * len(ops)
        run: list[int] = []
        for i, (fn, args) in enumerate(ops):
            if fn in NEEDS:
                if each:
                    await self._savepoint(c, results, i, self._unit(c, ops, [i], results))
                else:
                    run.append(i)
                continue
            if run:
                await self._unit(c, ops, run, results)
                run = []
            if each:
                await self._savepoint(c, results, i, fn(c, *args))
            else:
                results[i] = await fn(c, *args)
        if run:
            await self._unit(c, ops, run, results)
        return results

    async def _savepoint(self, c: Conn, results: list[Any], i: int, work: Any) -> None:
        before = dict(self._counts)
        try:
            async with c.transaction():
                res = await work
            if results[i] is None:
                results[i] = res
        except _INFRA_ERRORS + _CONN_LOST:
            raise
        except Exception as exc:  # one bad operation must not undo the others
            self._counts = before
            results[i] = exc

    def _batch(self) -> Batch:
        return Batch(self.instance, self.prefix, self.lease_s, self._channel)

    async def _unit(self, c: Conn, ops: list[tuple[Any, tuple[Any, ...]]], idx: list[int],
                    results: list[Any]) -> None:
        """Apply ops[i] for i in idx as one unit of work: load, apply in order, flush (pg_batch)."""
        b = self._batch()
        live = []
        for i in idx:
            fn, args = ops[i]
            try:
                NEEDS[fn](b, *args)
            except Exception as exc:  # a malformed operation: its caller gets the error, it changes nothing
                results[i] = exc
                continue
            live.append(i)
        await b.load(c)
        for i in live:
            fn, args = ops[i]
            results[i] = fn(b, *args)
        if await b.flush(c):
            self._outbox_added = True

    async def _write_counts(self, c: Conn) -> None:
        """The counter increments of the operations that are not set-based (MO, re-match), this instance's
        rows (counters are kept per instance: migration step 7)."""
        if not self._counts:
            return
        names, values = zip(*sorted(self._counts.items()), strict=True)
        self._counts = {}
        await c.execute("INSERT INTO counter_rows(instance, name, value) SELECT $3, * FROM "
                        "unnest($1::text[], $2::bigint[]) ON CONFLICT(instance, name) "
                        "DO UPDATE SET value = counter_rows.value + excluded.value",
                        list(names), list(values), self.instance)

    async def _bump(self, c: Conn, name: str, by: int = 1) -> None:
        self._counts[name] = self._counts.get(name, 0) + by     # written by _write_counts before the commit

    # ---------------------------------------------------------------- operations (pg_batch.Batch)
    async def accept(self, requests: list[Request], rejections: list[Rejection], default_ttl: int) -> AcceptResult:
        return await self._call(Batch.accept, requests, rejections, default_ttl)

    async def begin_attempt(self, msg_id: str, smsc: str, parts: int, ref: int | None) -> tuple[int, int]:
        """Bind the message to an SMSC, its part count and concatenation reference (kept from the first
        attempt, so that re-sent parts still join their siblings); returns (attempt number, reference)."""
        return await self._call(Batch.begin_attempt, msg_id, smsc, parts, ref)

    async def part_submitted(self, msg_id: str, idx: int, smsc: str, smsc_id: str) -> None:
        self._note_keys(smsc, smsc_id)
        await self._call(Batch.part_submitted, msg_id, idx, smsc, smsc_id)
        self._note_keys(smsc, smsc_id)      # again once committed: a commit that waited long keeps its window

    async def submitted_one(self, msg_id: str, smsc: str, smsc_id: str) -> None:
        """``begin_attempt(msg_id, smsc, 1, None)`` and ``part_submitted(msg_id, 0, smsc, smsc_id)`` in one
        operation (the store interface's; the dispatcher uses it on a store of one instance only)."""
        self._note_keys(smsc, smsc_id)
        await self._call(Batch.submitted_one, msg_id, smsc, smsc_id)
        self._note_keys(smsc, smsc_id)      # again once committed: a commit that waited long keeps its window

    async def retrying(self, msg_id: str, next_at: float, error: dict[str, Any]) -> None:
        await self._call(Batch.retrying, msg_id, next_at, error)

    async def finish(self, msg_id: str, state: str, error: dict[str, Any] | None) -> None:
        """End a message in a final state of the engine's own (rejected, failed, expired)."""
        await self._call(Batch.finish, msg_id, state, error)

    async def receipt(self, smsc: str, receipt: Receipt) -> str:
        """Correlate a delivery receipt: returns "matched", "held" (no submit known yet) or "late" (already final)."""
        return await self.receipt_nowait(smsc, receipt)

    def receipt_nowait(self, smsc: str, receipt: Receipt) -> asyncio.Future[str]:
        """:meth:`receipt` as a future (no coroutine, no task): the session answers the deliver_sm from its
        done-callback."""
        return self._submit(Batch.receipt, smsc, receipt)

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
        msg: dict[str, Any] = {"id": str(uuid.uuid4()), "from": source, "to": dest,
                               "text": text.decode(data, data_coding, default_alphabet), "smsc": smsc,
                               "received_at": iso(now)}
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
        """This instance's rows after ``after`` (every outbox row has exactly one publishing instance:
        docs/scaling.md), without those acknowledged and being deleted. Answers [] without a query when its
        last query saw all of this instance's rows, each of them has been acknowledged since, and nothing can
        have added rows meanwhile (about half of the publisher's reads at moderate rates: it reads again after
        every acknowledged batch); a query at least every OUTBOX_REREAD_S all the same."""
        seen = self._seen
        if (seen is not None and seen[0] == self._outbox_gen and seen[2]
                and time.monotonic() - seen[3] < OUTBOX_REREAD_S
                and all(q in self._deleting or q in self._gone for q in seen[1] if q > after)):
            return []

        async def read() -> list[tuple[int, str, bytes]]:
            gen, at = self._outbox_gen, time.monotonic()
            self._gone = set()
            skip = set(self._deleting)  # as of before the read: a DELETE committed during it may be in the rows
            want = limit + len(skip)
            rows = await self._read().fetch("SELECT seq, topic, payload FROM outbox WHERE owner = $3 AND seq > $1 "
                                            "ORDER BY seq LIMIT $2", after, want, self.instance)
            out = [(int(r[0]), str(r[1]), bytes(r[2])) for r in rows]
            self._seen = (gen, [r[0] for r in out], len(out) < want and after == 0, at)
            if skip:
                out = [r for r in out if r[0] not in skip]
            return out[:limit]

        return await self._reading("outbox_fetch", read)

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
            if not fut.cancelled() and fut.exception() is None:
                self._gone |= batch
            # (a failed commit is logged by the writer; the rows are published again)

        fut = self._submit_lazy(Batch.outbox_delete, seqs)
        fut.add_done_callback(done)
        if len(self._deleting) > OUTBOX_DELETING_MAX:
            await fut           # far ahead of the commits: wait for this one (StoreError if it failed)

    def _submit_lazy(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Queue an operation that need not commit soon: it goes with the next commit, which it starts itself
        only after OUTBOX_DELETE_LAZY_S."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._ops.append((fn, args, fut))
        if self._lazy_wake is None or self._lazy_wake.cancelled():
            self._lazy_wake = asyncio.get_running_loop().call_later(OUTBOX_DELETE_LAZY_S, self._lazy_due)
        return fut

    def _lazy_due(self) -> None:
        self._lazy_wake = None
        if self._ops:
            self._wake.set()

    def _read(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreError("the PostgreSQL store is not open")
        return self._pool

    async def _reading(self, what: str, read: Callable[[], Awaitable[T]]) -> T:
        """Run a read that changes nothing on the pool; when its connection was lost (PostgreSQL restarted, the
        network cut it), run it again on a new one -- the pool reconnects -- for up to RECONNECT_S, then raise
        StoreError. The callers are long-lived loops (the outbox publisher, the dispatcher's backlog reader):
        a raw driver error would end them, and nothing would be published or paged in after the reconnect."""
        deadline = time.monotonic() + RECONNECT_S
        delay = 0.1
        lost = False
        while True:
            try:
                got = await read()
            except _CONN_LOST as exc:
                if not lost:
                    lost = True
                    log.warning("store_read_retrying", instance=self.instance, read=what,
                                error=str(exc) or type(exc).__name__)
                if time.monotonic() + delay > deadline:
                    raise StoreError(f"{what}: the PostgreSQL store cannot be reached: {exc}") from exc
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            except asyncpg.PostgresError as exc:
                raise StoreError(f"{what}: {exc}") from exc
            if lost:
                log.info("store_read_resumed", instance=self.instance, read=what)
            return got

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
        # The renewal's lease runs from when its operation is applied, somewhere between now and the commit's
        # end: counted from now, so that a slow commit (a busy host) cannot make the lease look longer than it is
        # (counted from the commit's end, lease_held said "held" for as long as the commit took past expiry).
        start = time.monotonic()
        await self._call(Batch.heartbeat)
        done = time.monotonic()
        if self._lease_from and done - self._lease_from > self.lease_s and not self._lease_lapsed:
            # renewed only after the previous lease ran out: other instances may have taken messages this one
            # still holds in memory; from now on each send is fenced by begin_attempt's owner check
            self._lease_lapsed = True
            log.warning("lease_lapsed", instance=self.instance, late_s=round(done - self._lease_from - self.lease_s, 3))
        self._lease_from = start

    def lease_held(self) -> bool:
        """True while this instance's lease certainly holds: renewed less than 2/3 of ``lease_s`` ago and
        never lapsed (the remaining third covers clock skew between the hosts). Then no other instance can
        have taken this one's messages, and the dispatcher sends a one-part message without writing its
        attempt first (it is written with the resp, store.submitted_one): one commit less per message."""
        return (not self._lease_lapsed and self._lease_from > 0
                and time.monotonic() - self._lease_from < self.lease_s * 2 / 3)

    async def release(self) -> None:
        """A clean stop: give the lease up, so other instances take the remaining messages over at once."""
        await self._call(self._release)

    async def _release(self, c: Conn) -> None:
        self._lease_lapsed = True
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
        return await self._call(Batch.rematch)

    async def _load(self, where: str, *args: Any) -> list[Active]:
        async def read() -> tuple[list[Any], list[Any]]:
            async with self._read().acquire() as c, c.transaction(isolation="repeatable_read", readonly=True):
                msgs = await c.fetch(f"{_ACTIVE} {where}", *args)
                ids = [r[0] for r in msgs]
                parts = await c.fetch(
                    "SELECT msg_id, idx, smsc_message_id FROM parts WHERE msg_id = ANY($1::text[]) "
                    "AND smsc_message_id IS NOT NULL", ids)
            return msgs, parts

        msgs, parts = await self._reading("load", read)
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
                "SELECT state, COALESCE(smsc, ''), COUNT(*) FROM messages WHERE final AND final_at >= $1 "
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


async def _no_reset(c: Conn) -> None:
    return None
