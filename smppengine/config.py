"""Configuration: the shape of one TOML file (contract §3) and its validation.

Every key has a default except an SMSC's address and credentials. Every error
names the file, the key and the reason; the CLI exits with status 2.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn
from urllib.parse import urlsplit

from smppengine import tlvs as tlv_forms
from smppengine.addressing import SENDER_RULE, valid_sender
from smppengine.retry import RetryPolicy
from smppengine.smpp.status import STATUS_NAMES, status_code


class ConfigError(Exception):
    """A config problem: ``str(err)`` is ``"<file>: <key>: <reason>"``."""

    def __init__(self, file: str, key: str, reason: str) -> None:
        self.file = file
        self.key = key
        self.reason = reason
        super().__init__(f"{file}: {key}: {reason}")


@dataclass(frozen=True)
class EngineConfig:
    instance: str = "gw1"
    store: str = "smppengine.db"
    default_ttl: int = 86400
    # several instances on one PostgreSQL store (docs/scaling.md):
    instances: int = 1        # instances binding the same SMSC accounts: each uses tps / instances
    lease_s: float = 30.0     # an instance silent this long is dead: others take its messages over


@dataclass(frozen=True)
class MqttConfig:
    url: str = "mqtt://127.0.0.1:1883"
    topic_prefix: str = "sms"
    share_group: str = ""
    username: str = ""
    password: str = ""
    client_id: str = ""          # default: "smppengine-{instance}"
    ca_file: str = ""            # mqtts:// only
    cert_file: str = ""          # client certificate (mqtts://)
    key_file: str = ""
    protocol: int = 5            # 5 or 4 (= 3.1.1)
    session_expiry_s: int = 86400
    receive_maximum: int = 65535  # MQTT 5 Receive Maximum announced in CONNECT: requests in flight to us
    embedded: bool = False       # set by `run` without --config: start a private broker


@dataclass(frozen=True)
class HttpConfig:
    listen: str = "127.0.0.1:9180"   # "" turns it off

    @property
    def address(self) -> tuple[str, int] | None:
        """``(host, port)`` to bind, or None when ``listen`` is "" (HTTP off)."""
        if not self.listen:
            return None
        host, _, port = self.listen.rpartition(":")
        return host.removeprefix("[").removesuffix("]"), int(port)


@dataclass(frozen=True)
class LogConfig:
    level: str = "info"               # debug, info, warning, error
    format: str = "auto"              # auto, json, console


# ``[retry]`` is the retry policy itself: built once, when the file is parsed (and again for a reloaded
# file), and handed to the dispatcher as it is.
RetryConfig = RetryPolicy


@dataclass(frozen=True)
class SmscConfig:
    name: str
    host: str
    port: int
    system_id: str
    password: str = field(repr=False)
    system_type: str = ""
    bind: str = "transceiver"          # or "transmitter_receiver"
    binds: int = 1
    window: int = 10
    tps: float = 50.0
    enquire_link_s: float = 30.0
    response_timeout_s: float = 10.0
    default_from: str = ""
    concat: str = "udh"                # udh, udh16, sar, payload
    tls: bool = False
    tls_ca_file: str = ""              # CA bundle to verify the SMSC's certificate ("" = the system's)
    tls_verify: bool = True            # false: encrypt without checking the certificate (test SMSCs only)
    default_alphabet: str = "gsm"      # decoding of data_coding 0 on MO: gsm, ascii, latin1
    # per-SMSC overrides of the error class table: command_status -> "transient" | "permanent"
    error_classes: dict[int, str] = field(default_factory=dict)
    senders: tuple[str, ...] = ()      # allowed sender IDs ("from"); () = any (docs/compliance.md)
    # TLVs sent on every submit_sm: tag key ("0x1402") -> value form (smppengine/tlvs.py)
    tlvs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RouteConfig:
    prefix: str                        # "" matches everything (default route)
    smsc: tuple[str, ...]
    senders: tuple[str, ...] = ()      # allowed sender IDs ("from"); () = any
    allow_opted_out: bool = False      # transactional traffic may reach opted-out numbers (docs/compliance.md)


@dataclass(frozen=True)
class ComplianceConfig:
    """Opt-out (STOP) handling; see smppengine/compliance.py and docs/compliance.md."""

    optout_keywords: tuple[str, ...] = ("stop", "stopall", "unsubscribe", "cancel", "end", "quit")
    optin_keywords: tuple[str, ...] = ("start", "unstop")
    optout_scope: str = "number"       # "number": the number the MO was sent to; "global": every sender
    confirm_stop: str = ""             # reply text to an opt-out keyword; "" = no reply
    confirm_start: str = ""            # reply text to an opt-in keyword; "" = no reply


@dataclass(frozen=True)
class Config:
    path: str = "<defaults>"
    engine: EngineConfig = field(default_factory=EngineConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    log: LogConfig = field(default_factory=LogConfig)
    retry: RetryConfig = field(default_factory=RetryConfig)
    smsc: tuple[SmscConfig, ...] = ()
    route: tuple[RouteConfig, ...] = ()
    compliance: ComplianceConfig = field(default_factory=ComplianceConfig)


# --------------------------------------------------------------------------------------------------
# Loading and validation
# --------------------------------------------------------------------------------------------------

BIND_MODES = ("transceiver", "transmitter_receiver")
CONCAT_MODES = ("udh", "udh16", "sar", "payload")
ALPHABETS = ("gsm", "ascii", "latin1")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("auto", "json", "console")
MQTT_PROTOCOLS = (4, 5)
ERROR_CLASSES = ("transient", "permanent", "throttle")

# SMPP 3.4 limits on the bind fields (C-Octet Strings: max length includes the NUL).
_MAX_SYSTEM_ID = 15
_MAX_PASSWORD = 8
_MAX_SYSTEM_TYPE = 12

# Keys a TOML file may set, per section (``mqtt.embedded`` is internal: set by `run` only).
_SECTION_KEYS: dict[str, tuple[str, ...]] = {
    "engine": ("instance", "store", "default_ttl", "instances", "lease_s"),
    "mqtt": tuple(f.name for f in dataclasses.fields(MqttConfig) if f.name != "embedded"),
    "http": ("listen",),
    "log": ("level", "format"),
    "retry": ("max_attempts", "backoff_initial", "backoff_max"),
    "compliance": tuple(f.name for f in dataclasses.fields(ComplianceConfig)),
}
_SMSC_KEYS = tuple(f.name for f in dataclasses.fields(SmscConfig))
_SMSC_REQUIRED = ("name", "host", "port", "system_id", "password")
_ROUTE_KEYS = ("prefix", "smsc", "senders", "allow_opted_out")
OPTOUT_SCOPES = ("number", "global")
_SECTIONS = (*_SECTION_KEYS, "smsc", "route")

_NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_PREFIX_RE = re.compile(r"\+?[0-9]{0,20}")

def _fail(file: str, key: str, reason: str) -> NoReturn:
    raise ConfigError(file, key, reason)


def _show(value: Any) -> str:
    """A value as it would appear in TOML, for error messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return str(value)


# Keys whose value is a secret: an error names the key and the value's kind, never the value (nor does a log).
_SECRET_NAMES = frozenset({"password", "passwd", "secret", "token", "api_key"})


def _is_secret(name: str) -> bool:
    return name in _SECRET_NAMES or name.endswith(("_password", "_secret", "_token"))


def _kind(value: Any) -> str:
    """What a value is, without the value (for secrets)."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return "a date/time"


def _url_shown(url: str) -> str:
    """A URL for an error message: the password in ``user:password@`` becomes ***."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, tail = rest.partition("/")
    userinfo, at, hostport = netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.split(':', 1)[0]}:***@{hostport}{slash}{tail}"


def _one_of(choices: tuple[Any, ...]) -> str:
    shown = [_show(c) for c in choices]
    return ", ".join(shown[:-1]) + " or " + shown[-1] if len(shown) > 1 else shown[0]


def _suggest(word: str, known: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


class _Table:
    """One TOML table under validation: typed getters that raise ConfigError naming the key."""

    def __init__(self, file: str, prefix: str, data: Any, known: tuple[str, ...]) -> None:
        self.file = file
        self.prefix = prefix
        if not isinstance(data, dict):
            _fail(file, prefix, f"expected a table, got {_show(data)}")
        self.data: dict[str, Any] = data
        for k in data:
            if k not in known:
                _fail(file, self.key(k), "unknown key" + _suggest(k, known))

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}"

    def fail(self, name: str, reason: str) -> NoReturn:
        _fail(self.file, self.key(name), reason)

    def raw(self, name: str, default: Any) -> Any:
        return self.data.get(name, default)

    def require(self, *names: str) -> None:
        for name in names:
            if name not in self.data:
                self.fail(name, "required key missing")

    def got(self, name: str, v: Any) -> str:
        """The value as an error shows it: only its kind for a secret (``password``...), never the value."""
        return _kind(v) if _is_secret(name) else _show(v)

    def get_str(self, name: str, default: str, *, nonempty: bool = False) -> str:
        v = self.data.get(name, default)
        if not isinstance(v, str):
            self.fail(name, f"expected a string, got {self.got(name, v)}")
        if nonempty and not v:
            self.fail(name, "must not be empty")
        return v

    def get_bool(self, name: str, default: bool) -> bool:
        v = self.data.get(name, default)
        if not isinstance(v, bool):
            self.fail(name, f"expected true or false, got {self.got(name, v)}")
        return v

    def get_int(self, name: str, default: int, *, lo: int = 1, hi: int | None = None, what: str = "") -> int:
        v = self.data.get(name, default)
        ok = isinstance(v, int) and not isinstance(v, bool) and v >= lo and (hi is None or v <= hi)
        if not ok:
            if not what:
                what = "a positive integer" if lo == 1 and hi is None else f"an integer {lo}..{hi}"
            self.fail(name, f"expected {what}, got {self.got(name, v)}")
        return int(v)

    def get_number(self, name: str, default: float) -> float:
        """A finite number > 0; TOML integers are accepted, booleans are not."""
        v = self.data.get(name, default)
        ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v > 0
        if not ok:
            self.fail(name, f"expected a positive number, got {self.got(name, v)}")
        return float(v)

    def get_choice(self, name: str, default: Any, choices: tuple[Any, ...]) -> Any:
        v = self.data.get(name, default)
        if isinstance(v, bool) or v not in choices:
            self.fail(name, f"expected {_one_of(choices)}, got {self.got(name, v)}")
        return v


def _check_host_port(t: _Table, name: str, value: str) -> None:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        t.fail(name, f'expected "" or "host:port" (port 1..65535), got {_show(value)}')
    if host.startswith("[") != host.endswith("]") or (":" in host and not host.startswith("[")):
        t.fail(name, f'expected "" or "host:port" (IPv6 as "[::1]:9180"), got {_show(value)}')


def _parse_engine(file: str, data: Any) -> EngineConfig:
    t = _Table(file, "engine", data, _SECTION_KEYS["engine"])
    d = EngineConfig()
    instance = t.get_str("instance", d.instance)
    if not _NAME_RE.fullmatch(instance):
        t.fail("instance", f"expected 1-64 characters of A-Z a-z 0-9 . _ -, got {_show(instance)}")
    lease_s = t.get_number("lease_s", d.lease_s)
    if lease_s < 1.0:
        t.fail("lease_s", f"expected at least 1 (seconds), got {lease_s:g}")
    return EngineConfig(
        instance=instance,
        store=t.get_str("store", d.store, nonempty=True),
        default_ttl=t.get_int("default_ttl", d.default_ttl),
        instances=t.get_int("instances", d.instances, lo=1, hi=1000, what="an integer 1..1000"),
        lease_s=lease_s,
    )


def _parse_mqtt(file: str, data: Any) -> MqttConfig:
    t = _Table(file, "mqtt", data, _SECTION_KEYS["mqtt"])
    d = MqttConfig()
    url = t.get_str("url", d.url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        t.fail("url", f"invalid port in {_show(_url_shown(url))}")
    if parts.scheme not in ("mqtt", "mqtts"):
        t.fail("url", f"expected an mqtt:// or mqtts:// URL, got {_show(_url_shown(url))}")
    if parts.username is not None or parts.password is not None:
        t.fail("url", "put credentials in mqtt.username and mqtt.password, not in the url")
    if not parts.hostname:
        t.fail("url", f"no host in {_show(_url_shown(url))}")
    if port == 0:
        t.fail("url", f"invalid port in {_show(_url_shown(url))}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        t.fail("url", f"expected mqtt[s]://host[:port] with nothing after it, got {_show(_url_shown(url))}")

    prefix = t.get_str("topic_prefix", d.topic_prefix, nonempty=True)
    if any(c in prefix for c in "+#\0") or prefix.startswith("/") or prefix.endswith("/"):
        t.fail("topic_prefix",
               f"expected a topic without wildcards or leading/trailing '/', got {_show(prefix)}")
    share_group = t.get_str("share_group", d.share_group)
    if any(c in share_group for c in "/+#\0"):
        t.fail("share_group", f"must not contain '/', '+' or '#', got {_show(share_group)}")

    tls = parts.scheme == "mqtts"
    files = {k: t.get_str(k, "") for k in ("ca_file", "cert_file", "key_file")}
    for k, v in files.items():
        if v and not tls:
            t.fail(k, "only used with an mqtts:// url")
    if files["key_file"] and not files["cert_file"]:
        t.fail("key_file", "set cert_file too (key_file is the key of the client certificate)")
    username = t.get_str("username", d.username)
    password = t.get_str("password", d.password)
    if password and not username:
        t.fail("password", "set username too")

    return MqttConfig(
        url=url,
        topic_prefix=prefix,
        share_group=share_group,
        username=username,
        password=password,
        client_id=t.get_str("client_id", d.client_id),
        ca_file=files["ca_file"],
        cert_file=files["cert_file"],
        key_file=files["key_file"],
        protocol=t.get_choice("protocol", d.protocol, MQTT_PROTOCOLS),
        session_expiry_s=t.get_int("session_expiry_s", d.session_expiry_s, lo=1, hi=0xFFFFFFFF),
        receive_maximum=t.get_int("receive_maximum", d.receive_maximum, lo=1, hi=65535),
    )


def _parse_http(file: str, data: Any) -> HttpConfig:
    t = _Table(file, "http", data, _SECTION_KEYS["http"])
    listen = t.get_str("listen", HttpConfig().listen)
    if listen:
        _check_host_port(t, "listen", listen)
    return HttpConfig(listen=listen)


def _parse_log(file: str, data: Any) -> LogConfig:
    t = _Table(file, "log", data, _SECTION_KEYS["log"])
    d = LogConfig()
    return LogConfig(
        level=t.get_choice("level", d.level, LOG_LEVELS),
        format=t.get_choice("format", d.format, LOG_FORMATS),
    )


def _parse_retry(file: str, data: Any) -> RetryConfig:
    t = _Table(file, "retry", data, _SECTION_KEYS["retry"])
    d = RetryConfig()
    initial = t.get_number("backoff_initial", d.backoff_initial)
    maximum = t.get_number("backoff_max", d.backoff_max)
    if initial > maximum:
        t.fail("backoff_max", f"must be at least backoff_initial ({initial:g}), got {maximum:g}")
    return RetryConfig(
        max_attempts=t.get_int("max_attempts", d.max_attempts),
        backoff_initial=initial,
        backoff_max=maximum,
    )


def _parse_error_classes(t: _Table, data: Any) -> dict[int, str]:
    names = tuple(STATUS_NAMES.values())
    out: dict[int, str] = {}
    seen: dict[int, str] = {}
    for k, v in data.items():
        key = t.key(f"error_classes.{k}")
        if re.fullmatch(r"\s*[0-9]+\s*", k) and int(k) > 0xFFFFFFFF:
            _fail(t.file, key, "command_status out of range 0..0xFFFFFFFF")
        try:
            code = status_code(k)
        except ValueError:
            _fail(t.file, key, 'unknown command_status: use "0x58"-style hex, a decimal number or an '
                  "ESME_* name" + _suggest(k.strip().upper(), names))
        if code == 0:
            _fail(t.file, key, "0 (ESME_ROK) is success, not an error")
        if code in seen:
            _fail(t.file, key, f"the same command_status as {_show(seen[code])} (0x{code:X})")
        if not isinstance(v, str) or v not in ERROR_CLASSES:
            _fail(t.file, key, f"expected {_one_of(ERROR_CLASSES)}, got {_show(v)}")
        seen[code] = k
        out[code] = v
    return out


def _parse_smsc(file: str, index: int, data: Any) -> SmscConfig:
    t = _Table(file, f"smsc[{index}]", data, _SMSC_KEYS)
    t.require(*_SMSC_REQUIRED)
    name = t.get_str("name", "")
    if not _NAME_RE.fullmatch(name):
        t.fail("name", f"expected 1-64 characters of A-Z a-z 0-9 . _ -, got {_show(name)}")
    system_id = t.get_str("system_id", "", nonempty=True)
    if len(system_id) > _MAX_SYSTEM_ID:
        t.fail("system_id", f"at most {_MAX_SYSTEM_ID} characters (SMPP 3.4), got {len(system_id)}")
    password = t.get_str("password", "")
    if len(password) > _MAX_PASSWORD:
        t.fail("password", f"at most {_MAX_PASSWORD} characters (SMPP 3.4), got {len(password)}")
    system_type = t.get_str("system_type", "")
    if len(system_type) > _MAX_SYSTEM_TYPE:
        t.fail("system_type", f"at most {_MAX_SYSTEM_TYPE} characters (SMPP 3.4), got {len(system_type)}")
    default_from = t.get_str("default_from", "")
    if default_from and not valid_sender(default_from):
        t.fail("default_from", f"expected {SENDER_RULE}, got {_show(default_from)}")
    error_classes = t.raw("error_classes", {})
    if not isinstance(error_classes, dict):
        t.fail("error_classes", f"expected a table, got {_show(error_classes)}")
    d = SmscConfig(name="", host="", port=1, system_id="", password="")
    return SmscConfig(
        name=name,
        host=t.get_str("host", "", nonempty=True),
        port=t.get_int("port", 0, lo=1, hi=65535, what="a port number 1..65535"),
        system_id=system_id,
        password=password,
        system_type=system_type,
        bind=t.get_choice("bind", d.bind, BIND_MODES),
        binds=t.get_int("binds", d.binds),
        window=t.get_int("window", d.window),
        tps=t.get_number("tps", d.tps),
        enquire_link_s=t.get_number("enquire_link_s", d.enquire_link_s),
        response_timeout_s=t.get_number("response_timeout_s", d.response_timeout_s),
        default_from=default_from,
        concat=t.get_choice("concat", d.concat, CONCAT_MODES),
        tls=t.get_bool("tls", d.tls),
        tls_ca_file=t.get_str("tls_ca_file", d.tls_ca_file),
        tls_verify=t.get_bool("tls_verify", d.tls_verify),
        default_alphabet=t.get_choice("default_alphabet", d.default_alphabet, ALPHABETS),
        error_classes=_parse_error_classes(t, error_classes),
        senders=_parse_senders(t),
        tlvs=_parse_tlvs(t),
    )


def _parse_tlvs(t: _Table) -> dict[str, Any]:
    data = t.raw("tlvs", {})
    if not isinstance(data, dict):
        t.fail("tlvs", f'expected a table of tag = value, e.g. tlvs = {{ "0x1402" = "..." }}, got {_show(data)}')
    out: dict[str, Any] = {}
    for key, value in data.items():
        where = t.key(f"tlvs.{key}")
        try:
            tag = tlv_forms.parse_tag(key)
            if tag in tlv_forms.MANAGED:
                raise ValueError(f"set by the engine itself ({tlv_forms.MANAGED[tag]}), not allowed here")
            tlv_forms.parse_value(value)
        except ValueError as exc:
            _fail(t.file, where, str(exc))
        name = tlv_forms.tag_key(tag)
        if name in out:
            _fail(t.file, where, f"the same tag as another key ({name})")
        out[name] = value
    return out


def _parse_route(file: str, index: int, data: Any, known: tuple[str, ...]) -> RouteConfig:
    t = _Table(file, f"route[{index}]", data, _ROUTE_KEYS)
    t.require("smsc")
    prefix = t.get_str("prefix", "")
    if not _PREFIX_RE.fullmatch(prefix):
        t.fail("prefix", f"expected an optional '+' then up to 20 digits, or \"\", got {_show(prefix)}")
    v = t.raw("smsc", None)
    names = [v] if isinstance(v, str) else v
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        t.fail("smsc", f"expected a non-empty array of SMSC names, got {_show(v)}")
    for n in names:
        if n not in known:
            t.fail("smsc", f"unknown SMSC {_show(n)} (known: {', '.join(known)})")
        if names.count(n) > 1:
            t.fail("smsc", f"SMSC {_show(n)} listed twice")
    return RouteConfig(prefix=prefix, smsc=tuple(names), senders=_parse_senders(t),
                       allow_opted_out=t.get_bool("allow_opted_out", False))


def _parse_senders(t: _Table) -> tuple[str, ...]:
    """``senders = [...]``: sender IDs a request may use ("from", or the SMSC's default_from)."""
    v = t.raw("senders", [])
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        t.fail("senders", f"expected an array of sender IDs, got {_show(v)}")
    for s in v:
        if not valid_sender(s):
            t.fail("senders", f"{_show(s)} is not a valid sender: {SENDER_RULE}")
    return tuple(v)


def _parse_keywords(t: _Table, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    v = t.raw(name, list(default))
    if not isinstance(v, list) or not all(isinstance(k, str) and k.strip() for k in v):
        t.fail(name, f"expected an array of non-empty strings, got {_show(v)}")
    return tuple(dict.fromkeys(k.strip().casefold() for k in v))


def _parse_compliance(file: str, data: Any) -> ComplianceConfig:
    t = _Table(file, "compliance", data, _SECTION_KEYS["compliance"])
    d = ComplianceConfig()
    optout = _parse_keywords(t, "optout_keywords", d.optout_keywords)
    optin = _parse_keywords(t, "optin_keywords", d.optin_keywords)
    both = [k for k in optin if k in optout]
    if both:
        t.fail("optin_keywords", f"{_show(both[0])} is also an opt-out keyword")
    return ComplianceConfig(
        optout_keywords=optout, optin_keywords=optin,
        optout_scope=t.get_choice("optout_scope", d.optout_scope, OPTOUT_SCOPES),
        confirm_stop=t.get_str("confirm_stop", d.confirm_stop),
        confirm_start=t.get_str("confirm_start", d.confirm_start),
    )


def _array_of_tables(file: str, key: str, data: Any) -> list[Any]:
    if not isinstance(data, list):
        _fail(file, key, f"expected an array of tables ([[{key}]]), got {_show(data)}")
    return data


def parse_config(data: Mapping[str, Any], path: str = "<config>") -> Config:
    """Validate an already-parsed TOML document (e.g. ``tomllib.loads``) into a Config.

    Raises ConfigError(path, key, reason) on the first problem found.
    """
    file = str(path)
    for k in data:
        if k not in _SECTIONS:
            _fail(file, k, "unknown section" + _suggest(k, _SECTIONS))
    engine = _parse_engine(file, data.get("engine", {}))
    mqtt = _parse_mqtt(file, data.get("mqtt", {}))
    http = _parse_http(file, data.get("http", {}))
    log = _parse_log(file, data.get("log", {}))
    retry = _parse_retry(file, data.get("retry", {}))
    compliance = _parse_compliance(file, data.get("compliance", {}))

    smsc_tables = _array_of_tables(file, "smsc", data.get("smsc", []))
    if not smsc_tables:
        _fail(file, "smsc", "at least one [[smsc]] is required")
    smscs: list[SmscConfig] = []
    for i, table in enumerate(smsc_tables):
        s = _parse_smsc(file, i, table)
        for j, other in enumerate(smscs):
            if other.name == s.name:
                _fail(file, f"smsc[{i}].name", f"duplicate SMSC name {_show(s.name)} (also smsc[{j}])")
        smscs.append(s)
    known = tuple(s.name for s in smscs)

    routes: list[RouteConfig] = []
    for i, table in enumerate(_array_of_tables(file, "route", data.get("route", []))):
        r = _parse_route(file, i, table, known)
        for j, prior in enumerate(routes):
            if prior.prefix == r.prefix:
                _fail(file, f"route[{i}].prefix", f"duplicate prefix {_show(r.prefix)} (also route[{j}])")
        routes.append(r)
    if not routes:
        # No [[route]] at all: everything goes to the SMSCs in file order (first one, failover to the next).
        routes.append(RouteConfig(prefix="", smsc=known))

    return Config(
        path=file, engine=engine, mqtt=mqtt, http=http, log=log, retry=retry,
        smsc=tuple(smscs), route=tuple(routes), compliance=compliance,
    )


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate one TOML config file. Raises ConfigError(file, key, reason)."""
    file = os.fspath(path)
    try:
        with open(file, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        _fail(file, "(file)", "not found")
    except IsADirectoryError:
        _fail(file, "(file)", "is a directory")
    except OSError as e:
        _fail(file, "(file)", f"cannot read: {e.strerror or e}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        _fail(file, "(file)", f"not valid UTF-8 (byte {e.start})")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        _fail(file, "(syntax)", str(e))
    return parse_config(data, file)


def demo_config(*, smsc_port: int, mqtt_url: str, store: str) -> Config:
    """The zero-setup config of `smppengine run` without --config (see config/demo.toml)."""
    return parse_config(
        {
            "engine": {"store": store},
            "mqtt": {"url": mqtt_url},
            "http": {"listen": "127.0.0.1:9180"},
            "smsc": [{
                "name": "sim", "host": "127.0.0.1", "port": smsc_port,
                "system_id": "smppengine", "password": "secret",
            }],
            "route": [{"prefix": "", "smsc": ["sim"]}],
        },
        "<demo>",
    )


def redacted(config: Config) -> dict[str, Any]:
    """The config as a JSON-ready dict with every non-empty password replaced by "***" (for logging)."""
    out = dataclasses.asdict(config)
    if out["mqtt"]["password"]:
        out["mqtt"]["password"] = "***"
    for s in out["smsc"]:
        if s["password"]:
            s["password"] = "***"
        s["error_classes"] = {f"0x{code:X}": cls for code, cls in s["error_classes"].items()}
    out["smsc"] = list(out["smsc"])
    out["route"] = [{"prefix": r["prefix"], "smsc": list(r["smsc"])} for r in out["route"]]
    return out
