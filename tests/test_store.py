"""Store conformance: the Store interface (store/base.py), the same tests for every backend.

`store_backend` (conftest) runs each test on SQLite and on PostgreSQL; the SQLite store's
behaviour is the reference. Events are read back from the outbox, where their order is the
order the engine publishes them in: for one message it must be the order of its state changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosqlite
import asyncpg
import orjson
import pytest
import structlog

from smppengine.model import Rejection, Request
from smppengine.receipts import Receipt, receipt_id_keys
from smppengine.store import Store, StoreError, open_store
from smppengine.store.migrations import POSTGRES, SQLITE, SQLITE_V1, migrate_sqlite

from .helpers import PG_URL, drop_pg_schemas, pg_store_url


@pytest.fixture
async def store(store_backend: str) -> AsyncIterator[Store]:
    s = open_store(store_backend, "sms")
    await s.open()
    yield s
    await s.close()


def req(msg_id: str, to: str = "+447700900123", text: str = "hello", **kw: Any) -> Request:
    return Request(id=msg_id, to=to, text=text, **kw)


def dlr(message_id: str, stat: str = "DELIVRD", err: str | None = "000") -> Receipt:
    return Receipt(message_id=message_id, stat=stat, err=err, submit_date=None, done_date=None, text=None,
                   network_error_code=None)


async def outbox(s: Store) -> list[tuple[int, str, dict[str, Any]]]:
    return [(seq, topic, orjson.loads(p)) for seq, topic, p in await s.outbox_fetch(0, 100_000)]


async def states(s: Store, msg_id: str) -> list[str]:
    return [e["state"] for _, topic, e in await outbox(s) if topic == f"sms/status/{msg_id}"]


async def submit(s: Store, msg_id: str, smsc_ids: list[str], smsc: str = "a", **kw: Any) -> None:
    """accept + begin_attempt + every part's resp."""
    await s.accept([req(msg_id, **kw)], [], 3600)
    await s.begin_attempt(msg_id, smsc, len(smsc_ids), 42)
    for i, sid in enumerate(smsc_ids):
        await s.part_submitted(msg_id, i, smsc, sid)


# ------------------------------------------------------------------------------------------ accept
async def test_accept_new_and_duplicates(store: Store) -> None:
    first = req("m1", text="first", meta={"tenant": "t1"})
    res = await store.accept([first, req("m2"), req("m1", text="second")], [], 3600)
    assert [r.id for r in res.new] == ["m1", "m2"] and res.duplicates == ["m1"]
    res = await store.accept([req("m1", text="third"), req("m3")], [], 3600)
    assert [r.id for r in res.new] == ["m3"] and res.duplicates == ["m1"]
    rows = await outbox(store)
    # every repeat of an id is answered with the message's current state, marked duplicate (and not stored)
    assert [(t, e["id"], e["state"], e.get("duplicate")) for _, t, e in rows] == [
        ("sms/status/m1", "m1", "queued", None), ("sms/status/m2", "m2", "queued", None),
        ("sms/status/m1", "m1", "queued", True), ("sms/status/m1", "m1", "queued", True),
        ("sms/status/m3", "m3", "queued", None)]
    ev = rows[0][2]
    assert ev == {"id": "m1", "state": "queued", "at": ev["at"], "to": "+447700900123", "smsc": None, "parts": 0,
                  "attempt": 0, "smsc_message_ids": [], "error": None, "meta": {"tenant": "t1"}}
    assert ev["at"].endswith("Z") and len(ev["at"]) == 24
    tr = await store.trace("m1")
    assert tr is not None and tr["request"]["text"] == "first" and tr["state"] == "queued" and not tr["final"]


async def test_accept_ttl_from_request_or_default(store: Store) -> None:
    now = time.time()
    await store.accept([req("a", ttl=60, received_at=now), req("b", received_at=now)], [], 3600)
    by_id = {a.request.id: a for a in await store.recover()}
    assert by_id["a"].ttl_at == pytest.approx(now + 60) and by_id["b"].ttl_at == pytest.approx(now + 3600)


async def test_rejections_with_and_without_id(store: Store) -> None:
    res = await store.accept([], [
        Rejection(id="r1", detail="to: missing", to=None, meta={"k": "v"}),
        Rejection(id=None, detail="not JSON", raw=b"\xffgarbage"),
    ], 3600)
    assert res.new == [] and res.duplicates == []
    rows = await outbox(store)
    assert [t for _, t, _ in rows] == ["sms/status/r1", "sms/status/_invalid"]
    r1, inv = rows[0][2], rows[1][2]
    assert r1["id"] == "r1" and r1["state"] == "rejected" and r1["meta"] == {"k": "v"} and r1["to"] is None
    assert r1["error"] == {"code": "invalid_request", "status": None, "detail": "to: missing"}
    assert inv == {"id": None, "state": "rejected", "at": inv["at"], "raw": "\ufffdgarbage",
                   "error": {"code": "invalid_request", "status": None, "detail": "not JSON"}}
    tr = await store.trace("r1")
    assert tr is not None and tr["final"] and tr["state"] == "rejected"
    assert await store.recover() == []


async def test_rejected_request_resent_with_its_id_invalid_again_then_corrected(store: Store) -> None:
    """A request rejected before any submit_sm (here: invalid) may be sent again under its id: invalid again,
    the new rejection replaces the old one; corrected, it is accepted as new and sent."""
    await store.accept([], [Rejection(id="r1", detail="to: missing", to=None)], 3600)
    res = await store.accept([], [Rejection(id="r1", detail="text: missing", to="+447700900123")], 3600)
    assert res.new == [] and res.duplicates == []
    res = await store.accept([req("r1", text="corrected", meta={"try": 3})], [], 3600)
    assert [r.id for r in res.new] == ["r1"] and res.duplicates == []
    evs = [e for _, t, e in await outbox(store) if t == "sms/status/r1"]
    assert [(e["state"], e["error"] and e["error"]["detail"], e.get("duplicate")) for e in evs] == [
        ("rejected", "to: missing", None), ("rejected", "text: missing", None), ("queued", None, None)]
    assert evs[2]["meta"] == {"try": 3} and evs[2]["to"] == "+447700900123"
    assert [a.request.text for a in await store.recover()] == ["corrected"]
    tr = await store.trace("r1")
    assert tr is not None and tr["state"] == "queued" and not tr["final"] and tr["attempt"] == 0
    assert tr["request"]["text"] == "corrected"
    await submit_existing(store, "r1", ["c1"])
    assert await store.receipt("a", dlr("c1")) == "matched"
    assert (await states(store, "r1"))[-1] == "delivered"


async def submit_existing(s: Store, msg_id: str, smsc_ids: list[str], smsc: str = "a") -> None:
    await s.begin_attempt(msg_id, smsc, len(smsc_ids), 42)
    for i, sid in enumerate(smsc_ids):
        await s.part_submitted(msg_id, i, smsc, sid)


async def test_repeated_id_is_not_sent_again_and_its_state_is_published_again(store: Store) -> None:
    await submit(store, "d1", ["a1"], meta={"t": 1})
    await store.receipt("a", dlr("a1"))
    res = await store.accept([req("d1", text="again")], [Rejection(id="d1", detail="to: missing")], 3600)
    assert res.new == [] and res.duplicates == ["d1", "d1"]
    evs = [e for _, t, e in await outbox(store) if t == "sms/status/d1"]
    assert [(e["state"], e.get("duplicate")) for e in evs] == [
        ("queued", None), ("submitted", None), ("delivered", None), ("delivered", True), ("delivered", True)]
    assert evs[3]["smsc_message_ids"] == ["a1"] and evs[3]["meta"] == {"t": 1} and evs[3]["attempt"] == 1
    tr = await store.trace("d1")
    assert tr is not None and tr["request"]["text"] == "hello" and tr["state"] == "delivered"
    assert await store.recover() == []


async def test_repeated_id_of_a_message_rejected_by_the_smsc_is_a_duplicate(store: Store) -> None:
    """Rejected after a submit_sm (the SMSC refused it): it was sent, so its id is not taken again."""
    await store.accept([req("s1")], [], 3600)
    await store.begin_attempt("s1", "a", 1, None)
    err = {"code": "ESME_RINVDSTADR", "status": 11, "detail": "refused"}
    await store.finish("s1", "rejected", err)
    res = await store.accept([req("s1")], [], 3600)
    assert res.new == [] and res.duplicates == ["s1"]
    last = [e for _, t, e in await outbox(store) if t == "sms/status/s1"][-1]
    assert last["state"] == "rejected" and last["duplicate"] is True and last["error"] == err
    assert await store.recover() == []


async def test_request_and_rejection_with_one_id_in_one_batch(store: Store) -> None:
    res = await store.accept([req("x")], [Rejection(id="x", detail="bad")], 3600)
    assert [r.id for r in res.new] == ["x"] and res.duplicates == ["x"]
    assert await states(store, "x") == ["queued", "queued"]


# ------------------------------------------------------------------------------------------ attempts, submit
async def test_begin_attempt_counts_and_keeps_first_ref(store: Store) -> None:
    await store.accept([req("m")], [], 3600)
    assert await store.begin_attempt("m", "a", 2, 7) == (1, 7)
    assert await store.begin_attempt("m", "b", 2, 9) == (2, 7)
    assert await store.begin_attempt("nope", "a", 1, 5) == (0, 5)
    tr = await store.trace("m")
    assert tr is not None and tr["attempt"] == 2 and tr["smsc"] == "b" and tr["parts"] == 2
    assert [p["idx"] for p in tr["part_rows"]] == [0, 1]
    assert all(p["state"] == "pending" and p["smsc_message_id"] is None for p in tr["part_rows"])
    assert await states(store, "m") == ["queued"]


async def test_one_part_attempt_without_a_reference_then_several_parts_take_one(store: Store) -> None:
    """A one-part attempt records no concatenation reference; a later attempt in several parts (another SMSC,
    another concatenation) takes its new one and keeps it."""
    await store.accept([req("m")], [], 3600)
    assert await store.begin_attempt("m", "a", 1, None) == (1, 0)
    assert await store.begin_attempt("m", "b", 3, 11) == (2, 11)
    assert await store.begin_attempt("m", "b", 3, 12) == (3, 11)


async def test_submitted_one_counts_the_attempt_and_submits(store: Store) -> None:
    """submitted_one = begin_attempt(1 part, no reference) + part_submitted of part 0, in one operation."""
    await store.accept([req("m", meta={"x": 1})], [], 3600)
    await store.submitted_one("m", "a", "abc1")
    assert await states(store, "m") == ["queued", "submitted"]
    ev = (await outbox(store))[-1][2]
    assert (ev["smsc_message_ids"], ev["smsc"], ev["parts"], ev["attempt"]) == (["abc1"], "a", 1, 1)
    assert ev["meta"] == {"x": 1} and ev["error"] is None
    tr = await store.trace("m")
    assert tr is not None and (tr["state"], tr["final"], tr["smsc"], tr["parts"], tr["attempt"]) == \
        ("submitted", False, "a", 1, 1)
    assert [(p["idx"], p["smsc_message_id"], p["state"]) for p in tr["part_rows"]] == [(0, "abc1", "submitted")]
    assert tr["part_rows"][0]["submitted_at"].endswith("Z")
    [active] = await store.recover()
    assert active.submitted == {0: "abc1"} and active.attempt == 1
    assert await store.receipt("a", dlr(str(0xABC1))) == "matched"
    assert await states(store, "m") == ["queued", "submitted", "delivered"]
    assert "resubmits_after_ok" not in (await store.stats(0))["counters"]


async def test_submitted_one_after_a_failed_attempt_and_after_an_ok(store: Store) -> None:
    await store.accept([req("m")], [], 3600)
    await store.begin_attempt("m", "a", 1, None)            # what the dispatcher records for a failed attempt
    await store.retrying("m", time.time() + 1, {"code": "timeout", "status": None, "detail": ""})
    await store.submitted_one("m", "b", "s2")
    assert await states(store, "m") == ["queued", "retrying", "submitted"]
    ev = (await outbox(store))[-1][2]
    assert (ev["smsc_message_ids"], ev["smsc"], ev["parts"], ev["attempt"]) == (["s2"], "b", 1, 2)
    # the part had an OK resp already: sent twice, counted, the new id kept, no second submitted event
    await store.submitted_one("m", "b", "s3")
    assert await states(store, "m") == ["queued", "retrying", "submitted"]
    assert (await store.stats(0))["counters"]["resubmits_after_ok"] == 1
    tr = await store.trace("m")
    assert tr is not None and tr["attempt"] == 3
    assert [(p["smsc_message_id"], p["state"]) for p in tr["part_rows"]] == [("s3", "submitted")]
    assert await store.receipt("b", dlr("s3")) == "matched"
    assert await states(store, "m") == ["queued", "retrying", "submitted", "delivered"]


async def test_submitted_one_applies_receipts_held_before_it(store: Store) -> None:
    await store.accept([req("m")], [], 3600)
    for stat in ("ENROUTE", "DELIVRD"):
        assert await store.receipt("a", dlr(str(0xFF02), stat)) == "held"
    await store.submitted_one("m", "a", "ff02")
    assert await states(store, "m") == ["queued", "submitted", "enroute", "delivered"]
    st = await store.stats(0)
    assert st["held_receipts"] == 0 and st["counters"]["receipts_held"] == 2
    tr = await store.trace("m")
    assert tr is not None and [(p["state"], p["stat"]) for p in tr["part_rows"]] == [("delivered", "DELIVRD")]


async def test_submitted_one_dlr_false_is_final(store: Store) -> None:
    await store.accept([req("m", dlr=False)], [], 3600)
    await store.submitted_one("m", "a", "n1")
    tr = await store.trace("m")
    assert tr is not None and tr["final"] and tr["state"] == "submitted" and tr["attempt"] == 1
    assert await store.recover() == []
    assert await store.receipt("a", dlr("n1")) == "late"
    assert await states(store, "m") == ["queued", "submitted"]


async def test_submitted_one_unknown_id_writes_nothing(store: Store) -> None:
    await store.submitted_one("ghost", "a", "g1")
    assert await store.trace("ghost") is None
    assert await outbox(store) == []
    # no correlation key was stored for it: a receipt for its id is held, not matched
    assert await store.receipt("a", dlr("g1")) == "held"
    assert (await store.stats(0))["counters"] == {"receipts_held": 1}


async def test_submitted_only_when_every_part_has_an_id(store: Store) -> None:
    await store.accept([req("m", meta={"x": 1})], [], 3600)
    await store.begin_attempt("m", "a", 3, 1)
    await store.part_submitted("m", 2, "a", "c3")
    await store.part_submitted("m", 0, "a", "c1")
    assert await states(store, "m") == ["queued"]
    await store.part_submitted("m", 1, "a", "c2")
    assert await states(store, "m") == ["queued", "submitted"]
    ev = (await outbox(store))[-1][2]
    assert ev["smsc_message_ids"] == ["c1", "c2", "c3"] and ev["parts"] == 3 and ev["attempt"] == 1
    assert ev["smsc"] == "a" and ev["meta"] == {"x": 1} and ev["error"] is None and ev["to"] == "+447700900123"
    # a resubmitted part (resp seen twice) emits nothing new, and is counted
    await store.part_submitted("m", 1, "a", "c2b")
    assert await states(store, "m") == ["queued", "submitted"]
    assert (await store.stats(0))["counters"]["resubmits_after_ok"] == 1


async def test_dlr_false_ends_at_submitted(store: Store) -> None:
    await submit(store, "m", ["id1"], dlr=False)
    tr = await store.trace("m")
    assert tr is not None and tr["final"] and tr["state"] == "submitted"
    assert await store.recover() == []
    assert await store.receipt("a", dlr("id1")) == "late"
    await store.finish("m", "failed", None)
    assert await states(store, "m") == ["queued", "submitted"]


# ------------------------------------------------------------------------------------------ receipts
@pytest.mark.parametrize(("submit_id", "receipt_id"), [
    ("abc123", str(0xABC123)),        # hex resp, decimal receipt
    ("11259375", "abcdef"),           # decimal resp, hex receipt
    ("00ABC", "abc"),                 # case and leading zeros
])
async def test_receipt_matches_hex_and_decimal_forms(store: Store, submit_id: str, receipt_id: str) -> None:
    await submit(store, "m", [submit_id])
    assert await store.receipt("a", dlr(receipt_id)) == "matched"
    assert await states(store, "m") == ["queued", "submitted", "delivered"]
    ev = (await outbox(store))[-1][2]
    assert ev["smsc_message_ids"] == [submit_id] and ev["error"] is None


async def test_receipt_is_matched_per_smsc(store: Store) -> None:
    await submit(store, "m", ["77"], smsc="a")
    assert await store.receipt("b", dlr("77")) == "held"
    assert await states(store, "m") == ["queued", "submitted"]
    assert (await store.stats(0))["held_receipts"] == 1


async def test_receipt_held_before_resp_then_applied(store: Store) -> None:
    await store.accept([req("m")], [], 3600)
    await store.begin_attempt("m", "a", 1, 1)
    assert await store.receipt("a", dlr(str(0xFF01))) == "held"
    st = await store.stats(0)
    assert st["held_receipts"] == 1 and st["counters"]["receipts_held"] == 1
    await store.part_submitted("m", 0, "a", "ff01")
    assert await states(store, "m") == ["queued", "submitted", "delivered"]
    assert (await store.stats(0))["held_receipts"] == 0


async def test_held_receipts_apply_in_arrival_order(store: Store) -> None:
    await store.accept([req("m")], [], 3600)
    await store.begin_attempt("m", "a", 1, 1)
    for stat in ("ENROUTE", "ACCEPTD", "DELIVRD"):
        assert await store.receipt("a", dlr("9", stat)) == "held"
    await store.part_submitted("m", 0, "a", "9")
    assert await states(store, "m") == ["queued", "submitted", "enroute", "enroute", "delivered"]


async def test_late_receipt_after_final_changes_nothing(store: Store) -> None:
    await submit(store, "m", ["1"])
    assert await store.receipt("a", dlr("1")) == "matched"
    assert await store.receipt("a", dlr("1", "UNDELIV")) == "late"
    assert await states(store, "m") == ["queued", "submitted", "delivered"]
    assert (await store.stats(0))["counters"]["receipts_late"] == 1


async def test_multipart_delivered_only_when_every_part_is(store: Store) -> None:
    await submit(store, "m", ["p1", "p2", "p3"])
    assert await store.receipt("a", dlr("p2")) == "matched"
    assert await store.receipt("a", dlr("p1")) == "matched"
    assert await states(store, "m") == ["queued", "submitted"]
    assert await store.receipt("a", dlr("p3")) == "matched"
    assert await states(store, "m") == ["queued", "submitted", "delivered"]
    tr = await store.trace("m")
    assert tr is not None and [p["state"] for p in tr["part_rows"]] == ["delivered"] * 3
    assert [p["stat"] for p in tr["part_rows"]] == ["DELIVRD"] * 3


@pytest.mark.parametrize(("stat", "final"), [("UNDELIV", "undelivered"), ("REJECTD", "undelivered"),
                                             ("DELETED", "undelivered"), ("UNKNOWN", "undelivered"),
                                             ("EXPIRED", "expired")])
async def test_any_failed_part_ends_the_message_once(store: Store, stat: str, final: str) -> None:
    await submit(store, "m", ["p1", "p2"])
    assert await store.receipt("a", dlr("p1")) == "matched"
    assert await store.receipt("a", dlr("p2", stat, "012")) == "matched"
    assert await store.receipt("a", dlr("p1", "DELIVRD")) == "late"
    assert await states(store, "m") == ["queued", "submitted", final]
    ev = (await outbox(store))[-1][2]
    assert ev["error"] == {"code": stat, "status": None, "detail": f"receipt stat:{stat} err:012"}


async def test_enroute_then_delivered(store: Store) -> None:
    await submit(store, "m", ["e1"])
    assert await store.receipt("a", dlr("e1", "ACCEPTD")) == "matched"
    tr = await store.trace("m")
    assert tr is not None and tr["state"] == "enroute" and not tr["final"]
    assert [a.state for a in await store.recover()] == ["enroute"]
    assert await store.receipt("a", dlr("e1")) == "matched"
    assert await states(store, "m") == ["queued", "submitted", "enroute", "delivered"]


async def test_resubmitted_part_does_not_repeat_submitted(store: Store) -> None:
    await submit(store, "m", ["e1"])
    await store.receipt("a", dlr("e1", "ENROUTE"))
    await store.part_submitted("m", 0, "a", "e1")
    assert await states(store, "m") == ["queued", "submitted", "enroute"]


# ------------------------------------------------------------------------------------------ retrying, finish
async def test_retrying_then_failed_then_nothing(store: Store) -> None:
    await store.accept([req("m")], [], 3600)
    await store.begin_attempt("m", "a", 1, 1)
    err = {"code": "ESME_RTHROTTLED", "status": 0x58, "detail": "throttled"}
    next_at = time.time() + 30
    await store.retrying("m", next_at, err)
    ev = (await outbox(store))[-1][2]
    assert ev["state"] == "retrying" and ev["error"] == err and ev["next_attempt_at"].endswith("Z")
    [active] = await store.recover()
    assert active.state == "retrying" and active.next_attempt_at == pytest.approx(next_at)
    await store.finish("m", "failed", err)
    await store.retrying("m", next_at, err)
    await store.finish("m", "expired", None)
    assert await states(store, "m") == ["queued", "retrying", "failed"]
    tr = await store.trace("m")
    assert tr is not None and tr["state"] == "failed" and tr["final"] and tr["error"] == err
    assert [e["state"] for e in tr["events"]] == ["queued", "retrying", "failed"]


async def test_finish_unknown_id_does_nothing(store: Store) -> None:
    await store.finish("ghost", "failed", None)
    await store.retrying("ghost", time.time(), {"code": "timeout", "status": None, "detail": ""})
    assert await outbox(store) == []
    assert await store.trace("ghost") is None


# ------------------------------------------------------------------------------------------ MO
async def test_mo_single(store: Store) -> None:
    msg = await store.mo("a", "447700900123", "12345", b"STOP", 0, None, "gsm")
    assert msg is not None and msg["text"] == "STOP" and msg["from"] == "447700900123" and msg["to"] == "12345"
    assert msg["smsc"] == "a" and msg["received_at"].endswith("Z") and len(msg["id"]) == 36
    assert [(t, e) for _, t, e in await outbox(store)] == [("sms/inbound", msg)]
    assert (await store.stats(0))["counters"]["mo_received"] == 1


async def test_mo_concatenated_out_of_order(store: Store) -> None:
    parts = {1: "Hello ".encode("utf-16-be"), 2: "wörld ".encode("utf-16-be"), 3: "😀!".encode("utf-16-be")}
    assert await store.mo("a", "4477", "123", parts[3], 8, (9, 3, 3), "gsm") is None
    assert await store.mo("a", "4477", "123", parts[1], 8, (9, 3, 1), "gsm") is None
    assert await store.mo("a", "4477", "123", parts[1], 8, (9, 3, 1), "gsm") is None    # a repeated part
    assert await store.mo("a", "4477", "999", parts[2], 8, (9, 3, 2), "gsm") is None    # another conversation
    assert await outbox(store) == []
    msg = await store.mo("a", "4477", "123", parts[2], 8, (9, 3, 2), "gsm")
    assert msg is not None and msg["text"] == "Hello wörld 😀!"
    assert [e for _, _, e in await outbox(store)] == [msg]
    # the parts are gone: the same reference starts a new message
    assert await store.mo("a", "4477", "123", parts[1], 8, (9, 3, 1), "gsm") is None


# ------------------------------------------------------------------------------------------ outbox
async def test_outbox_fetch_and_delete_in_order(store: Store) -> None:
    await store.accept([req(f"m{i}") for i in range(5)], [], 3600)
    await store.mo("a", "1", "2", b"hi", 0, None, "gsm")
    rows = await store.outbox_fetch(0, 100)
    seqs = [s for s, _, _ in rows]
    assert seqs == sorted(seqs) and len(set(seqs)) == 6
    assert [t for _, t, _ in rows] == [f"sms/status/m{i}" for i in range(5)] + ["sms/inbound"]
    assert await store.outbox_fetch(0, 2) == rows[:2]
    assert await store.outbox_fetch(seqs[2], 2) == rows[3:5]
    assert await store.outbox_fetch(seqs[-1], 10) == []
    # the publisher reports acknowledged batches in the order it fetched them
    await store.outbox_delete(seqs[:2])
    assert await store.outbox_fetch(0, 100) == rows[2:]
    await store.outbox_delete(seqs[2:5])
    assert await store.outbox_fetch(0, 100) == rows[5:]
    await store.outbox_delete([s for s, _, _ in await store.outbox_fetch(0, 100)])
    assert await store.outbox_fetch(0, 100) == []
    assert (await store.stats(0))["outbox"] == 0
    await store.accept([req("later")], [], 3600)
    [(seq, topic, _)] = await store.outbox_fetch(0, 100)
    assert seq > seqs[-1] and topic == "sms/status/later"
    assert (await store.stats(0))["outbox"] == 1
    # the history keeps every event of a message after it was published
    assert [e["state"] for e in (await store.trace("m0") or {})["events"]] == ["queued"]


async def test_sqlite_published_mark_survives_a_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    s = open_store(path, "sms")
    await s.open()
    await s.accept([req(f"m{i}") for i in range(4)], [], 3600)
    rows = await s.outbox_fetch(0, 100)
    await s.outbox_delete([seq for seq, _, _ in rows[:3]])
    await s.close()
    s = open_store(path, "sms")
    await s.open()
    try:
        assert await s.outbox_fetch(0, 100) == rows[3:]
        await s.accept([req("m9")], [], 3600)
        assert [t for _, t, _ in await s.outbox_fetch(0, 100)] == ["sms/status/m3", "sms/status/m9"]
    finally:
        await s.close()


async def test_sqlite_outbox_from_memory_is_what_the_table_holds(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The publisher's reads are served from the rows read back after each commit: at every step they must
    be exactly what the events table returns (order, content, after the published mark), also past the
    memory bound, after a rolled-back operation and across a restart."""
    from smppengine.store import sqlite as sqlite_store

    monkeypatch.setattr(sqlite_store, "OUTBOX_MEM_MAX", 25)
    path = str(tmp_path / "m.db")
    s = open_store(path, "sms")
    assert isinstance(s, sqlite_store.SqliteStore)
    await s.open()

    def table(after: int, limit: int) -> list[tuple[int, str, bytes]]:
        with sqlite3.connect(path) as db:
            mark = db.execute("SELECT seq FROM published WHERE id=0").fetchone()[0]
            return [(int(a), str(b), bytes(c)) for a, b, c in db.execute(
                "SELECT seq, topic, payload FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (max(after, mark), limit))]

    def bad(c: sqlite3.Connection) -> None:       # writes an event, then fails: its row must not be served
        s._emit(c, None, None, "rejected", {"code": "x", "status": None, "detail": "rolled back"})
        raise ValueError("bad operation")

    try:
        await s.accept([req(f"a{i}") for i in range(10)], [], 3600)
        assert s._mem and await s.outbox_fetch(0, 100) == table(0, 100)          # from memory
        first = await s.outbox_fetch(0, 4)
        assert await s.outbox_fetch(first[-1][0], 3) == table(first[-1][0], 3)   # after the batch in flight
        results = await asyncio.gather(s._call(bad), s.accept([req("b1")], [], 3600), return_exceptions=True)
        assert isinstance(results[0], ValueError)
        assert [t for _, t, _ in await s.outbox_fetch(0, 100)] == [t for _, t, _ in table(0, 100)]
        assert all(b"rolled back" not in p for _, _, p in await s.outbox_fetch(0, 100))
        await s.outbox_delete([seq for seq, _, _ in first])
        assert await s.outbox_fetch(0, 100) == table(first[-1][0], 100)   # at once, before the mark's commit
        await s._call(lambda c: None)           # the mark is written with the next group commit
        assert await s.outbox_fetch(0, 100) == table(0, 100)
        await s.accept([req(f"c{i}") for i in range(40)], [], 3600)              # over the memory bound
        assert len(s._mem) <= 25
        assert await s.outbox_fetch(0, 1000) == table(0, 1000)                   # the start comes from the table
        last = (await s.outbox_fetch(0, 1000))[-1][0]
        assert await s.outbox_fetch(last - 5, 1000) == table(last - 5, 1000)     # the end from memory
        await s.close()
        s = open_store(path, "sms")
        await s.open()
        assert await s.outbox_fetch(0, 1000) == table(0, 1000)
        await s.accept([req("d1")], [], 3600)
        assert await s.outbox_fetch(last, 10) == table(last, 10) and len(table(last, 10)) == 1
    finally:
        await s.close()


async def test_sqlite_acknowledged_events_are_not_held_back_by_a_busy_store(tmp_path: Path) -> None:
    """The publisher's "acknowledged" returns at once even while a commit runs (under load a commit takes a few
    hundred ms, and a wait per batch held status events back by seconds); those events are not handed out
    again, and the mark reaches the table with the next commit, so a restart does not publish them again."""
    import threading

    path = str(tmp_path / "b.db")
    s = open_store(path, "sms")
    await s.open()
    await s.accept([req(f"m{i}") for i in range(6)], [], 3600)
    rows = await s.outbox_fetch(0, 100)
    gate = threading.Event()
    busy = s._call(lambda c: gate.wait(10))         # a long commit: the database thread is held
    busy_task = asyncio.ensure_future(busy)
    try:
        await asyncio.wait_for(s.outbox_delete([seq for seq, _, _ in rows[:4]]), timeout=2)
        assert await asyncio.wait_for(s.outbox_fetch(0, 100), timeout=2) == rows[4:]
        with sqlite3.connect(path) as db:           # not written yet: the commit is still running
            assert db.execute("SELECT seq FROM published").fetchone()[0] == 0
    finally:
        gate.set()
        await busy_task
    await s._call(lambda c: None)                   # the next group commit carries the mark
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT seq FROM published").fetchone()[0] == rows[3][0]
    await s.outbox_delete([rows[4][0]])
    await s.close()                                 # a clean stop writes the last mark
    s = open_store(path, "sms")
    await s.open()
    try:
        assert await s.outbox_fetch(0, 100) == rows[5:]
    finally:
        await s.close()


async def test_sqlite_a_publisher_far_behind_reads_the_table_once_per_window(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """More than OUTBOX_MEM_MAX events behind, the publisher's batches come from rows read ahead: every event
    once, in order, exactly as the table holds them, with one read of the table per OUTBOX_MEM_MAX rows."""
    from smppengine.store import sqlite as sqlite_store

    monkeypatch.setattr(sqlite_store, "OUTBOX_MEM_MAX", 20)
    path = str(tmp_path / "r.db")
    s = open_store(path, "sms")
    assert isinstance(s, sqlite_store.SqliteStore)
    await s.open()
    try:
        await s.accept([req(f"a{i}") for i in range(100)], [], 3600)
        with sqlite3.connect(path) as db:
            table = [(int(a), str(b), bytes(c)) for a, b, c in
                     db.execute("SELECT seq, topic, payload FROM events ORDER BY seq")]
        assert len(table) == 100 and len(s._mem) <= 20
        assert s._db is not None
        reads = 0
        real = s._db.execute_fetchall

        async def counted(*args: Any) -> Any:
            nonlocal reads
            reads += 1
            return await real(*args)

        monkeypatch.setattr(s._db, "execute_fetchall", counted)
        got: list[tuple[int, str, bytes]] = []
        last = acked = 0
        late = False
        while batch := await s.outbox_fetch(last, 7):
            assert 0 < len(batch) <= 7
            got += batch
            last = batch[-1][0]
            if len(got) - acked >= 14:
                await s.outbox_delete([seq for seq, _, _ in got[acked:]])
                acked = len(got)
            if len(got) >= 35 and not late:         # new events meanwhile: they follow, in order
                await s.accept([req("late")], [], 3600)
                late = True
        assert [r[0] for r in got] == [r[0] for r in table] + [got[-1][0]] and got[:100] == table
        assert got[-1][1] == "sms/status/late"
        assert reads == 5               # 81 rows older than the 20 in memory (82-101): five reads of up to 20
    finally:
        await s.close()


async def test_sqlite_outbox_rows_of_an_older_schema_are_kept_by_the_upgrade(tmp_path: Path) -> None:
    """Events waiting in the version-4 outbox table are published after the upgrade to the journal (step 5),
    and the events already in the history are not published again."""
    path = str(tmp_path / "v4.db")
    db = await aiosqlite.connect(path, isolation_level=None)
    await migrate_sqlite(db, SQLITE[:4])
    await db.execute("INSERT INTO events(msg_id, state, at, payload) VALUES ('old', 'queued', 1.0, ?)", (b"{}",))
    for topic, n in (("sms/status/w1", 1), ("sms/inbound", 2)):
        await db.execute("INSERT INTO outbox(topic, payload) VALUES (?, ?)", (topic, orjson.dumps({"n": n})))
    await db.close()
    s = open_store(path, "sms")
    await s.open()
    try:
        rows = await s.outbox_fetch(0, 100)
        assert [(t, orjson.loads(p)) for _, t, p in rows] == [("sms/status/w1", {"n": 1}), ("sms/inbound", {"n": 2})]
        await s.accept([req("new")], [], 3600)
        assert [t for _, t, _ in await s.outbox_fetch(rows[-1][0], 100)] == ["sms/status/new"]
    finally:
        await s.close()
    assert await _schema_versions(path) == list(range(1, len(SQLITE) + 1))


async def test_sqlite_messages_of_a_version_5_store_keep_working_after_the_rid_upgrade(tmp_path: Path) -> None:
    """Step 6 re-keys a message's rows (parts, correlation keys, history) by an integer in arrival order:
    a store written by version 5 keeps its backlog, its in-flight parts (their receipts still correlate),
    its held receipts and every message's history."""
    path = str(tmp_path / "v5.db")
    db = await aiosqlite.connect(path, isolation_level=None)
    await migrate_sqlite(db, SQLITE[:5])
    ins = ("INSERT INTO messages(id, req, state, final, smsc, parts, attempt, created_at, updated_at, ttl_at) "
           "VALUES (?,?,?,?,?,?,?,?,?,4e9)")
    # stored out of arrival order: the upgrade numbers them by created_at
    await db.execute(ins, ("late", orjson.dumps(req("late").to_json()), "queued", 0, None, 0, 0, 3.0, 3.0))
    await db.execute(ins, ("two", orjson.dumps(req("two").to_json()), "submitted", 0, "a", 2, 1, 1.0, 2.0))
    await db.execute(ins, ("done", orjson.dumps(req("done").to_json()), "delivered", 1, "a", 1, 1, 2.0, 2.5))
    for msg_id, idx, smsc_id, state in (("two", 0, "2a", "submitted"), ("two", 1, "2b", "submitted"),
                                        ("done", 0, "d1", "delivered")):
        await db.execute("INSERT INTO parts(msg_id, idx, smsc_message_id, state, submitted_at) VALUES (?,?,?,?,2.0)",
                         (msg_id, idx, smsc_id, state))
        for key in receipt_id_keys(smsc_id):
            await db.execute("INSERT INTO part_keys VALUES ('a', ?, ?, ?)", (key, msg_id, idx))
    for seq, (msg_id, state) in enumerate((("two", "queued"), ("done", "queued"), ("done", "submitted"),
                                           ("two", "submitted"), ("done", "delivered"), ("late", "queued")), 1):
        await db.execute("INSERT INTO events(seq, msg_id, state, at, topic, payload) VALUES (?,?,?,?,?,?)",
                         (seq, msg_id, state, float(seq), f"sms/status/{msg_id}",
                          orjson.dumps({"id": msg_id, "state": state})))
    await db.execute("UPDATE published SET seq=6")
    await db.close()

    s = open_store(path, "sms")
    await s.open()
    try:
        assert sorted(a.request.id for a in await s.recover()) == ["late", "two"]
        two = next(a for a in await s.recover() if a.request.id == "two")
        assert two.submitted == {0: "2a", 1: "2b"}
        assert [a.request.id for a in await s.pending_page((0.0, ""), 10)] == ["late"]
        done = await s.trace("done")
        assert done is not None and [e["state"] for e in done["events"]] == ["queued", "submitted", "delivered"]
        assert [p["smsc_message_id"] for p in done["part_rows"]] == ["d1"]
        # the in-flight parts' receipts correlate through the re-keyed rows
        assert await s.receipt("a", dlr("2A")) == "matched"
        assert await s.receipt("a", dlr("2b")) == "matched"
        assert await states(s, "two") == ["delivered"]         # events after the published mark only
        tr = await s.trace("two")
        assert tr is not None and tr["state"] == "delivered"
        assert [e["state"] for e in tr["events"]] == ["queued", "submitted", "delivered"]
        assert await s.receipt("a", dlr("d1")) == "late"
        # a new message gets the next number and works end to end
        await submit(s, "new", ["n1"])
        assert await s.receipt("a", dlr("n1")) == "matched"
        assert await states(s, "new") == ["queued", "submitted", "delivered"]
    finally:
        await s.close()
    with sqlite3.connect(path) as c:
        assert [r[0] for r in c.execute("SELECT id FROM messages ORDER BY rid")] == ["two", "done", "late", "new"]
    assert await _schema_versions(path) == list(range(1, len(SQLITE) + 1))


async def test_outbox_ready_is_set_after_a_commit_that_adds_events(store: Store) -> None:
    store.outbox_ready.clear()
    await store.begin_attempt("nothing", "a", 1, 1)
    assert not store.outbox_ready.is_set()
    await store.accept([req("m")], [], 3600)
    assert store.outbox_ready.is_set()


async def test_event_order_per_id_is_the_order_of_state_changes(store: Store) -> None:
    """Operations issued together land in one group commit, applied in call order."""
    await store.accept([req("m1"), req("m2")], [], 3600)
    await asyncio.gather(store.begin_attempt("m1", "a", 2, 1), store.begin_attempt("m2", "a", 1, 2))
    await asyncio.gather(
        store.part_submitted("m1", 0, "a", "1a"), store.part_submitted("m2", 0, "a", "2a"),
        store.receipt("a", dlr("2a", "ACCEPTD")), store.part_submitted("m1", 1, "a", "1b"),
        store.receipt("a", dlr("1a", "ENROUTE")), store.receipt("a", dlr("1a")), store.receipt("a", dlr("2a")),
        store.receipt("a", dlr("1b")),
    )
    assert await states(store, "m1") == ["queued", "submitted", "enroute", "delivered"]
    assert await states(store, "m2") == ["queued", "submitted", "enroute", "delivered"]
    for msg_id in ("m1", "m2"):
        tr = await store.trace(msg_id)
        assert tr is not None and [e["state"] for e in tr["events"]] == await states(store, msg_id)


async def test_one_failing_operation_does_not_undo_its_batch(store: Store) -> None:
    bad = Receipt(message_id=None, stat="DELIVRD", err=None, submit_date=None,  # type: ignore[arg-type]
                  done_date=None, text=None, network_error_code=None)
    res = await asyncio.gather(store.accept([req("before")], [], 3600), store.receipt("a", bad),
                               store.accept([req("after")], [], 3600), return_exceptions=True)
    assert isinstance(res[1], AttributeError)
    assert [r.id for r in res[0].new] == ["before"] and [r.id for r in res[2].new] == ["after"]  # type: ignore[union-attr]
    assert [e["id"] for _, _, e in await outbox(store)] == ["before", "after"]


# ------------------------------------------------------------------------------------------ recover, trace, stats
async def test_recover_returns_non_final_messages_with_submitted_parts(store_backend: str) -> None:
    s = open_store(store_backend, "sms")
    await s.open()
    now = time.time()
    await s.accept([req("q", received_at=now, meta={"a": [1]}, priority=2, route="r", dlr=True, validity=60)], [],
                   3600)
    await s.accept([req("half", received_at=now)], [], 3600)
    await s.begin_attempt("half", "a", 2, 5)
    await s.part_submitted("half", 1, "a", "h2")
    await submit(s, "sub", ["s1"])
    await submit(s, "done", ["d1"])
    await s.receipt("a", dlr("d1"))
    await s.accept([req("gone")], [], 3600)
    await s.finish("gone", "rejected", None)
    await s.close()

    s = open_store(store_backend, "sms")        # reopened: what survives is what was committed
    await s.open()
    try:
        by_id = {a.request.id: a for a in await s.recover()}
        assert set(by_id) == {"q", "half", "sub"}
        q = by_id["q"]
        assert q.request == req("q", received_at=now, meta={"a": [1]}, priority=2, route="r", dlr=True, validity=60)
        assert (q.state, q.smsc, q.attempt, q.submitted, q.next_attempt_at) == ("queued", None, 0, {}, None)
        assert q.ttl_at == pytest.approx(now + 3600)
        half = by_id["half"]
        assert (half.state, half.smsc, half.attempt, half.submitted) == ("queued", "a", 1, {1: "h2"})
        assert by_id["sub"].state == "submitted" and by_id["sub"].submitted == {0: "s1"}
        # and the correlation survived too
        assert await s.receipt("a", dlr("s1")) == "matched"
    finally:
        await s.close()


async def test_trace(store: Store) -> None:
    await submit(store, "m", ["t1", "t2"], meta={"m": 1})
    await store.receipt("a", dlr("t1"))
    tr = await store.trace("m")
    assert tr is not None
    assert (tr["id"], tr["state"], tr["final"], tr["smsc"], tr["parts"], tr["attempt"], tr["error"]) == \
        ("m", "submitted", False, "a", 2, 1, None)
    assert tr["request"]["meta"] == {"m": 1} and tr["request"]["to"] == "+447700900123"
    assert [(p["idx"], p["smsc_message_id"], p["state"], p["stat"]) for p in tr["part_rows"]] == \
        [(0, "t1", "delivered", "DELIVRD"), (1, "t2", "submitted", None)]
    assert tr["part_rows"][0]["receipt_at"].endswith("Z") and tr["part_rows"][1]["receipt_at"] is None
    assert tr["events"] == [e for _, t, e in await outbox(store) if t == "sms/status/m"]
    assert all(tr[k].endswith("Z") for k in ("created_at", "updated_at", "ttl_at"))


async def test_stats(store: Store) -> None:
    since = time.time() - 1
    await store.accept([req("q1"), req("q2")], [Rejection(id="r", detail="x")], 3600)
    await submit(store, "s", ["1"], smsc="b")
    await submit(store, "d", ["2"], smsc="b")
    await store.receipt("b", dlr("2"))
    await store.receipt("b", dlr("404"))
    st = await store.stats(since)
    assert sorted((q["state"], q["smsc"], q["count"]) for q in st["queue"]) == \
        [("queued", "", 2), ("submitted", "b", 1)]
    assert sorted((q["state"], q["smsc"], q["count"]) for q in st["outcomes"]) == \
        [("delivered", "b", 1), ("rejected", "", 1)]
    assert st["outbox"] == len(await outbox(store)) and st["held_receipts"] == 1
    assert st["counters"] == {"receipts_held": 1}
    assert (await store.stats(time.time() + 60))["outcomes"] == []


# ------------------------------------------------------------------------------------------ migrations
async def _schema_versions(url: str) -> list[int]:
    if url.startswith("postgresql://"):
        conn = await asyncpg.connect(url.split("?")[0], server_settings={"search_path": url.rsplit("=", 1)[1]})
        try:
            return [r[0] for r in await conn.fetch("SELECT version FROM schema_version ORDER BY version")]
        finally:
            await conn.close()
    with sqlite3.connect(url) as db:
        return [r[0] for r in db.execute("SELECT version FROM schema_version ORDER BY version")]


async def _set_version(url: str, version: int) -> None:
    if url.startswith("postgresql://"):
        conn = await asyncpg.connect(url.split("?")[0], server_settings={"search_path": url.rsplit("=", 1)[1]})
        try:
            await conn.execute("INSERT INTO schema_version VALUES ($1, 0)", version)
        finally:
            await conn.close()
        return
    with sqlite3.connect(url) as db:
        db.execute("INSERT INTO schema_version VALUES (?, 0)", (version,))


async def test_migrations_applied_once_and_newer_schema_refused(store_backend: str) -> None:
    assert len(SQLITE) == len(POSTGRES)
    for _ in range(2):
        s = open_store(store_backend, "sms")
        await s.open()
        await s.accept([req("m")], [], 3600)
        await s.close()
    assert await _schema_versions(store_backend) == list(range(1, len(SQLITE) + 1))
    await _set_version(store_backend, 99)
    s = open_store(store_backend, "sms")
    with pytest.raises(StoreError, match="schema version 99"):
        await s.open()
    await s.close()


async def test_sqlite_store_from_before_migrations_is_adopted(tmp_path: Path) -> None:
    path = str(tmp_path / "old.db")
    with sqlite3.connect(path) as db:
        db.executescript(SQLITE_V1)
        db.execute("INSERT INTO messages(id, req, state, created_at, updated_at, ttl_at) VALUES (?,?,?,?,?,?)",
                   ("old", orjson.dumps(req("old").to_json()), "queued", 1.0, 1.0, 1e12))
    s = open_store(path, "sms")
    await s.open()
    try:
        assert [a.request.id for a in await s.recover()] == ["old"]
    finally:
        await s.close()
    assert await _schema_versions(path) == list(range(1, len(SQLITE) + 1))


# ------------------------------------------------------------------------------------------ PostgreSQL URLs
async def test_postgres_unreachable_is_a_store_error() -> None:
    s = open_store("postgresql://postgres@127.0.0.1:1/test", "sms")
    with pytest.raises(StoreError, match="cannot open the PostgreSQL store"):
        await s.open()


def test_postgres_schema_name_is_checked() -> None:
    with pytest.raises(StoreError, match="schema"):
        open_store(f"{PG_URL}?schema=bad;name", "sms")


async def test_postgres_schema_is_created_and_separate() -> None:
    a, b = pg_store_url(), pg_store_url()
    sa, sb = open_store(a, "sms"), open_store(b, "sms")
    await sa.open()
    await sb.open()
    try:
        await sa.accept([req("m")], [], 3600)
        assert await sb.trace("m") is None and (await sa.trace("m")) is not None
    finally:
        await sa.close()
        await sb.close()
        await drop_pg_schemas([a.rsplit("=", 1)[1], b.rsplit("=", 1)[1]])


@contextlib.asynccontextmanager
async def _pg_outbox_behind_a_held_commit() -> AsyncIterator[
        tuple[Store, str, list[tuple[int, str, bytes]], asyncio.Event, asyncio.Future[Any]]]:
    """A fresh PostgreSQL store with six outbox rows, whose writer is held in an open transaction (a long
    commit) until ``release`` is set: yields (store, schema, rows, release, the held operation)."""
    url = pg_store_url()
    schema = url.rsplit("=", 1)[1]
    s = open_store(url, "sms")
    await s.open()
    release = asyncio.Event()

    async def hold(c: Any) -> None:
        await release.wait()

    try:
        await s.accept([req(f"m{i}") for i in range(6)], [], 3600)
        rows = await s.outbox_fetch(0, 100)
        yield s, schema, rows, release, asyncio.ensure_future(s._call(hold))
    finally:
        release.set()
        await s.close()
        await drop_pg_schemas([schema])


async def _pg_nothing(c: Any) -> None:
    return None


async def test_postgres_a_resp_stored_again_after_an_unknown_commit_changes_nothing() -> None:
    """PostgreSQL: a commit lost during its COMMIT may have committed; the dispatcher then stores the same resp
    again. The replay is no new attempt, no second event and no resubmit, for one part and for several."""
    url = pg_store_url()
    s = open_store(url, "sms")
    await s.open()
    try:
        await s.accept([req("one")], [], 3600)
        for _ in range(2):
            await s.submitted_one("one", "a", "abc1")
        await submit(s, "two", ["b1", "b2"])
        await s.part_submitted("two", 1, "a", "b2")
        assert await states(s, "one") == ["queued", "submitted"]
        assert await states(s, "two") == ["queued", "submitted"]
        tr = await s.trace("one")
        assert tr is not None and tr["attempt"] == 1
        assert "resubmits_after_ok" not in (await s.stats(0))["counters"]
        assert await s.receipt("a", dlr(str(0xABC1))) == "matched"
        assert await states(s, "one") == ["queued", "submitted", "delivered"]
    finally:
        await s.close()
        await drop_pg_schemas([url.rsplit("schema=", 1)[1]])


async def test_postgres_acknowledged_rows_are_not_held_back_by_a_busy_store() -> None:
    """PostgreSQL: the publisher's "acknowledged" returns while a commit runs; the rows are not handed out
    again nor counted as waiting, and their DELETE is committed with the next group commit."""
    async with _pg_outbox_behind_a_held_commit() as (s, schema, rows, release, busy):
        await asyncio.wait_for(s.outbox_delete([seq for seq, _, _ in rows[:4]]), timeout=2)
        assert await s.outbox_fetch(0, 100) == rows[4:]
        assert await s.outbox_fetch(0, 1) == rows[4:5]
        assert (await s.stats(0))["outbox"] == 2
        release.set()
        await busy
        await s._call(_pg_nothing)              # the DELETE is committed by now
        conn = await asyncpg.connect(PG_URL)
        try:
            left = await conn.fetchval(f'SELECT COUNT(*) FROM "{schema}".outbox')
        finally:
            await conn.close()
        assert left == 2 and await s.outbox_fetch(0, 100) == rows[4:]


async def test_postgres_acknowledged_rows_waiting_for_their_delete_are_bounded(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each outbox read skips the acknowledged rows whose DELETE is not committed yet: past
    OUTBOX_DELETING_MAX of them, the publisher's "acknowledged" waits for the commit."""
    from smppengine.store import postgres as pg_store

    monkeypatch.setattr(pg_store, "OUTBOX_DELETING_MAX", 3)
    async with _pg_outbox_behind_a_held_commit() as (s, _, rows, release, busy):
        await asyncio.wait_for(s.outbox_delete([rows[0][0], rows[1][0]]), timeout=2)     # 2: not waited for
        third = asyncio.ensure_future(s.outbox_delete([rows[2][0], rows[3][0]]))         # 4 > 3: waits
        for _ in range(5):                      # a call that does not wait returns within one loop turn
            await asyncio.sleep(0)
        assert not third.done()                 # it cannot finish: the commit it waits for is held
        assert await s.outbox_fetch(0, 100) == rows[4:]
        release.set()
        await asyncio.wait_for(third, timeout=5)
        await busy
        assert await s.outbox_fetch(0, 100) == rows[4:]


async def test_postgres_instances_starting_together_create_the_schema_once() -> None:
    """Several instances opening a new schema at the same moment (CREATE SCHEMA IF NOT EXISTS is not atomic
    in PostgreSQL: one of them used to fail with a unique violation): every one opens."""
    for _ in range(5):
        url = pg_store_url()
        stores = [open_store(url, "sms", instance=f"gw{i}") for i in range(4)]
        try:
            await asyncio.gather(*(s.open() for s in stores))
            await stores[0].accept([req("m")], [], 3600)
            assert await stores[3].trace("m") is not None
        finally:
            await asyncio.gather(*(s.close() for s in stores), return_exceptions=True)
            await drop_pg_schemas([url.rsplit("=", 1)[1]])


async def test_postgres_a_second_instance_with_the_same_name_is_refused() -> None:
    """Two engines with one engine.instance on one store would publish each other's events and take each
    other's messages over: the second is refused at its start with a clear error; once the first stops (or
    dies: its connection goes), the name is free again."""
    url = pg_store_url()
    first = open_store(url, "sms", instance="gw7")
    await first.open()
    try:
        second = open_store(url, "sms", instance="gw7")
        with pytest.raises(StoreError, match="engine.instance 'gw7' is already running on this store"):
            await second.open()
        other = open_store(url, "sms", instance="gw8")
        await other.open()
        await other.close()
    finally:
        await first.close()
    again = open_store(url, "sms", instance="gw7")
    await again.open()
    await again.close()
    await drop_pg_schemas([url.rsplit("=", 1)[1]])


async def test_postgres_store_reconnects_after_its_connections_are_killed() -> None:
    """PostgreSQL drops the store's connections (a restart, a failover): the next operations wait, the
    store reconnects by itself and says so in the log, and nothing is lost or applied twice."""
    url = pg_store_url()
    s = open_store(url, "sms", instance="gw1")
    await s.open()
    try:
        await submit(s, "before", ["b1"])
        with structlog.testing.capture_logs() as logs:
            admin = await asyncpg.connect(PG_URL)
            try:
                await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                                    "application_name = 'smppengine' AND pid <> pg_backend_pid() AND "
                                    "query NOT LIKE '%pg_terminate_backend%' AND datname = current_database() "
                                    "AND pid = ANY($1::int[])", [s._conn.get_server_pid(),      # type: ignore[attr-defined]
                                                                 s._listen.get_server_pid()])   # type: ignore[attr-defined]
            finally:
                await admin.close()
            res = await asyncio.wait_for(s.accept([req("after")], [], 3600), timeout=30)
            assert [r.id for r in res.new] == ["after"]
            assert await asyncio.wait_for(s.receipt("a", dlr("b1")), timeout=30) == "matched"
            for _ in range(100):        # the listening connection is checked every second
                if any(e["event"] == "store_reconnected" and e.get("connection") == "listener" for e in logs):
                    break
                await asyncio.sleep(0.1)
        events = [(e["event"], e.get("connection")) for e in logs]
        assert ("store_reconnected", "writer") in events and ("store_reconnected", "listener") in events, events
        assert await states(s, "before") == ["queued", "submitted", "delivered"]
        assert await states(s, "after") == ["queued"]
        # the instance name's lock was taken again by the new listening connection
        with pytest.raises(StoreError, match="already running"):
            await open_store(url, "sms", instance="gw1").open()
    finally:
        await s.close()
        await drop_pg_schemas([url.rsplit("=", 1)[1]])


async def test_postgres_a_receipt_on_another_instance_is_applied_by_the_owner() -> None:
    """Two instances on one store: only a message's owner writes its rows. A receipt that reaches the other
    instance before the owner stored the resp is held and taken by the owner's commit of the resp; one that
    arrives after is handed over (answered at once: it is durable) and applied by the owner, woken by NOTIFY.
    Every event of the message is published by the owner, once."""
    url = pg_store_url()
    a = open_store(url, "sms", instance="own")
    b = open_store(url, "sms", instance="other")
    await a.open()
    await b.open()
    try:
        await a.accept([req("m1"), req("m2")], [], 3600)
        assert await b.receipt("x", dlr("r1")) == "held"
        await a.begin_attempt("m1", "x", 1, None)
        await a.part_submitted("m1", 0, "x", "r1")
        assert await states(a, "m1") == ["queued", "submitted", "delivered"]
        await a.begin_attempt("m2", "x", 1, None)
        await a.part_submitted("m2", 0, "x", "r2")
        assert await b.receipt("x", dlr("r2")) == "matched"
        for _ in range(200):            # applied by the owner once woken (no 1 s poll here: nothing calls it)
            if (await states(a, "m2"))[-1:] == ["delivered"]:
                break
            await asyncio.sleep(0.05)
        assert await states(a, "m2") == ["queued", "submitted", "delivered"]
        assert await outbox(b) == []
        st = await a.stats(0)
        assert st["counters"].get("receipts_foreign") == 1 and st["held_receipts"] == 0
        assert st["counters"].get("receipts_rematched") == 1
    finally:
        await a.close()
        await b.close()
        await drop_pg_schemas([url.rsplit("=", 1)[1]])


async def test_postgres_a_receipt_held_while_the_resp_commits_elsewhere_wakes_only_its_owner() -> None:
    """The race of issue 17: a receipt reaches another instance while the owner is committing the resp, so
    neither commit sees the other. The hold's NOTIFY names the receipt's keys; the owner, which took a resp
    with one of them, re-matches those at once (no 1 s poll: nothing calls it here). The race is played by a
    hold written after the owner's commit with a NOTIFY from a connection of its own, as the other
    instance's commit would; a second instance listens and leaves the receipt to the owner."""
    from smppengine.store.pg_batch import held_notes
    from smppengine.store.states import receipt_to_json

    url = pg_store_url()
    schema = url.rsplit("=", 1)[1]
    a = open_store(url, "sms", instance="own")
    b = open_store(url, "sms", instance="idle")
    await a.open()
    await b.open()
    conn = await asyncpg.connect(PG_URL, server_settings={"search_path": schema})
    try:
        await a.accept([req("m3")], [], 3600)
        await a.begin_attempt("m3", "x", 1, None)
        await a.part_submitted("m3", 0, "x", "r3")
        keys = [("x", k) for k in receipt_id_keys("r3")]
        blob = orjson.dumps(receipt_to_json(dlr("r3")))
        async with conn.transaction():
            await conn.executemany("INSERT INTO held_receipts(uid, smsc, key, receipt, at) VALUES ($1,$2,$3,$4,$5)",
                                   [("u3", smsc, k, blob, time.time()) for smsc, k in keys])
            for note in held_notes(keys):
                await conn.execute("SELECT pg_notify($1, $2)", f"smppengine.{schema}", note)
        for _ in range(200):
            if (await states(a, "m3"))[-1:] == ["delivered"]:
                break
            await asyncio.sleep(0.05)
        assert await states(a, "m3") == ["queued", "submitted", "delivered"]
        assert (await a.stats(0))["counters"].get("receipts_rematched") == 1
        assert await conn.fetchval("SELECT count(*) FROM held_receipts") == 0
    finally:
        await conn.close()
        await a.close()
        await b.close()
        await drop_pg_schemas([schema])


async def test_pending_page_walks_the_backlog_in_arrival_order(store: Store) -> None:
    for i in range(7):
        await store.accept([req(f"p{i}")], [], 3600)          # one commit each: distinct created_at
    await submit(store, "awaiting-receipt", ["x1"])            # submitted: waits for receipts, not for a send
    await store.accept([req("retry-me")], [], 3600)
    await store.retrying("retry-me", time.time() + 60, {"code": "timeout", "status": None, "detail": ""})
    await store.finish("p3", "rejected", None)
    seen: list[str] = []
    cursor: tuple[float, str] = (0.0, "")
    while True:
        page = await store.pending_page(cursor, 3)
        seen += [a.request.id for a in page]
        if len(page) < 3:
            break
        cursor = (page[-1].created_at, page[-1].request.id)
    assert seen == ["p0", "p1", "p2", "p4", "p5", "p6", "retry-me"]
    retry = (await store.pending_page((0.0, ""), 100))[-1]
    assert retry.state == "retrying" and retry.next_attempt_at is not None and retry.created_at > 0


def test_held_receipt_notifications_name_their_keys_within_postgresql_payload_limit() -> None:
    """The NOTIFY payloads of held receipts (pg_batch.held_notes): every key once, each payload under
    PostgreSQL's 8,000 bytes (counted in bytes), a key that cannot be written as a line makes the head alone
    (every instance, or the owner, then looks through all its held receipts)."""
    from smppengine.store.pg_batch import HELD_NOTE, foreign_head, held_notes, parse_held_note

    keys = [("smsc-a", f"s:é{i:05d}") for i in range(3000)] + [("smsc-a", "s:é00001")]
    notes = held_notes(keys)
    assert len(notes) > 1 and all(len(n.encode()) < 8000 for n in notes)
    assert [k for n in notes for k in parse_held_note(n)] == keys[:-1]
    head = foreign_head("gw1")
    assert held_notes([("a", "s:1\nx"), ("a", "s:2")], head) == ["held:gw1", "held:gw1\na\ts:2"]
    assert held_notes([("a\tb", "s:1")]) == ["held"]
    assert parse_held_note(held_notes([("a", "s:2")], head)[0], head) == [("a", "s:2")]
    assert held_notes([]) == [] and HELD_NOTE == "held?"
