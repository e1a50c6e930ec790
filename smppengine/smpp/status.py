"""SMPP command_status names and the error classes that drive retries.

Pure data and lookups, no I/O. ``classify`` answers one question for the engine:
after a non-OK submit_sm_resp, is the message worth sending again (``transient``),
is the SMSC asking us to slow down (``throttle``), or will it never go through
(``permanent``)? The table is a default; every SMSC can override it in its config
(``[smsc.error_classes]``, see docs/flow-control.md).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# SMPP 3.4 section 5.1.3: every defined command_status.
STATUS_NAMES: dict[int, str] = {
    0x00000000: "ESME_ROK",
    0x00000001: "ESME_RINVMSGLEN",
    0x00000002: "ESME_RINVCMDLEN",
    0x00000003: "ESME_RINVCMDID",
    0x00000004: "ESME_RINVBNDSTS",
    0x00000005: "ESME_RALYBND",
    0x00000006: "ESME_RINVPRTFLG",
    0x00000007: "ESME_RINVREGDLVFLG",
    0x00000008: "ESME_RSYSERR",
    0x0000000A: "ESME_RINVSRCADR",
    0x0000000B: "ESME_RINVDSTADR",
    0x0000000C: "ESME_RINVMSGID",
    0x0000000D: "ESME_RBINDFAIL",
    0x0000000E: "ESME_RINVPASWD",
    0x0000000F: "ESME_RINVSYSID",
    0x00000011: "ESME_RCANCELFAIL",
    0x00000013: "ESME_RREPLACEFAIL",
    0x00000014: "ESME_RMSGQFUL",
    0x00000015: "ESME_RINVSERTYP",
    0x00000033: "ESME_RINVNUMDESTS",
    0x00000034: "ESME_RINVDLNAME",
    0x00000040: "ESME_RINVDESTFLAG",
    0x00000042: "ESME_RINVSUBREP",
    0x00000043: "ESME_RINVESMCLASS",
    0x00000044: "ESME_RCNTSUBDL",
    0x00000045: "ESME_RSUBMITFAIL",
    0x00000048: "ESME_RINVSRCTON",
    0x00000049: "ESME_RINVSRCNPI",
    0x00000050: "ESME_RINVDSTTON",
    0x00000051: "ESME_RINVDSTNPI",
    0x00000053: "ESME_RINVSYSTYP",
    0x00000054: "ESME_RINVREPFLAG",
    0x00000055: "ESME_RINVNUMMSGS",
    0x00000058: "ESME_RTHROTTLED",
    0x00000061: "ESME_RINVSCHED",
    0x00000062: "ESME_RINVEXPIRY",
    0x00000063: "ESME_RINVDFTMSGID",
    0x00000064: "ESME_RX_T_APPN",
    0x00000065: "ESME_RX_P_APPN",
    0x00000066: "ESME_RX_R_APPN",
    0x00000067: "ESME_RQUERYFAIL",
    0x000000C0: "ESME_RINVOPTPARSTREAM",
    0x000000C1: "ESME_ROPTPARNOTALLWD",
    0x000000C2: "ESME_RINVPARLEN",
    0x000000C3: "ESME_RMISSINGOPTPARAM",
    0x000000C4: "ESME_RINVOPTPARAMVAL",
    0x000000FE: "ESME_RDELIVERYFAILURE",
    0x000000FF: "ESME_RUNKNOWNERR",
    # SMPP 5.0 additions. Not part of 3.4, but SMSCs that speak 3.4 on the wire
    # do return some of them (0x101 and 0x104 in particular), so name them.
    0x00000100: "ESME_RSERTYPUNAUTH",
    0x00000101: "ESME_RPROHIBITED",
    0x00000102: "ESME_RSERTYPUNAVAIL",
    0x00000103: "ESME_RSERTYPDENIED",
    0x00000104: "ESME_RINVDCS",
    0x00000105: "ESME_RINVSRCADDRSUBUNIT",
    0x00000106: "ESME_RINVDSTADDRSUBUNIT",
    0x00000107: "ESME_RINVBCASTFREQINT",
    0x00000108: "ESME_RINVBCASTALIAS_NAME",
    0x00000109: "ESME_RINVBCASTAREAFMT",
    0x0000010A: "ESME_RINVNUMBCAST_AREAS",
    0x0000010B: "ESME_RINVBCASTCNTTYPE",
    0x0000010C: "ESME_RINVBCASTMSGCLASS",
    0x0000010D: "ESME_RBCASTFAIL",
    0x0000010E: "ESME_RBCASTQUERYFAIL",
    0x0000010F: "ESME_RBCASTCANCELFAIL",
    0x00000110: "ESME_RINVBCAST_REP",
    0x00000111: "ESME_RINVBCASTSRVGRP",
    0x00000112: "ESME_RINVBCASTCHANIND",
}

_CODES_BY_NAME: dict[str, int] = {name: code for code, name in STATUS_NAMES.items()}


def status_name(status: int) -> str:
    """The ESME_* name of a command_status; unknown values read ``ESME_0x00000400``."""
    name = STATUS_NAMES.get(status)
    if name is not None:
        return name
    return f"ESME_0x{status & 0xFFFFFFFF:08X}"


TRANSIENT = "transient"
PERMANENT = "permanent"
THROTTLE = "throttle"
CLASSES: frozenset[str] = frozenset({TRANSIENT, PERMANENT, THROTTLE})

# What a carrier-ops engineer does after each error on a submit_sm. The rule of
# thumb: if sending the *same bytes* to the *same SMSC* later can succeed, it is
# transient; if the message itself is wrong, it is permanent; if the SMSC says
# "slow down", it is throttle (back off the whole SMSC, retry the message).
DEFAULT_CLASSES: dict[int, str] = {
    # --- slow down: pause the SMSC, lower its rate, retry the message -----
    0x00000014: THROTTLE,    # ESME_RMSGQFUL        SMSC queue full (for us or for the subscriber)
    0x00000058: THROTTLE,    # ESME_RTHROTTLED      we exceeded the agreed TPS
    # --- the SMSC or its network failed: try again later --------------------
    0x00000008: TRANSIENT,   # ESME_RSYSERR         SMSC internal error
    0x00000045: TRANSIENT,   # ESME_RSUBMITFAIL     generic "submit failed", usually a backend hiccup
    0x00000064: TRANSIENT,   # ESME_RX_T_APPN       temporary application error
    0x00000066: TRANSIENT,   # ESME_RX_R_APPN       "receiver reject": vendors use it for
                             #                      load shedding; retries are bounded anyway
    0x00000067: TRANSIENT,   # ESME_RQUERYFAIL
    0x000000FE: TRANSIENT,   # ESME_RDELIVERYFAILURE (data_sm transaction mode) network failed now
    0x000000FF: TRANSIENT,   # ESME_RUNKNOWNERR     no information: do not give up on one datum
    0x00000102: TRANSIENT,   # ESME_RSERTYPUNAVAIL  service temporarily unavailable
    # session state: the message is not at fault; the session gets rebuilt
    0x00000004: TRANSIENT,   # ESME_RINVBNDSTS      session not bound for submit (e.g. mid-rebind)
    0x00000005: TRANSIENT,   # ESME_RALYBND
    0x0000000D: TRANSIENT,   # ESME_RBINDFAIL
    0x0000000E: TRANSIENT,   # ESME_RINVPASWD
    0x0000000F: TRANSIENT,   # ESME_RINVSYSID
    0x00000053: TRANSIENT,   # ESME_RINVSYSTYP
    # --- the message itself is wrong: sending it again gives the same answer -
    0x00000001: PERMANENT,   # ESME_RINVMSGLEN
    0x00000002: PERMANENT,   # ESME_RINVCMDLEN      the PDU we built is malformed
    0x00000003: PERMANENT,   # ESME_RINVCMDID       SMSC does not support the operation
    0x00000006: PERMANENT,   # ESME_RINVPRTFLG
    0x00000007: PERMANENT,   # ESME_RINVREGDLVFLG
    0x0000000A: PERMANENT,   # ESME_RINVSRCADR      sender not allowed / malformed
    0x0000000B: PERMANENT,   # ESME_RINVDSTADR      destination invalid or not routable
    0x0000000C: PERMANENT,   # ESME_RINVMSGID
    0x00000011: PERMANENT,   # ESME_RCANCELFAIL
    0x00000013: PERMANENT,   # ESME_RREPLACEFAIL
    0x00000015: PERMANENT,   # ESME_RINVSERTYP
    0x00000033: PERMANENT,   # ESME_RINVNUMDESTS
    0x00000034: PERMANENT,   # ESME_RINVDLNAME
    0x00000040: PERMANENT,   # ESME_RINVDESTFLAG
    0x00000042: PERMANENT,   # ESME_RINVSUBREP
    0x00000043: PERMANENT,   # ESME_RINVESMCLASS
    0x00000044: PERMANENT,   # ESME_RCNTSUBDL
    0x00000048: PERMANENT,   # ESME_RINVSRCTON
    0x00000049: PERMANENT,   # ESME_RINVSRCNPI
    0x00000050: PERMANENT,   # ESME_RINVDSTTON
    0x00000051: PERMANENT,   # ESME_RINVDSTNPI
    0x00000054: PERMANENT,   # ESME_RINVREPFLAG
    0x00000055: PERMANENT,   # ESME_RINVNUMMSGS
    0x00000061: PERMANENT,   # ESME_RINVSCHED
    0x00000062: PERMANENT,   # ESME_RINVEXPIRY      validity_period rejected
    0x00000063: PERMANENT,   # ESME_RINVDFTMSGID
    0x00000065: PERMANENT,   # ESME_RX_P_APPN       permanent application error
    0x000000C0: PERMANENT,   # ESME_RINVOPTPARSTREAM
    0x000000C1: PERMANENT,   # ESME_ROPTPARNOTALLWD
    0x000000C2: PERMANENT,   # ESME_RINVPARLEN
    0x000000C3: PERMANENT,   # ESME_RMISSINGOPTPARAM
    0x000000C4: PERMANENT,   # ESME_RINVOPTPARAMVAL
    0x00000100: PERMANENT,   # ESME_RSERTYPUNAUTH
    0x00000101: PERMANENT,   # ESME_RPROHIBITED     account may not send this (e.g. sender ID barred)
    0x00000103: PERMANENT,   # ESME_RSERTYPDENIED
    0x00000104: PERMANENT,   # ESME_RINVDCS         data_coding not accepted
    0x00000105: PERMANENT,   # ESME_RINVSRCADDRSUBUNIT
    0x00000106: PERMANENT,   # ESME_RINVDSTADDRSUBUNIT
}


def classify(status: int, overrides: Mapping[int, str] | None = None) -> str:
    """The class of a non-OK command_status: ``transient``, ``permanent`` or ``throttle``.

    ``overrides`` (one SMSC's ``error_classes``) win over ``DEFAULT_CLASSES``.
    A status in neither -- vendor codes 0x400-0x4FF, anything undefined -- is
    ``transient``: a wrong "transient" costs a few bounded retries and ends in
    ``failed``; a wrong "permanent" silently drops a message that would have
    gone through. Callers handle ``ESME_ROK`` (0) before asking.
    """
    if overrides:
        cls = overrides.get(status)
        if cls is not None:
            return cls
    return DEFAULT_CLASSES.get(status, TRANSIENT)


_HEX_RE = re.compile(r"0[xX][0-9A-Fa-f]{1,8}")
_DEC_RE = re.compile(r"[0-9]{1,10}")


def status_code(key: str | int) -> int:
    """Parse a status as written in config: ``"0x45"``, ``"69"``, ``"ESME_RSUBMITFAIL"``,
    ``"RSUBMITFAIL"`` (any case), ``"ESME_0x00000400"``, or an int. Raises ValueError."""
    if isinstance(key, bool):
        raise ValueError(f"not a command_status: {key!r}")
    if isinstance(key, int):
        code = key
    else:
        text = key.strip()
        upper = text.upper()
        if _HEX_RE.fullmatch(text):
            code = int(text, 16)
        elif _DEC_RE.fullmatch(text):
            code = int(text, 10)
        elif upper.startswith("ESME_0X") and _HEX_RE.fullmatch(text[5:]):
            code = int(text[5:], 16)
        elif upper in _CODES_BY_NAME:
            code = _CODES_BY_NAME[upper]
        elif "ESME_" + upper in _CODES_BY_NAME:
            code = _CODES_BY_NAME["ESME_" + upper]
        else:
            raise ValueError(f"unknown command_status {key!r}: use a name like ESME_RSUBMITFAIL or 0x45")
    if not 0 <= code <= 0xFFFFFFFF:
        raise ValueError(f"command_status out of range: {key!r}")
    return code


def parse_error_classes(table: Mapping[str, object]) -> dict[int, str]:
    """Turn a config ``[smsc.error_classes]`` table into ``classify`` overrides.

    Keys as ``status_code`` accepts; values ``transient``, ``permanent`` or
    ``throttle`` (any case). Raises ValueError naming the bad key or value.
    """
    out: dict[int, str] = {}
    for key, value in table.items():
        code = status_code(key)
        if not isinstance(value, str) or value.strip().lower() not in CLASSES:
            raise ValueError(f"{key}: class must be one of transient, permanent, throttle, not {value!r}")
        if code == 0:
            raise ValueError(f"{key}: ESME_ROK is not an error and cannot be classified")
        out[code] = value.strip().lower()
    return out
