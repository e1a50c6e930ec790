"""The message state machine's decisions (pure), as both store backends apply them."""

from __future__ import annotations

import sqlite3

from smppengine.receipts import Receipt
from smppengine.store.states import (
    PART_STATE,
    after_receipt,
    best_match,
    part_state_on_resp,
    part_state_on_resp_sql,
    receipt_from_json,
    receipt_to_json,
    status_event,
)


def r(stat: str, err: str | None = "000") -> Receipt:
    return Receipt(message_id="1a", stat=stat, err=err, submit_date=None, done_date=None, text=None,
                   network_error_code=b"\x03\x00\x01" if stat == "UNDELIV" else None)


def test_delivered_only_when_every_part_is() -> None:
    assert after_receipt(["delivered", "submitted"], r("DELIVRD"), "submitted") is None
    assert after_receipt(["delivered", "delivered"], r("DELIVRD"), "submitted") == ("delivered", True, None, None)


def test_any_failed_part_ends_the_message() -> None:
    state, final, err, _ = after_receipt(["delivered", "undelivered"], r("UNDELIV", "045"), "submitted")  # type: ignore[misc]
    assert (state, final) == ("undelivered", True)
    assert err["code"] == "UNDELIV" and err["status"] is None and "err:045" in err["detail"]
    assert after_receipt(["expired", "submitted"], r("EXPIRED"), "submitted")[:2] == ("expired", True)  # type: ignore[index]


def test_enroute_only_after_submitted() -> None:
    assert after_receipt(["enroute", "pending"], r("ENROUTE"), "queued") is None
    assert after_receipt(["enroute"], r("ACCEPTD"), "submitted") == ("enroute", False, None, None)


def test_a_receipt_with_tlvs_puts_them_in_the_event() -> None:
    tlvs = {"0x0423": {"hex": "030001"}, "0x1501": {"hex": "ff"}}
    rc = Receipt(message_id="1a", stat="UNDELIV", err="001", submit_date=None, done_date=None, text=None,
                 network_error_code=b"\x03\x00\x01", tlvs=tlvs)
    change = after_receipt(["undelivered"], rc, "submitted")
    assert change is not None and change[3] == {"tlvs": tlvs}
    assert receipt_from_json(receipt_to_json(rc)) == rc      # a held receipt keeps them


def test_best_match_prefers_exact_then_waiting_then_newest() -> None:
    rows = [("n:256", "old", 0, 1, 10.0), ("n:256", "new", 0, 0, 5.0)]
    assert best_match(rows) == ("new", 0)                          # still waiting beats already final
    rows = [("n:256", "a", 0, 0, 10.0), ("n:256", "b", 0, 0, 20.0)]
    assert best_match(rows) == ("b", 0)                            # then the most recently submitted
    rows = [("n:256", "a", 0, 0, 30.0), ("s:100", "b", 1, 1, 1.0)]
    assert best_match(rows) == ("b", 1)                            # an exact id match wins over all


def test_status_event_shape_and_receipt_round_trip() -> None:
    ev = status_event("m1", "submitted", 0.5, {"to": "+44", "meta": {"t": 1}}, "a", 2, 1, ["x", "y"], None, None)
    assert ev == {"id": "m1", "state": "submitted", "at": "1970-01-01T00:00:00.500Z", "to": "+44", "smsc": "a",
                  "parts": 2, "attempt": 1, "smsc_message_ids": ["x", "y"], "error": None, "meta": {"t": 1}}
    bad = status_event(None, "rejected", 0.0, None, None, 0, 0, [], {"code": "invalid_request"}, {"raw": "x"})
    assert bad["id"] is None and bad["raw"] == "x" and "to" not in bad
    rec = r("UNDELIV")
    assert receipt_from_json(receipt_to_json(rec)) == rec


def test_a_repeated_id_replaces_only_a_request_rejected_before_any_submit() -> None:
    from smppengine.store.states import DUPLICATE, REPLACE, final_when_submitted, on_repeat, submits

    assert on_repeat("rejected", True, 0) == REPLACE           # invalid, no route, opted out: never sent
    assert on_repeat("rejected", True, 1) == DUPLICATE         # refused by the SMSC: it was sent
    for state, final in [("queued", False), ("retrying", False), ("submitted", False), ("delivered", True),
                         ("failed", True), ("expired", True), ("undelivered", True)]:
        assert on_repeat(state, final, 0) == DUPLICATE and on_repeat(state, final, 2) == DUPLICATE
    assert submits("queued", False) and submits("retrying", False)
    assert not submits("submitted", False) and not submits("enroute", False) and not submits("failed", True)
    assert final_when_submitted({"dlr": False}) and not final_when_submitted({})


def test_every_part_submitted_makes_the_message_submitted_final_without_receipt() -> None:
    from smppengine.store.states import when_all_submitted

    assert when_all_submitted("queued", False, {"id": "a"}) == ("submitted", False)
    assert when_all_submitted("retrying", False, b'{"id": "a", "dlr": false}') == ("submitted", True)
    # a receipt moved it on already (held, applied before the last resp), or it is final: no change
    assert when_all_submitted("enroute", False, {"id": "a"}) is None
    assert when_all_submitted("submitted", False, {"id": "a"}) is None
    assert when_all_submitted("delivered", True, {"id": "a"}) is None


def test_a_part_resp_makes_pending_submitted_and_keeps_a_receipt_state() -> None:
    from smppengine.store.states import part_state_on_resp

    assert part_state_on_resp("pending") == "submitted"
    assert part_state_on_resp("delivered") == "delivered"


def test_the_resp_rule_in_sql_is_the_python_rule() -> None:
    """SQLite writes a part's state after its resp inside its UPDATE; that SQL is rendered from the same table
    as part_state_on_resp, and gives the same answer for every state a part can have."""
    db = sqlite3.connect(":memory:")
    for state in ["pending", "submitted", *PART_STATE.values()]:
        (got,) = db.execute(f"SELECT {part_state_on_resp_sql('s')} FROM (SELECT ? AS s)", (state,)).fetchone()
        assert got == part_state_on_resp(state), state
    assert part_state_on_resp("pending") == "submitted"
    assert part_state_on_resp("delivered") == "delivered"     # a receipt applied before the resp stays
