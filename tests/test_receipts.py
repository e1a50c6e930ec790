import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smppengine.receipts import (
    FINAL_STATE,
    MESSAGE_STATES,
    Receipt,
    is_receipt,
    normalise_stat,
    parse_receipt,
    receipt_id_keys,
)

CANONICAL = (
    b"id:IIIIIIIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm "
    b"stat:DDDDDDD err:E text: . . . . "
)


def test_appendix_b_canonical_layout() -> None:
    rc = parse_receipt(CANONICAL, {})
    assert rc.message_id == "IIIIIIIIII"
    assert rc.submit_date == "YYMMDDhhmm"
    assert rc.done_date == "YYMMDDhhmm"
    assert rc.err == "E"
    assert rc.text == ". . . ."
    assert rc.stat == "UNKNOWN"          # "DDDDDDD" is a placeholder, not a state


def test_appendix_b_real_values() -> None:
    sm = (b"id:0123456789 sub:001 dlvrd:001 submit date:0610191018 done date:0610191018 "
          b"stat:DELIVRD err:000 text:Hello world")
    assert parse_receipt(sm, {}) == Receipt(
        message_id="0123456789", stat="DELIVRD", err="000", submit_date="0610191018",
        done_date="0610191018", text="Hello world", network_error_code=None,
    )


VARIANTS = [
    # (short_message, tlvs, id, stat, err, text)
    pytest.param(b"ID:7f3a01 SUB:001 DLVRD:001 SUBMIT DATE:2311241200 DONE DATE:2311241201 "
                 b"STAT:delivrd ERR:0 TEXT:x",
                 {}, "7f3a01", "DELIVRD", "0", "x", id="upper-case-keys-lower-stat"),
    pytest.param(b"Id:42 Sub:1 Dlvrd:1 Submit Date:2311241200 Done Date:2311241201 Stat:UNDELIV Err:001",
                 {}, "42", "UNDELIV", "001", None, id="title-case-no-text"),
    pytest.param(b"id:42\tsub:001\tdlvrd:000\tsubmit_date:231124120000\tdone_date:231124120105\tstat:EXPIRED\terr:000",
                 {}, "42", "EXPIRED", "000", None, id="tabs-underscores-12-digit-dates"),
    pytest.param(b"id:abc stat:DELIVERED", {}, "abc", "DELIVRD", None, None, id="long-stat-minimal-fields"),
    pytest.param(b"", {"receipted_message_id": b"7F3A01\x00", "message_state": 2}, "7F3A01", "DELIVRD",
                 None, None, id="tlv-only"),
    pytest.param(b"id:1 sub:001 dlvrd:001 stat:DELIVRD err:000", {"message_state": 5}, "1", "UNDELIV", "000",
                 None, id="message-state-wins-over-text"),
    pytest.param(b"id:8338945 stat:DELIVRD", {"receipted_message_id": "7F3A01"}, "7F3A01", "DELIVRD",
                 None, None, id="tlv-id-preferred-over-text-id"),
    pytest.param(b"id:99 stat:UNDELIVERABLE err:034", {}, "99", "UNDELIV", "034", None, id="undeliverable"),
    pytest.param(b"id:99 stat:Undelivered err:034", {}, "99", "UNDELIV", "034", None, id="undelivered"),
    pytest.param(b"id:99 stat:REJECTED", {}, "99", "REJECTD", None, None, id="rejected-long"),
    pytest.param(b"id : 99   stat : ACCEPTD   err : 0", {}, "99", "ACCEPTD", "0", None,
                 id="spaces-around-colons"),
    pytest.param(b"id:99 sub:001 dlvrd:000 submit date:2311241200 done date:2311241201 "
                 b"stat:ENROUTE err:0 text:",
                 {}, "99", "ENROUTE", "0", "", id="empty-text"),
    pytest.param(b"stat:DELIVRD err:000 id:55", {}, "55", "DELIVRD", "000", None, id="reordered"),
    pytest.param(b"id:55 status:deleted error:12", {}, "55", "DELETED", "12", None,
                 id="status-error-spelling"),
    pytest.param(b"id:55 stat:2", {}, "55", "DELIVRD", None, None, id="numeric-stat"),
    pytest.param(b"id:55 err:000", {}, "55", "UNKNOWN", "000", None, id="no-stat-at-all"),
    pytest.param(b"id:55 stat:DELIVRD", {"message_state": b"\x03"}, "55", "EXPIRED", None, None,
                 id="message-state-as-byte"),
    pytest.param(b"id:55 stat:DELIVRD", {"message_state": 0}, "55", "DELIVRD", None, None,
                 id="invalid-message-state-falls-back-to-text"),
    pytest.param(b"id:55 stat:DELIVRD text:caf\xe9 id:66 stat:UNDELIV", {}, "55", "DELIVRD", None,
                 "caf\xe9 id:66 stat:UNDELIV", id="latin1-text-containing-keys"),
    pytest.param(b"", {"receipted_message_id": "m-1", "message_payload": b"id:zz stat:REJECTD err:9"}, "m-1",
                 "REJECTD", "9", None, id="text-in-message-payload"),
]


@pytest.mark.parametrize(("sm", "tlvs", "mid", "stat", "err", "text"), VARIANTS)
def test_real_world_variants(
    sm: bytes, tlvs: dict, mid: str, stat: str, err: str | None, text: str | None
) -> None:
    rc = parse_receipt(sm, tlvs)
    assert rc.message_id == mid
    assert rc.stat == stat
    if err is not None:
        assert rc.err == err
    assert rc.text == text


def test_dates_and_network_error_code() -> None:
    rc = parse_receipt(
        b"id:1 submit date:231124120000 done date:2311241201 stat:UNDELIV err:001",
        {"network_error_code": b"\x03\x00\x22"},
    )
    assert rc.submit_date == "231124120000"
    assert rc.done_date == "2311241201"
    assert rc.network_error_code == b"\x03\x00\x22"
    assert rc.err == "001"


def test_utf8_text() -> None:
    rc = parse_receipt("id:1 stat:DELIVRD text:Grüße €".encode(), {})
    assert rc.text == "Grüße €"


@pytest.mark.parametrize(
    ("sm", "tlvs"),
    [
        (b"", {}),
        (b"stat:DELIVRD err:0", {}),
        (b"id: stat:DELIVRD", {}),
        (b"", {"receipted_message_id": b"\x00"}),
        (b"hello there", {"message_state": 2}),
    ],
)
def test_no_id_is_a_value_error(sm: bytes, tlvs: dict) -> None:
    with pytest.raises(ValueError, match="no message id"):
        parse_receipt(sm, tlvs)


@settings(max_examples=500, deadline=None)
@given(
    sm=st.one_of(
        st.binary(max_size=300),
        st.lists(
            st.sampled_from([b"id:", b"ID :", b"stat:", b"err:", b"text:", b"submit date:", b"done_date:",
                             b" ", b"\t", b"\x00", b"\xff", b"DELIVRD", b"0x", b"12", b"abc", b":"]),
            max_size=40,
        ).map(b"".join),
    ),
    tlvs=st.dictionaries(
        st.sampled_from(["receipted_message_id", "message_state", "network_error_code", "message_payload"]),
        st.one_of(st.none(), st.binary(max_size=20), st.text(max_size=20), st.integers(-(2**70), 2**70)),
    ),
)
def test_parse_never_raises_anything_but_value_error(sm: bytes, tlvs: dict) -> None:
    try:
        rc = parse_receipt(sm, tlvs)
    except ValueError:
        return
    assert rc.message_id
    assert rc.stat in FINAL_STATE


def test_stat_normalisation() -> None:
    for stat in FINAL_STATE:
        assert normalise_stat(stat) == stat
        assert normalise_stat(stat.lower()) == stat
    assert normalise_stat("Delivered") == "DELIVRD"
    assert normalise_stat("EN_ROUTE") == "ENROUTE"
    assert normalise_stat("weird") == "UNKNOWN"
    assert normalise_stat("12345678901") == "UNKNOWN"


def test_message_states_and_final_states() -> None:
    assert [MESSAGE_STATES[i] for i in range(1, 9)] == [
        "ENROUTE", "DELIVRD", "EXPIRED", "DELETED", "UNDELIV", "ACCEPTD", "UNKNOWN", "REJECTD",
    ]
    assert FINAL_STATE == {
        "DELIVRD": "delivered", "UNDELIV": "undelivered", "REJECTD": "undelivered", "DELETED": "undelivered",
        "UNKNOWN": "undelivered", "EXPIRED": "expired", "ENROUTE": "enroute", "ACCEPTD": "enroute",
    }


@pytest.mark.parametrize(
    ("esm_class", "tlvs", "expected"),
    [
        (0x04, {}, True),                     # SMSC delivery receipt
        (0x08, {}, True),                     # SME delivery acknowledgement
        (0x10, {}, True),                     # SME manual/user acknowledgement
        (0x20, {}, True),                     # intermediate delivery notification
        (0x44, {}, True),                     # receipt + UDHI bit
        (0x84, {}, True),                     # receipt + reply path bit
        (0x00, {}, False),                    # plain MO
        (0x40, {}, False),                    # MO with UDH
        (0x03, {}, False),                    # messaging-mode bits only
        (0x00, {"receipted_message_id": b"abc\x00"}, True),
        (0x00, {"receipted_message_id": "abc"}, True),
        (0x00, {"receipted_message_id": b""}, False),
        (0x00, {"receipted_message_id": None}, False),
        (0x00, {"message_state": 2}, False),
    ],
)
def test_is_receipt(esm_class: int, tlvs: dict, expected: bool) -> None:
    assert is_receipt(esm_class, tlvs) is expected


def shared(a: str, b: str) -> set[str]:
    return set(receipt_id_keys(a)) & set(receipt_id_keys(b))


def test_receipt_id_keys_examples() -> None:
    assert receipt_id_keys("7F3A01") == ("s:7f3a01", "n:8337921")
    assert receipt_id_keys("0012ab") == ("s:12ab", "n:4779")
    assert receipt_id_keys("8337921") == ("s:8337921", "n:" + str(0x8337921), "n:8337921")
    assert receipt_id_keys("000") == ("s:0", "n:0")
    assert receipt_id_keys("msg-7") == ("s:msg-7",)
    assert receipt_id_keys("  ") == ()


@pytest.mark.parametrize(
    ("resp_id", "receipt_id", "key"),
    [
        ("7F3A01", "8337921", "n:8337921"),       # hex resp, decimal receipt
        ("8337921", "7F3A01", "n:8337921"),       # and the other way round
        ("0012ab", "12AB", "s:12ab"),             # leading zeros, case
        ("0000000042", "42", "s:42"),
        ("ABCDEF", "abcdef", "s:abcdef"),
        ("3b9aca00", "1000000000", "n:1000000000"),
        ("c0ffee-1 ", "C0FFEE-1", "s:c0ffee-1"),  # non-numeric ids: exact modulo case/space
    ],
)
def test_receipt_id_keys_match(resp_id: str, receipt_id: str, key: str) -> None:
    assert key in shared(resp_id, receipt_id)


@pytest.mark.parametrize(
    ("a", "b"), [("7F3A01", "7F3A02"), ("msg-1", "msg-10"), ("abc", "abd"), ("10", "11")]
)
def test_receipt_id_keys_do_not_match(a: str, b: str) -> None:
    assert not shared(a, b)


@given(st.integers(0, 2**64))
def test_hex_and_decimal_forms_always_meet(n: int) -> None:
    assert f"n:{n}" in shared(format(n, "X"), str(n))
    assert f"n:{n}" in shared(format(n, "010x"), str(n))


_ID = st.text(alphabet="0123456789abcdefABCDEF-_:xyz", min_size=1, max_size=20)
_DATE = st.from_regex(r"\A(\d{10}|\d{12})\Z")
_FREE = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30)


@given(_ID, st.sampled_from(sorted(FINAL_STATE)), _DATE, _DATE, st.sampled_from(["000", "001", "0x1B", ""]),
       st.none() | _FREE)
@settings(max_examples=400)
def test_canonical_fast_path_agrees_with_the_tolerant_parser(
        msg_id: str, stat: str, submit: str, done: str, err: str, body: str | None) -> None:
    raw = f"id:{msg_id} sub:001 dlvrd:001 submit date:{submit} done date:{done} stat:{stat} err:{err}"
    if body is not None:
        raw += f" text:{body}"
    from smppengine import receipts as R

    assert R._canonical_fields(raw) is not None                  # this layout takes the fast path
    fast = parse_receipt(raw.encode(), {})
    fields = R._split_fields(raw)
    assert fields                                               # and the tolerant scan reads it too
    original = R._canonical_fields
    try:
        R._canonical_fields = lambda text: None                   # type: ignore[assignment]
        slow = parse_receipt(raw.encode(), {})
    finally:
        R._canonical_fields = original
    assert fast == slow
