"""Compliance, the pure parts: numbers, keyword classification, the cache, sender rules, config, CSV."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest

from smppengine.compliance import (
    GLOBAL,
    OptOutCache,
    classify,
    normalise_number,
    normalise_scope,
    refusal,
    screen,
    sender_allowed,
)
from smppengine.config import ComplianceConfig, ConfigError, RouteConfig, SmscConfig, parse_config
from smppengine.ingress import parse_request
from smppengine.model import Rejection
from smppengine.optout_cli import parse_csv, write_csv
from smppengine.store import open_store
from smppengine.store.optouts import OptOut

RULES = ComplianceConfig()


def test_numbers_are_normalised_to_digits() -> None:
    assert normalise_number("+447700900123") == normalise_number("447700900123") == "447700900123"
    assert normalise_number(" +44 7700-900 123 ") == "447700900123"
    for bad in ("ACME", "", "+", "12a4", "1" * 21):
        with pytest.raises(ValueError):
            normalise_number(bad)
    assert normalise_scope("+12345") == "12345" and normalise_scope("*") == GLOBAL
    assert normalise_scope(" ACME ") == "ACME" and normalise_scope("") == ""


@pytest.mark.parametrize("text", ["STOP", "stop ", " Stop\n", "STOP.", "unsubscribe", "Cancel", "END", "quit!"])
def test_opt_out_keywords_are_scoped_to_the_number_written_to(text: str) -> None:
    change = classify(text, "+447700900123", "12345", RULES)
    assert change is not None and change.add and change.number == "447700900123" and change.scopes == ("12345",)


@pytest.mark.parametrize("text", ["STOP please", "stopp", "", "hello", "STOP STOP", "S T O P"])
def test_other_texts_change_nothing(text: str) -> None:
    assert classify(text, "447700900123", "12345", RULES) is None


def test_stopall_and_global_scope_and_optin() -> None:
    assert classify("STOPALL", "447700900123", "12345", RULES).scopes == (GLOBAL,)  # type: ignore[union-attr]
    glob = ComplianceConfig(optout_scope="global")
    assert classify("stop", "447700900123", "12345", glob).scopes == (GLOBAL,)  # type: ignore[union-attr]
    start = classify("Start", "447700900123", "+12345", RULES)
    assert start is not None and not start.add and set(start.scopes) == {"12345", GLOBAL}
    assert classify("UNSTOP", "447700900123", "12345", RULES) is not None
    assert classify("STOP", "ACME", "12345", RULES) is None               # alphanumeric originator
    custom = ComplianceConfig(optout_keywords=("arret",), optin_keywords=("go",))
    assert classify("ARRET", "1", "2", custom) is not None and classify("stop", "1", "2", custom) is None
    assert classify("GO", "1", "2", custom) is not None


def test_cache_scoped_global_and_removal() -> None:
    cache = OptOutCache([("447700900123", "12345")])
    assert cache.blocked("+447700900123", "12345") and cache.blocked("447700900123", "+12345")
    assert not cache.blocked("447700900123", "67890") and not cache.blocked("447700900999", "12345")
    cache.apply(classify("STOPALL", "447700900124", "12345", RULES))  # type: ignore[arg-type]
    assert cache.blocked("447700900124", "ACME") and cache.blocked("447700900124", "")
    cache.apply(classify("START", "447700900124", "12345", RULES))  # type: ignore[arg-type]
    cache.apply(classify("START", "447700900123", "12345", RULES))  # type: ignore[arg-type]
    assert len(cache) == 0 and not cache.blocked("447700900123", "12345")
    cache.replace([("1", GLOBAL)])
    assert cache.blocked("1", "x") and len(cache) == 1
    assert not cache.blocked("not-a-number", "x")


SMSC = SmscConfig(name="a", host="h", port=1, system_id="s", password="p", default_from="12345")


def test_sender_rules_and_opt_out_check() -> None:
    assert sender_allowed("ACME", ()) and sender_allowed("+12345", ("12345",))
    assert not sender_allowed("acme", ("ACME",))
    restricted = SmscConfig(name="b", host="h", port=1, system_id="s", password="p", senders=("ACME",))
    err = refusal("447700900123", "OTHER", "m", None, restricted, None)
    assert err is not None and err["code"] == "sender_not_allowed"
    route = RouteConfig(prefix="+44", smsc=("a",), senders=("12345",))
    assert refusal("447700900123", "ACME", "m", route, SMSC, None)["code"] == "sender_not_allowed"  # type: ignore[index]
    assert refusal("447700900123", None, "m", route, SMSC, None) is None          # default_from 12345 is allowed
    cache = OptOutCache([("447700900123", "12345")])
    assert refusal("+447700900123", None, "m", route, SMSC, cache)["code"] == "opted_out"  # type: ignore[index]
    assert refusal("+447700900123", "ACME", "m", None, SMSC, cache) is None       # other sender, scoped opt-out
    transactional = RouteConfig(prefix="+44", smsc=("a",), allow_opted_out=True)
    assert refusal("+447700900123", None, "m", transactional, SMSC, cache) is None
    assert refusal("+447700900123", None, "optout-confirm-1", route, SMSC, cache) is None
    # failover: a candidate whose effective sender is blocked is skipped, not the whole message
    other = SmscConfig(name="c", host="h", port=1, system_id="s", password="p", default_from="67890")
    kept, why = screen("447700900123", None, "m", None, ["a", "c"], {"a": SMSC, "c": other}, cache)
    assert kept == ["c"] and why is None
    kept, why = screen("447700900123", None, "m", None, ["a"], {"a": SMSC}, cache)
    assert kept == [] and why is not None and why["code"] == "opted_out"


def _cfg(**extra: object) -> dict[str, object]:
    return {"smsc": [{"name": "a", "host": "h", "port": 1, "system_id": "s", "password": "p"}], **extra}


def test_config_keys_and_errors() -> None:
    c = parse_config(_cfg(compliance={"optout_keywords": ["STOP", " Arret "], "optout_scope": "global",
                                      "confirm_stop": "Bye"},
                          route=[{"prefix": "", "smsc": ["a"], "senders": ["ACME", "+4477"],
                                  "allow_opted_out": True}]))
    assert c.compliance.optout_keywords == ("stop", "arret") and c.compliance.optout_scope == "global"
    assert c.compliance.optin_keywords == ("start", "unstop") and c.compliance.confirm_stop == "Bye"
    assert c.route[0].senders == ("ACME", "+4477") and c.route[0].allow_opted_out
    bad = [
        (_cfg(compliance={"optout_scope": "world"}), "compliance.optout_scope"),
        (_cfg(compliance={"optout_keywords": "STOP"}), "compliance.optout_keywords"),
        (_cfg(compliance={"optin_keywords": ["stop"]}), "compliance.optin_keywords"),
        (_cfg(compliance={"confirm_stpo": "x"}), "compliance.confirm_stpo"),
        (_cfg(route=[{"prefix": "", "smsc": ["a"], "senders": ["TWELVECHARSX"]}]), "route[0].senders"),
        (_cfg(route=[{"prefix": "", "smsc": ["a"], "allow_opted_out": 1}]), "route[0].allow_opted_out"),
    ]
    for data, key in bad:
        with pytest.raises(ConfigError) as exc:
            parse_config(data, "f.toml")
        assert exc.value.key == key, exc.value
    smsc = {"name": "a", "host": "h", "port": 1, "system_id": "s", "password": "p", "senders": ["A*B"]}
    with pytest.raises(ConfigError, match=r"smsc\[0\]\.senders"):
        parse_config({"smsc": [smsc]}, "f.toml")


def test_bad_alphanumeric_sender_and_reserved_id_are_invalid_requests() -> None:
    for sender in ("TWELVECHARSX", "AC*ME", "   "):
        r = parse_request(b'{"to": "+447700900123", "text": "x", "from": "%s"}' % sender.encode())
        assert isinstance(r, Rejection) and r.code == "invalid_request" and "from" in r.detail
    r = parse_request(b'{"id": "optout-confirm-1", "to": "+447700900123", "text": "x"}')
    assert isinstance(r, Rejection) and "reserved" in r.detail


def test_csv_import_parsing_and_export_roundtrip() -> None:
    src = io.StringIO("number,scope\n+44 7700 900123,12345\n447700900124\n# comment\n\n447700900125,*\n")
    rows, problems = parse_csv(src, 1.0)
    assert problems == []
    assert [(r.number, r.scope, r.source) for r in rows] == [
        ("447700900123", "12345", "import"), ("447700900124", GLOBAL, "import"), ("447700900125", GLOBAL, "import")]
    _, problems = parse_csv(io.StringIO("447700900123\nACME\n"), 1.0)
    assert problems == ["line 2: not a phone number: 'ACME'"]
    out = io.StringIO()
    write_csv(rows, out)
    again, _ = parse_csv(io.StringIO(out.getvalue()), 2.0)
    assert [(r.number, r.scope) for r in again] == [(r.number, r.scope) for r in rows]


async def test_store_optout_operations(store_backend: str) -> None:
    s = open_store(store_backend, "sms")
    await s.open()
    try:
        snap = await s.optout_snapshot(None)
        assert snap.entries == [] and (await s.optout_snapshot(snap.version)).entries is None
        await s.optout_add([OptOut("1", "*", "cli", 1.0), OptOut("2", "12345", "cli", 1.0)])
        snap2 = await s.optout_snapshot(snap.version)
        assert snap2.version > snap.version and sorted(snap2.entries or []) == [("1", "*"), ("2", "12345")]
        assert await s.optout_remove([("2", "12345"), ("9", "*")]) == 1
        # an MO keyword changes the list in its own commit, and says so on the published MO
        msg = await s.mo("a", "447700900123", "12345", b"STOP ", 0, None, "gsm", RULES)
        assert msg is not None and msg["opt_out"] is True
        again = await s.mo("a", "447700900123", "12345", b"stop", 0, None, "gsm", RULES)
        assert again is not None and "opt_out" not in again                 # no change: no flag
        plain = await s.mo("a", "447700900123", "12345", b"hello", 0, None, "gsm", RULES)
        assert plain is not None and "opt_out" not in plain
        entries = await s.optout_list()
        assert [(e.number, e.scope, e.source) for e in entries] == [("1", "*", "cli"), ("447700900123", "12345", "mo")]
        start = await s.mo("a", "447700900123", "12345", b"START", 0, None, "gsm", RULES)
        assert start is not None and start["opt_out"] is False
        assert [e.number for e in await s.optout_list()] == ["1"]
    finally:
        await s.close()


def test_example_config_is_still_valid() -> None:
    from smppengine.config import load_config

    cfg = load_config(Path(__file__).parent.parent / "config" / "example.toml")
    assert cfg.compliance.optout_scope in ("number", "global")


def test_one_sender_rule_for_from_default_from_and_senders() -> None:
    """A request's from, an SMSC's default_from and a senders entry are checked by one rule
    (addressing.valid_sender): what one accepts the others accept."""
    from smppengine.addressing import valid_sender
    from smppengine.config import ConfigError, parse_config
    from smppengine.ingress import parse_request
    from smppengine.model import Rejection, Request

    def config_accepts(sender: str) -> tuple[bool, bool]:
        out = []
        for key, value in (("default_from", sender), ("senders", [sender])):
            smsc = {"name": "a", "host": "127.0.0.1", "port": 2775, "system_id": "u", "password": "p", key: value}
            try:
                parse_config({"smsc": [smsc]})
                out.append(True)
            except ConfigError:
                out.append(False)
        return out[0], out[1]

    for sender in ("ACME Shop", "A.B-C_D&E", "+447700900123", "12345", "ACME-SHOP-LTD", "   ", "é", "+", "1" * 21):
        ok = valid_sender(sender)
        req = parse_request(orjson.dumps({"to": "+447700900123", "text": "x", "from": sender}))
        assert isinstance(req, Request if ok else Rejection), sender
        assert config_accepts(sender) == (ok, ok), sender
