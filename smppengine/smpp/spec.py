"""The SMPP 3.4 specification as the code uses it: one declarative table of commands and optional
parameters (TLVs), with a registry for vendor TLVs.

:mod:`smppengine.smpp.pdu` builds its field tables (encode, decode) from here, and
:mod:`smppengine.smpp.fastcodec` its hot paths from those; the simulator and the engine share them.
smpplib 2.2.4 is the reference the encodings are proved against (tests/test_pdu.py checks this table
against smpplib's command classes, field by field, and the codec byte for byte), so the table keeps
smpplib's emission order of TLVs and its few per-command deviations (``overrides``).

Field kinds: ``INT`` (big-endian unsigned, ``size`` octets), ``STR`` (C-Octet string, ``size`` = max octets
including the NUL), ``OSTR`` (octet string, ``size`` = max octets; a mandatory one has its length in
``len_field``), ``FLAG`` (a TLV without a value).
"""

# ruff: noqa: E501  (one command per line: the table reads as a table)

from __future__ import annotations

from typing import NamedTuple

INT, STR, OSTR, FLAG = 0, 1, 2, 3
KIND_NAMES = {INT: "int", STR: "cstring", OSTR: "octets", FLAG: "flag"}


class TlvDef(NamedTuple):
    tag: int
    kind: int
    size: int


class CommandDef(NamedTuple):
    name: str
    command_id: int
    #: (name, kind, size) or (name, kind, size, len_field), in body order
    mandatory: tuple[tuple[str, int, int] | tuple[str, int, int, str], ...]
    #: the TLVs the command carries, by name (see TLVS), in smpplib's emission order
    tlvs: tuple[str, ...]
    #: per-command (kind, size) of a TLV where smpplib deviates from TLVS (kept for byte identity)
    overrides: dict[str, tuple[int, int]] = {}


#: SMPP 3.4 section 5.3.2: the standard TLVs, by name
TLVS: dict[str, TlvDef] = {
    "dest_addr_subunit": TlvDef(0x0005, INT, 1),
    "dest_network_type": TlvDef(0x0006, INT, 1),
    "dest_bearer_type": TlvDef(0x0007, INT, 1),
    "dest_telematics_id": TlvDef(0x0008, INT, 2),
    "source_addr_subunit": TlvDef(0x000D, INT, 1),
    "source_network_type": TlvDef(0x000E, INT, 1),
    "source_bearer_type": TlvDef(0x000F, INT, 1),
    "source_telematics_id": TlvDef(0x0010, INT, 2),
    "qos_time_to_live": TlvDef(0x0017, INT, 4),
    "payload_type": TlvDef(0x0019, INT, 1),
    "additional_status_info_text": TlvDef(0x001D, STR, 256),
    "receipted_message_id": TlvDef(0x001E, STR, 65),
    "ms_msg_wait_facilities": TlvDef(0x0030, INT, 1),
    "privacy_indicator": TlvDef(0x0201, INT, 1),
    "source_subaddress": TlvDef(0x0202, STR, 23),
    "dest_subaddress": TlvDef(0x0203, STR, 23),
    "user_message_reference": TlvDef(0x0204, INT, 2),
    "user_response_code": TlvDef(0x0205, INT, 1),
    "source_port": TlvDef(0x020A, INT, 2),
    "destination_port": TlvDef(0x020B, INT, 2),
    "sar_msg_ref_num": TlvDef(0x020C, INT, 2),
    "language_indicator": TlvDef(0x020D, INT, 1),
    "sar_total_segments": TlvDef(0x020E, INT, 1),
    "sar_segment_seqnum": TlvDef(0x020F, INT, 1),
    "sc_interface_version": TlvDef(0x0210, INT, 1),
    "callback_num_pres_ind": TlvDef(0x0302, INT, 1),
    "callback_num_atag": TlvDef(0x0303, STR, 65),
    "number_of_messages": TlvDef(0x0304, INT, 1),
    "callback_num": TlvDef(0x0381, OSTR, 19),
    "dpf_result": TlvDef(0x0420, INT, 1),
    "ms_availability_status": TlvDef(0x0422, INT, 1),
    "network_error_code": TlvDef(0x0423, OSTR, 3),
    "message_payload": TlvDef(0x0424, OSTR, 260),
    "delivery_failure_reason": TlvDef(0x0425, STR, 256),
    "more_messages_to_send": TlvDef(0x0426, INT, 1),
    "message_state": TlvDef(0x0427, INT, 1),
    "ussd_service_op": TlvDef(0x0501, INT, 1),
    "display_time": TlvDef(0x1201, INT, 1),
    "sms_signal": TlvDef(0x1203, INT, 2),
    "ms_validity": TlvDef(0x1204, INT, 1),
    "alert_on_message_delivery": TlvDef(0x130C, FLAG, 0),
    "its_reply_type": TlvDef(0x1380, INT, 1),
    "its_session_info": TlvDef(0x1383, INT, 2),
}

#: the commands, with their mandatory fields and TLVs
COMMANDS: tuple[CommandDef, ...] = (
    CommandDef("bind_transmitter", 0x00000002, (("system_id", STR, 16), ("password", STR, 9), ("system_type", STR, 13), ("interface_version", INT, 1), ("addr_ton", INT, 1), ("addr_npi", INT, 1), ("address_range", STR, 41)), ()),
    CommandDef("bind_transmitter_resp", 0x80000002, (("system_id", STR, 16),), ("sc_interface_version",)),
    CommandDef("bind_receiver", 0x00000001, (("system_id", STR, 16), ("password", STR, 9), ("system_type", STR, 13), ("interface_version", INT, 1), ("addr_ton", INT, 1), ("addr_npi", INT, 1), ("address_range", STR, 41)), ()),
    CommandDef("bind_receiver_resp", 0x80000001, (("system_id", STR, 16),), ("sc_interface_version",)),
    CommandDef("bind_transceiver", 0x00000009, (("system_id", STR, 16), ("password", STR, 9), ("system_type", STR, 13), ("interface_version", INT, 1), ("addr_ton", INT, 1), ("addr_npi", INT, 1), ("address_range", STR, 41)), ()),
    CommandDef("bind_transceiver_resp", 0x80000009, (("system_id", STR, 16),), ("sc_interface_version",)),
    CommandDef("data_sm", 0x00000103, (("service_type", STR, 6), ("source_addr_ton", INT, 1), ("source_addr_npi", INT, 1), ("source_addr", STR, 21), ("dest_addr_ton", INT, 1), ("dest_addr_npi", INT, 1), ("destination_addr", STR, 21), ("esm_class", INT, 1), ("registered_delivery", INT, 1), ("data_coding", INT, 1)), ("source_port", "source_addr_subunit", "source_network_type", "source_bearer_type", "source_telematics_id", "destination_port", "dest_addr_subunit", "dest_network_type", "dest_bearer_type", "dest_telematics_id", "sar_msg_ref_num", "sar_total_segments", "sar_segment_seqnum", "more_messages_to_send", "qos_time_to_live", "payload_type", "message_payload", "receipted_message_id", "message_state", "network_error_code", "user_message_reference", "privacy_indicator", "callback_num", "callback_num_pres_ind", "callback_num_atag", "source_subaddress", "dest_subaddress", "user_response_code", "display_time", "sms_signal", "ms_validity", "ms_msg_wait_facilities", "number_of_messages", "alert_on_message_delivery", "language_indicator", "its_reply_type", "its_session_info")),
    CommandDef("data_sm_resp", 0x80000103, (("message_id", STR, 65),), ("delivery_failure_reason", "network_error_code", "additional_status_info_text", "dpf_result"), {"network_error_code": (STR, 3)}),
    CommandDef("generic_nack", 0x80000000, (), ()),
    CommandDef("submit_sm", 0x00000004, (("service_type", STR, 6), ("source_addr_ton", INT, 1), ("source_addr_npi", INT, 1), ("source_addr", STR, 21), ("dest_addr_ton", INT, 1), ("dest_addr_npi", INT, 1), ("destination_addr", STR, 21), ("esm_class", INT, 1), ("protocol_id", INT, 1), ("priority_flag", INT, 1), ("schedule_delivery_time", STR, 17), ("validity_period", STR, 17), ("registered_delivery", INT, 1), ("replace_if_present_flag", INT, 1), ("data_coding", INT, 1), ("sm_default_msg_id", INT, 1), ("sm_length", INT, 1), ("short_message", OSTR, 254, "sm_length")), ("user_message_reference", "source_port", "source_addr_subunit", "destination_port", "dest_addr_subunit", "sar_msg_ref_num", "sar_total_segments", "sar_segment_seqnum", "more_messages_to_send", "payload_type", "message_payload", "privacy_indicator", "callback_num", "callback_num_pres_ind", "source_subaddress", "dest_subaddress", "user_response_code", "display_time", "sms_signal", "ms_validity", "ms_msg_wait_facilities", "number_of_messages", "alert_on_message_delivery", "language_indicator", "its_reply_type", "its_session_info", "ussd_service_op"), {"source_addr_subunit": (INT, 2)}),
    CommandDef("submit_sm_resp", 0x80000004, (("message_id", STR, 65),), ()),
    CommandDef("deliver_sm", 0x00000005, (("service_type", STR, 6), ("source_addr_ton", INT, 1), ("source_addr_npi", INT, 1), ("source_addr", STR, 21), ("dest_addr_ton", INT, 1), ("dest_addr_npi", INT, 1), ("destination_addr", STR, 21), ("esm_class", INT, 1), ("protocol_id", INT, 1), ("priority_flag", INT, 1), ("schedule_delivery_time", STR, 17), ("validity_period", STR, 17), ("registered_delivery", INT, 1), ("replace_if_present_flag", INT, 1), ("data_coding", INT, 1), ("sm_default_msg_id", INT, 1), ("sm_length", INT, 1), ("short_message", OSTR, 254, "sm_length")), ("user_message_reference", "source_port", "destination_port", "sar_msg_ref_num", "sar_total_segments", "sar_segment_seqnum", "user_response_code", "privacy_indicator", "payload_type", "message_payload", "callback_num", "source_subaddress", "dest_subaddress", "language_indicator", "its_session_info", "network_error_code", "message_state", "receipted_message_id", "source_network_type", "dest_network_type", "more_messages_to_send")),
    CommandDef("deliver_sm_resp", 0x80000005, (("message_id", STR, 65),), ()),
    CommandDef("query_sm", 0x00000003, (("message_id", STR, 65), ("source_addr_ton", INT, 1), ("source_addr_npi", INT, 1), ("source_addr", STR, 21)), ()),
    CommandDef("query_sm_resp", 0x80000003, (("message_id", STR, 65), ("final_date", STR, 17), ("message_state", INT, 1), ("error_code", INT, 1)), ()),
    CommandDef("unbind", 0x00000006, (), ()),
    CommandDef("unbind_resp", 0x80000006, (), ()),
    CommandDef("enquire_link", 0x00000015, (), ()),
    CommandDef("enquire_link_resp", 0x80000015, (), ()),
    CommandDef("alert_notification", 0x00000102, (("source_addr_ton", INT, 1), ("source_addr_npi", INT, 1), ("source_addr", STR, 21), ("esme_addr_ton", INT, 1), ("esme_addr_npi", INT, 1), ("esme_addr", STR, 21)), ("ms_availability_status",)),
)

#: outbind is not in smpplib (SMPP 3.4, 4.1.7.1)
OUTBIND = CommandDef("outbind", 0x0000000B, (("system_id", STR, 16), ("password", STR, 9)), ())

TLV_NAMES: dict[int, str] = {d.tag: name for name, d in TLVS.items()}


class VendorTlv(NamedTuple):
    tag: int
    name: str
    kind: int   # INT, STR or OSTR: how its value is shown in events (tlvs.py)
    size: int   # INT: octets


#: vendor (and carrier-specific) TLVs, by tag: see :func:`register_vendor_tlv`
VENDOR_TLVS: dict[int, VendorTlv] = {}


def register_vendor_tlv(tag: int, name: str, kind: int, size: int = 0) -> VendorTlv:
    """Name a vendor tag (0x1400-0x3FFF is the SMPP 3.4 vendor range; any tag the standard table does not
    define is allowed). Decoding still keeps such TLVs raw in ``other_tlvs``; the registry says how events show
    their values (``{"int": ...}``, ``{"cstring": ...}`` or ``{"hex": ...}``) and gives them a name for logs
    and docs. ValueError for a standard tag, a bad kind or size, or a tag registered differently before."""
    if not 0 <= tag <= 0xFFFF:
        raise ValueError(f"tag {tag!r} is not 16-bit")
    if tag in TLV_NAMES:
        raise ValueError(f"0x{tag:04x} is the standard TLV {TLV_NAMES[tag]}")
    if kind not in (INT, STR, OSTR) or (kind == INT and size not in (1, 2, 4)):
        raise ValueError("kind must be INT (size 1, 2 or 4), STR or OSTR")
    entry = VendorTlv(tag, name, kind, size if kind == INT else 0)
    known = VENDOR_TLVS.get(tag)
    if known is not None and known != entry:
        raise ValueError(f"0x{tag:04x} is already registered as {known}")
    VENDOR_TLVS[tag] = entry
    return entry
