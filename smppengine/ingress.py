"""Parse and validate one MQTT request payload (contract §1.1 and §1.3). Pure: no I/O."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import orjson

from . import text
from .compliance import CONFIRM_PREFIX
from .model import Rejection, Request

MAX_PAYLOAD = 64 * 1024
MAX_META = 4 * 1024
_ID = re.compile(r"[A-Za-z0-9._:\-]{1,64}")
_TO = re.compile(r"\+?[0-9]{1,20}")
_NUMERIC_FROM = re.compile(r"\+?[0-9]{1,20}")
_ALNUM_FROM = re.compile(r"[A-Za-z0-9 .\-_&]{1,11}")


def valid_sender(sender: str) -> bool:
    """Digits (international number or short code) or up to 11 alphanumeric characters."""
    return bool(_NUMERIC_FROM.fullmatch(sender) or (_ALNUM_FROM.fullmatch(sender) and sender.strip()))


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def parse_request(payload: bytes, now: float | None = None) -> Request | Rejection:
    """Return a valid :class:`Request`, or a :class:`Rejection` whose detail names the field."""
    raw = bytes(payload[:200])
    if len(payload) > MAX_PAYLOAD:
        return Rejection(None, f"payload is {len(payload)} bytes, over the 65536-byte limit", raw)
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        return Rejection(None, f"payload is not UTF-8 JSON: {exc}", raw)
    if not isinstance(doc, dict):
        return Rejection(None, f"payload is not a JSON object but {type(doc).__name__}", raw)

    msg_id = doc.get("id")
    if msg_id is None:
        msg_id = str(uuid.uuid4())
    elif not isinstance(msg_id, str) or not _ID.fullmatch(msg_id):
        return Rejection(None, "id: expected 1-64 characters of A-Z a-z 0-9 . _ : -", raw)

    meta = doc.get("meta")
    to = doc.get("to")

    def reject(detail: str) -> Rejection:
        return Rejection(msg_id, detail, raw, to=to if isinstance(to, str) else None,
                         meta=meta if isinstance(meta, dict) else None)

    if msg_id.startswith(CONFIRM_PREFIX):
        return reject(f"id: the prefix {CONFIRM_PREFIX} is reserved for the engine's opt-out confirmations")
    if to is None:
        return reject("to: required field missing")
    if not isinstance(to, str) or not _TO.fullmatch(to):
        return reject("to: expected an optional '+' then 1-20 digits")
    body = doc.get("text")
    if body is None:
        return reject("text: required field missing")
    if not isinstance(body, str) or body == "":
        return reject("text: expected a non-empty string")
    sender = doc.get("from")
    if sender is not None and (not isinstance(sender, str) or not valid_sender(sender)):
        return reject("from: expected up to 11 alphanumeric characters or an optional '+' then 1-20 digits")
    encoding = doc.get("encoding", "auto")
    if encoding not in text.ENCODINGS:
        return reject(f"encoding: expected one of {', '.join(text.ENCODINGS)}")
    try:
        text.segment(body, encoding)   # characters that do not fit the encoding, or over 255 parts
    except ValueError as exc:
        return reject(f"text: {exc}")
    dlr = doc.get("dlr", True)
    if not isinstance(dlr, bool):
        return reject("dlr: expected true or false")
    validity = doc.get("validity")
    if validity is not None and not _positive_int(validity):
        return reject("validity: expected a positive integer number of seconds")
    ttl = doc.get("ttl")
    if ttl is not None and not _positive_int(ttl):
        return reject("ttl: expected a positive integer number of seconds")
    route = doc.get("route")
    if route is not None and (not isinstance(route, str) or not route):
        return reject("route: expected the name of a configured SMSC")
    priority = doc.get("priority", 0)
    if not isinstance(priority, int) or isinstance(priority, bool) or not 0 <= priority <= 3:
        return reject("priority: expected an integer 0-3")
    if meta is not None:
        if not isinstance(meta, dict):
            return reject("meta: expected a JSON object")
        if len(orjson.dumps(meta)) > MAX_META:
            return reject("meta: over 4 KiB serialised")
    return Request(
        id=msg_id, to=to, text=body, sender=sender, encoding=encoding, dlr=dlr, validity=validity, ttl=ttl,
        route=route, priority=priority, meta=meta, received_at=time.time() if now is None else now,
    )
