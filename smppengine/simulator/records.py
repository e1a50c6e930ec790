"""What the simulator records of every submit_sm (:class:`SubmitRecord`, served by ``GET /submits``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from smppengine.smpp import pdu as P

# submit_sm mandatory fields: everything else in params is recorded as a TLV
_MANDATORY = frozenset(
    {
        "service_type", "source_addr_ton", "source_addr_npi", "source_addr", "dest_addr_ton",
        "dest_addr_npi", "destination_addr", "esm_class", "protocol_id", "priority_flag",
        "schedule_delivery_time", "validity_period", "registered_delivery", "replace_if_present_flag",
        "data_coding", "sm_default_msg_id", "sm_length", "short_message",
    }
)


@dataclass(slots=True)
class SubmitRecord:
    system_id: str
    session_id: int
    seq: int
    message_id: str  # "" unless answered OK
    at: float  # time.monotonic() at receipt of the submit_sm
    source_addr: str
    source_addr_ton: int
    source_addr_npi: int
    destination_addr: str
    dest_addr_ton: int
    dest_addr_npi: int
    esm_class: int
    data_coding: int
    registered_delivery: int
    priority_flag: int
    validity_period: str
    short_message: bytes
    tlvs: dict[str, Any]  # standard TLVs by name; others by tag ("0x1400") with their octets
    status: int  # command_status answered; -1 when the response was dropped (drop_responses)
    schedule_delivery_time: str = ""

    @property
    def udh(self) -> bytes:
        """The user data header (length octet first) when esm_class has UDHI, else b""."""
        sm = self.short_message
        if not self.esm_class & 0x40 or not sm or 1 + sm[0] > len(sm):
            return b""
        return sm[: 1 + sm[0]]

    @property
    def user_data(self) -> bytes:
        """short_message without its UDH."""
        return self.short_message[len(self.udh):]

    @property
    def ports(self) -> tuple[int, int] | None:
        """(source, destination) of the 16-bit application port IE (0x05) in the UDH, else None."""
        udh, i = self.udh, 1
        while i + 1 < len(udh):
            iei, iel = udh[i], udh[i + 1]
            if iei == 0x05 and iel == 4 and i + 6 <= len(udh):
                return int.from_bytes(udh[i + 4 : i + 6], "big"), int.from_bytes(udh[i + 2 : i + 4], "big")
            i += 2 + iel
        return None

    @property
    def flash(self) -> bool:
        """Message class 0: data_coding 0x10-0x1F or 0xF0-0xFF with class bits 00."""
        dc = self.data_coding
        return (0x10 <= dc <= 0x1F or dc >= 0xF0) and dc & 0x03 == 0

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (bytes as hex)."""
        tlvs = {k: (v.hex() if isinstance(v, bytes | bytearray) else v) for k, v in self.tlvs.items()}
        ports = self.ports
        return {
            "system_id": self.system_id,
            "session_id": self.session_id,
            "seq": self.seq,
            "message_id": self.message_id,
            "at": self.at,
            "source_addr": self.source_addr,
            "source_addr_ton": self.source_addr_ton,
            "source_addr_npi": self.source_addr_npi,
            "destination_addr": self.destination_addr,
            "dest_addr_ton": self.dest_addr_ton,
            "dest_addr_npi": self.dest_addr_npi,
            "esm_class": self.esm_class,
            "data_coding": self.data_coding,
            "registered_delivery": self.registered_delivery,
            "priority_flag": self.priority_flag,
            "validity_period": self.validity_period,
            "short_message": self.short_message.hex(),
            "tlvs": tlvs,
            "status": self.status,
            "schedule_delivery_time": self.schedule_delivery_time,
            "udh": self.udh.hex(),
            "ports": None if ports is None else {"src": ports[0], "dst": ports[1]},
            "flash": self.flash,
        }


def _recorded_tlvs(p: dict[str, Any]) -> dict[str, Any]:
    """The TLVs of a submit_sm: standard ones by name, the others by tag key ("0x1400") → octets."""
    out = {k: v for k, v in p.items() if k not in _MANDATORY and k != P.OTHER_TLVS}
    for tag, raw in (p.get(P.OTHER_TLVS) or {}).items():
        out[f"0x{tag:04x}"] = raw
    return out
