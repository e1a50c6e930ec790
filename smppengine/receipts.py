"""Delivery receipts (SMPP 3.4 Appendix B) and their correlation keys.

Pure parsing, no I/O. Real SMSCs bend Appendix B in every direction, so the
parser is tolerant: keys in any case and order, ``submit_date`` / ``submit date``,
tabs or several spaces, fields missing, 10- or 12-digit dates, ``text:`` absent,
or an empty short_message with everything in TLVs.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .tlvs import event_tlvs


@dataclass(frozen=True, slots=True)
class Receipt:
    message_id: str            # receipted_message_id TLV if present, else the text's id: field
    stat: str                  # DELIVRD EXPIRED DELETED UNDELIV ACCEPTD UNKNOWN REJECTD ENROUTE
    err: str | None
    submit_date: str | None
    done_date: str | None
    text: str | None           # the receipt's text: field; None when absent
    network_error_code: bytes | None
    # every TLV of the deliver_sm but message_payload, in the request forms keyed by tag (smppengine/tlvs.py)
    tlvs: dict[str, Any] | None = None


# receipt stat -> contract state (ENROUTE / ACCEPTD are intermediate, not final)
FINAL_STATE: dict[str, str] = {
    "DELIVRD": "delivered",
    "UNDELIV": "undelivered",
    "REJECTD": "undelivered",
    "DELETED": "undelivered",
    "UNKNOWN": "undelivered",
    "EXPIRED": "expired",
    "ENROUTE": "enroute",
    "ACCEPTD": "enroute",
}

# message_state TLV (SMPP 3.4 5.3.2.35) -> stat
MESSAGE_STATES: dict[int, str] = {
    1: "ENROUTE",
    2: "DELIVRD",
    3: "EXPIRED",
    4: "DELETED",
    5: "UNDELIV",
    6: "ACCEPTD",
    7: "UNKNOWN",
    8: "REJECTD",
}

# spellings seen in the wild (compared with everything but letters removed)
_STAT_ALIASES: dict[str, str] = {
    "DELIVRD": "DELIVRD", "DELIVERED": "DELIVRD", "DELIVRED": "DELIVRD", "DELIVER": "DELIVRD",
    "DELIVRDD": "DELIVRD", "DELIVR": "DELIVRD",
    "UNDELIV": "UNDELIV", "UNDELIVERABLE": "UNDELIV", "UNDELIVERED": "UNDELIV", "UNDELIVRD": "UNDELIV",
    "UNDELIVR": "UNDELIV", "UNDELIVRBL": "UNDELIV", "FAILED": "UNDELIV", "FAIL": "UNDELIV",
    "EXPIRED": "EXPIRED", "EXPIRD": "EXPIRED",
    "DELETED": "DELETED", "DELETD": "DELETED",
    "ACCEPTD": "ACCEPTD", "ACCEPTED": "ACCEPTD",
    "UNKNOWN": "UNKNOWN", "UNKNOWNN": "UNKNOWN", "UNKNOW": "UNKNOWN", "UNKOWN": "UNKNOWN",
    "REJECTD": "REJECTD", "REJECTED": "REJECTD", "REJECT": "REJECTD",
    "ENROUTE": "ENROUTE", "BUFFERED": "ENROUTE", "BUFFRED": "ENROUTE",
}

_KEY_RE = re.compile(
    r"(?<![A-Za-z0-9_])"
    r"(?P<key>id|sub|dlvrd|submit[ \t_-]*date|done[ \t_-]*date|stat(?:us|e)?|err(?:or)?|text)"
    r"[ \t]*:",
    re.IGNORECASE,
)


def _key_name(raw: str) -> str:
    k = raw.lower()
    if k.startswith("submit"):
        return "submit_date"
    if k.startswith("done"):
        return "done_date"
    if k.startswith("stat"):
        return "stat"
    if k.startswith("err"):
        return "err"
    return k


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _split_fields(text: str) -> dict[str, str]:
    """key -> raw value (to the next key; ``text:`` runs to the end). First occurrence wins."""
    fields: dict[str, str] = {}
    matches = list(_KEY_RE.finditer(text))
    for i, m in enumerate(matches):
        name = _key_name(m.group("key"))
        if name == "text":
            fields.setdefault(name, text[m.end():])
            break
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        fields.setdefault(name, text[m.end():end])
    return fields


def _first_token(value: str | None) -> str | None:
    if value is None:
        return None
    parts = value.split()
    return parts[0] if parts else None


def normalise_stat(value: str) -> str:
    """Map a receipt stat as written ('delivered', 'DELIVRD', '2', ...) to the 7-letter form.

    Unrecognised values give ``UNKNOWN``.
    """
    v = value.strip().upper()
    if v.isascii() and v.isdigit():
        return MESSAGE_STATES.get(int(v), "UNKNOWN") if len(v) <= 3 else "UNKNOWN"
    letters = "".join(ch for ch in v if "A" <= ch <= "Z")
    return _STAT_ALIASES.get(letters, "UNKNOWN")


def _tlv_str(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes | bytearray | memoryview):
        value = _decode(bytes(value))
    elif not isinstance(value, str):
        value = str(value)
    value = value.replace("\x00", "").strip()
    return value or None


def _tlv_state(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        if len(raw) != 1:
            return None
        number = raw[0]
    elif isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        if len(value.strip()) > 3:
            return None
        number = int(value.strip())
    else:
        return None
    return MESSAGE_STATES.get(number)


def _tlv_bytes(value: Any) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value) or None
    if isinstance(value, str):
        return value.encode("latin-1", "replace") or None
    return None


def is_receipt(esm_class: int, tlvs: Mapping[str, Any]) -> bool:
    """A deliver_sm is a receipt when its esm_class message type (bits 2-5) says so --
    0x04 SMSC delivery receipt, 0x08 SME delivery ack, 0x10 SME manual/user ack,
    0x20 intermediate notification -- or when it carries a receipted_message_id."""
    if (esm_class & 0x3C) in (0x04, 0x08, 0x10, 0x20):
        return True
    return _tlv_str(tlvs.get("receipted_message_id")) is not None


# The exact Appendix B layout most SMSCs (and the simulator) write: parsed with one match instead of the
# tolerant key scan. Anything else (other spacing, order, case, missing fields) takes the tolerant path;
# tests/test_receipts.py checks that both paths agree on every receipt this one takes.
_CANONICAL = re.compile(
    r"id:(?P<id>[^ ]+) sub:(?P<sub>[^ ]*) dlvrd:(?P<dlvrd>[^ ]*) submit date:(?P<submit_date>\d{10}|\d{12}) "
    r"done date:(?P<done_date>\d{10}|\d{12}) stat:(?P<stat>[A-Z]{7}) err:(?P<err>[^ ]*)(?: text:(?P<text>.*))?",
    re.DOTALL)


def _canonical_fields(text: str) -> dict[str, str] | None:
    m = _CANONICAL.fullmatch(text)
    if m is None or m.group("stat") not in FINAL_STATE:
        return None
    return {k: v for k, v in m.groupdict().items() if v is not None}


def parse_receipt(short_message: bytes, tlvs: Mapping[str, Any]) -> Receipt:
    """Parse a delivery receipt from its short_message text and TLVs.

    The receipted_message_id TLV is preferred over the text's ``id:``; the
    message_state TLV over the text's ``stat:``. A receipt with no readable state
    reads ``UNKNOWN``. Raises ValueError when no message id can be found.
    """
    if not isinstance(short_message, bytes | bytearray | memoryview):
        raise ValueError(f"short_message must be bytes, not {type(short_message).__name__}")
    text = _decode(bytes(short_message))
    # message_payload carries the text when short_message is empty
    if not text.strip():
        payload = tlvs.get("message_payload")
        if isinstance(payload, bytes | bytearray | memoryview):
            text = _decode(bytes(payload))
        elif isinstance(payload, str):
            text = payload
    fields = _canonical_fields(text) or _split_fields(text)

    message_id = _tlv_str(tlvs.get("receipted_message_id")) or _first_token(fields.get("id"))
    if not message_id:
        raise ValueError(
            "delivery receipt has no message id: no receipted_message_id TLV and no 'id:' in the text"
        )

    stat = _tlv_state(tlvs.get("message_state"))
    if stat is None:
        raw_stat = _first_token(fields.get("stat"))
        stat = normalise_stat(raw_stat) if raw_stat else "UNKNOWN"

    receipt_text = fields.get("text")
    if receipt_text is not None:
        receipt_text = receipt_text.strip()

    def date(name: str) -> str | None:
        value = fields.get(name)
        if value is None:
            return None
        return " ".join(value.split()) or None

    return Receipt(
        message_id=message_id,
        stat=stat,
        err=_first_token(fields.get("err")),
        submit_date=date("submit_date"),
        done_date=date("done_date"),
        text=receipt_text,
        network_error_code=_tlv_bytes(tlvs.get("network_error_code")),
        tlvs=event_tlvs(tlvs),
    )


_HEX = re.compile(r"[0-9a-f]+")
_DEC = re.compile(r"[0-9]+")
_MAX_NUMERIC_LEN = 64


@functools.lru_cache(maxsize=16384)
def receipt_id_keys(message_id: str) -> tuple[str, ...]:
    """Correlation keys for an SMSC message id, so the submit_sm_resp id and the
    receipt's id meet even when one is hex and the other decimal, or they differ
    in case or leading zeros.

    ``"s:" + norm(id)`` (stripped, lower-case, leading zeros removed, ``"0"`` if
    nothing is left), then ``"n:" + decimal value`` if the id is all hex digits,
    then ``"n:" + decimal value`` if it is all decimal digits; deduplicated, in
    that order. Look up the ``s:`` key first. An empty id has no keys. Cached: the engine asks for the
    keys of one id several times (resp, store, receipt, metrics).
    """
    s = message_id.replace("\x00", "").strip().lower()
    if not s:
        return ()
    keys = ["s:" + (s.lstrip("0") or "0")]
    if len(s) <= _MAX_NUMERIC_LEN:
        if _HEX.fullmatch(s):
            keys.append("n:" + str(int(s, 16)))
        if _DEC.fullmatch(s):
            keys.append("n:" + str(int(s, 10)))
    return tuple(dict.fromkeys(keys))
