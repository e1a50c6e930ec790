"""The engine's vocabulary: a validated request, a rejection, states and status-event payloads."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

QUEUED = "queued"
SUBMITTED = "submitted"
RETRYING = "retrying"
ENROUTE = "enroute"
DELIVERED = "delivered"
UNDELIVERED = "undelivered"
EXPIRED = "expired"
REJECTED = "rejected"
FAILED = "failed"
FINAL_STATES = frozenset({DELIVERED, UNDELIVERED, EXPIRED, REJECTED, FAILED})


@dataclass(slots=True)
class Request:
    """One valid submit request (contract §1.1)."""

    id: str
    to: str
    text: str
    sender: str | None = None
    encoding: str = "auto"
    dlr: bool = True
    validity: int | None = None
    ttl: int | None = None
    route: str | None = None
    priority: int = 0
    meta: dict[str, Any] | None = None
    received_at: float = field(default_factory=time.time)
    # carrier features (docs/mqtt-api.md); stored only when set, so older stored requests load unchanged
    tlvs: dict[str, Any] | None = None       # tag key ("0x1400") -> value form (tlvs.py)
    flash: bool = False                      # message class 0
    binary: str | None = None                # hex octets instead of text (text is then "")
    udh: str | None = None                   # hex UDH put in front of binary
    ports: dict[str, int] | None = None      # {"src": N, "dst": N}: 16-bit application port IE
    schedule: int | str | None = None        # seconds from received_at, or an RFC 3339 time

    def to_json(self) -> dict[str, Any]:
        d = {
            "id": self.id, "to": self.to, "text": self.text, "from": self.sender, "encoding": self.encoding,
            "dlr": self.dlr, "validity": self.validity, "ttl": self.ttl, "route": self.route,
            "priority": self.priority, "meta": self.meta, "received_at": self.received_at,
        }
        if self.tlvs is not None or self.flash or self.binary is not None or self.schedule is not None:
            for k in _OPTIONAL:
                v = getattr(self, k)
                if v is not None and v is not False:
                    d[k] = v
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Request:
        return cls(
            id=d["id"], to=d["to"], text=d["text"], sender=d.get("from"), encoding=d.get("encoding", "auto"),
            dlr=d.get("dlr", True), validity=d.get("validity"), ttl=d.get("ttl"), route=d.get("route"),
            priority=d.get("priority", 0), meta=d.get("meta"), received_at=d.get("received_at", 0.0),
            tlvs=d.get("tlvs"), flash=d.get("flash", False), binary=d.get("binary"), udh=d.get("udh"),
            ports=d.get("ports"), schedule=d.get("schedule"),
        )


_OPTIONAL = ("tlvs", "flash", "binary", "udh", "ports", "schedule")


@dataclass(slots=True)
class Rejection:
    """A request that cannot be accepted (contract §1.3)."""

    id: str | None
    detail: str
    raw: bytes = b""
    code: str = "invalid_request"
    to: str | None = None
    meta: dict[str, Any] | None = None


_iso_second: tuple[int, str] = (-1, "")     # the formatted second last used (one tuple: safe across threads)


def iso(ts: float) -> str:
    """UTC ISO 8601 with milliseconds and a Z, as in the contract's examples. Formatting the date and time
    is done once per second (every status event carries a timestamp)."""
    global _iso_second
    sec = int(ts // 1)
    cached = _iso_second
    if cached[0] != sec:
        cached = _iso_second = (sec, datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S."))
    return f"{cached[1]}{int(ts * 1000) % 1000:03d}Z"


def error(code: str, status: int | None = None, detail: str = "") -> dict[str, Any]:
    return {"code": code, "status": status, "detail": detail}
