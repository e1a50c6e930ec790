"""PostgreSQL store: one group commit as a unit of work, in a handful of round trips whatever it holds.

A run of operations (accept, begin_attempt, part_submitted, submitted_one, retrying, finish, receipt,
outbox_delete, heartbeat) is applied in three steps:

1. load: the message rows they name, and those the receipts' correlation keys point at, locked in id
   order (``FOR UPDATE``: one statement, so two instances never lock the same rows in different orders),
   then in one statement their parts, the receipts' key matches and the held receipts waiting for the
   parts' keys; held receipts found are taken with a try-lock (never waited for) and deleted;
2. apply: each operation, in order, changes these rows in memory by the rules of store/states.py and
   queues its status events (an operation sees what the ones before it did);
3. flush: one statement writes everything (data-modifying CTEs over arrays: messages inserted and updated,
   parts, correlation keys, events and outbox rows in order, held receipts, outbox deletes, this instance's
   counters and lease, and the NOTIFYs for the other instances).

So a group commit is BEGIN, two or three reads, one write and COMMIT (measured in docs/performance.md).
Before, every operation paid a round trip per statement: ~12 per message.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson
import structlog

from ..model import QUEUED, REJECTED, RETRYING, Rejection, Request, error, iso
from ..receipts import Receipt, receipt_id_keys
from .base import AcceptResult
from .states import (
    DUPLICATE_MARK,
    REPLACE,
    after_receipt,
    best_match,
    on_repeat,
    part_state,
    part_state_on_resp,
    receipt_from_json,
    receipt_to_json,
    status_event,
    when_all_submitted,
)

log = structlog.get_logger(__name__)

_MSG_COLS = ("id, req, state, final, smsc, parts, attempt, owner, ref, error, next_attempt_at, created_at, "
             "updated_at, ttl_at")
# the rows named, and the rows the receipts' keys point at, locked in id order
# This instance's rows among those named and those the receipts' keys point at, locked in id order (a UNION,
# not an OR: with the OR PostgreSQL scanned the whole table). Only the owner writes a message's rows, so the
# writers of several instances never wait for each other's locks; the one exception is a request repeating an
# id (accept): its row is read (and replaced, if it was rejected before any submit) whoever owns it.
_LOCK = (f"SELECT {_MSG_COLS} FROM messages WHERE id IN (SELECT unnest($1::text[]) UNION SELECT k.msg_id FROM "
         "part_keys k JOIN unnest($2::text[], $3::text[]) AS u(s, k) ON k.smsc = u.s AND k.key = u.k) "
         "AND (owner = $4 OR owner IS NULL OR id = ANY($5::text[])) ORDER BY id FOR UPDATE")
# read after the locks were granted (a statement of its own: it must see what the lock holders committed);
# the receipts' key matches come with their message's owner (another instance's: the receipt is forwarded)
_READ = (
    "SELECT (SELECT json_agg(json_build_array(msg_id, idx, smsc_message_id, state, submitted_at, stat, receipt_at))"
    "        FROM parts WHERE msg_id = ANY($1::text[])),"
    " (SELECT json_agg(json_build_array(k.smsc, k.key, k.msg_id, k.idx, m.owner)) FROM part_keys k"
    "        JOIN unnest($2::text[], $3::text[]) AS u(s, k) ON k.smsc = u.s AND k.key = u.k"
    "        JOIN messages m ON m.id = k.msg_id),"
    " (SELECT json_agg(DISTINCT h.uid) FROM held_receipts h"
    "        JOIN unnest($4::text[], $5::text[]) AS u(s, k) ON h.smsc = u.s AND h.key = u.k)")
# held receipts whose key has become known, for this instance's messages
_REMATCH = ("SELECT DISTINCT h.uid FROM held_receipts h JOIN part_keys k ON k.smsc = h.smsc AND k.key = h.key "
            "JOIN messages m ON m.id = k.msg_id WHERE m.owner = $1 OR m.owner IS NULL LIMIT 1000")
# NOTIFY payloads of held receipts: a head, then "smsc<TAB>key" lines, each payload under PostgreSQL's
# 8,000-byte limit. "held?": held with no owner known (the resp is not committed anywhere yet); "held:OWNER\n":
# handed over to OWNER. A key that cannot be written so makes the head alone ("held": every instance looks;
# "held:OWNER": OWNER looks through all its held receipts).
HELD_NOTE = "held?"
_NOTE_MAX = 7_000


def foreign_head(owner: str) -> str:
    return f"held:{owner}\n"


def held_notes(keys: list[tuple[str, str]], head: str = HELD_NOTE) -> list[str]:
    """The notifications telling the other instances of receipts held for these (smsc, key)s."""
    out: list[str] = []
    lines: list[str] = []
    base = len(head.encode())
    size = base
    for smsc, key in dict.fromkeys(keys):
        line = f"{smsc}\t{key}"
        n = len(line.encode())          # PostgreSQL's limit is in bytes
        if "\t" in smsc or "\n" in smsc or "\n" in key or "\x00" in line or n + base > _NOTE_MAX:
            out.append("held" if head == HELD_NOTE else head.rstrip("\n"))
            continue
        if lines and size + n + 1 > _NOTE_MAX:
            out.append(head + "\n".join(lines))
            lines, size = [], base
        lines.append(line)
        size += n + 1
    if lines:
        out.append(head + "\n".join(lines))
    return out


def parse_held_note(payload: str, head: str = HELD_NOTE) -> list[tuple[str, str]]:
    """The (smsc, key)s of a :func:`held_notes` payload that starts with ``head``."""
    out: list[tuple[str, str]] = []
    for line in payload[len(head):].split("\n"):
        smsc, sep, key = line.partition("\t")
        if sep:
            out.append((smsc, key))
    return out


# held receipts taken: a transaction-scoped try-lock per receipt (never waited for: a receipt another writer
# is taking is left to it), then deleted; what comes back is what this transaction applies
_TAKE = (
    "l AS MATERIALIZED (SELECT uid FROM c WHERE pg_try_advisory_xact_lock(hashtextextended('smppengine.held.' "
    "|| uid, 0))) "
    "DELETE FROM held_receipts h USING l WHERE h.uid = l.uid RETURNING h.uid, h.smsc, h.key, h.receipt, h.at")
TAKE_HELD = "WITH c AS MATERIALIZED (SELECT DISTINCT uid FROM held_receipts WHERE uid = ANY($1::text[])), " + _TAKE
# the held receipts of this instance's messages whose key has become known, found and taken in one statement
TAKE_MINE = f"WITH c AS MATERIALIZED ({_REMATCH}), " + _TAKE
# the same, among the receipts held for these (smsc, key)s only (those a NOTIFY named: no pass over the table)
TAKE_KEYS = (
    "WITH c AS MATERIALIZED (SELECT DISTINCT h.uid FROM unnest($2::text[], $3::text[]) AS u(s, k) "
    "JOIN held_receipts h ON h.smsc = u.s AND h.key = u.k JOIN part_keys k ON k.smsc = h.smsc AND k.key = h.key "
    "JOIN messages m ON m.id = k.msg_id WHERE m.owner = $1 OR m.owner IS NULL), " + _TAKE)


@dataclass(slots=True)
class Msg:
    id: str
    req: bytes
    state: str
    final: bool
    smsc: str | None
    parts: int
    attempt: int
    owner: str | None
    ref: int | None
    error: bytes | None
    next_attempt_at: float | None
    created_at: float
    updated_at: float
    ttl_at: float
    new: bool = False          # inserted by the flush
    dirty: bool = False        # updated by the flush
    req_dirty: bool = False
    doc: dict[str, Any] | None = None

    def request(self) -> dict[str, Any]:
        if self.doc is None:
            self.doc = orjson.loads(self.req)
        return self.doc


@dataclass(slots=True)
class Part:
    idx: int
    smsc_message_id: str | None = None
    state: str = "pending"
    submitted_at: float | None = None
    stat: str | None = None
    receipt_at: float | None = None
    dirty: bool = False


@dataclass(slots=True)
class Held:
    uid: str
    smsc: str
    keys: list[str]
    receipt: bytes
    at: float
    stored: bool                # taken from held_receipts (else held by this unit, inserted unless applied)
    done: bool = False


@dataclass(slots=True)
class Batch:
    """The rows one run of operations reads and writes, and what it will write. ``instance``/``prefix``/
    ``lease_s``: the store's."""

    instance: str
    prefix: str
    lease_s: float
    channel: str
    msgs: dict[str, Msg] = field(default_factory=dict)
    parts: dict[str, dict[int, Part]] = field(default_factory=dict)
    keys: dict[tuple[str, str], list[tuple[str, int]]] = field(default_factory=dict)
    new_keys: list[tuple[str, str, str, int]] = field(default_factory=list)
    held: dict[tuple[str, str], list[Held]] = field(default_factory=dict)
    held_new: list[Held] = field(default_factory=list)
    events: list[tuple[str | None, str, float, bytes, str, str]] = field(default_factory=list)
    deletes: list[int] = field(default_factory=list)
    heartbeat_at: float | None = None
    notes: set[str] = field(default_factory=set)
    # keys of receipts held with no owner known (their part's submit_sm_resp not committed anywhere yet): the
    # commit NOTIFYs them, and only an instance that has just taken a resp with one of these keys re-matches
    held_keys: list[tuple[str, str]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    want_ids: set[str] = field(default_factory=set)
    want_rkeys: set[tuple[str, str]] = field(default_factory=set)
    want_hkeys: set[tuple[str, str]] = field(default_factory=set)
    want_any: set[str] = field(default_factory=set)          # ids read whoever owns them (accept)
    # receipt keys that point at another instance's message: (smsc, key) -> its owner
    foreign: dict[tuple[str, str], str] = field(default_factory=dict)
    want_rematch: bool = False
    rematch_keys: set[tuple[str, str]] | None = None          # None: every held receipt of this instance's
    # receipts handed over to another instance (their message's owner): owner -> (smsc, key)s, for the NOTIFY
    foreign_keys: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    taken: list[Held] = field(default_factory=list)          # held receipts taken for rematch()

    # ------------------------------------------------------------------ load
    async def load(self, c: asyncpg.Connection) -> None:
        if self.want_rematch:
            # the held receipts of this instance's messages (another instance's are applied by it), taken
            # first: what they point at is loaded with the rest
            if self.rematch_keys is None:
                self.taken = await self.take_held(c, TAKE_MINE, self.instance)
            else:
                rk = sorted(self.rematch_keys)
                self.taken = await self.take_held(c, TAKE_KEYS, self.instance, [x for x, _ in rk], [k for _, k in rk])
            for h in self.taken:
                self.want_rkeys.update((h.smsc, k) for k in h.keys)
        if not self.want_ids and not self.want_rkeys:
            return
        rk = sorted(self.want_rkeys)
        rs, rkk = [s for s, _ in rk], [k for _, k in rk]
        rows = await c.fetch(_LOCK, sorted(self.want_ids), rs, rkk, self.instance, sorted(self.want_any))
        for r in rows:
            self.msgs[r[0]] = Msg(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12],
                                  r[13])
            self.parts[r[0]] = {}
        if not rows and not rk:
            return
        hk = sorted(self.want_hkeys)
        got = await c.fetchrow(_READ, list(self.msgs), rs, rkk, [s for s, _ in hk], [k for _, k in hk])
        assert got is not None      # a SELECT of three subqueries: always one row
        for msg_id, idx, sid, state, sub_at, stat, rec_at in orjson.loads(got[0] or "[]"):
            self.parts[msg_id][idx] = Part(idx, sid, state, sub_at, stat, rec_at)
        for smsc, key, msg_id, idx, owner in orjson.loads(got[1] or "[]"):
            if msg_id in self.msgs:
                self.keys.setdefault((smsc, key), []).append((msg_id, idx))
            elif owner is not None and owner != self.instance:
                self.foreign[(smsc, key)] = owner
        uids = orjson.loads(got[2] or "[]")
        if uids:
            await self.take_held(c, TAKE_HELD, uids)

    async def take_held(self, c: asyncpg.Connection, sql: str, *args: Any) -> list[Held]:
        """Take (try-lock and delete) the held receipts ``sql`` finds (TAKE_HELD: these uids, TAKE_MINE: those
        whose key has become known for this instance's messages); returns those taken, oldest first."""
        taken: dict[str, Held] = {}
        for uid, smsc, key, blob, at in await c.fetch(sql, *args):
            h = taken.get(uid)
            if h is None:
                h = taken[uid] = Held(uid, smsc, [], bytes(blob), float(at), stored=True)
            h.keys.append(key)
            self.held.setdefault((smsc, key), []).append(h)
        return sorted(taken.values(), key=lambda h: (h.at, h.uid))

    # ------------------------------------------------------------------ flush
    async def flush(self, c: asyncpg.Connection) -> bool:
        """Write what the operations did, in one statement; True when outbox rows were added."""
        params: list[Any] = []

        def p(value: Any, cast: str) -> str:
            params.append(value)
            return f"${len(params)}::{cast}"

        ctes: list[str] = []
        new = [m for m in self.msgs.values() if m.new]
        if new:
            ctes.append(
                "im AS (INSERT INTO messages(id, req, state, final, error, created_at, updated_at, ttl_at, owner, "
                "final_at) SELECT *, CASE WHEN f THEN up END FROM unnest("
                f"{p([m.id for m in new], 'text[]')}, {p([m.req for m in new], 'bytea[]')}, "
                f"{p([m.state for m in new], 'text[]')}, {p([m.final for m in new], 'bool[]')}, "
                f"{p([m.error for m in new], 'bytea[]')}, {p([m.created_at for m in new], 'float8[]')}, "
                f"{p([m.updated_at for m in new], 'float8[]')}, {p([m.ttl_at for m in new], 'float8[]')}, "
                f"{p([m.owner for m in new], 'text[]')}) AS u(i, r, s, f, e, cr, up, t, o))")
        upd = [m for m in self.msgs.values() if m.dirty and not m.new]
        if upd:
            ctes.append(
                "um AS (UPDATE messages m SET req = COALESCE(u.req, m.req), state = u.state, final = u.final, "
                "error = u.error, smsc = u.smsc, parts = u.parts, attempt = u.attempt, ref = u.ref, "
                "next_attempt_at = u.nat, created_at = u.cr, updated_at = u.up, ttl_at = u.ttl, owner = u.owner, "
                # set once, when final (a HOT update as long as neither final nor final_at changes)
                "final_at = CASE WHEN NOT u.final THEN NULL WHEN m.final THEN m.final_at ELSE u.up END "
                f"FROM unnest({p([m.id for m in upd], 'text[]')}, "
                f"{p([m.req if m.req_dirty else None for m in upd], 'bytea[]')}, "
                f"{p([m.state for m in upd], 'text[]')}, {p([m.final for m in upd], 'bool[]')}, "
                f"{p([m.error for m in upd], 'bytea[]')}, {p([m.smsc for m in upd], 'text[]')}, "
                f"{p([m.parts for m in upd], 'int4[]')}, {p([m.attempt for m in upd], 'int4[]')}, "
                f"{p([m.ref for m in upd], 'int4[]')}, {p([m.next_attempt_at for m in upd], 'float8[]')}, "
                f"{p([m.created_at for m in upd], 'float8[]')}, {p([m.updated_at for m in upd], 'float8[]')}, "
                f"{p([m.ttl_at for m in upd], 'float8[]')}, {p([m.owner for m in upd], 'text[]')}) "
                "AS u(id, req, state, final, error, smsc, parts, attempt, ref, nat, cr, up, ttl, owner) "
                "WHERE m.id = u.id)")
        dp = [(msg_id, pt) for msg_id, ps in self.parts.items() for pt in ps.values() if pt.dirty]
        if dp:
            ctes.append(
                "pu AS (INSERT INTO parts(msg_id, idx, smsc_message_id, state, submitted_at, stat, receipt_at) "
                f"SELECT * FROM unnest({p([m for m, _ in dp], 'text[]')}, {p([x.idx for _, x in dp], 'int4[]')}, "
                f"{p([x.smsc_message_id for _, x in dp], 'text[]')}, {p([x.state for _, x in dp], 'text[]')}, "
                f"{p([x.submitted_at for _, x in dp], 'float8[]')}, {p([x.stat for _, x in dp], 'text[]')}, "
                f"{p([x.receipt_at for _, x in dp], 'float8[]')}) "
                "ON CONFLICT (msg_id, idx) DO UPDATE SET smsc_message_id = excluded.smsc_message_id, "
                "state = excluded.state, submitted_at = excluded.submitted_at, stat = excluded.stat, "
                "receipt_at = excluded.receipt_at)")
        if self.new_keys:
            nk = self.new_keys
            ctes.append(
                "pk AS (INSERT INTO part_keys(smsc, key, msg_id, idx) "
                f"SELECT * FROM unnest({p([k[0] for k in nk], 'text[]')}, {p([k[1] for k in nk], 'text[]')}, "
                f"{p([k[2] for k in nk], 'text[]')}, {p([k[3] for k in nk], 'int4[]')}) ON CONFLICT DO NOTHING)")
        if self.events:
            ev = self.events
            pay = p([e[3] for e in ev], "bytea[]")
            ctes.append(
                "ev AS (INSERT INTO events(msg_id, state, at, payload) SELECT i, s, a, x FROM "
                f"unnest({p([e[0] for e in ev], 'text[]')}, {p([e[1] for e in ev], 'text[]')}, "
                f"{p([e[2] for e in ev], 'float8[]')}, {pay}) WITH ORDINALITY AS u(i, s, a, x, n) ORDER BY n)")
            ctes.append(
                "ob AS (INSERT INTO outbox(topic, payload, owner) SELECT t, x, o FROM "
                f"unnest({p([e[4] for e in ev], 'text[]')}, {pay}, {p([e[5] for e in ev], 'text[]')}) "
                "WITH ORDINALITY AS u(t, x, o, n) ORDER BY n)")
        hold = [(h, k) for h in self.held_new if not h.done for k in h.keys]
        if hold:
            ctes.append(
                "hr AS (INSERT INTO held_receipts(uid, smsc, key, receipt, at) SELECT * FROM "
                f"unnest({p([h.uid for h, _ in hold], 'text[]')}, {p([h.smsc for h, _ in hold], 'text[]')}, "
                f"{p([k for _, k in hold], 'text[]')}, {p([h.receipt for h, _ in hold], 'bytea[]')}, "
                f"{p([h.at for h, _ in hold], 'float8[]')}))")
        if self.deletes:
            ctes.append(f"od AS (DELETE FROM outbox WHERE seq = ANY({p(self.deletes, 'int8[]')}))")
        if self.counts:
            names = sorted(self.counts)
            ctes.append(
                "ct AS (INSERT INTO counter_rows(instance, name, value) "
                f"SELECT {p(self.instance, 'text')}, * FROM unnest({p(names, 'text[]')}, "
                f"{p([self.counts[n] for n in names], 'int8[]')}) ON CONFLICT (instance, name) "
                "DO UPDATE SET value = counter_rows.value + excluded.value)")
        if self.heartbeat_at is not None:
            ctes.append(
                "hb AS (INSERT INTO instances(instance, alive_until, started_at) VALUES "
                f"({p(self.instance, 'text')}, {p(self.heartbeat_at + self.lease_s, 'float8')}, "
                f"{p(self.heartbeat_at, 'float8')}) "
                "ON CONFLICT (instance) DO UPDATE SET alive_until = excluded.alive_until)")
        note_set = set(self.notes) | set(held_notes(self.held_keys))
        for owner, keys in self.foreign_keys.items():
            note_set.update(held_notes(keys, foreign_head(owner)))
        notes = sorted(note_set)
        if not ctes and not notes:
            return False
        tail = (f"SELECT pg_notify({p(self.channel, 'text')}, x) FROM unnest({p(notes, 'text[]')}) AS x"
                if notes else "SELECT 1")
        sql = ("WITH " + ", ".join(ctes) + " " + tail) if ctes else tail
        await c.execute(sql, *params)
        return bool(self.events)

    # ------------------------------------------------------------------ helpers
    def _ids(self, msg_id: str) -> list[str]:
        ps = self.parts.get(msg_id, {})
        ids = (ps[i].smsc_message_id for i in sorted(ps))
        return [x for x in ids if x is not None]

    def _emit(self, m: Msg | None, msg_id: str | None, state: str, err: Any = None,
              extra: dict[str, Any] | None = None) -> None:
        now = time.time()
        if m is not None:
            event = status_event(m.id, state, now, m.request(), m.smsc, m.parts, m.attempt, self._ids(m.id), err,
                                 extra)
            owner = m.owner or self.instance
        else:
            event = status_event(msg_id, state, now, None, None, 0, 0, [], err, extra)
            owner = self.instance
        topic = f"{self.prefix}/status/{msg_id if msg_id is not None else '_invalid'}"
        self.events.append((msg_id, state, now, orjson.dumps(event), topic, owner))
        if owner != self.instance:
            self.notes.add("outbox:" + owner)       # that instance publishes it: wake its publisher

    def _set_state(self, m: Msg, state: str, final: bool, err: dict[str, Any] | None = None,
                   extra: dict[str, Any] | None = None) -> None:
        m.state, m.final, m.error = state, final, orjson.dumps(err) if err else None
        m.updated_at = time.time()
        m.dirty = True
        self._emit(m, m.id, state, err, extra)

    def _bump(self, name: str, by: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + by

    # ------------------------------------------------------------------ operations (need_*: what to load)
    def accept(self, requests: list[Request], rejections: list[Rejection], default_ttl: int) -> AcceptResult:
        result = AcceptResult()
        now = time.time()
        for req in requests:
            doc = req.to_json()
            blob = orjson.dumps(doc)
            ttl_at = req.received_at + (req.ttl or default_ttl)
            if not self._arrive(req.id, blob, doc, QUEUED, None, now, ttl_at):
                result.duplicates.append(req.id)
                continue
            result.new.append(req)
        for rej in rejections:
            err = error(rej.code, None, rej.detail)
            if rej.id is None:
                self._emit(None, None, REJECTED, err, {"raw": rej.raw.decode("utf-8", "replace")})
                continue
            doc = {"id": rej.id, "to": rej.to, "text": None, "meta": rej.meta}
            if not self._arrive(rej.id, orjson.dumps(doc), doc, REJECTED, err, now, now):
                result.duplicates.append(rej.id)
        return result

    def _arrive(self, msg_id: str, blob: bytes, doc: dict[str, Any], state: str, err: dict[str, Any] | None,
                now: float, ttl_at: float) -> bool:
        """A request (queued) or an invalid request (rejected): stored, or replacing a stored one
        (states.on_repeat), and its event queued: True; a duplicate, whose current state is published
        again: False."""
        final = state == REJECTED
        eblob = orjson.dumps(err) if err else None
        m = self.msgs.get(msg_id)
        if m is None:
            m = Msg(msg_id, blob, state, final, None, 0, 0, self.instance, None, eblob, None, now, now, ttl_at,
                    new=True, doc=doc)
            self.msgs[msg_id] = m
            self.parts[msg_id] = {}
        elif on_repeat(m.state, m.final, m.attempt) == REPLACE:
            m.req, m.doc, m.req_dirty, m.dirty = blob, doc, True, True
            m.state, m.final, m.error, m.smsc, m.parts, m.attempt, m.ref = state, final, eblob, None, 0, 0, None
            m.next_attempt_at, m.created_at, m.updated_at, m.ttl_at, m.owner = None, now, now, ttl_at, self.instance
        else:
            self._emit(m, m.id, m.state, orjson.loads(m.error) if m.error else None, DUPLICATE_MARK)
            return False
        self._emit(m, msg_id, state, err)
        return True

    def need_accept(self, requests: list[Request], rejections: list[Rejection], default_ttl: int) -> None:
        ids = [r.id for r in requests] + [r.id for r in rejections if r.id is not None]
        self.want_ids.update(ids)
        self.want_any.update(ids)

    def begin_attempt(self, msg_id: str, smsc: str, parts: int, ref: int | None) -> tuple[int, int]:
        m = self.msgs.get(msg_id)
        if m is None:
            return 0, ref or 0
        # fencing: only the message's owner may send it (another instance took it over when this one's lease
        # expired); attempt 0 tells the dispatcher to drop it
        if m.owner is not None and m.owner != self.instance:
            log.warning("message_not_owned", msg_id=msg_id, owner=m.owner, instance=self.instance)
            return 0, ref or 0
        m.smsc, m.parts, m.attempt = smsc, parts, m.attempt + 1
        if m.ref is None:
            m.ref = ref
        m.updated_at = time.time()
        m.dirty = True
        ps = self.parts[msg_id]
        for i in range(parts):
            if i not in ps:
                ps[i] = Part(i, dirty=True)
        return m.attempt, m.ref or 0

    def need_begin_attempt(self, msg_id: str, smsc: str, parts: int, ref: int | None) -> None:
        self.want_ids.add(msg_id)

    def part_submitted(self, msg_id: str, idx: int, smsc: str, smsc_id: str) -> None:
        m = self.msgs.get(msg_id)
        if m is None:
            return
        ps = self.parts[msg_id]
        pt = ps.get(idx)
        if pt is None:
            pt = ps[idx] = Part(idx)
        if pt.smsc_message_id == smsc_id:
            return          # this resp is stored already: a replay after a commit whose outcome was unknown
        if pt.smsc_message_id is not None:
            self._bump("resubmits_after_ok")        # its OK resp was committed before: it was sent twice
        else:
            pt.state = part_state_on_resp(pt.state)
        pt.smsc_message_id, pt.submitted_at, pt.dirty = smsc_id, time.time(), True
        keys = receipt_id_keys(smsc_id)
        for k in keys:
            at = self.keys.setdefault((smsc, k), [])
            if (msg_id, idx) not in at:
                at.append((msg_id, idx))
                self.new_keys.append((smsc, k, msg_id, idx))
        if all(x.smsc_message_id is not None for x in ps.values()):
            change = when_all_submitted(m.state, m.final, m.request())
            if change is not None:
                self._set_state(m, *change)
        # receipts that arrived before this resp was stored (oldest first, as they came)
        held = {h.uid: h for k in keys for h in self.held.get((smsc, k), ()) if not h.done}
        for h in sorted(held.values(), key=lambda h: (h.at, h.uid)):
            h.done = True
            self._apply_receipt(msg_id, idx, receipt_from_json(orjson.loads(h.receipt)))

    def need_part_submitted(self, msg_id: str, idx: int, smsc: str, smsc_id: str) -> None:
        self.want_ids.add(msg_id)
        self.want_hkeys.update((smsc, k) for k in receipt_id_keys(smsc_id))

    def submitted_one(self, msg_id: str, smsc: str, smsc_id: str) -> None:
        pt = self.parts.get(msg_id, {}).get(0)
        if pt is not None and pt.smsc_message_id == smsc_id:
            return          # stored already (a replay after a commit whose outcome was unknown): not a new attempt
        attempt, _ = self.begin_attempt(msg_id, smsc, 1, None)
        if attempt:         # 0: not in the store, or owned by another instance
            self.part_submitted(msg_id, 0, smsc, smsc_id)

    def need_submitted_one(self, msg_id: str, smsc: str, smsc_id: str) -> None:
        self.need_part_submitted(msg_id, 0, smsc, smsc_id)

    def retrying(self, msg_id: str, next_at: float, err: dict[str, Any]) -> None:
        m = self.msgs.get(msg_id)
        if m is None or m.final:
            return
        m.next_attempt_at = next_at
        self._set_state(m, RETRYING, False, err, {"next_attempt_at": iso(next_at)})

    def need_retrying(self, msg_id: str, next_at: float, err: dict[str, Any]) -> None:
        self.want_ids.add(msg_id)

    def finish(self, msg_id: str, state: str, err: dict[str, Any] | None) -> None:
        m = self.msgs.get(msg_id)
        if m is None or m.final:
            return
        self._set_state(m, state, True, err)

    def need_finish(self, msg_id: str, state: str, err: dict[str, Any] | None) -> None:
        self.want_ids.add(msg_id)

    def receipt(self, smsc: str, receipt: Receipt) -> str:
        keys = receipt_id_keys(receipt.message_id)
        rows = [(k, m, i) for k in keys for m, i in self.keys.get((smsc, k), ()) if m in self.msgs]
        if not rows:
            owner = next((self.foreign[(smsc, k)] for k in keys if (smsc, k) in self.foreign), None)
            h = Held(uuid.uuid4().hex, smsc, list(keys), orjson.dumps(receipt_to_json(receipt)), time.time(),
                     stored=False)
            for k in keys:
                self.held.setdefault((smsc, k), []).append(h)
            self.held_new.append(h)
            if owner is not None:
                # the SMSC delivered the receipt on this instance's bind for another instance's message: only
                # the owner writes a message's rows, so it is handed over through held_receipts (durable now:
                # the deliver_sm is answered) and the owner is woken to apply it
                self._bump("receipts_foreign")
                self.foreign_keys.setdefault(owner, []).extend((smsc, k) for k in keys)
                return "matched"
            self._bump("receipts_held")
            # once this commits, the instance whose resp carries one of these keys (committed concurrently, or
            # still to come) looks for it; the others ignore the notification
            self.held_keys.extend((smsc, k) for k in keys)
            return "held"
        if len({(m, i) for _, m, i in rows}) == 1:
            _, msg_id, idx = rows[0]
        else:
            cands = []
            for k, m, i in rows:
                pt = self.parts[m].get(i)
                cands.append((k, m, i, int(self.msgs[m].final), pt.submitted_at if pt else 0.0))
            msg_id, idx = best_match(cands)
        return self._apply_receipt(msg_id, idx, receipt)

    def need_receipt(self, smsc: str, receipt: Receipt) -> None:
        self.want_rkeys.update((smsc, k) for k in receipt_id_keys(receipt.message_id))

    def _apply_receipt(self, msg_id: str, idx: int, receipt: Receipt) -> str:
        pt = self.parts.get(msg_id, {}).get(idx)
        if pt is not None:
            pt.state, pt.stat, pt.receipt_at, pt.dirty = part_state(receipt), receipt.stat, time.time(), True
        m = self.msgs.get(msg_id)
        if m is None or m.final:
            self._bump("receipts_late")
            return "late"
        ps = self.parts[msg_id]
        change = after_receipt([ps[i].state for i in sorted(ps)], receipt, m.state)
        if change is not None:
            self._set_state(m, *change)
        return "matched"

    def rematch(self, keys: list[tuple[str, str]] | None = None) -> int:
        """Receipts held while their submit_sm_resp was being committed (by this instance or another: the two
        transactions did not see each other), or handed over by another instance: the ones taken at the load
        are applied as they arrive now (held again if their part is still unknown). ``keys``: look only among
        the receipts held for these (smsc, key)s (named by a NOTIFY); None: among all."""
        notes, held_keys = set(self.notes), list(self.held_keys)
        foreign = {o: list(k) for o, k in self.foreign_keys.items()}
        n = 0
        for h in self.taken:
            if h.done:
                continue        # applied by a part_submitted of this unit
            h.done = True
            n += 1
            self.receipt(h.smsc, receipt_from_json(orjson.loads(h.receipt)))
        # held again: nothing new for the others to look for
        self.notes, self.held_keys, self.foreign_keys = notes, held_keys, foreign
        if n:
            self._bump("receipts_rematched", n)
        return n

    def need_rematch(self, keys: list[tuple[str, str]] | None = None) -> None:
        if not self.want_rematch:
            self.want_rematch = True
            self.rematch_keys = None if keys is None else set(keys)
        elif keys is None:
            self.rematch_keys = None
        elif self.rematch_keys is not None:
            self.rematch_keys.update(keys)

    def outbox_delete(self, seqs: list[int]) -> None:
        self.deletes.extend(seqs)

    def need_outbox_delete(self, seqs: list[int]) -> None:
        return None

    def heartbeat(self) -> None:
        self.heartbeat_at = time.time()

    def need_heartbeat(self) -> None:
        return None


# the operations a Batch applies, and what each needs loaded
NEEDS: dict[Callable[..., Any], Callable[..., Any]] = {
    Batch.accept: Batch.need_accept,
    Batch.begin_attempt: Batch.need_begin_attempt,
    Batch.part_submitted: Batch.need_part_submitted,
    Batch.submitted_one: Batch.need_submitted_one,
    Batch.retrying: Batch.need_retrying,
    Batch.finish: Batch.need_finish,
    Batch.receipt: Batch.need_receipt,
    Batch.outbox_delete: Batch.need_outbox_delete,
    Batch.heartbeat: Batch.need_heartbeat,
    Batch.rematch: Batch.need_rematch,
}
