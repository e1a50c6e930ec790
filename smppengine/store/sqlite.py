"""SQLite store (aiosqlite, WAL): the zero-setup default.

One writer task applies every change in group commits: whatever operations
arrived while the previous transaction ran are applied together, inside one
transaction, in one hop to aiosqlite's thread, and committed once. Callers
await their operation's result, which is only delivered after the commit, so
"await store.x(...)" means "x is durable". The state machine's decisions (which state
follows which, when a message is final, what a repeated id does) are store/states.py's,
shared with the PostgreSQL store; this module reads and writes the rows they guard.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import sqlite3
import time
import uuid
from collections.abc import Callable
from typing import Any

import aiosqlite
import orjson
import structlog

from .. import text
from ..config import ComplianceConfig
from ..model import (
    QUEUED,
    REJECTED,
    RETRYING,
    Rejection,
    Request,
    error,
    iso,
)
from ..receipts import Receipt, receipt_id_keys
from . import optouts
from .base import AcceptResult, Active
from .migrations import SQLITE_V1, migrate_sqlite
from .states import (
    DUPLICATE_MARK,
    REPLACE,
    after_receipt,
    best_match,
    on_repeat,
    part_state,
    part_state_on_resp,
    part_state_on_resp_sql,
    receipt_from_json,
    receipt_to_json,
    status_event,
    when_all_submitted,
)
from .writer import GroupCommitWriter, Op

log = structlog.get_logger(__name__)

# a part's state after its OK resp, as the resp UPDATEs write it (the rule is states.part_state_on_resp)
_PART_RESP = (f"UPDATE parts SET smsc_message_id=?, state={part_state_on_resp_sql('state')}, submitted_at=? "
              "WHERE rid=? AND idx=? AND smsc_message_id IS NULL")
_PART_RESP_ONE = ("INSERT INTO parts(rid, idx, smsc_message_id, state, submitted_at) "
                  f"VALUES (?,0,?,'{part_state_on_resp('pending')}',?) "
                  "ON CONFLICT(rid, idx) DO UPDATE SET smsc_message_id=excluded.smsc_message_id, "
                  f"state={part_state_on_resp_sql('parts.state')}, submitted_at=excluded.submitted_at "
                  "WHERE parts.smsc_message_id IS NULL")

OUTBOX_MEM_MAX = 5_000    # outbox rows kept in memory for the publisher (~500 bytes each with the tuple)
SCHEMA = SQLITE_V1   # the schema now lives in migrations.py (step 1); kept as a name for readers




class SqliteStore(GroupCommitWriter):
    def __init__(self, path: str, topic_prefix: str) -> None:
        self.path = path
        self.prefix = topic_prefix
        self.outbox_ready = asyncio.Event()
        self._db: aiosqlite.Connection | None = None
        self.on_reconnect: Callable[[], None] | None = None     # (a file does not disconnect: never called)
        self._init_writer()
        self._held = 0        # held receipts (an upper bound): lets part_submitted skip the lookup when none
        self._published = 0   # every event up to this seq was acknowledged by the broker
        self._mark_written = 0    # the published mark as last committed to the table
        self._mark_queued = False  # a write of the mark is queued for the next group commit
        # The outbox rows of this process's commits, read back in the database thread right after each
        # commit that wrote some (one SELECT in the same hop), so that the publisher does not need a hop of
        # its own per batch. Holds every committed row with seq >= _mem_from; bounded (OUTBOX_MEM_MAX).
        self._mem: collections.deque[tuple[int, str, bytes]] = collections.deque()
        self._mem_from = 1
        self._tail = 0        # the highest seq read back (database thread)
        self._new_rows: list[tuple[int, str, bytes]] = []
        # Rows read from the table for a publisher more than OUTBOX_MEM_MAX rows behind: every row with seq in
        # (_ahead_after, last row], read in one go, so that it waits for the database thread once per
        # OUTBOX_MEM_MAX rows, not once per batch (each wait is the length of a group commit under load)
        self._ahead: collections.deque[tuple[int, str, bytes]] = collections.deque()
        self._ahead_after = 0

    # ---------------------------------------------------------------- lifecycle
    async def open(self) -> None:
        self._db = await aiosqlite.connect(self.path, isolation_level=None)
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.execute("PRAGMA synchronous=NORMAL")
        await self._db.execute("PRAGMA busy_timeout=5000")
        await migrate_sqlite(self._db)
        held = await self._db.execute_fetchall("SELECT COUNT(DISTINCT uid) FROM held_receipts")
        self._held = int(list(held)[0][0])
        mark = await self._db.execute_fetchall("SELECT seq FROM published WHERE id=0")
        self._published = self._mark_written = int(list(mark)[0][0])
        self._mark_queued = False
        self._ahead.clear()
        tail = await self._db.execute_fetchall("SELECT COALESCE(MAX(seq), 0) FROM events")
        self._tail = int(list(tail)[0][0])
        self._mem.clear()
        self._mem_from = self._tail + 1
        self._start_writer()
        self.outbox_ready.set()

    async def close(self) -> None:
        if self._published > self._mark_written:
            self._queue_mark()          # committed by the flush below
        await self._stop_writer(lambda c: None)
        if self._db is not None:
            await self._db.close()
            self._db = None

    # ---------------------------------------------------------------- writer
    async def _commit_batch(self, batch: list[Op]) -> list[Any]:
        assert self._db is not None
        # aiosqlite's own thread runs the whole batch: one hop per group commit (aiosqlite has no public
        # call for "run this function on the connection"; kept to this line)
        results: list[Any] = await self._db._execute(self._apply, batch)
        if self._new_rows:
            mem = self._mem
            mem.extend(self._new_rows)
            self._new_rows = []
            while len(mem) > OUTBOX_MEM_MAX:     # the publisher is far behind: it reads those from the table
                self._mem_from = mem.popleft()[0] + 1
        return results

    def _apply(self, batch: list[Op]) -> list[Any]:
        """Runs in the database thread: the whole batch in one transaction.

        The batch is applied straight through; only when an operation raises (not a database failure) is
        it undone and applied again with a savepoint per operation, so that one bad operation does not undo
        the others. Two statements per operation saved on the path every message takes.
        """
        assert self._db is not None
        c = self._db._conn
        c.execute("BEGIN IMMEDIATE")
        try:
            try:
                results = [fn(c, *args) for fn, args, _ in batch]
            except sqlite3.OperationalError:
                raise
            except Exception:  # noqa: BLE001 - redone one by one below, each error goes to its caller
                c.execute("ROLLBACK")
                c.execute("BEGIN IMMEDIATE")
                results = self._apply_each(c, batch)
            c.execute("COMMIT")
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise
        if self._outbox_added:       # committed: read back what this batch added to the outbox
            rows = c.execute("SELECT seq, topic, payload FROM events WHERE seq > ? ORDER BY seq",
                             (self._tail,)).fetchall()
            if rows:
                self._tail = rows[-1][0]
                self._new_rows = [(int(r[0]), str(r[1]), bytes(r[2])) for r in rows]
        return results

    @staticmethod
    def _apply_each(c: sqlite3.Connection, batch: list[Op]) -> list[Any]:
        results: list[Any] = []
        for fn, args, _ in batch:
            c.execute("SAVEPOINT op")
            try:
                results.append(fn(c, *args))
                c.execute("RELEASE op")
            except sqlite3.OperationalError:
                raise
            except Exception as exc:  # one bad operation must not undo the others
                c.execute("ROLLBACK TO op")
                c.execute("RELEASE op")
                results.append(exc)
        return results

    # ---------------------------------------------------------------- helpers (database thread)
    def _emit(self, c: sqlite3.Connection, row: tuple[Any, ...] | None, msg_id: str | None,
              state: str, err: dict[str, Any] | None = None, extra: dict[str, Any] | None = None,
              ids: list[str] | None = None) -> None:
        """Record a status event and queue it for publishing, in the caller's transaction; ``row`` as
        :meth:`_row` reads it (None for a request with no usable id); ``ids`` (the SMSC message ids in part
        order) when the caller has them, else they are read."""
        now = time.time()
        if row is not None:
            if ids is None:
                ids = [r[0] for r in c.execute(
                    "SELECT smsc_message_id FROM parts WHERE rid=? AND smsc_message_id IS NOT NULL ORDER BY idx",
                    (row[7],))] if row[5] else []
            event = status_event(msg_id, state, now, orjson.loads(row[1]), row[4], row[5], row[6], ids, err, extra)
            rid = row[7]
        else:
            event = status_event(msg_id, state, now, None, None, 0, 0, [], err, extra)
            rid = None
        topic = f"{self.prefix}/status/{msg_id if msg_id is not None else '_invalid'}"
        # one row: the message's history and, while its seq is above the published mark, the outbox
        c.execute("INSERT INTO events(msg_id, rid, state, at, topic, payload) VALUES (?,?,?,?,?,?)",
                  (msg_id, rid, state, now, topic, orjson.dumps(event)))
        self._outbox_added = True

    # A message's row as the operations use it: (id, req, state, final, smsc, parts, attempt, rid). Its other
    # rows (parts, part_keys, events) are keyed by rid, the integer it got on arrival (migration step 6).
    _ROW = "SELECT id, req, state, final, smsc, parts, attempt, rid FROM messages"

    @classmethod
    def _row(cls, c: sqlite3.Connection, msg_id: str) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = c.execute(cls._ROW + " WHERE id=?", (msg_id,)).fetchone()
        return row

    def _set_state(self, c: sqlite3.Connection, row: tuple[Any, ...], state: str, final: bool,
                   err: dict[str, Any] | None = None, extra: dict[str, Any] | None = None,
                   ids: list[str] | None = None) -> None:
        """Change the state of the message ``row`` (from :meth:`_row`, read in this transaction: only
        state/final change here, and the event does not use them) and emit its event."""
        c.execute("UPDATE messages SET state=?, final=?, error=?, updated_at=? WHERE rid=?",
                  (state, int(final), orjson.dumps(err) if err else None, time.time(), row[7]))
        self._emit(c, row, row[0], state, err, extra, ids)

    def _bump(self, c: sqlite3.Connection, name: str, by: int = 1) -> None:
        c.execute("INSERT INTO counters(name, value) VALUES (?, ?) "
                  "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value", (name, by))

    # ---------------------------------------------------------------- operations
    async def accept(self, requests: list[Request], rejections: list[Rejection], default_ttl: int) -> AcceptResult:
        return await self._call(self._accept, requests, rejections, default_ttl)

    def _accept(self, c: sqlite3.Connection, requests: list[Request], rejections: list[Rejection],
                default_ttl: int) -> AcceptResult:
        result = AcceptResult()
        now = time.time()
        for req in requests:
            ttl_at = req.received_at + (req.ttl or default_ttl)
            doc = orjson.dumps(req.to_json())
            cur = c.execute(
                "INSERT OR IGNORE INTO messages(id, req, state, created_at, updated_at, ttl_at) VALUES (?,?,?,?,?,?)",
                (req.id, doc, QUEUED, now, now, ttl_at))
            rid = cur.lastrowid
            if cur.rowcount == 0:
                rid = self._repeated(c, req.id, doc, QUEUED, None, now, ttl_at)
                if rid is None:
                    result.duplicates.append(req.id)
                    continue
            self._emit(c, (req.id, doc, QUEUED, 0, None, 0, 0, rid), req.id, QUEUED)  # the row just written
            result.new.append(req)
        for rej in rejections:
            err = error(rej.code, None, rej.detail)
            if rej.id is None:
                self._emit(c, None, None, REJECTED, err, {"raw": rej.raw.decode("utf-8", "replace")})
                continue
            blob = orjson.dumps({"id": rej.id, "to": rej.to, "text": None, "meta": rej.meta})
            cur = c.execute(
                "INSERT OR IGNORE INTO messages(id, req, state, final, error, created_at, updated_at, ttl_at) "
                "VALUES (?,?,?,1,?,?,?,?)", (rej.id, blob, REJECTED, orjson.dumps(err), now, now, now))
            rid = cur.lastrowid
            if cur.rowcount == 0:
                rid = self._repeated(c, rej.id, blob, REJECTED, err, now, now)
                if rid is None:
                    result.duplicates.append(rej.id)
                    continue
            self._emit(c, (rej.id, blob, REJECTED, 1, None, 0, 0, rid), rej.id, REJECTED, err)
        return result

    def _repeated(self, c: sqlite3.Connection, msg_id: str, doc: bytes, state: str, err: dict[str, Any] | None,
                  now: float, ttl_at: float) -> int | None:
        """A request (``state`` queued) or an invalid request (rejected, ``err``) with the id of a stored
        message (states.on_repeat): its rid when the request replaced the stored one (the caller emits the new
        state), else None, after the stored message's current state was published again as a duplicate."""
        row = self._row(c, msg_id)
        if row is None:
            return None
        if on_repeat(row[2], bool(row[3]), int(row[6])) == REPLACE:
            c.execute("UPDATE messages SET req=?, state=?, final=?, error=?, smsc=NULL, parts=0, attempt=0, "
                      "ref=NULL, next_attempt_at=NULL, created_at=?, updated_at=?, ttl_at=? WHERE rid=?",
                      (doc, state, int(state == REJECTED), orjson.dumps(err) if err else None, now, now, ttl_at,
                       row[7]))
            return int(row[7])
        stored = c.execute("SELECT error FROM messages WHERE rid=?", (row[7],)).fetchone()[0]
        self._emit(c, row, msg_id, row[2], orjson.loads(stored) if stored else None, DUPLICATE_MARK)
        return None

    async def begin_attempt(self, msg_id: str, smsc: str, parts: int, ref: int | None) -> tuple[int, int]:
        """Bind the message to an SMSC, its part count and concatenation reference (kept from the first
        attempt, so that re-sent parts still join their siblings); returns (attempt number, reference)."""
        return await self._call(self._begin_attempt, msg_id, smsc, parts, ref)

    def _begin_attempt(self, c: sqlite3.Connection, msg_id: str, smsc: str, parts: int,
                       ref: int | None) -> tuple[int, int]:
        row = c.execute("UPDATE messages SET smsc=?, parts=?, attempt=attempt+1, ref=COALESCE(ref, ?), updated_at=?"
                        " WHERE id=? RETURNING attempt, ref, rid", (smsc, parts, ref, time.time(), msg_id)).fetchone()
        if row is None:
            return 0, ref or 0
        rid = row[2]
        if parts == 1:
            c.execute("INSERT OR IGNORE INTO parts(rid, idx) VALUES (?,0)", (rid,))
        else:
            c.executemany("INSERT OR IGNORE INTO parts(rid, idx) VALUES (?,?)", [(rid, i) for i in range(parts)])
        return int(row[0]), int(row[1] or 0)

    async def part_submitted(self, msg_id: str, idx: int, smsc: str, smsc_id: str) -> None:
        await self._call(self._part_submitted, msg_id, idx, smsc, smsc_id)

    def _part_submitted(self, c: sqlite3.Connection, msg_id: str, idx: int, smsc: str, smsc_id: str) -> None:
        row = self._row(c, msg_id)
        if row is None:
            return
        rid = row[7]
        now = time.time()
        cur = c.execute(_PART_RESP, (smsc_id, now, rid, idx))
        keys = self._part_keys(c, rid, idx, smsc, smsc_id, now, resent=cur.rowcount == 0)
        single = row[5] <= 1
        pending = 0 if single else c.execute(
            "SELECT COUNT(*) FROM parts WHERE rid=? AND smsc_message_id IS NULL", (rid,)).fetchone()[0]
        if pending == 0:
            self._now_submitted(c, row, [smsc_id] if single and idx == 0 else None)
        self._apply_held(c, rid, idx, smsc, keys)

    async def submitted_one(self, msg_id: str, smsc: str, smsc_id: str) -> None:
        """The attempt of a one-part message and its OK resp in one operation, after the resp: what
        ``begin_attempt(msg_id, smsc, 1, None)`` then ``part_submitted(msg_id, 0, smsc, smsc_id)`` do, in
        two statements less (a store of one instance: see Dispatcher._attempt)."""
        await self._call(self._submitted_one, msg_id, smsc, smsc_id)

    def _submitted_one(self, c: sqlite3.Connection, msg_id: str, smsc: str, smsc_id: str) -> None:
        row = self._row(c, msg_id)
        if row is None:
            return
        msg_id, req, state, final, _, _, attempt, rid = row
        now = time.time()
        # the message as it is after this operation (state and final as _now_submitted leaves them)
        row = (msg_id, req, state, final, smsc, 1, attempt + 1, rid)
        change = self._when_submitted(row)
        if change is not None:      # the attempt, the resp and the state change in one UPDATE
            c.execute("UPDATE messages SET smsc=?, parts=1, attempt=?, state=?, final=?, error=NULL, updated_at=? "
                      "WHERE rid=?", (smsc, attempt + 1, change[0], int(change[1]), now, rid))
            self._emit(c, row, msg_id, change[0], ids=[smsc_id])
        else:
            c.execute("UPDATE messages SET smsc=?, parts=1, attempt=?, updated_at=? WHERE rid=?",
                      (smsc, attempt + 1, now, rid))
        cur = c.execute(_PART_RESP_ONE, (rid, smsc_id, now))
        keys = self._part_keys(c, rid, 0, smsc, smsc_id, now, resent=cur.rowcount == 0)
        self._apply_held(c, rid, 0, smsc, keys)

    def _part_keys(self, c: sqlite3.Connection, rid: int, idx: int, smsc: str, smsc_id: str, now: float,
                   resent: bool) -> tuple[str, ...]:
        """The part's correlation keys, after its row took the SMSC message id; ``resent``: the part already
        had an OK resp committed (it was sent twice), its row is overwritten and the resend counted."""
        if resent:
            self._bump(c, "resubmits_after_ok")
            c.execute("UPDATE parts SET smsc_message_id=?, submitted_at=? WHERE rid=? AND idx=?",
                      (smsc_id, now, rid, idx))
        keys = receipt_id_keys(smsc_id)
        c.executemany("INSERT OR IGNORE INTO part_keys(smsc, key, rid, idx) VALUES (?,?,?,?)",
                      [(smsc, k, rid, idx) for k in keys])
        return keys

    @staticmethod
    def _when_submitted(row: tuple[Any, ...]) -> tuple[str, bool] | None:
        return when_all_submitted(row[2], bool(row[3]), row[1])

    def _now_submitted(self, c: sqlite3.Connection, row: tuple[Any, ...], ids: list[str] | None) -> None:
        """Every part has its SMSC message id: the state change states.when_all_submitted says, if any."""
        change = self._when_submitted(row)
        if change is not None:
            self._set_state(c, row, change[0], final=change[1], ids=ids)

    def _apply_held(self, c: sqlite3.Connection, rid: int, idx: int, smsc: str, keys: tuple[str, ...]) -> None:
        """Receipts that arrived before this part's resp was stored."""
        if not self._held:
            return
        marks = ",".join("?" * len(keys))
        # oldest first: an ENROUTE then a DELIVRD held for one part must apply in that order
        held = c.execute(f"SELECT uid, receipt FROM held_receipts WHERE smsc=? AND key IN ({marks})"
                         " GROUP BY uid, receipt ORDER BY MIN(rowid)", (smsc, *keys)).fetchall()
        for uid, blob in held:
            c.execute("DELETE FROM held_receipts WHERE uid=?", (uid,))
            self._held = max(0, self._held - 1)
            self._apply_receipt(c, rid, idx, receipt_from_json(orjson.loads(blob)))

    async def retrying(self, msg_id: str, next_at: float, error: dict[str, Any]) -> None:
        await self._call(self._retrying, msg_id, next_at, error)

    def _retrying(self, c: sqlite3.Connection, msg_id: str, next_at: float, err: dict[str, Any]) -> None:
        row = self._row(c, msg_id)
        if row is None or row[3]:
            return
        c.execute("UPDATE messages SET next_attempt_at=? WHERE rid=?", (next_at, row[7]))
        self._set_state(c, row, RETRYING, False, err, {"next_attempt_at": iso(next_at)})

    async def finish(self, msg_id: str, state: str, error: dict[str, Any] | None) -> None:
        """End a message in a final state of the engine's own (rejected, failed, expired)."""
        await self._call(self._finish, msg_id, state, error)

    def _finish(self, c: sqlite3.Connection, msg_id: str, state: str, err: dict[str, Any] | None) -> None:
        row = self._row(c, msg_id)
        if row is None or row[3]:
            return
        self._set_state(c, row, state, True, err)

    async def receipt(self, smsc: str, receipt: Receipt) -> str:
        """Correlate a delivery receipt: returns "matched", "held" (no submit known yet) or "late" (already final)."""
        return await self.receipt_nowait(smsc, receipt)

    def receipt_nowait(self, smsc: str, receipt: Receipt) -> asyncio.Future[str]:
        """:meth:`receipt` as a future (no coroutine, no task): the session answers the deliver_sm from its
        done-callback."""
        return self._submit(self._receipt, smsc, receipt)

    def _receipt(self, c: sqlite3.Connection, smsc: str, receipt: Receipt) -> str:
        keys = receipt_id_keys(receipt.message_id)
        marks = ",".join("?" * len(keys))
        rows = c.execute(f"SELECT key, rid, idx FROM part_keys WHERE smsc=? AND key IN ({marks})",
                         (smsc, *keys)).fetchall()
        if not rows:
            uid = uuid.uuid4().hex
            blob = orjson.dumps(receipt_to_json(receipt))
            now = time.time()
            c.executemany("INSERT INTO held_receipts(uid, smsc, key, receipt, at) VALUES (?,?,?,?,?)",
                          [(uid, smsc, k, blob, now) for k in keys])
            self._held += 1
            self._bump(c, "receipts_held")
            return "held"
        found = {(r, i) for _, r, i in rows}
        exact = {(r, i) for k, r, i in rows if k == keys[0]}
        if len(found) == 1 or len(exact) == 1:     # one part, or one exact ("s:") match: best_match's answer
            rid, idx = next(iter(exact or found))
        else:
            rid, idx = best_match([
                (k, r, i, *(c.execute("SELECT m.final, p.submitted_at FROM messages m JOIN parts p ON "
                                      "p.rid = m.rid AND p.idx = ? WHERE m.rid = ?", (i, r)).fetchone() or (1, 0.0)))
                for k, r, i in rows])
        return self._apply_receipt(c, rid, idx, receipt)

    def _apply_receipt(self, c: sqlite3.Connection, rid: int, idx: int, receipt: Receipt) -> str:
        part = c.execute("UPDATE parts SET state=?, stat=?, receipt_at=? WHERE rid=? AND idx=? "
                         "RETURNING state, smsc_message_id", (part_state(receipt), receipt.stat, time.time(), rid, idx)
                         ).fetchone()
        row = c.execute(self._ROW + " WHERE rid=?", (rid,)).fetchone()
        if row is None or row[3]:
            self._bump(c, "receipts_late")
            return "late"
        # a one-part message's parts are the one just updated
        parts = [part] if row[5] <= 1 and part is not None else c.execute(
            "SELECT state, smsc_message_id FROM parts WHERE rid=? ORDER BY idx", (rid,)).fetchall()
        change = after_receipt([p[0] for p in parts], receipt, row[2])
        if change is not None:
            self._set_state(c, row, *change, ids=[p[1] for p in parts if p[1] is not None])
        return "matched"

    async def mo(self, smsc: str, source: str, dest: str, data: bytes, data_coding: int,
                 concat: tuple[int, int, int] | None, default_alphabet: str,
                 optout: ComplianceConfig | None = None,
                 tlvs: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """Store an MO (or one part of it). Returns the published message once complete, else None.
        With ``optout`` rules, an opt-out/opt-in keyword changes the opt-out list in the same commit."""
        return await self._call(self._mo, smsc, source, dest, data, data_coding, concat, default_alphabet, optout,
                                tlvs)

    def _mo(self, c: sqlite3.Connection, smsc: str, source: str, dest: str, data: bytes, data_coding: int,
            concat: tuple[int, int, int] | None, default_alphabet: str,
            optout: ComplianceConfig | None = None,
            tlvs: dict[str, Any] | None = None) -> dict[str, Any] | None:
        now = time.time()
        if concat is not None:
            ref, total, seq = concat
            c.execute("INSERT OR REPLACE INTO mo_parts VALUES (?,?,?,?,?,?,?,?,?)",
                      (smsc, source, dest, ref, total, seq, data, data_coding, now))
            key = (smsc, source, dest, ref, total)
            got = c.execute("SELECT seq, data FROM mo_parts WHERE smsc=? AND source=? AND dest=? AND ref=? AND total=?"
                            " ORDER BY seq", key).fetchall()
            if len(got) < total:
                return None
            c.execute("DELETE FROM mo_parts WHERE smsc=? AND source=? AND dest=? AND ref=? AND total=?", key)
            c.execute("DELETE FROM mo_parts WHERE at < ?", (now - 3600,))
            data = b"".join(d for _, d in got)
        msg: dict[str, Any] = {"id": str(uuid.uuid4()), "from": source, "to": dest,
               "text": text.decode(data, data_coding, default_alphabet), "smsc": smsc, "received_at": iso(now)}
        if tlvs:
            msg["tlvs"] = tlvs      # the deliver_sm's TLVs (of the part that completed it)
        if optout is not None:
            optouts.mo_sqlite(c, msg, optout, now)
        c.execute("INSERT INTO events(msg_id, rid, state, at, topic, payload) VALUES (NULL,NULL,'mo',?,?,?)",
                  (now, f"{self.prefix}/inbound", orjson.dumps(msg)))
        self._bump(c, "mo_received")
        self._outbox_added = True
        return msg

    # ---------------------------------------------------------------- opt-out list (store/optouts.py)
    async def optout_snapshot(self, known: int | None) -> optouts.Snapshot:
        return await self._call(optouts.snapshot_sqlite, known)

    async def optout_list(self) -> list[optouts.OptOut]:
        return await self._call(optouts.list_sqlite)

    async def optout_add(self, rows: list[optouts.OptOut]) -> int:
        return await self._call(optouts.add_sqlite, rows)

    async def optout_remove(self, keys: list[tuple[str, str]]) -> int:
        return await self._call(optouts.remove_sqlite, keys)

    # The outbox is the tail of the event journal above the published mark (migration step 5): a publisher
    # batch acknowledged by the broker moves the mark (one UPDATE per batch, not a DELETE per event). The
    # publisher reports batches in the order it fetched them, each right after the previous one.
    async def outbox_fetch(self, after: int, limit: int) -> list[tuple[int, str, bytes]]:
        assert self._db is not None
        lo = max(after, self._published)
        mem = self._mem
        while mem and mem[0][0] <= lo:          # handed out before (published, or in flight)
            self._mem_from = mem.popleft()[0] + 1
        if lo + 1 >= self._mem_from:            # every row after `lo` is in memory
            self._ahead.clear()
            return list(itertools.islice(mem, limit))
        ahead = self._ahead
        if ahead and self._ahead_after <= lo:   # the publisher is behind: rows read ahead before
            while ahead and ahead[0][0] <= lo:
                ahead.popleft()
            self._ahead_after = lo
            if ahead:
                return self._ahead_then_mem(limit)
        rows = await self._db.execute_fetchall(
            "SELECT seq, topic, payload FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
            (lo, max(limit, OUTBOX_MEM_MAX)))
        self._ahead = collections.deque((int(r[0]), str(r[1]), bytes(r[2])) for r in rows)
        self._ahead_after = lo
        return self._ahead_then_mem(limit)

    def _ahead_then_mem(self, limit: int) -> list[tuple[int, str, bytes]]:
        """Up to ``limit`` rows from the read-ahead, then from memory when it continues them."""
        out = list(itertools.islice(self._ahead, limit))
        if out and len(out) < limit and out[-1][0] + 1 >= self._mem_from:
            last = out[-1][0]
            out.extend(itertools.islice((r for r in self._mem if r[0] > last), limit - len(out)))
        return out

    async def outbox_delete(self, seqs: list[int]) -> None:
        """The broker acknowledged these events: they are not handed out again (the mark moves in memory at
        once), and the mark is written to the table with the next group commit, without waiting for it. The
        publisher goes on with its next batches meanwhile; under load a commit takes a few hundred ms, and
        waiting for one per batch held the status events back by seconds. After a crash, the events of the
        batches acknowledged since the last commit are published again (status events are at-least-once)."""
        if seqs and max(seqs) > self._published:
            self._published = max(seqs)
            self._queue_mark()

    def _queue_mark(self) -> None:
        if self._mark_queued or self._writer is None:
            return
        self._mark_queued = True
        self._submit(self._write_mark).add_done_callback(self._mark_done)

    def _mark_done(self, fut: asyncio.Future[Any]) -> None:
        self._mark_queued = False
        if fut.cancelled() or fut.exception() is not None:
            return          # the commit failed (logged by the writer): the next acknowledged batch tries again
        self._mark_written = max(self._mark_written, fut.result())
        if self._published > self._mark_written:
            self._queue_mark()      # the mark moved after that write was applied

    def _write_mark(self, c: sqlite3.Connection) -> int:
        seq = self._published
        c.execute("UPDATE published SET seq=? WHERE id=0 AND seq<?", (seq, seq))
        return seq

    async def recover(self) -> list[Active]:
        assert self._db is not None
        msgs = await self._db.execute_fetchall(
            "SELECT id, req, state, smsc, attempt, ttl_at, next_attempt_at FROM messages WHERE final=0")
        parts = await self._db.execute_fetchall(
            "SELECT m.id, p.idx, p.smsc_message_id FROM parts p JOIN messages m ON m.rid=p.rid "
            "WHERE m.final=0 AND p.smsc_message_id IS NOT NULL")
        submitted: dict[str, dict[int, str]] = {}
        for msg_id, idx, smsc_id in parts:
            submitted.setdefault(msg_id, {})[int(idx)] = smsc_id
        return [
            Active(Request.from_json(orjson.loads(r[1])), r[2], r[3], int(r[4]), float(r[5]),
                   submitted.get(r[0], {}), r[6])
            for r in msgs
        ]

    async def pending_page(self, after: tuple[float, str], limit: int) -> list[Active]:
        """Up to ``limit`` messages still to be submitted (queued or retrying; a submitted one only waits for
        receipts) stored after ``after`` = (created_at, id), in arrival order: the dispatcher pages through
        a backlog too large to hold in memory, and through the stored backlog at start."""
        assert self._db is not None
        msgs = list(await self._db.execute_fetchall(
            "SELECT id, req, state, smsc, attempt, ttl_at, next_attempt_at, created_at, rid FROM messages "
            "WHERE final = 0 AND state IN ('queued', 'retrying') AND (created_at > ? OR (created_at = ? AND id > ?)) "
            "ORDER BY created_at, id LIMIT ?",
            (after[0], after[0], after[1], limit)))
        submitted: dict[str, dict[int, str]] = {}
        if msgs:
            marks = ",".join("?" * len(msgs))
            ids = {r[8]: r[0] for r in msgs}
            for rid, idx, smsc_id in await self._db.execute_fetchall(
                    f"SELECT rid, idx, smsc_message_id FROM parts WHERE rid IN ({marks}) "
                    "AND smsc_message_id IS NOT NULL", list(ids)):
                submitted.setdefault(ids[rid], {})[int(idx)] = smsc_id
        return [
            Active(Request.from_json(orjson.loads(r[1])), r[2], r[3], int(r[4]), float(r[5]),
                   submitted.get(r[0], {}), r[6], float(r[7]))
            for r in msgs
        ]

    # one engine instance per SQLite file: nothing is shared, so nothing to lease or claim
    shared = False

    async def heartbeat(self) -> None:
        return None

    async def claim_orphans(self) -> list[Active]:
        return []

    async def rematch_held(self) -> int:
        return 0

    async def release(self) -> None:
        return None

    def lease_held(self) -> bool:
        return True         # nobody else can take this instance's messages

    async def trace(self, msg_id: str) -> dict[str, Any] | None:
        assert self._db is not None
        rows = await self._db.execute_fetchall(
            "SELECT id, req, state, final, smsc, parts, attempt, error, created_at, updated_at, ttl_at, rid "
            "FROM messages WHERE id=?", (msg_id,))
        if not rows:
            return None
        r = list(rows)[0]
        parts = await self._db.execute_fetchall(
            "SELECT idx, smsc_message_id, state, submitted_at, stat, receipt_at FROM parts WHERE rid=? ORDER BY idx",
            (r[11],))
        events = await self._db.execute_fetchall(
            "SELECT state, at, payload FROM events WHERE rid=? ORDER BY seq", (r[11],))
        return {
            "id": r[0], "request": orjson.loads(r[1]), "state": r[2], "final": bool(r[3]), "smsc": r[4],
            "parts": r[5], "attempt": r[6], "error": orjson.loads(r[7]) if r[7] else None,
            "created_at": iso(r[8]), "updated_at": iso(r[9]), "ttl_at": iso(r[10]),
            "part_rows": [
                {"idx": p[0], "smsc_message_id": p[1], "state": p[2],
                 "submitted_at": iso(p[3]) if p[3] else None, "stat": p[4],
                 "receipt_at": iso(p[5]) if p[5] else None} for p in parts
            ],
            "events": [orjson.loads(e[2]) for e in events],
        }

    async def stats(self, since: float) -> dict[str, Any]:
        assert self._db is not None
        active = await self._db.execute_fetchall(
            "SELECT state, COALESCE(smsc, ''), COUNT(*) FROM messages WHERE final=0 GROUP BY 1, 2")
        recent = await self._db.execute_fetchall(
            "SELECT state, COALESCE(smsc, ''), COUNT(*) FROM messages WHERE final=1 AND updated_at >= ? "
            "GROUP BY 1, 2", (since,))
        counters = await self._db.execute_fetchall("SELECT name, value FROM counters")
        outbox = await self._db.execute_fetchall("SELECT COUNT(*) FROM events WHERE seq > ?", (self._published,))
        held = await self._db.execute_fetchall("SELECT COUNT(DISTINCT uid) FROM held_receipts")
        return {
            "queue": [{"state": s, "smsc": m, "count": n} for s, m, n in active],
            "outcomes": [{"state": s, "smsc": m, "count": n} for s, m, n in recent],
            "counters": {name: value for name, value in counters},
            "outbox": list(outbox)[0][0],
            "held_receipts": list(held)[0][0],
        }
