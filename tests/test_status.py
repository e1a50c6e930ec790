import pytest

from smppengine.smpp.status import (
    DEFAULT_CLASSES,
    PERMANENT,
    STATUS_NAMES,
    THROTTLE,
    TRANSIENT,
    classify,
    parse_error_classes,
    status_code,
    status_name,
)

# The SMPP 3.4 (section 5.1.3) table, independently typed here.
SMPP34 = {
    0x00: "ESME_ROK", 0x01: "ESME_RINVMSGLEN", 0x02: "ESME_RINVCMDLEN", 0x03: "ESME_RINVCMDID",
    0x04: "ESME_RINVBNDSTS", 0x05: "ESME_RALYBND", 0x06: "ESME_RINVPRTFLG", 0x07: "ESME_RINVREGDLVFLG",
    0x08: "ESME_RSYSERR", 0x0A: "ESME_RINVSRCADR", 0x0B: "ESME_RINVDSTADR", 0x0C: "ESME_RINVMSGID",
    0x0D: "ESME_RBINDFAIL", 0x0E: "ESME_RINVPASWD", 0x0F: "ESME_RINVSYSID", 0x11: "ESME_RCANCELFAIL",
    0x13: "ESME_RREPLACEFAIL", 0x14: "ESME_RMSGQFUL", 0x15: "ESME_RINVSERTYP", 0x33: "ESME_RINVNUMDESTS",
    0x34: "ESME_RINVDLNAME", 0x40: "ESME_RINVDESTFLAG", 0x42: "ESME_RINVSUBREP", 0x43: "ESME_RINVESMCLASS",
    0x44: "ESME_RCNTSUBDL", 0x45: "ESME_RSUBMITFAIL", 0x48: "ESME_RINVSRCTON", 0x49: "ESME_RINVSRCNPI",
    0x50: "ESME_RINVDSTTON", 0x51: "ESME_RINVDSTNPI", 0x53: "ESME_RINVSYSTYP", 0x54: "ESME_RINVREPFLAG",
    0x55: "ESME_RINVNUMMSGS", 0x58: "ESME_RTHROTTLED", 0x61: "ESME_RINVSCHED", 0x62: "ESME_RINVEXPIRY",
    0x63: "ESME_RINVDFTMSGID", 0x64: "ESME_RX_T_APPN", 0x65: "ESME_RX_P_APPN", 0x66: "ESME_RX_R_APPN",
    0x67: "ESME_RQUERYFAIL", 0xC0: "ESME_RINVOPTPARSTREAM", 0xC1: "ESME_ROPTPARNOTALLWD",
    0xC2: "ESME_RINVPARLEN", 0xC3: "ESME_RMISSINGOPTPARAM", 0xC4: "ESME_RINVOPTPARAMVAL",
    0xFE: "ESME_RDELIVERYFAILURE", 0xFF: "ESME_RUNKNOWNERR",
}


def test_every_smpp34_status_is_named() -> None:
    for code, name in SMPP34.items():
        assert STATUS_NAMES[code] == name
        assert status_name(code) == name


def test_names_match_smpplib() -> None:
    import smpplib.consts as consts
    for attr in dir(consts):
        if attr.startswith("SMPP_ESME_"):
            assert status_name(getattr(consts, attr)) == attr[len("SMPP_"):]


def test_unknown_status_name() -> None:
    assert status_name(0x400) == "ESME_0x00000400"
    assert status_name(0xDEADBEEF) == "ESME_0xDEADBEEF"
    assert status_name(0x09) == "ESME_0x00000009"


def test_every_error_is_classified_and_only_errors() -> None:
    assert set(DEFAULT_CLASSES) == set(STATUS_NAMES) - {0} - {c for c in STATUS_NAMES if 0x107 <= c <= 0x112}
    assert set(DEFAULT_CLASSES.values()) == {TRANSIENT, PERMANENT, THROTTLE}


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (0x58, THROTTLE), (0x14, THROTTLE),
        (0x08, TRANSIENT), (0x64, TRANSIENT), (0x66, TRANSIENT), (0xFE, TRANSIENT), (0xFF, TRANSIENT),
        (0x45, TRANSIENT), (0x04, TRANSIENT),
        (0x0B, PERMANENT), (0x0A, PERMANENT), (0x01, PERMANENT), (0x43, PERMANENT), (0x104, PERMANENT),
        (0x06, PERMANENT), (0x65, PERMANENT), (0x62, PERMANENT), (0x101, PERMANENT),
        (0x400, TRANSIENT), (0x9999, TRANSIENT),
    ],
)
def test_default_classes(status: int, cls: str) -> None:
    assert classify(status) == cls


def test_overrides_win() -> None:
    overrides = {0x45: PERMANENT, 0x0B: TRANSIENT, 0x401: THROTTLE}
    assert classify(0x45, overrides) == PERMANENT
    assert classify(0x0B, overrides) == TRANSIENT
    assert classify(0x401, overrides) == THROTTLE
    assert classify(0x58, overrides) == THROTTLE
    assert classify(0x45, {}) == TRANSIENT
    assert classify(0x45, None) == TRANSIENT


@pytest.mark.parametrize(
    ("key", "code"),
    [("0x45", 0x45), ("0X0000000B", 0x0B), ("69", 69), ("ESME_RSUBMITFAIL", 0x45), ("esme_rthrottled", 0x58),
     ("RINVDSTADR", 0x0B), ("ESME_0x00000400", 0x400), (" 0x58 ", 0x58), (0x14, 0x14)],
)
def test_status_code(key: str | int, code: int) -> None:
    assert status_code(key) == code


@pytest.mark.parametrize("key", ["", "ESME_NOPE", "0x", "0x123456789", "-1", "1.5", True])
def test_status_code_rejects(key: str | bool) -> None:
    with pytest.raises(ValueError):
        status_code(key)


def test_parse_error_classes() -> None:
    table = {"0x45": "permanent", "ESME_RINVDSTADR": "Transient", "0x400": "throttle"}
    assert parse_error_classes(table) == {
        0x45: PERMANENT, 0x0B: TRANSIENT, 0x400: THROTTLE,
    }
    with pytest.raises(ValueError, match="0x45"):
        parse_error_classes({"0x45": "sometimes"})
    with pytest.raises(ValueError):
        parse_error_classes({"ESME_ROK": "permanent"})
