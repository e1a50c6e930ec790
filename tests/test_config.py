"""Configuration loading and validation (smppengine.config)."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from smppengine.config import (
    Config,
    ConfigError,
    demo_config,
    load_config,
    parse_config,
    redacted,
)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config" / "example.toml"
DEMO = ROOT / "config" / "demo.toml"

BASE: dict[str, Any] = {
    "smsc": [
        {"name": "carrier-a", "host": "10.0.0.1", "port": 2775, "system_id": "acme", "password": "pw"},
        {"name": "carrier-b", "host": "10.0.0.2", "port": 2775, "system_id": "acme", "password": "pw"},
    ],
}


def doc(**sections: Any) -> dict[str, Any]:
    d = copy.deepcopy(BASE)
    d.update(copy.deepcopy(sections))
    return d


def smsc(**overrides: Any) -> dict[str, Any]:
    """BASE with the first [[smsc]] changed (a value of None removes the key)."""
    d = copy.deepcopy(BASE)
    for k, v in overrides.items():
        if v is None:
            del d["smsc"][0][k]
        else:
            d["smsc"][0][k] = v
    return d


def error(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data, "test.toml")
    return str(info.value)


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.toml"
    p.write_text(text, encoding="utf-8")
    return p


# ---- the error classes, each with its exact message ------------------------------------------------

def test_config_error_fields() -> None:
    e = ConfigError("f.toml", "smsc[0].tps", "bad")
    assert (e.file, e.key, e.reason, str(e)) == ("f.toml", "smsc[0].tps", "bad", "f.toml: smsc[0].tps: bad")


def test_missing_host() -> None:
    assert error(smsc(host=None)) == "test.toml: smsc[0].host: required key missing"


@pytest.mark.parametrize("key", ["name", "host", "port", "system_id", "password"])
def test_every_required_smsc_key(key: str) -> None:
    assert error(smsc(**{key: None})) == f"test.toml: smsc[0].{key}: required key missing"


def test_wrong_type_positive_number() -> None:
    assert error(smsc(tps="fast")) == 'test.toml: smsc[0].tps: expected a positive number, got "fast"'


def test_wrong_type_in_file_has_file_name(tmp_path: Path) -> None:
    p = write(tmp_path, '[[smsc]]\nname="a"\nhost="h"\nport=1\nsystem_id="s"\npassword="p"\ntps="fast"\n')
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert str(info.value) == f'{p}: smsc[0].tps: expected a positive number, got "fast"'


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"tps": 0}, "smsc[0].tps: expected a positive number, got 0"),
        ({"tps": float("inf")}, "smsc[0].tps: expected a positive number, got inf"),
        ({"window": 0}, "smsc[0].window: expected a positive integer, got 0"),
        ({"window": 2.5}, "smsc[0].window: expected a positive integer, got 2.5"),
        ({"binds": -1}, "smsc[0].binds: expected a positive integer, got -1"),
        ({"port": 70000}, "smsc[0].port: expected a port number 1..65535, got 70000"),
        ({"port": "2775"}, 'smsc[0].port: expected a port number 1..65535, got "2775"'),
        ({"response_timeout_s": 0}, "smsc[0].response_timeout_s: expected a positive number, got 0"),
        ({"enquire_link_s": -5}, "smsc[0].enquire_link_s: expected a positive number, got -5"),
        ({"host": 10}, "smsc[0].host: expected a string, got 10"),
        ({"host": ""}, "smsc[0].host: must not be empty"),
        ({"tls": "yes"}, 'smsc[0].tls: expected true or false, got "yes"'),
        ({"tls": 1}, "smsc[0].tls: expected true or false, got 1"),
        ({"concat": "udh8"}, 'smsc[0].concat: expected "udh", "udh16", "sar" or "payload", got "udh8"'),
        ({"default_alphabet": "utf8"},
         'smsc[0].default_alphabet: expected "gsm", "ascii" or "latin1", got "utf8"'),
        ({"default_from": "ACME-SHOP-LTD"},
         "smsc[0].default_from: expected up to 11 characters of A-Z a-z 0-9 space . - _ &, or an optional '+' "
         'then 1-20 digits, got "ACME-SHOP-LTD"'),
        ({"system_id": "a" * 16}, "smsc[0].system_id: at most 15 characters (SMPP 3.4), got 16"),
        ({"password": "123456789"}, "smsc[0].password: at most 8 characters (SMPP 3.4), got 9"),
        ({"name": "a b"}, 'smsc[0].name: expected 1-64 characters of A-Z a-z 0-9 . _ -, got "a b"'),
    ],
)
def test_smsc_types_and_ranges(overrides: dict[str, Any], message: str) -> None:
    assert error(smsc(**overrides)) == f"test.toml: {message}"


def test_ints_accepted_for_floats() -> None:
    c = parse_config(smsc(tps=7, enquire_link_s=15, response_timeout_s=3))
    s = c.smsc[0]
    assert (s.tps, s.enquire_link_s, s.response_timeout_s) == (7.0, 15.0, 3.0)
    assert all(isinstance(x, float) for x in (s.tps, s.enquire_link_s, s.response_timeout_s))
    assert parse_config(smsc(tps=0.5)).smsc[0].tps == 0.5


def test_bool_is_not_an_int() -> None:
    assert error(smsc(binds=True)) == "test.toml: smsc[0].binds: expected a positive integer, got true"
    assert error(smsc(tps=True)) == "test.toml: smsc[0].tps: expected a positive number, got true"
    assert error(doc(retry={"max_attempts": False})) == (
        "test.toml: retry.max_attempts: expected a positive integer, got false"
    )


def test_unknown_key_with_suggestion() -> None:
    assert error(smsc(sytem_id="x")) == 'test.toml: smsc[0].sytem_id: unknown key (did you mean "system_id"?)'
    assert error(doc(mqtt={"topic_prefx": "sms"})) == (
        'test.toml: mqtt.topic_prefx: unknown key (did you mean "topic_prefix"?)'
    )


def test_unknown_key_without_suggestion() -> None:
    assert error(doc(log={"colour": True})) == "test.toml: log.colour: unknown key"


def test_embedded_is_not_a_file_key() -> None:
    assert error(doc(mqtt={"embedded": True})) == "test.toml: mqtt.embedded: unknown key"


def test_unknown_section() -> None:
    assert error(doc(retries={})) == 'test.toml: retries: unknown section (did you mean "retry"?)'
    assert error(doc(metrics={})) == "test.toml: metrics: unknown section"


def test_section_must_be_a_table() -> None:
    assert error(doc(engine=3)) == "test.toml: engine: expected a table, got 3"
    assert error(doc(smsc={"name": "a"})) == (
        "test.toml: smsc: expected an array of tables ([[smsc]]), got a table"
    )


def test_unknown_bind_mode() -> None:
    assert error(smsc(bind="trx")) == (
        'test.toml: smsc[0].bind: expected "transceiver" or "transmitter_receiver", got "trx"'
    )


def test_route_to_unknown_smsc() -> None:
    data = doc(route=[{"prefix": "+44", "smsc": ["carrier-a"]}, {"prefix": "", "smsc": ["carrier-z"]}])
    assert error(data) == 'test.toml: route[1].smsc: unknown SMSC "carrier-z" (known: carrier-a, carrier-b)'


@pytest.mark.parametrize(
    ("route", "message"),
    [
        ({"prefix": "44a", "smsc": "carrier-a"},
         "route[0].prefix: expected an optional '+' then up to 20 digits, or \"\", got \"44a\""),
        ({"prefix": "+44", "smsc": []},
         "route[0].smsc: expected a non-empty array of SMSC names, got an array"),
        ({"prefix": "+44", "smsc": 3}, "route[0].smsc: expected a non-empty array of SMSC names, got 3"),
        ({"prefix": "+44"}, "route[0].smsc: required key missing"),
        ({"prefix": "+44", "smsc": ["carrier-a", "carrier-a"]},
         'route[0].smsc: SMSC "carrier-a" listed twice'),
        ({"prefx": "+44", "smsc": "carrier-a"}, 'route[0].prefx: unknown key (did you mean "prefix"?)'),
    ],
)
def test_route_errors(route: dict[str, Any], message: str) -> None:
    assert error(doc(route=[route])) == f"test.toml: {message}"


def test_duplicate_route_prefix() -> None:
    data = doc(route=[{"prefix": "+44", "smsc": "carrier-a"}, {"prefix": "+44", "smsc": "carrier-b"}])
    assert error(data) == 'test.toml: route[1].prefix: duplicate prefix "+44" (also route[0])'


def test_route_plain_string_and_implicit_default() -> None:
    c = parse_config(doc(route=[{"prefix": "+44", "smsc": "carrier-b"}]))
    assert [(r.prefix, r.smsc) for r in c.route] == [("+44", ("carrier-b",))]
    c = parse_config(doc())
    assert [(r.prefix, r.smsc) for r in c.route] == [("", ("carrier-a", "carrier-b"))]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://broker:1883", 'expected an mqtt:// or mqtts:// URL, got "http://broker:1883"'),
        ("broker:1883", 'expected an mqtt:// or mqtts:// URL, got "broker:1883"'),
        ("mqtt://", 'no host in "mqtt://"'),
        ("mqtt://broker:99999", 'invalid port in "mqtt://broker:99999"'),
        ("mqtt://broker:0", 'invalid port in "mqtt://broker:0"'),
        ("mqtt://u:p@broker", "put credentials in mqtt.username and mqtt.password, not in the url"),
        ("mqtt://broker/x", 'expected mqtt[s]://host[:port] with nothing after it, got "mqtt://broker/x"'),
    ],
)
def test_bad_mqtt_url(url: str, message: str) -> None:
    assert error(doc(mqtt={"url": url})) == f"test.toml: mqtt.url: {message}"


def test_mqtt_url_ports_and_tls() -> None:
    from smppengine.mqtt import parse_url  # what the MQTT link connects to

    m = parse_config(doc(mqtt={"url": "mqtt://broker"})).mqtt
    assert parse_url(m.url) == ("broker", 1883, False)
    m = parse_config(doc(mqtt={"url": "mqtts://broker.example", "ca_file": "/ca.pem"})).mqtt
    assert (*parse_url(m.url), m.ca_file) == ("broker.example", 8883, True, "/ca.pem")
    m = parse_config(doc(mqtt={"url": "mqtts://[::1]:9999/"})).mqtt
    assert parse_url(m.url) == ("::1", 9999, True)


@pytest.mark.parametrize(
    ("mqtt", "message"),
    [
        ({"protocol": 3}, "mqtt.protocol: expected 4 or 5, got 3"),
        ({"protocol": "5"}, 'mqtt.protocol: expected 4 or 5, got "5"'),
        ({"ca_file": "/ca.pem"}, "mqtt.ca_file: only used with an mqtts:// url"),
        ({"url": "mqtts://b", "key_file": "k.pem"},
         "mqtt.key_file: set cert_file too (key_file is the key of the client certificate)"),
        ({"password": "pw"}, "mqtt.password: set username too"),
        ({"topic_prefix": "sms/#"},
         "mqtt.topic_prefix: expected a topic without wildcards or leading/trailing '/', got \"sms/#\""),
        ({"topic_prefix": ""}, "mqtt.topic_prefix: must not be empty"),
        ({"share_group": "a/b"}, "mqtt.share_group: must not contain '/', '+' or '#', got \"a/b\""),
        ({"session_expiry_s": 0}, "mqtt.session_expiry_s: expected an integer 1..4294967295, got 0"),
        ({"receive_maximum": 0}, "mqtt.receive_maximum: expected an integer 1..65535, got 0"),
        ({"receive_maximum": 65536}, "mqtt.receive_maximum: expected an integer 1..65535, got 65536"),
        ({"receive_maximum": "many"}, 'mqtt.receive_maximum: expected an integer 1..65535, got "many"'),
    ],
)
def test_mqtt_errors(mqtt: dict[str, Any], message: str) -> None:
    assert error(doc(mqtt=mqtt)) == f"test.toml: {message}"


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"engine": {"default_ttl": 0}}, "engine.default_ttl: expected a positive integer, got 0"),
        ({"engine": {"instance": "gw/1"}},
         'engine.instance: expected 1-64 characters of A-Z a-z 0-9 . _ -, got "gw/1"'),
        ({"engine": {"store": ""}}, "engine.store: must not be empty"),
        ({"log": {"level": "verbose"}},
         'log.level: expected "debug", "info", "warning" or "error", got "verbose"'),
        ({"log": {"format": "text"}}, 'log.format: expected "auto", "json" or "console", got "text"'),
        ({"retry": {"max_attempts": 0}}, "retry.max_attempts: expected a positive integer, got 0"),
        ({"retry": {"backoff_initial": 0}}, "retry.backoff_initial: expected a positive number, got 0"),
        ({"retry": {"backoff_initial": 10, "backoff_max": 5}},
         "retry.backoff_max: must be at least backoff_initial (10), got 5"),
        ({"http": {"listen": "9180"}},
         'http.listen: expected "" or "host:port" (port 1..65535), got "9180"'),
        ({"http": {"listen": "0.0.0.0:0"}},
         'http.listen: expected "" or "host:port" (port 1..65535), got "0.0.0.0:0"'),
        ({"http": {"listen": "::1:9180"}},
         'http.listen: expected "" or "host:port" (IPv6 as "[::1]:9180"), got "::1:9180"'),
    ],
)
def test_section_errors(sections: dict[str, Any], message: str) -> None:
    assert error(doc(**sections)) == f"test.toml: {message}"


def test_http_listen() -> None:
    assert parse_config(doc(http={"listen": ""})).http.address is None
    assert parse_config(doc(http={"listen": "0.0.0.0:80"})).http.address == ("0.0.0.0", 80)
    assert parse_config(doc(http={"listen": "[::1]:9180"})).http.address == ("::1", 9180)


def test_error_classes_resolved() -> None:
    classes = {"0x58": "throttle", "69": "transient", "ESME_RINVDSTADR": "permanent"}
    c = parse_config(smsc(error_classes=classes))
    assert c.smsc[0].error_classes == {0x58: "throttle", 69: "transient", 0x0B: "permanent"}
    c = parse_config(smsc(error_classes={"0x400": "permanent", "rmsgqful": "transient"}))
    assert c.smsc[0].error_classes == {0x400: "permanent", 0x14: "transient"}


@pytest.mark.parametrize(
    ("classes", "message"),
    [
        ({"ESME_RTHROTLED": "throttle"},
         'smsc[0].error_classes.ESME_RTHROTLED: unknown command_status: use "0x58"-style hex, '
         'a decimal number or an ESME_* name (did you mean "ESME_RTHROTTLED"?)'),
        ({"0x58": "retry"},
         'smsc[0].error_classes.0x58: expected "transient", "permanent" or "throttle", got "retry"'),
        ({"0x58": "throttle", "ESME_RTHROTTLED": "transient"},
         'smsc[0].error_classes.ESME_RTHROTTLED: the same command_status as "0x58" (0x58)'),
        ({"0": "permanent"}, "smsc[0].error_classes.0: 0 (ESME_ROK) is success, not an error"),
        ({"9999999999": "permanent"},
         "smsc[0].error_classes.9999999999: command_status out of range 0..0xFFFFFFFF"),
    ],
)
def test_bad_error_classes(classes: dict[str, Any], message: str) -> None:
    assert error(smsc(error_classes=classes)) == f"test.toml: {message}"


def test_error_classes_not_a_table() -> None:
    assert error(smsc(error_classes="0x58")) == (
        'test.toml: smsc[0].error_classes: expected a table, got "0x58"'
    )


def test_duplicate_smsc_name() -> None:
    data = doc()
    data["smsc"][1]["name"] = "carrier-a"
    assert error(data) == 'test.toml: smsc[1].name: duplicate SMSC name "carrier-a" (also smsc[0])'


def test_at_least_one_smsc() -> None:
    assert error({}) == "test.toml: smsc: at least one [[smsc]] is required"
    assert error({"smsc": []}) == "test.toml: smsc: at least one [[smsc]] is required"


def test_toml_syntax_error(tmp_path: Path) -> None:
    p = write(tmp_path, "[engine]\ninstance gw1\n")
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert info.value.key == "(syntax)"
    assert str(info.value) == (
        f"{p}: (syntax): Expected '=' after a key in a key/value pair (at line 2, column 10)"
    )


def test_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert str(info.value) == f"{p}: (file): not found"


def test_not_utf8(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_bytes(b'[engine]\ninstance = "\xff"\n')
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert str(info.value) == f"{p}: (file): not valid UTF-8 (byte 21)"


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(info.value) == f"{tmp_path}: (file): is a directory"


# ---- the shipped files and helpers -----------------------------------------------------------------

def test_example_toml_loads_with_documented_values() -> None:
    c = load_config(EXAMPLE)
    assert c.path == str(EXAMPLE)
    assert c.engine.instance == "gw1" and c.engine.default_ttl == 86400
    assert c.engine.store == "/var/lib/smppengine/engine.db"
    assert c.mqtt.url == "mqtt://127.0.0.1:1883" and c.mqtt.topic_prefix == "sms"
    assert c.mqtt.share_group == "" and c.mqtt.protocol == 5 and c.mqtt.session_expiry_s == 86400
    assert c.mqtt.receive_maximum == 65535
    assert c.http.listen == "127.0.0.1:9180"
    assert (c.log.level, c.log.format) == ("info", "auto")
    assert (c.retry.max_attempts, c.retry.backoff_initial, c.retry.backoff_max) == (5, 1.0, 300.0)
    assert [s.name for s in c.smsc] == ["carrier-a", "carrier-b"]
    a, b = c.smsc
    assert (a.port, a.bind, a.binds, a.window, a.tps, a.concat, a.tls) == (
        2775, "transceiver", 1, 10, 50.0, "udh", False)
    assert (a.enquire_link_s, a.response_timeout_s, a.default_from, a.default_alphabet) == (
        30.0, 10.0, "ACME", "gsm")
    assert a.error_classes == {0x08: "transient", 0x45: "transient"}
    assert (b.bind, b.binds, b.window, b.tps, b.concat, b.tls) == (
        "transmitter_receiver", 2, 20, 100.0, "sar", True)
    assert [(r.prefix, r.smsc) for r in c.route] == [
        ("+44", ("carrier-a", "carrier-b")), ("", ("carrier-b",))]


def test_example_toml_shows_every_key() -> None:
    """example.toml must mention every key a file may set (the docs promise it covers them all)."""
    import tomllib

    data = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    defaults = Config()
    for section in ("engine", "mqtt", "http", "log", "retry", "compliance"):
        expected = {f.name for f in dataclasses.fields(getattr(defaults, section))} - {"embedded"}
        assert set(data[section]) == expected, section
    smsc_fields = {f.name for f in dataclasses.fields(load_config(EXAMPLE).smsc[0])}
    assert set(data["smsc"][0]) == smsc_fields


def test_demo_toml_equals_demo_config() -> None:
    from_file = load_config(DEMO)
    built = demo_config(smsc_port=2775, mqtt_url="mqtt://127.0.0.1:1883", store="smppengine-demo.db")
    assert dataclasses.replace(built, path=str(DEMO)) == from_file
    s = from_file.smsc[0]
    assert (s.name, s.host, s.port, s.system_id, s.password) == (
        "sim", "127.0.0.1", 2775, "smppengine", "secret")
    assert [(r.prefix, r.smsc) for r in from_file.route] == [("", ("sim",))]
    assert from_file.http.listen == "127.0.0.1:9180"


def test_demo_config_arguments() -> None:
    c = demo_config(smsc_port=12775, mqtt_url="mqtt://localhost:11883", store="/tmp/x.db")
    assert (c.smsc[0].port, c.mqtt.url, c.engine.store) == (12775, "mqtt://localhost:11883", "/tmp/x.db")
    with pytest.raises(ConfigError) as info:
        demo_config(smsc_port=2775, mqtt_url="tcp://x", store="x.db")
    assert str(info.value) == '<demo>: mqtt.url: expected an mqtt:// or mqtts:// URL, got "tcp://x"'


def test_redacted_hides_passwords() -> None:
    c = parse_config(doc(mqtt={"username": "u", "password": "mqtt-pw"}, route=[{"smsc": "carrier-a"}]))
    r = redacted(c)
    text = json.dumps(r)
    assert "mqtt-pw" not in text and '"pw"' not in text
    assert r["mqtt"]["password"] == "***"
    assert [s["password"] for s in r["smsc"]] == ["***", "***"]
    assert r["mqtt"]["username"] == "u" and r["smsc"][0]["system_id"] == "acme"
    assert r["route"] == [{"prefix": "", "smsc": ["carrier-a"]}]
    # the config itself is untouched, and repr never shows SMSC passwords
    assert c.mqtt.password == "mqtt-pw" and c.smsc[0].password == "pw"
    assert "pw'" not in repr(c.smsc[0])


def test_redacted_error_classes_are_json_ready() -> None:
    r = redacted(load_config(EXAMPLE))
    assert r["smsc"][0]["error_classes"] == {"0x8": "transient", "0x45": "transient"}
    json.dumps(r)
