"""Parse and validate one MQTT request payload (contract §1.1 and §1.3). Pure: no I/O."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import orjson

from . import text, tlvs
from .addressing import SENDER_RULE, parse_schedule, valid_sender
from .compliance import CONFIRM_PREFIX
from .model import Rejection, Request

MAX_PAYLOAD = 64 * 1024
MAX_META = 4 * 1024
_ID = re.compile(r"[A-Za-z0-9._:\-]{1,64}")
_TO = re.compile(r"\+?[0-9]{1,20}")
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})+")
_CARRIER_FIELDS = frozenset({"binary", "udh", "ports", "flash", "schedule", "tlvs"})


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
    binary = doc.get("binary")
    if binary is not None:
        if body is not None:
            return reject("binary: text and binary are mutually exclusive")
        if "encoding" in doc:
            return reject("encoding: not used with binary (sent as 8-bit data, data_coding 4)")
        body = ""
    elif body is None:
        return reject("text: required field missing")
    elif not isinstance(body, str) or body == "":
        return reject("text: expected a non-empty string")
    sender = doc.get("from")
    if sender is not None and (not isinstance(sender, str) or not valid_sender(sender)):
        return reject(f"from: expected {SENDER_RULE}")
    encoding = doc.get("encoding", "auto")
    if encoding not in text.ENCODINGS:
        return reject(f"encoding: expected one of {', '.join(text.ENCODINGS)}")
    carrier: dict[str, Any] = {}
    resolved = ""
    if binary is None:
        try:
            # characters that do not fit the encoding, or over 255 parts
            resolved = text.segment(body, encoding).encoding
        except ValueError as exc:
            return reject(f"text: {exc}")
        for name in ("udh", "ports"):
            if doc.get(name) is not None:
                return reject(f"{name}: only with binary (a hex string of the octets to send)")
    if not _CARRIER_FIELDS.isdisjoint(doc):
        problem = _carrier_fields(doc, resolved, carrier)
        if problem:
            return reject(problem)
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
        route=route, priority=priority, meta=meta, received_at=time.time() if now is None else now, **carrier,
    )


def _carrier_fields(doc: dict[str, Any], encoding: str, out: dict[str, Any]) -> str | None:
    """Check binary/udh/ports/flash/schedule/tlvs; fill ``out`` with the Request fields; the detail of the
    first problem, or None. ``encoding``: the text's resolved encoding ("" with binary)."""
    binary = doc.get("binary")
    if binary is not None:
        if not isinstance(binary, str) or not _HEX.fullmatch(binary):
            return "binary: expected a non-empty string of hex digits (two per octet)"
        udh = doc.get("udh")
        if udh is not None and (not isinstance(udh, str) or not _HEX.fullmatch(udh)):
            return "udh: expected a string of hex digits, the length octet first (e.g. 0605040b8423f0)"
        ports = doc.get("ports")
        port_pair: tuple[int, int] | None = None
        if ports is not None:
            if (not isinstance(ports, dict) or set(ports) != {"src", "dst"}
                    or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 0xFFFF
                               for v in ports.values())):
                return 'ports: expected {"src": N, "dst": N} with N 0-65535'
            port_pair = (ports["src"], ports["dst"])
        raw_udh = bytes.fromhex(udh) if udh else b""
        if raw_udh:
            try:
                text.parse_udh(raw_udh)
            except ValueError as exc:
                return f"udh: {exc}"
        try:
            text.segment_binary(bytes.fromhex(binary), raw_udh, port_pair)
        except ValueError as exc:
            return f"binary: {exc}"
        out.update(binary=binary.lower(), udh=udh.lower() if udh else None, ports=ports)
    flash = doc.get("flash")
    if flash is not None:
        if not isinstance(flash, bool):
            return "flash: expected true or false"
        if flash:
            if binary is not None:
                return "flash: only for text messages, not binary"
            try:
                text.flash_data_coding(encoding)
            except ValueError as exc:
                return f"flash: {exc}"
            out["flash"] = True
    schedule = doc.get("schedule")
    if schedule is not None:
        try:
            parse_schedule(schedule)
        except ValueError as exc:
            return f"schedule: {exc}"
        out["schedule"] = schedule
    given = doc.get("tlvs")
    if given is not None:
        try:
            forms = tlvs.parse_tlvs(given)
        except ValueError as exc:
            return f"tlvs: {exc}"
        if forms:
            out["tlvs"] = forms
    return None
