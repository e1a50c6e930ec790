"""The message state machine's decisions, shared by every store backend (pure: no I/O).

Backends keep the rows; these functions say what the rows mean, so SQLite and
PostgreSQL cannot drift apart on the rules: a part's state after its resp
(part_state_on_resp) and after a receipt (part_state), the message's after its
last resp (when_all_submitted) and after a receipt (after_receipt), what a repeated
id does (on_repeat), which part a receipt belongs to (best_match), and the status
event (status_event). A backend holds its SQL and transaction handling. Where a backend
applies a rule inside SQL, for speed, the SQL is rendered here from the same table as
the Python function (part_state_on_resp_sql), so that there is still one rule.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..model import DELIVERED, ENROUTE, EXPIRED, REJECTED, SUBMITTED, UNDELIVERED, error, iso
from ..receipts import FINAL_STATE, Receipt

# a part's state after a receipt, by the receipt's contract outcome
PART_STATE = {DELIVERED: "delivered", UNDELIVERED: "undelivered", EXPIRED: "expired", ENROUTE: "enroute"}


def receipt_outcome(receipt: Receipt) -> str:
    """The contract state a receipt stands for (unknown stats count as undelivered)."""
    return FINAL_STATE.get(receipt.stat, UNDELIVERED)


def part_state(receipt: Receipt) -> str:
    return PART_STATE.get(receipt_outcome(receipt), "undelivered")


def after_receipt(part_states: list[str], receipt: Receipt,
                  current: str) -> tuple[str, bool, Any, dict[str, Any] | None] | None:
    """The message's next (state, final, error, extra event fields) once a receipt updated one part, or None
    for no change. The extra fields are the receipt's ``tlvs`` when it carried any (else None).

    Any undelivered part makes the message undelivered, any expired part expired; it is delivered only
    when every part is; an intermediate receipt (ENROUTE, ACCEPTD) shows only after `submitted`.
    """
    change = _after_receipt(part_states, receipt, current)
    if change is None:
        return None
    return (*change, {"tlvs": receipt.tlvs} if receipt.tlvs else None)


def _after_receipt(part_states: list[str], receipt: Receipt, current: str) -> tuple[str, bool, Any] | None:
    outcome = receipt_outcome(receipt)
    err = None if outcome in (DELIVERED, ENROUTE) else error(
        receipt.stat, None, f"receipt stat:{receipt.stat} err:{receipt.err or ''}".strip())
    if "undelivered" in part_states:
        return UNDELIVERED, True, err
    if "expired" in part_states:
        return EXPIRED, True, err
    if part_states and all(s == "delivered" for s in part_states):
        return DELIVERED, True, None
    if outcome == ENROUTE and current in (SUBMITTED, ENROUTE):
        return ENROUTE, False, None
    return None


def submits(state: str, final: bool) -> bool:
    """Every part having its SMSC message id makes the message submitted, unless it is final or a receipt
    already moved it on."""
    return not final and state not in (SUBMITTED, ENROUTE)


def final_when_submitted(req: dict[str, Any]) -> bool:
    """Submitted is final for a message that asked for no receipt."""
    return not req.get("dlr", True)


def when_all_submitted(state: str, final: bool, req: dict[str, Any] | bytes) -> tuple[str, bool] | None:
    """Every part of a message has its SMSC message id (the last OK submit_sm_resp was just taken): its next
    (state, final) -- SUBMITTED, final when it asked for no receipt -- or None (no change) when it is final
    or a receipt already moved it on. ``req``: the stored request, as a dict or as its JSON."""
    if not submits(state, final):
        return None
    return SUBMITTED, final_when_submitted(orjson.loads(req) if isinstance(req, bytes) else req)


# a part's state once its OK submit_sm_resp is stored, for the states a resp changes; any other stays
PART_STATE_ON_RESP = {"pending": "submitted"}


def part_state_on_resp(state: str) -> str:
    """A part's state once its OK submit_sm_resp is stored: pending becomes submitted; a state a receipt gave
    it (held receipts applied before a resend's resp) stays."""
    return PART_STATE_ON_RESP.get(state, state)


def part_state_on_resp_sql(column: str) -> str:
    """part_state_on_resp as an SQL expression over ``column`` (a part's current state), for a backend that
    writes the resp in one UPDATE; rendered from PART_STATE_ON_RESP (tests/test_states.py runs both)."""
    whens = " ".join(f"WHEN '{old}' THEN '{new}'" for old, new in PART_STATE_ON_RESP.items())
    return f"CASE {column} {whens} ELSE {column} END"


# What a request whose id is already stored does (issue 19; docs/mqtt-api.md "Repeated ids"):
REPLACE = "replace"        # the stored one was rejected and never sent: the new request takes its place
DUPLICATE = "duplicate"    # not sent again; the stored message's current state is published again


def on_repeat(state: str, final: bool, attempt: int) -> str:
    """A request (or an invalid request) arrives with the id of a stored message: REPLACE when the stored
    message was rejected before any submit_sm (invalid, no route, opted out: attempt 0), so that a corrected
    request can be sent again under its id; else DUPLICATE."""
    if final and state == REJECTED and attempt == 0:
        return REPLACE
    return DUPLICATE


DUPLICATE_MARK = {"duplicate": True}     # added to the event that answers a repeated id


def best_match(candidates: list[tuple[str, str, int, int, float | None]]) -> tuple[str, int]:
    """Pick the part a receipt belongs to among (key, msg_id, idx, final, submitted_at) rows sharing a key
    (a decimal id read as hex may equal another id): an exact ("s:") key match wins; then a message still
    waiting for receipts; then the most recently submitted part."""
    exact = [r for r in candidates if r[0].startswith("s:")]
    rows = exact or candidates
    best = min(rows, key=lambda r: (int(r[3]), -(r[4] or 0.0)))
    return best[1], best[2]


def status_event(msg_id: str | None, state: str, now: float, req: dict[str, Any] | None, smsc: str | None,
                 parts: int, attempt: int, ids: list[str], err: Any, extra: dict[str, Any] | None) -> dict[str, Any]:
    """The status event payload (contract §1.2); ``req`` None for a request with no usable id."""
    if req is not None:
        event: dict[str, Any] = {
            "id": msg_id, "state": state, "at": iso(now), "to": req["to"], "smsc": smsc, "parts": parts,
            "attempt": attempt, "smsc_message_ids": ids, "error": err, "meta": req.get("meta"),
        }
    else:
        event = {"id": msg_id, "state": state, "at": iso(now), "error": err}
    if extra:
        event.update(extra)
    return event


def receipt_to_json(r: Receipt) -> dict[str, Any]:
    return {"message_id": r.message_id, "stat": r.stat, "err": r.err, "submit_date": r.submit_date,
            "done_date": r.done_date, "text": r.text,
            "network_error_code": r.network_error_code.hex() if r.network_error_code else None, "tlvs": r.tlvs}


def receipt_from_json(d: dict[str, Any]) -> Receipt:
    nec = d.get("network_error_code")
    return Receipt(message_id=d["message_id"], stat=d["stat"], err=d.get("err"), submit_date=d.get("submit_date"),
                   done_date=d.get("done_date"), text=d.get("text"),
                   network_error_code=bytes.fromhex(nec) if nec else None, tlvs=d.get("tlvs"))
