#!/usr/bin/env python3
"""Run deploy/smppengine.service under a real systemd and prove what docs/operations.md promises of it
(slow, needs root: not part of scripts/test).

    sudo python3 scripts/systemd_check.py [--keep-root]

1. A Debian bookworm root with systemd, python3 and python3-venv (debootstrap, cached in
   $SMPPENGINE_ROOTFS_CACHE, default /var/tmp/smppengine-rootfs; this machine's extra CA certificates from
   /usr/local/share/ca-certificates are trusted there too, for a TLS-intercepting proxy); smppengine from this
   checkout installed in it as the docs say (a venv in /opt/smppengine, /usr/local/bin/smppengine); the unit
   file unchanged in /etc/systemd/system; a config whose store is under the unit's StateDirectory.
2. ``systemd-nspawn --boot`` of that root (host network: the engine reaches a private mosquitto and the SMSC
   simulator that this script runs on 127.0.0.1).
3. Checks: ``systemctl start`` returns once the engine sent READY=1 (Type=notify) and the unit is active with
   the engine's STATUS line; a request is delivered and the store is written under the sandbox
   (DynamicUser, ProtectSystem=strict ...); ``systemctl reload`` is a SIGHUP reload (same main PID,
   ``config_reloaded``); a hung engine (SIGSTOP) is killed by the watchdog (WatchdogSec=30) and restarted, and
   works again; ``systemctl stop`` is clean (exit 0, ``engine_stopped``, retained presence ``offline``).

Prints one line per check and a JSON summary last; exit status 0 when every check passed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]

from _packaging import ROOT, bookworm_root, check, sh, summary  # noqa: E402

from smppengine import logs  # noqa: E402
from smppengine.broker import Mosquitto, free_port  # noqa: E402
from smppengine.simulator import Simulator  # noqa: E402

# procps: the unit's ExecReload is /bin/kill (every Debian system has it; debootstrap's minbase does not)
PACKAGES = "python3,python3-venv,ca-certificates,systemd,systemd-sysv,dbus,procps"


def make_root() -> Path:
    root = bookworm_root("bookworm-systemd", PACKAGES, "lib/systemd/systemd", ("debootstrap", "systemd-nspawn"))
    (root / "etc/hostname").write_text("smppcheck\n")
    # this checkout, installed the way docs/operations.md says
    src = root / "opt/smppengine-src"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "smppengine", src / "smppengine", ignore=shutil.ignore_patterns("__pycache__"))
    if not (root / "opt/smppengine/bin/pip").exists():
        sh("chroot", str(root), "python3", "-m", "venv", "/opt/smppengine")
    t0 = time.monotonic()
    sh("chroot", str(root), "/opt/smppengine/bin/pip", "install", "-q", "--upgrade", "/opt/smppengine-src[fast]")
    print(f"smppengine installed in the root ({time.monotonic() - t0:.0f} s)", flush=True)
    link = root / "usr/local/bin/smppengine"
    link.unlink(missing_ok=True)
    link.symlink_to("/opt/smppengine/bin/smppengine")
    shutil.copy(ROOT / "deploy/smppengine.service", root / "etc/systemd/system/smppengine.service")
    # a store from an earlier run would hold its messages: start empty
    shutil.rmtree(root / "var/lib/private/smppengine", ignore_errors=True)
    (root / "var/lib/smppengine").unlink(missing_ok=True)
    return root


def write_config(root: Path, broker: Mosquitto, sim: Simulator, http_port: int, tps: int) -> None:
    etc = root / "etc/smppengine"
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "config.toml").write_text(
        '[engine]\ninstance = "sd"\nstore = "/var/lib/smppengine/engine.db"\n'
        f'[mqtt]\nurl = "mqtt://127.0.0.1:{broker.port}"\n[http]\nlisten = "127.0.0.1:{http_port}"\n'
        '[log]\nformat = "json"\n'
        f'[[smsc]]\nname = "sim"\nhost = "127.0.0.1"\nport = {sim.port}\nsystem_id = "acme"\npassword = "secret"\n'
        f"tps = {tps}\n")
    os.chmod(etc / "config.toml", 0o644)     # DynamicUser: the service user is nobody in particular


class Container:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.name = f"smppcheck{uuid.uuid4().hex[:6]}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.leader = 0

    def boot(self) -> None:
        # --register=no --keep-unit: no host systemd/machined needed (the host's PID 1 may be anything)
        self.proc = subprocess.Popen(
            ["systemd-nspawn", "--boot", "-D", str(self.root), "--register=no", "--keep-unit",
             f"--machine={self.name}", "--console=pipe"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"systemd-nspawn exited {self.proc.returncode}: "
                                 f"{self.proc.stderr.read().decode() if self.proc.stderr else ''}")
            kids = sh("pgrep", "-P", str(self.proc.pid), check_rc=False).stdout.split()
            if kids:
                self.leader = int(kids[0])
                state = self.run("systemctl", "is-system-running", check_rc=False).stdout.strip()
                if state in ("running", "degraded"):
                    return
            time.sleep(0.5)
        raise SystemExit("the container's systemd did not finish booting within 60 s")

    def run(self, *cmd: str, check_rc: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return sh("nsenter", "-t", str(self.leader), "-a", *cmd, check_rc=check_rc, timeout=timeout)

    def show(self, *props: str) -> dict[str, str]:
        out = self.run("systemctl", "show", "smppengine", "-p", ",".join(props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self) -> list[dict[str, Any]]:
        out = self.run("journalctl", "-u", "smppengine", "-o", "cat", "--no-pager", check_rc=False).stdout
        docs = []
        for line in out.splitlines():
            try:
                docs.append(json.loads(line))
            except ValueError:
                docs.append({"event": "_text", "text": line})
        return docs

    def poweroff(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.run("systemctl", "poweroff", check_rc=False)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


class Mqtt:
    """Follows status and presence topics on the host broker; publishes requests."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.events: dict[str, list[str]] = {}
        self.presence: dict[str, Any] = {}
        self._task: asyncio.Task[None] | None = None
        self._client: Any = None
        self._ready = asyncio.Event()

    async def __aenter__(self) -> Mqtt:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._ready.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        import aiomqtt

        async with aiomqtt.Client("127.0.0.1", self.port, identifier=f"sdcheck-{uuid.uuid4().hex[:6]}") as c:
            self._client = c
            await c.subscribe("sms/status/#", qos=1)
            await c.subscribe("sms/engine/+", qos=1)
            self._ready.set()
            async for m in c.messages:
                doc = json.loads(bytes(m.payload))  # type: ignore[arg-type]
                if str(m.topic).startswith("sms/engine/"):
                    self.presence = doc
                else:
                    self.events.setdefault(doc["id"], []).append(doc["state"])

    async def send(self, msg_id: str) -> list[str]:
        await self._client.publish("sms/outbound", json.dumps(
            {"id": msg_id, "to": "+447700900123", "from": "ACME", "text": f"systemd check {msg_id}"}), qos=1)
        return await self.final(msg_id, 30)

    async def final(self, msg_id: str, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = self.events.get(msg_id, [])
            if states and states[-1] in ("delivered", "undelivered", "failed", "rejected", "expired"):
                return states
            await asyncio.sleep(0.1)
        return self.events.get(msg_id, [])

    async def wait_presence(self, state: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.presence.get("state") == state:
                return True
            await asyncio.sleep(0.1)
        return False


async def wait(probe: Any, timeout: float, step: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await asyncio.to_thread(probe)
        if value:
            return value
        await asyncio.sleep(step)
    return None


async def run_checks(root: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix="smppengine-systemd-check-"))
    broker = Mosquitto(workdir=str(work))
    sim = Simulator(credentials={"acme": "secret"}, receipt_delay=0.2)
    await broker.start()
    await sim.start()
    http_port = free_port()
    write_config(root, broker, sim, http_port, tps=50)
    box = Container(root)

    async def off(fn: Any, *args: Any, **kw: Any) -> Any:
        """A blocking call off the event loop: the simulator and the broker link live on it."""
        return await asyncio.to_thread(fn, *args, **kw)

    try:
        await asyncio.to_thread(box.boot)
        print(f"container booted: systemd {(await off(box.run, 'systemctl', '--version')).stdout.split()[1]}, "
              f"leader pid {box.leader}", flush=True)
        verify = await off(box.run, "systemd-analyze", "verify", "/etc/systemd/system/smppengine.service",
                           check_rc=False)
        check("systemd-analyze verify in the container", verify.returncode == 0 and not verify.stderr.strip(),
              verify.stderr.strip()[:200])
        await off(box.run, "systemctl", "daemon-reload")
        async with Mqtt(broker.port) as mqtt:
            # 1. start: Type=notify returns once READY=1 came
            t0 = time.monotonic()
            start = await off(box.run, "systemctl", "start", "smppengine", check_rc=False, timeout=90)
            took = time.monotonic() - t0
            st = await off(box.show, "ActiveState", "SubState", "MainPID", "StatusText", "NRestarts", "Type")
            check("systemctl start returns after READY=1 (Type=notify), unit active",
                  start.returncode == 0 and st["ActiveState"] == "active" and st["SubState"] == "running"
                  and st["Type"] == "notify", f"{took:.1f} s, {st['ActiveState']}/{st['SubState']}, "
                  f"{start.stderr.strip()[:300]}")
            ready = [d for d in await off(box.journal) if d.get("event") == "engine_ready"]
            check("engine_ready logged before the start returned", bool(ready))
            status = await wait(lambda: "bound: sim 1/1" in box.show("StatusText")["StatusText"], 15)
            check("STATUS= shows the binds", bool(status), (await off(box.show, "StatusText"))["StatusText"])
            pid1 = (await off(box.show, "MainPID"))["MainPID"]

            # 2. traffic, and the store is written inside the sandbox
            states = await mqtt.send("sd-1")
            check("a request is delivered by the engine under systemd", states == ["queued", "submitted", "delivered"],
                  " → ".join(states))
            ls = (await off(box.run, "ls", "-ln", "/var/lib/private/smppengine/", check_rc=False)).stdout
            user = (await off(box.run, "ps", "-o", "user=,uid=", "-p", pid1, check_rc=False)).stdout.strip()
            check("the sandboxed engine writes its store in StateDirectory (DynamicUser)",
                  "engine.db" in ls and not user.endswith(" 0"), f"ps: {user}; " + ls.strip().replace("\n", "; "))

            status_lines = (await off(box.run, "cat", f"/proc/{pid1}/status")).stdout.splitlines()
            proc = dict(line.split(":", 1) for line in status_lines if ":" in line)
            sandbox = {k: proc.get(k, "?").strip() for k in ("NoNewPrivs", "Seccomp", "CapEff")}
            # in the engine's mount namespace, even root cannot write /usr or /etc (ProtectSystem=strict)
            touch = await off(box.run, "nsenter", "-t", pid1, "-m", "touch", "/usr/.smppcheck", "/etc/.smppcheck",
                              check_rc=False)
            usr_ro = touch.returncode != 0 and touch.stderr.count("Read-only file system") == 2
            check("the sandbox is in effect (no new privileges, seccomp, no capabilities, /usr and /etc read-only)",
                  sandbox == {"NoNewPrivs": "1", "Seccomp": "2", "CapEff": "0000000000000000"} and usr_ro,
                  f"{sandbox}, /usr and /etc read-only: {usr_ro} ({touch.stderr.strip().splitlines()[0][:80]})")

            # 3. reload = SIGHUP: same process, config_reloaded, the new tps applied in place
            write_config(root, broker, sim, http_port, tps=40)
            reload = await off(box.run, "systemctl", "reload", "smppengine", check_rc=False, timeout=60)
            reloaded = await wait(lambda: [d for d in box.journal() if d.get("event") == "config_reloaded"], 20)
            st = await off(box.show, "MainPID", "ActiveState")
            check("systemctl reload is a SIGHUP reload (same PID, config_reloaded, tps updated in place)",
                  reload.returncode == 0 and bool(reloaded) and st["MainPID"] == pid1
                  and reloaded[-1].get("smsc_updated") == ["sim"], f"pid {pid1} → {st['MainPID']}, "
                  f"{json.dumps(reloaded[-1].get('smsc_changes')) if reloaded else 'no config_reloaded'}")

            # 4. a hung engine: SIGSTOP; the watchdog (WatchdogSec=30) kills it, Restart=on-failure restarts it
            await off(box.run, "kill", "-STOP", pid1)
            t0 = time.monotonic()

            def restarted() -> dict[str, str] | None:
                s = box.show("MainPID", "ActiveState", "SubState", "NRestarts")
                return s if s["NRestarts"] != "0" and s["MainPID"] not in ("0", pid1) and s["SubState"] == "running" \
                    else None

            after = await wait(restarted, 120)
            jtext = (await off(box.run, "journalctl", "-u", "smppengine", "--no-pager", "-o", "short",
                               check_rc=False)).stdout
            dog = [line for line in jtext.splitlines() if "atchdog" in line]
            check("the watchdog kills a hung (SIGSTOPped) engine and systemd restarts it",
                  bool(after) and bool(dog), f"after {time.monotonic() - t0:.0f} s: {after}; "
                  f"{dog[0].split(': ', 1)[-1] if dog else 'no watchdog line'}")
            states = await mqtt.send("sd-2")
            check("the restarted engine delivers", states == ["queued", "submitted", "delivered"], " → ".join(states))

            # 5. stop: SIGTERM, clean
            t0 = time.monotonic()
            stop = await off(box.run, "systemctl", "stop", "smppengine", check_rc=False, timeout=60)
            st = await off(box.show, "ActiveState", "Result", "ExecMainStatus", "ExecMainCode")
            stopped = [d for d in await off(box.journal) if d.get("event") == "engine_stopped"]
            offline = await mqtt.wait_presence("offline", 10)
            check("systemctl stop is clean (exit 0, engine_stopped, retained offline)",
                  stop.returncode == 0 and st["Result"] == "success" and st["ExecMainStatus"] == "0"
                  and bool(stopped) and offline,
                  f"{time.monotonic() - t0:.1f} s, Result={st['Result']} status={st['ExecMainStatus']} "
                  f"presence={mqtt.presence.get('state')}")
    finally:
        journal = box.run("journalctl", "-u", "smppengine", "--no-pager", "-o", "short", check_rc=False).stdout \
            if box.leader else ""
        (work.parent / "smppengine-systemd-check.journal").write_text(journal)
        await asyncio.to_thread(box.poweroff)
        await sim.stop()
        await broker.stop()
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (debootstrap, chroot, systemd-nspawn)", file=sys.stderr)
        return 2
    logs.configure("warning", "console", stream=sys.stderr)
    root = make_root()
    asyncio.run(run_checks(root))
    print(f"the unit's journal: {Path(tempfile.gettempdir()) / 'smppengine-systemd-check.journal'}")
    return summary("systemd_check")


if __name__ == "__main__":
    raise SystemExit(main())
