"""The README's first hour, as a new user lives it: `smppengine run` with no config in a directory, then `send`,
`trace`, `stats`, `optout` from that directory without flags; the demo's signals and what it leaves behind.

Every test drives the real processes: the demo is `python -m smppengine.cli run` in a temp directory, with
127.0.0.1:1883 taken by another broker (the machine's mosquitto, or one the fixture starts) and 9180 taken too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import re
import signal
import socket
import sys
import tempfile
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from smppengine.broker import Mosquitto
from smppengine.locate import STATE_FILE

CLI = [sys.executable, "-m", "smppengine.cli"]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
async def other_broker_on_1883(tmp_path: Path) -> AsyncIterator[str]:
    """A broker on 127.0.0.1:1883 that is not the demo's: the machine's mosquitto, or a private one."""
    if _listening(1883):
        yield "mqtt://127.0.0.1:1883"
        return
    (tmp_path / "mqtt1883").mkdir()
    m = Mosquitto(1883, workdir=str(tmp_path / "mqtt1883"))
    await m.start()
    try:
        yield m.url
    finally:
        await m.stop()


@pytest.fixture
def port_9180_taken() -> Iterator[None]:
    """Something listens on 127.0.0.1:9180 (held here when nothing else does)."""
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 9180))
        s.listen()
    except OSError:
        pass                                # taken already: fine
    try:
        yield
    finally:
        s.close()


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (d / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d.name))
    return out


def _cmdline(pid: int) -> list[str]:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().decode().split("\0")
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def _gone(pid: int, timeout: float = 10.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if not _alive(pid):
            return True
        await asyncio.sleep(0.05)
    return False


def _names(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


def _broker_dirs() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("smppengine-mqtt-*"))


class Demo:
    """`smppengine run` (no config) in ``cwd``: its banner (stderr) and JSON log lines (stdout)."""

    def __init__(self, cwd: Path, *extra: str) -> None:
        self.cwd = cwd
        self.extra = extra
        self.proc: asyncio.subprocess.Process | None = None
        self.banner = ""
        self.lines: list[dict[str, Any]] = []
        self._reader: asyncio.Task[None] | None = None
        self._err: asyncio.Task[bytes] | None = None

    async def start(self, wait: bool = True, **kw: Any) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *CLI, "run", *self.extra, cwd=self.cwd, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, **kw)
        self._reader = asyncio.create_task(self._read())
        if wait:
            await self.wait_banner()

    async def wait_banner(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        async with asyncio.timeout(60):
            while "Ctrl-C stops" not in self.banner:
                line = await self.proc.stderr.readline()
                assert line, f"demo exited early ({await self.proc.wait()}): {self.banner}{self.lines[-10:]}"
                self.banner += line.decode()
        self._err = asyncio.create_task(self.proc.stderr.read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for raw in self.proc.stdout:
            with contextlib.suppress(orjson.JSONDecodeError):
                self.lines.append(orjson.loads(raw))

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def state(self) -> dict[str, Any]:
        return dict(orjson.loads((self.cwd / STATE_FILE).read_bytes()))

    def mosquitto(self) -> tuple[int, Path]:
        """The demo's mosquitto child: pid and its temp directory."""
        for pid in _children(self.pid):
            cmd = _cmdline(pid)
            if cmd and cmd[0].endswith("mosquitto"):
                return pid, Path(cmd[cmd.index("-c") + 1]).parent
        raise AssertionError(f"no mosquitto child of the demo {self.pid}")

    async def wait_exit(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        rc = await asyncio.wait_for(self.proc.wait(), timeout)
        if self._reader is not None:
            await self._reader
        if self._err is not None:
            self.banner += (await self._err).decode()
        elif self.proc.stderr is not None:
            self.banner += (await self.proc.stderr.read()).decode()
        return rc

    async def stop(self) -> None:
        """For the tests' finally: never leave a demo running."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


async def cli(cwd: Path, *args: str, timeout: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(*CLI, *args, cwd=cwd, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _events(out: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in out.splitlines() if line.startswith("{")]


async def test_from_the_demos_directory_every_command_finds_the_demo_without_flags(
        tmp_path: Path, other_broker_on_1883: str, port_9180_taken: None) -> None:
    demo = Demo(tmp_path)
    try:
        await demo.start()
        state = demo.state()
        assert state["pid"] == demo.pid and state["mqtt_url"] != "mqtt://127.0.0.1:1883"   # 1883 is taken
        assert state["store"] == str(tmp_path / "smppengine-demo.db") and state["topic_prefix"] == "sms"
        assert f"MQTT broker      {state['mqtt_url']}  (1883 was taken)" in demo.banner
        assert "--url" not in demo.banner and "smppengine send --to +447700900123" in demo.banner

        # 3. /metrics and /healthz, on the next free port since 9180 is taken, and the banner says where
        http = state["http"]
        assert http != "127.0.0.1:9180" and f"http://{http}/metrics  http://{http}/healthz" in demo.banner
        health = await asyncio.to_thread(urllib.request.urlopen, f"http://{http}/healthz", timeout=10)
        assert health.status == 200 and orjson.loads(health.read())["status"] == "ok"

        # 1. send, without flags, reaches the demo (not the broker on 1883) and follows it to delivered
        rc, out, err = await cli(tmp_path, "send", "--id", "order-1234-otp", "--to", "+447700900123",
                                 "--from", "ACME", "--text", "Your code is 123456")
        assert rc == 0, (out, err)
        assert out.splitlines()[0].startswith(f"published order-1234-otp to {state['mqtt_url']} sms/outbound")
        events = _events(out)
        assert [e["state"] for e in events] == ["queued", "submitted", "delivered"]
        assert events[-1]["smsc"] == "sim" and len(events[-1]["smsc_message_ids"]) == 1

        # 2. trace and stats read the demo's store, without flags
        rc, out, err = await cli(tmp_path, "trace", "order-1234-otp")
        assert rc == 0, err
        assert out.splitlines()[0] == "message order-1234-otp: delivered (final)"
        rc, out, err = await cli(tmp_path, "stats", "--json")
        assert rc == 0, err
        outcomes = {(r["state"], r["smsc"]): r["count"] for r in orjson.loads(out)["outcomes"]}
        assert outcomes == {("delivered", "sim"): 1}
        rc, out, err = await cli(tmp_path, "optout", "add", "+447700900999")
        assert rc == 0, err
        rc, out, err = await cli(tmp_path, "optout", "list")
        assert rc == 0 and "447700900999 " in out, (out, err)

        metrics = await asyncio.to_thread(urllib.request.urlopen, f"http://{http}/metrics", timeout=10)
        assert b'smppengine_requests_total{result="accepted"} 1.0' in metrics.read()

        # explicit flags win over the demo: --url elsewhere (no engine there), --config from another directory
        rc, out, err = await cli(tmp_path, "send", "--url", other_broker_on_1883, "--engine-timeout", "1",
                                 "--to", "+447700900123", "--text", "not for the demo")
        assert rc == 3 and f"no `queued` event from an engine on {other_broker_on_1883}/sms/outbound" in err, err
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        (elsewhere / "c.toml").write_text(f'[mqtt]\nurl = "{state["mqtt_url"]}"\n[[smsc]]\nname = "a"\n'
                                          'host = "h"\nport = 1\nsystem_id = "x"\npassword = "y"\n')
        rc, out, err = await cli(elsewhere, "send", "--config", "c.toml", "--to", "+447700900123", "--text", "cfg")
        assert rc == 0 and _events(out)[-1]["state"] == "delivered", (out, err)
    finally:
        await demo.stop()


async def test_send_says_when_no_engine_answers(tmp_path: Path, other_broker_on_1883: str) -> None:
    # no demo in this directory: the default URL, the broker there has no engine
    rc, out, err = await cli(tmp_path, "send", "--to", "+447700900123", "--text", "hello", timeout=30)
    assert rc == 3, (out, err)
    assert ("no `queued` event from an engine on mqtt://127.0.0.1:1883/sms/outbound in 5 s — is the engine "
            "running on this broker with topic prefix sms?") in err
    assert f"no live ./{STATE_FILE}" in err
    # an explicit prefix is named, and the id hint comes with --id
    rc, out, err = await cli(tmp_path, "send", "--url", other_broker_on_1883, "--prefix", "nobody-here",
                             "--id", "x1", "--engine-timeout", "1", "--to", "+447700900123", "--text", "hi")
    assert rc == 3 and "in 1 s — is the engine running on this broker with topic prefix nobody-here?" in err
    assert "the id 'x1' was used before" in err and STATE_FILE not in err


async def test_read_only_commands_never_create_a_store(tmp_path: Path) -> None:
    for args in (("trace", "x"), ("stats",), ("optout", "list"), ("optout", "export"), ("optout", "add", "+4477")):
        rc, out, err = await cli(tmp_path, *args)
        assert rc == 1 and out == "", (args, out, err)
        assert "looked for ./smppengine-demo.db" in err and "./smppengine.db" in err, err
    for args in (("stats", "--store", "missing.db"), ("optout", "--store", "missing.db", "list")):
        rc, out, err = await cli(tmp_path, *args)
        assert rc == 1 and "no store at missing.db (--store): the file is not there" in err, err
    (tmp_path / "c.toml").write_text('[engine]\nstore = "elsewhere.db"\n[[smsc]]\nname = "a"\nhost = "h"\n'
                                     'port = 1\nsystem_id = "x"\npassword = "y"\n')
    rc, out, err = await cli(tmp_path, "trace", "x", "--config", "c.toml")
    assert rc == 1 and "no store at elsewhere.db (engine.store in c.toml)" in err, err
    assert _names(tmp_path) == ["c.toml"]


async def test_sighup_does_not_stop_the_demo_and_sigterm_leaves_nothing_behind(
        tmp_path: Path, other_broker_on_1883: str) -> None:
    demo = Demo(tmp_path)
    try:
        await demo.start()
        mosq, mosq_dir = demo.mosquitto()
        assert mosq_dir.is_dir() and mosq_dir.name.startswith("smppengine-mqtt-")
        assert demo.proc is not None
        demo.proc.send_signal(signal.SIGHUP)
        async with asyncio.timeout(20):
            while not any(d.get("event") == "demo_sighup_ignored" for d in demo.lines):
                assert demo.proc.returncode is None, f"SIGHUP stopped the demo: {demo.proc.returncode}"
                await asyncio.sleep(0.05)
        rc, out, err = await cli(tmp_path, "send", "--to", "+447700900123", "--text", "after SIGHUP")
        assert rc == 0 and _events(out)[-1]["state"] == "delivered", (out, err)

        demo.proc.send_signal(signal.SIGTERM)
        assert await demo.wait_exit() == 0
        assert await _gone(mosq), "the demo's mosquitto outlived it"
        assert not mosq_dir.exists() and not (tmp_path / STATE_FILE).exists()
        assert [d["event"] for d in demo.lines][-1] in ("engine_stopped", "sim_stopped")
    finally:
        await demo.stop()


async def test_sigkill_of_the_demo_takes_its_mosquitto_and_the_next_demo_cleans_up(
        tmp_path: Path, other_broker_on_1883: str) -> None:
    demo = Demo(tmp_path)
    again = Demo(tmp_path)
    try:
        await demo.start()
        mosq, mosq_dir = demo.mosquitto()
        assert demo.proc is not None
        demo.proc.kill()
        await demo.wait_exit()
        assert await _gone(mosq), "the demo's mosquitto outlived a SIGKILL of the demo"
        assert (tmp_path / STATE_FILE).exists()          # nobody could remove it ...
        # ... but it names a dead process: the commands do not follow it, and say so
        rc, out, err = await cli(tmp_path, "send", "--to", "+447700900123", "--text", "x", "--engine-timeout",
                                 "1", timeout=30)
        assert rc == 3 and "engine on mqtt://127.0.0.1:1883/sms/outbound in 1 s" in err, err
        assert f"no live ./{STATE_FILE}" in err
        rc, out, err = await cli(tmp_path, "send", "--to", "+447700900123", "--text", "x", "--url",
                                 "mqtt://127.0.0.1:1", timeout=30)
        assert rc == 1 and "cannot talk to the broker at mqtt://127.0.0.1:1" in err, err
        rc, out, err = await cli(tmp_path, "stats")      # the store is still found: ./smppengine-demo.db
        assert rc == 0, err

        await again.start()                               # removes what the killed one left in the temp dir
        assert not mosq_dir.exists()
        assert again.state()["pid"] == again.pid
        mosq2, dir2 = again.mosquitto()
        assert again.proc is not None
        again.proc.send_signal(signal.SIGINT)              # Ctrl-C
        assert await again.wait_exit() == 0
        assert await _gone(mosq2) and not dir2.exists() and not (tmp_path / STATE_FILE).exists()
    finally:
        await demo.stop()
        await again.stop()


async def test_a_failed_start_stops_what_it_started(tmp_path: Path, other_broker_on_1883: str) -> None:
    before = _broker_dirs()
    demo = Demo(tmp_path, "--store", str(tmp_path / "no" / "such" / "dir" / "x.db"))
    try:
        await demo.start(wait=False)
        rc = await demo.wait_exit(60)
        assert rc == 1 and "error: the demo stopped: OperationalError: unable to open database file" in demo.banner
        assert not _children(demo.pid)
        new = _broker_dirs() - before
        assert not {d for d in new if (d / "owner.pid").read_text().strip() == str(demo.pid)}
        assert not (tmp_path / STATE_FILE).exists()
    finally:
        await demo.stop()


async def test_closing_the_demos_terminal_does_not_stop_it(tmp_path: Path, other_broker_on_1883: str) -> None:
    """The demo in a terminal of its own (a pty it controls); closing the terminal (the master side) hangs it
    up: SIGHUP, then every write to it fails. The demo goes on, quietly, and stops cleanly later."""
    master, slave = pty.openpty()

    def own_terminal() -> None:
        os.setsid()
        fd = os.open(os.ttyname(slave), os.O_RDWR)     # the first terminal a session leader opens: its own
        os.close(fd)

    proc = await asyncio.create_subprocess_exec(*CLI, "run", cwd=tmp_path, stdin=slave, stdout=slave, stderr=slave,
                                                preexec_fn=own_terminal)
    os.close(slave)
    try:
        seen = b""
        async with asyncio.timeout(60):
            while b"Ctrl-C stops" not in seen:
                chunk = await asyncio.to_thread(os.read, master, 4096)
                assert chunk, seen
                seen += chunk
        state = orjson.loads((tmp_path / STATE_FILE).read_bytes())
        os.close(master)                                   # the terminal window is closed
        master = -1
        rc, out, err = await cli(tmp_path, "send", "--to", "+447700900123", "--text", "after the hang-up")
        assert rc == 0 and _events(out)[-1]["state"] == "delivered", (out, err)
        assert proc.returncode is None and state["pid"] == proc.pid
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        assert not (tmp_path / STATE_FILE).exists()
    finally:
        if master >= 0:
            os.close(master)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_readme_and_banner_name_no_fixed_broker_port() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    see = readme.split("### See it work", 1)[1].split("## Running against your carriers", 1)[0]
    assert not re.search(r"\b1883\b", see), see
    assert "python3 -m pip install -e '.[test]' && smppengine run" in readme and "scripts/test" in readme
