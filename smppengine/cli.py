"""`smppengine` command line: run, sim, send, check-config, parts, trace, stats.

argparse (stdlib) is enough for a handful of sub-commands; no CLI dependency.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

import orjson
import structlog

from . import logs, text
from .config import Config, ConfigError, demo_config, load_config
from .locate import DEFAULT_PREFIX, DEFAULT_URL, DEMO_STORE, NotFound

if TYPE_CHECKING:                # imported where used: `smppengine send` etc. do not load the engine
    from .engine import Engine
    from .locate import DemoState
    from .sdnotify import Notifier

log = structlog.get_logger("smppengine.cli")

EXIT_CONFIG = 2
EXIT_NO_ENGINE = 3          # `send`: no engine answered
EXIT_INSTALL = 4            # `run`: the installed MQTT client is not the tested one (a restart cannot fix it)
ENGINE_ANSWER_S = 5.0
DEMO_SMSC_PORT = 2775
DEMO_CONTROL_PORT = 8775
DEMO_MQTT_PORT = 1883
DEMO_HTTP_PORT = 9180
GC_GEN0_THRESHOLD = 200_000  # allocations between young collections (CPython: 700)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="smppengine", description="SMPP carrier-connection engine (MQTT in, SMPP out).")
    sub = p.add_subparsers(dest="cmd", required=True)

    run = sub.add_parser("run", help="run the engine (no --config: built-in simulator + embedded broker)")
    run.add_argument("--config", help="TOML config file (docs/configuration.md)")
    run.add_argument("--store", help="override engine.store (demo default: ./smppengine-demo.db)")

    sim = sub.add_parser("sim", help="run the built-in SMSC simulator (docs/simulator.md)")
    sim.add_argument("--host", default="127.0.0.1", help="address to listen on for SMPP (default: %(default)s)")
    sim.add_argument("--port", type=int, default=DEMO_SMSC_PORT, help="SMPP port (default: %(default)s)")
    sim.add_argument("--control-port", type=int, default=DEMO_CONTROL_PORT,
                     help="HTTP control API on 127.0.0.1 (default: %(default)s; 0 = off)")
    sim.add_argument("--system-id", default=None, help="the only system_id a bind may use (default: any)")
    sim.add_argument("--password", default=None, help="the password that goes with --system-id (default: empty)")
    sim.add_argument("--id-format", choices=["hex", "dec"], default="hex",
                     help="message ids in submit_sm_resp: hex or decimal (default: %(default)s)")
    sim.add_argument("--receipt-id-format", choices=["same", "hex", "dec"], default="same",
                     help="the id in delivery receipts: as in the resp, or always hex / decimal (default: %(default)s)")
    sim.add_argument("--receipt-delay", type=float, default=0.0, metavar="SECONDS",
                     help="delay between a submit and its delivery receipt (default: %(default)s)")
    sim.add_argument("--receipt-stat", default="DELIVRD",
                     help="stat of every receipt: DELIVRD, UNDELIV, REJECTD, EXPIRED ... (default: %(default)s)")
    sim.add_argument("--tps-limit", type=float, default=None, metavar="TPS",
                     help="answer ESME_RTHROTTLED above this many submits per second (default: no limit)")
    sim.add_argument("--tps-jitter-ms", type=float, default=0.0, metavar="MS",
                     help="with --tps-limit: count over 1 s minus this, allowing for jitter (default: %(default)s)")
    sim.add_argument("--no-record", action="store_true", help="do not keep every submit in memory (benchmarks)")

    send = sub.add_parser("send", help="publish one request and follow its status events until final",
                          description="Publish one request and print its status events until a final one. "
                          "Run from the demo's directory it finds the running demo (smppengine-demo.json); "
                          "--url/--prefix or --config say otherwise.")
    send.add_argument("--url", help=f"broker URL (default: the demo running here, else {DEFAULT_URL})")
    send.add_argument("--prefix", help=f"topic prefix (default: the demo's, or the config's, else {DEFAULT_PREFIX})")
    send.add_argument("--config", help="take the broker URL, prefix and credentials from this config file")
    send.add_argument("--to", required=True, help="destination number")
    send.add_argument("--text", required=True, help="message text")
    send.add_argument("--from", dest="sender", help="sender ID")
    send.add_argument("--id", help="request id (default: a new cli-... id)")
    send.add_argument("--encoding", default="auto", help=f"{', '.join(text.ENCODINGS)} (default: %(default)s)")
    send.add_argument("--no-dlr", action="store_true", help="ask for no delivery receipt (ends at submitted)")
    send.add_argument("--engine-timeout", type=float, default=ENGINE_ANSWER_S, metavar="SECONDS",
                      help="give up when no engine answers (a queued event) within this time "
                           "(default: %(default)s)")
    send.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                      help="give up when no final state comes within this time (default: %(default)s)")

    chk = sub.add_parser("check-config", help="validate a config file and exit (status 2 when invalid)")
    chk.add_argument("path")

    parts = sub.add_parser("parts", help="how a text is encoded and how many parts it takes")
    parts.add_argument("text", nargs="?", help="the text (or give --binary)")
    parts.add_argument("--encoding", default="auto", choices=list(text.ENCODINGS))
    parts.add_argument("--concat", default="udh", choices=list(text.CONCAT_METHODS))
    parts.add_argument("--flash", action="store_true", help="message class 0: data_coding 0x10 / 0x18")
    parts.add_argument("--binary", metavar="HEX", help="8-bit data instead of a text (data_coding 4)")
    parts.add_argument("--udh", metavar="HEX", help="a UDH (length octet first) in front of --binary")
    parts.add_argument("--ports", metavar="SRC:DST", help="16-bit application ports (UDH IE 0x05) for --binary")
    parts.add_argument("--json", action="store_true")

    for name, helptext in (("trace", "the whole life of one message, from the store"),
                           ("stats", "queue depth by state and SMSC, and the last hour's outcomes")):
        c = sub.add_parser(name, help=helptext)
        if name == "trace":
            c.add_argument("id")
        c.add_argument("--config", help="config file (for engine.store)")
        c.add_argument("--store", help="store path or URL (overrides the config; default: the demo running "
                                        "here, else ./smppengine-demo.db or ./smppengine.db)")
        c.add_argument("--json", action="store_true")
    from .optout_cli import add_parser as add_optout_parser

    add_optout_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.cmd == "check-config":
            cfg = load_config(args.path)
            print(f"{args.path}: OK ({len(cfg.smsc)} SMSC, {_count(len(cfg.route), 'route')})")
            return 0
        if args.cmd == "parts":
            return _parts(args)
        if args.cmd == "run":
            return _run(args)
        if args.cmd == "sim":
            return _sim(args)
        if args.cmd == "send":
            return asyncio.run(_send(args))
        if args.cmd == "optout":
            from .optout_cli import run as run_optout

            return asyncio.run(run_optout(args))
        if args.cmd in ("trace", "stats"):
            return asyncio.run(_inspect(args))
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except NotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 1


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


# ---------------------------------------------------------------------- parts
def _parts(args: argparse.Namespace) -> int:
    if args.text == "":
        # the engine rejects a request with empty text ("text: expected a non-empty string"): 0 parts
        print("error: empty text: the engine rejects a request whose text is empty", file=sys.stderr)
        return 1
    try:
        if args.binary is not None:
            if args.text is not None or args.flash:
                raise ValueError("--binary goes without a text and without --flash")
            ports = None
            if args.ports is not None:
                src, _, dst = args.ports.partition(":")
                if not (src.isdigit() and dst.isdigit() and int(src) <= 0xFFFF and int(dst) <= 0xFFFF):
                    raise ValueError(f"--ports: expected SRC:DST with numbers 0-65535, got {args.ports!r}")
                ports = (int(src), int(dst))
            try:
                data, udh = bytes.fromhex(args.binary), bytes.fromhex(args.udh or "")
            except ValueError:
                raise ValueError("--binary and --udh take hex digits, two per octet") from None
            info = text.binary_parts_info(data, udh, ports, args.concat)
        else:
            if args.text is None:
                raise ValueError("give a text, or --binary HEX")
            if args.udh is not None or args.ports is not None:
                raise ValueError("--udh and --ports go with --binary")
            info = text.parts_info(args.text, args.encoding, args.concat)
            if args.flash:
                info = dataclasses.replace(info, data_coding=text.flash_data_coding(info.encoding))
    except ValueError as exc:           # TextEncodingError, a malformed UDH, latin1 with --flash...
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(orjson.dumps(dataclasses.asdict(info)).decode())
    else:
        print(text.format_parts_info(info))
    return 0


# ---------------------------------------------------------------------- run
def _event_loop_run(coro: Coroutine[Any, Any, None]) -> None:
    """uvloop when installed (measured: fewer µs per message in the MQTT and SMPP I/O), else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    else:
        return uvloop.run(coro)


def _tune_gc() -> None:
    """The engine allocates a few dozen short-lived objects per message (dicts, futures, PDUs), almost none
    in reference cycles; CPython's default collector thresholds (700, 10, 10) then run a young collection
    every few messages and re-scan everything alive. Objects from the start (modules, config) are frozen out
    of the scans and the young generation made larger: measured in bench/e2e.py (docs/performance.md)."""
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 20, 20)


def _install_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


def _run(args: argparse.Namespace) -> int:
    if args.config:
        def load() -> Config:      # at start, and again on every SIGHUP
            cfg = load_config(args.config)
            if args.store:
                cfg = dataclasses.replace(cfg, engine=dataclasses.replace(cfg.engine, store=args.store))
            return cfg

        cfg = load()
        logs.configure(cfg.log.level, cfg.log.format)
        from .mqtt.paho_internals import InternalsChanged

        try:
            _event_loop_run(_run_engine(cfg, load))
        except InternalsChanged as exc:
            log.error("mqtt_client_unsupported", error=str(exc))
            print(f"error: {exc}. Reinstall the tested range: pip install 'paho-mqtt>=2.2.0,<2.3' "
                  "'aiomqtt>=2.5.1,<2.6'", file=sys.stderr)
            return EXIT_INSTALL
    else:
        logs.configure("info", "auto")
        from .locate import is_url

        store = args.store or DEMO_STORE
        try:
            _event_loop_run(_run_demo(store if is_url(store) else os.path.abspath(store)))
        except Exception as exc:         # what the demo started is stopped by now (see _run_demo)
            log.error("demo_failed", error=repr(exc), exc_info=True)
            print(f"error: the demo stopped: {type(exc).__name__}: {exc} (store {store})", file=sys.stderr)
            return 1
    return 0


async def _run_engine(cfg: Config, load: Callable[[], Config] | None = None) -> None:
    """Run until SIGTERM/SIGINT; SIGHUP reloads the config through ``load``. Talks sd_notify when under systemd."""
    from .engine import Engine
    from .sdnotify import Notifier, keepalive

    stop = asyncio.Event()
    _install_signals(stop)
    hup = asyncio.Event()
    if load is not None:
        # before the start: a SIGHUP while the engine starts (binds up, broker not yet) must not kill the
        # process (the default action); it is applied once the start is done
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, hup.set)
    notifier = Notifier()
    engine = Engine(cfg)
    if not await _start_unless_stopped(engine, stop):
        return
    _tune_gc()
    notifier.ready(engine.status_line())
    helpers = [asyncio.create_task(keepalive(notifier, engine.status_line), name="sd-keepalive")]
    if load is not None:
        helpers.append(asyncio.create_task(_reload_on_hup(engine, load, hup, notifier), name="reload"))
    try:
        await stop.wait()
    finally:
        notifier.stopping()
        for t in helpers[1:]:    # no reload during the stop
            t.cancel()
        await engine.stop()      # the watchdog keeps being pinged while in-flight submits finish
        helpers[0].cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        notifier.close()


async def _start_unless_stopped(engine: Engine, stop: asyncio.Event) -> bool:
    """Start the engine; a SIGTERM/SIGINT while it starts (e.g. the broker is not reachable yet: the start
    waits for it) stops it instead of being ignored. False when stopped before the start completed."""
    starting = asyncio.ensure_future(engine.start())
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if starting.done():
        starting.result()          # a failed start raises here
        return True
    starting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await starting
    log.info("stopped_during_start")
    await engine.stop()
    return False


async def _reload_on_hup(engine: Engine, load: Callable[[], Config], hup: asyncio.Event,
                         notifier: Notifier) -> None:
    while True:
        await hup.wait()
        hup.clear()
        notifier.send("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            new = load()
        except ConfigError as exc:
            # the same text as `config error: ...` at start; the running config stays
            log.error("config_reload_refused", error=str(exc))
        else:
            # the new log settings first: every line from here on (config_reloaded, the session_closed of a
            # rebound SMSC ...) in the new format, one format at a time
            logs.configure(new.log.level, new.log.format)
            try:
                await engine.reload(new)
            except Exception as exc:
                log.error("config_reload_failed", error=repr(exc))
        notifier.ready(engine.status_line())


async def _run_demo(store: str) -> None:
    """Zero-setup: the built-in simulator and a private mosquitto, then the engine on them.

    Whatever way the demo ends (SIGTERM, SIGINT, an error), what it started is stopped and its files removed
    (the broker's temp directory, smppengine-demo.json); the mosquitto child also dies by PR_SET_PDEATHSIG
    when the demo is killed outright. SIGHUP (a closed terminal) does not stop it: there is no file to reload."""
    from .broker import InProcessBroker, Mosquitto, free_port, mosquitto_available, remove_stale_dirs
    from .engine import Engine
    from .locate import DemoState, remove_state, write_state
    from .simulator import Simulator, start_control

    stop = asyncio.Event()
    _install_signals(stop)
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, _demo_sighup)
    remove_stale_dirs()
    async with contextlib.AsyncExitStack() as cleanup:      # unwound in reverse: engine, broker, simulator
        sim = Simulator("127.0.0.1", free_port(DEMO_SMSC_PORT), credentials={"smppengine": "secret"},
                        receipt_delay=0.5)
        await sim.start()
        cleanup.push_async_callback(sim.stop)
        control = await start_control(sim, "127.0.0.1", free_port(DEMO_CONTROL_PORT))
        cleanup.callback(control.close)
        broker: Mosquitto | InProcessBroker
        if mosquitto_available():
            broker = Mosquitto(free_port(DEMO_MQTT_PORT))
        else:
            log.warning("embedded_broker_fallback", reason="mosquitto not installed; using amqtt in-process "
                        "(MQTT 3.1.1, nothing queued while the engine is down) - install mosquitto for the real thing")
            broker = InProcessBroker(free_port(DEMO_MQTT_PORT))
        cleanup.push_async_callback(broker.stop)        # also when its start fails half-way
        await broker.start()
        cfg = demo_config(smsc_port=sim.port, mqtt_url=broker.url, store=store)
        mqtt_cfg = cfg.mqtt if isinstance(broker, Mosquitto) else dataclasses.replace(cfg.mqtt, protocol=4)
        http = dataclasses.replace(cfg.http, listen=f"127.0.0.1:{free_port(DEMO_HTTP_PORT)}")
        cfg = dataclasses.replace(cfg, http=http, mqtt=mqtt_cfg)
        engine = Engine(cfg)
        try:
            started = await _start_unless_stopped(engine, stop)
        except BaseException:
            await engine.stop()
            raise
        if not started:
            return
        cleanup.push_async_callback(engine.stop)
        _tune_gc()
        ctl = control.sockets[0].getsockname()[1]
        http_host, http_port = engine.http_address or ("127.0.0.1", 0)
        state = DemoState(pid=os.getpid(), mqtt_url=broker.url, topic_prefix=cfg.mqtt.topic_prefix,
                          store=store, http=f"{http_host}:{http_port}",
                          smsc=f"127.0.0.1:{sim.port}", control=f"127.0.0.1:{ctl}")
        state_path = write_state(state)
        cleanup.callback(remove_state, state_path.absolute())
        try:
            print(_demo_banner(state, broker.port), file=sys.stderr, flush=True)
        except OSError:                  # the terminal closed already (EIO): the demo goes on without it
            logs.detach_terminal()
        await stop.wait()


def _demo_sighup() -> None:
    logs.detach_terminal()        # a closed terminal: further output goes nowhere instead of failing
    log.info("demo_sighup_ignored", reason="the demo has no config file to reload; it goes on "
             "(smppengine run --config FILE reloads FILE on SIGHUP)")


def _demo_banner(state: DemoState, mqtt_port: int) -> str:
    from .locate import STATE_FILE, shown

    p = state.topic_prefix

    def taken(port: int, wanted: int) -> str:
        return "" if port == wanted else f"  ({wanted} was taken)"

    smsc_port = int(state.smsc.rsplit(":", 1)[1])
    ctl_port = int(state.control.rsplit(":", 1)[1])
    http_port = int(state.http.rsplit(":", 1)[1])
    example = ('{"id": "order-1234-otp", "to": "+447700900123", "from": "ACME", '
               '"text": "Your code is 123456"}')
    return (
        f"\nsmppengine demo is running in {os.getcwd()}\n"
        f"  SMSC simulator   {state.smsc}{taken(smsc_port, DEMO_SMSC_PORT)}, control API "
        f"http://{state.control}/{taken(ctl_port, DEMO_CONTROL_PORT)}\n"
        f"  MQTT broker      {state.mqtt_url}{taken(mqtt_port, DEMO_MQTT_PORT)}, topic prefix {p}\n"
        f"  store            {shown(state.store)}\n"
        f"  metrics, health  http://{state.http}/metrics  http://{state.http}/healthz"
        f"{taken(http_port, DEMO_HTTP_PORT)}\n\n"
        f"  From this directory (the commands find the demo through ./{STATE_FILE}):\n"
        "    smppengine send --to +447700900123 --text 'Your code is 123456'\n"
        "    smppengine trace ID        smppengine stats        smppengine optout list\n\n"
        "  Or with mosquitto clients:\n"
        f"    mosquitto_sub -p {mqtt_port} -t '{p}/status/#' -v &\n"
        f"    mosquitto_pub -p {mqtt_port} -q 1 -t {p}/outbound -m '{example}'\n\n"
        "  Ctrl-C stops.\n"
    )


# ---------------------------------------------------------------------- sim
def _sim(args: argparse.Namespace) -> int:
    from .simulator import serve

    logs.configure("info", "auto")
    creds = {args.system_id: args.password or ""} if args.system_id else None

    async def go() -> None:
        task = asyncio.ensure_future(serve(
            args.host, args.port, "127.0.0.1", args.control_port or None, credentials=creds,
            id_format=args.id_format, receipt_id_format=args.receipt_id_format, receipt_delay=args.receipt_delay,
            receipt_stat=args.receipt_stat, tps_limit=args.tps_limit, record_submits=not args.no_record,
            tps_jitter=args.tps_jitter_ms / 1000.0))
        stop = asyncio.Event()
        _install_signals(stop)
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        stopper.cancel()

    asyncio.run(go())
    return 0


# ---------------------------------------------------------------------- send
FINAL = {"delivered", "undelivered", "expired", "rejected", "failed"}


@dataclasses.dataclass(frozen=True)
class _Target:
    url: str
    prefix: str
    origin: str                      # where url came from: "--url", "--config", "demo", "default"
    username: str = ""
    password: str = ""
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""


def _send_target(args: argparse.Namespace) -> _Target:
    """--url / --prefix win; then --config; then the demo running in this directory; then the defaults."""
    from .locate import running_demo

    if args.config:
        m = load_config(args.config).mqtt
        return _Target(args.url or m.url, args.prefix or m.topic_prefix, "--url" if args.url else "--config",
                       m.username, m.password, m.ca_file, m.cert_file, m.key_file)
    demo = running_demo()
    if demo is not None and (not args.url or args.url == demo.mqtt_url):
        return _Target(demo.mqtt_url, args.prefix or demo.topic_prefix, "--url" if args.url else "demo")
    return _Target(args.url or DEFAULT_URL, args.prefix or DEFAULT_PREFIX, "--url" if args.url else "default")


async def _send(args: argparse.Namespace) -> int:
    import aiomqtt

    from .locate import STATE_FILE, shown
    from .mqtt import parse_url

    target = _send_target(args)
    host, port, tls = parse_url(target.url)
    msg_id = args.id or f"cli-{uuid.uuid4().hex[:12]}"
    req: dict[str, Any] = {"id": msg_id, "to": args.to, "text": args.text, "encoding": args.encoding,
                           "dlr": not args.no_dlr}
    if args.sender:
        req["from"] = args.sender
    p = target.prefix
    tls_params = aiomqtt.TLSParameters(ca_certs=target.ca_file or None, certfile=target.cert_file or None,
                                       keyfile=target.key_file or None) if tls else None
    client = aiomqtt.Client(host, port, identifier=f"smppengine-send-{uuid.uuid4().hex[:8]}",
                            username=target.username or None, password=target.password or None,
                            tls_params=tls_params, timeout=10)
    loop = asyncio.get_running_loop()
    answered = False
    try:
        async with client:
            await client.subscribe(f"{p}/status/{msg_id}", qos=1)
            await client.publish(f"{p}/outbound", orjson.dumps(req), qos=1)
            print(f"published {msg_id} to {shown(target.url)} {p}/outbound; following {p}/status/{msg_id}",
                  flush=True)
            started = loop.time()
            try:
                async with asyncio.timeout(min(args.engine_timeout, args.timeout)) as deadline:
                    async for m in client.messages:
                        if not answered:            # an engine took it: now up to --timeout for the final state
                            answered = True
                            deadline.reschedule(started + args.timeout)
                        payload = m.payload if isinstance(m.payload, bytes) else str(m.payload).encode()
                        event = orjson.loads(payload)
                        print(orjson.dumps(event).decode(), flush=True)
                        if event.get("state") in FINAL or (args.no_dlr and event.get("state") == "submitted"):
                            return 0 if event["state"] in ("delivered", "submitted") else 1
            except TimeoutError:
                if answered:
                    print(f"no final state within {args.timeout:g} s", file=sys.stderr)
                    return 1
    except aiomqtt.MqttError as exc:
        print(f"error: cannot talk to the broker at {shown(target.url)}: {exc}", file=sys.stderr)
        if target.origin == "default":
            print(f"(no demo is running in this directory: no live ./{STATE_FILE}; run this from the demo's "
                  "directory, or pass --url)", file=sys.stderr)
        return 1
    wait = min(args.engine_timeout, args.timeout)
    lines = [f"no `queued` event from an engine on {shown(target.url)}/{p}/outbound in {wait:g} s — "
             f"is the engine running on this broker with topic prefix {p}?"]
    if target.origin == "default":
        lines.append(f"(no demo is running in this directory: no live ./{STATE_FILE}; run this from the demo's "
                     "directory, or pass --url and --prefix)")
    if args.id:
        lines.append(f"(or the id {msg_id!r} was used before: a request whose id the engine knows is "
                     "acknowledged and ignored)")
    print("\n".join(lines), file=sys.stderr)
    return EXIT_NO_ENGINE


# ---------------------------------------------------------------------- trace / stats
async def _inspect(args: argparse.Namespace) -> int:
    from .locate import is_url, require_postgres_store, resolve_store, shown
    from .store import open_store

    # never creates a store: a missing file is an error that names it
    path = resolve_store(args.store, args.config, must_exist=True)
    if is_url(path):
        await require_postgres_store(path)
    # stdout is this command's output: no info lines (e.g. store_migrated), warnings on stderr
    logs.configure("warning", "auto", stream=sys.stderr)
    store = open_store(path, "sms")
    await store.open()
    try:
        if args.cmd == "trace":
            data = await store.trace(args.id)
            if data is None:
                print(f"no message {args.id!r} in {shown(path)}", file=sys.stderr)
                return 1
            print(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() if args.json else _trace_table(data))
        else:
            data = await store.stats(time.time() - 3600)
            print(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() if args.json else _stats_table(data))
    finally:
        await store.close()
    return 0


def _trace_table(d: dict[str, Any]) -> str:
    req = d["request"]
    lines = [
        f"message {d['id']}: {d['state']}{' (final)' if d['final'] else ''}",
        f"  to {req.get('to') or '-'}  from {req.get('from') or '-'}  smsc {d['smsc'] or '-'}  parts {d['parts']}"
        f"  attempts {d['attempt']}",
        f"  created {d['created_at']}  updated {d['updated_at']}  ttl {d['ttl_at']}",
    ]
    if d["error"]:
        lines.append(f"  error {d['error']['code']}: {d['error']['detail']}")
    lines.append("  parts:")
    for p in d["part_rows"]:
        # a part never submitted of a message that is final will never be: "not sent", not "pending"
        state = "not sent" if d["final"] and p["state"] == "pending" else p["state"]
        lines.append(f"    #{p['idx']}  smsc id {p['smsc_message_id'] or '-':<16} {state:<11} "
                     f"submitted {p['submitted_at'] or '-'}  receipt {p['stat'] or '-'} {p['receipt_at'] or ''}")
    lines.append("  events:")
    for e in d["events"]:
        err = f"  {e['error']['code']}: {e['error'].get('detail') or ''}".rstrip(": ") if e.get("error") else ""
        nxt = f"  next attempt {e['next_attempt_at']}" if e.get("next_attempt_at") else ""
        lines.append(f"    {e['at']}  {e['state']:<11}{err}{nxt}")
    return "\n".join(lines)


def _stats_table(d: dict[str, Any]) -> str:
    lines = ["queue (not final):"]
    lines += [f"  {r['state']:<11} {r['smsc'] or '-':<16} {r['count']}" for r in d["queue"]] or ["  (empty)"]
    lines.append("last hour's outcomes:")
    lines += [f"  {r['state']:<11} {r['smsc'] or '-':<16} {r['count']}" for r in d["outcomes"]] or ["  (none)"]
    lines.append(f"outbox (events not yet acknowledged by the broker): {d['outbox']}")
    lines.append(f"receipts held (no matching submit yet): {d['held_receipts']}")
    for k, v in sorted(d["counters"].items()):
        lines.append(f"{k}: {v}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
