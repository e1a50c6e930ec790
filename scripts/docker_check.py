#!/usr/bin/env python3
"""Build the Docker image and prove what docs/operations.md promises of it (slow: not part of scripts/test).

    python3 scripts/docker_check.py [--base IMAGE] [--keep]

1. Base image: ``--base`` if given; else python:3.11-slim when the daemon has it (this script pulls nothing);
   else smppengine-base:bookworm when it exists; else a Debian bookworm root made here with debootstrap
   (python3, python3-venv, this machine's extra CA certificates from /usr/local/share/ca-certificates, for a
   TLS-intercepting proxy) and `docker import`ed as smppengine-base:bookworm.
2. ``docker build --build-arg BASE=...`` of the repository's Dockerfile.
3. A private mosquitto and the SMSC simulator on this host; the container on the host network with a
   mounted config and a named volume for the store.
4. Checks: the container runs as a non-root user; the Dockerfile's HEALTHCHECK turns ``healthy`` (its command,
   at a 2 s interval instead of 15 s); a request published to the broker ends ``delivered``; ``docker stop``
   is a clean SIGTERM: exit code 0, ``engine_stopped`` logged, retained presence ``offline``.

5. deploy/docker-compose.yml (with `docker compose` or `docker-compose`): built and started beside its
   mosquitto (eclipse-mosquitto:2 when present, else smppengine-mosquitto:bookworm built from Debian), with an
   override that adds the simulator as a service and mounts a config naming it; checks: healthy, a request
   published on the published MQTT port is delivered, `kill -s HUP` reloads, `stop` exits 0 and goes offline.
   ``--no-compose`` skips it.

Prints one line per check and a JSON summary last; exit status 0 when every check passed. Needs a running
Docker daemon (`apt-get install docker.io`, then `dockerd`), and debootstrap for step 1's fallback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
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

LOCAL_BASE = "smppengine-base:bookworm"
PUBLIC_BASE = "python:3.11-slim"


def has_image(ref: str) -> bool:
    return sh("docker", "image", "inspect", ref, check_rc=False).returncode == 0


def python_root() -> Path:
    """A Debian bookworm root with python3 + venv (debootstrap, cached between runs)."""
    return bookworm_root("bookworm-py", "python3,python3-venv,ca-certificates", "usr/bin/python3")


def base_image(asked: str | None) -> str:
    if asked:
        return asked
    if has_image(PUBLIC_BASE):
        return PUBLIC_BASE
    if has_image(LOCAL_BASE):
        return LOCAL_BASE
    print(f"no {PUBLIC_BASE} image here (`docker pull` it where a registry is reachable): building {LOCAL_BASE} "
          "from Debian bookworm", flush=True)
    root = python_root()
    tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
    sh("docker", "import", "-c", "ENV LANG=C.UTF-8", "-", LOCAL_BASE, stdin=tar.stdout)
    tar.wait()
    return LOCAL_BASE


MOSQUITTO_PUBLIC = "eclipse-mosquitto:2"
MOSQUITTO_LOCAL = "smppengine-mosquitto:bookworm"


def mosquitto_image() -> str:
    """The compose file's broker image: eclipse-mosquitto:2 when present, else one made from Debian's package."""
    for ref in (MOSQUITTO_PUBLIC, MOSQUITTO_LOCAL):
        if has_image(ref):
            return ref
    root = python_root()
    mroot = root.parent / "bookworm-mosquitto"
    if not (mroot / "usr/sbin/mosquitto").exists():
        shutil.rmtree(mroot, ignore_errors=True)
        sh("cp", "-a", str(root), str(mroot))
        sh("chroot", str(mroot), "/bin/sh", "-c",
           "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "
           "mosquitto && mkdir -p /mosquitto/config /mosquitto/data /mosquitto/log "
           "&& chown -R mosquitto:mosquitto /mosquitto && apt-get clean")
    tar = subprocess.Popen(["tar", "-C", str(mroot), "-c", "."], stdout=subprocess.PIPE)
    sh("docker", "import", "-c", "ENV LANG=C.UTF-8", "-c", "EXPOSE 1883", "-c",
       'CMD ["/usr/sbin/mosquitto", "-c", "/mosquitto/config/mosquitto.conf"]', "-", MOSQUITTO_LOCAL,
       stdin=tar.stdout)
    tar.wait()
    return MOSQUITTO_LOCAL


def compose_command() -> list[str] | None:
    if sh("docker", "compose", "version", check_rc=False).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


async def compose_checks(base: str) -> None:
    import aiomqtt

    compose = compose_command()
    if not check("a compose command is installed", compose is not None, " ".join(compose or ["none"])):
        return
    assert compose is not None
    work = Path(tempfile.mkdtemp(prefix="smppengine-compose-check-"))
    os.chmod(work, 0o755)
    project = f"smppcheck{uuid.uuid4().hex[:6]}"
    mqtt_port, http_port = free_port(), free_port()
    env = {**os.environ, "SMPPENGINE_BASE": base, "MOSQUITTO_IMAGE": mosquitto_image(),
           "SMPPENGINE_MQTT_PORT": str(mqtt_port), "SMPPENGINE_HTTP_PORT": str(http_port)}
    (work / "config.toml").write_text(
        '[engine]\ninstance = "compose"\nstore = "/var/lib/smppengine/engine.db"\n'
        '[mqtt]\nurl = "mqtt://mosquitto:1883"\n[http]\nlisten = "0.0.0.0:9180"\n[log]\nformat = "json"\n'
        '[[smsc]]\nname = "sim"\nhost = "smsc"\nport = 2775\nsystem_id = "acme"\npassword = "secret"\n')
    os.chmod(work / "config.toml", 0o644)
    (work / "override.yml").write_text(
        "services:\n"
        "  smsc:\n"
        "    image: smppengine:latest\n"
        "    entrypoint: [\"smppengine\"]\n"
        "    command: [\"sim\", \"--host\", \"0.0.0.0\", \"--port\", \"2775\", \"--control-port\", \"0\",\n"
        "              \"--system-id\", \"acme\", \"--password\", \"secret\", \"--receipt-delay\", \"0.2\"]\n"
        "    healthcheck: {disable: true}\n"
        "  smppengine:\n"
        "    depends_on: [mosquitto, smsc]\n"
        f"    volumes: [\"{work / 'config.toml'}:/etc/smppengine/config.toml:ro\"]\n"
        "    healthcheck: {interval: 2s}\n")
    cmd = [*compose, "-p", project, "-f", str(ROOT / "deploy/docker-compose.yml"), "-f", str(work / "override.yml")]
    try:
        t0 = time.monotonic()
        build = await asyncio.to_thread(sh, *cmd, "build", check_rc=False, env=env)
        if not check("compose build", build.returncode == 0, f"{time.monotonic() - t0:.0f} s "
                     f"{build.stderr.strip()[-300:] if build.returncode else ''}"):
            return
        up = await asyncio.to_thread(sh, *cmd, "up", "-d", check_rc=False, env=env)
        if not check("compose up", up.returncode == 0, up.stderr.strip()[-400:] if up.returncode else ""):
            return
        cid = sh(*cmd, "ps", "-q", "smppengine", env=env).stdout.strip()

        t0 = time.monotonic()
        status = await wait_for("healthy", lambda: health(cid), 90)
        check("compose: the engine turns healthy beside mosquitto and the simulator", status == "healthy",
              f"{status} after {time.monotonic() - t0:.1f} s")
        events: list[str] = []
        presence: dict[str, Any] = {}
        async with aiomqtt.Client("127.0.0.1", mqtt_port, identifier=f"check-{uuid.uuid4().hex[:6]}") as client:
            await client.subscribe("sms/status/#", qos=1)
            await client.subscribe("sms/engine/+", qos=1)
            await client.publish("sms/outbound", json.dumps(
                {"id": "compose-1", "to": "+447700900123", "text": "through compose"}), qos=1)

            async def listen(until: Any) -> None:
                async for m in client.messages:
                    doc = json.loads(bytes(m.payload))  # type: ignore[arg-type]
                    if str(m.topic).startswith("sms/engine/"):
                        presence.update(doc)
                    else:
                        events.append(doc["state"])
                    if until():
                        return

            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(listen(lambda: events and events[-1] in (
                    "delivered", "undelivered", "failed", "rejected", "expired")), 30)
            check(f"compose: a request published on 127.0.0.1:{mqtt_port} is delivered",
                  events == ["queued", "submitted", "delivered"], " → ".join(events))
            sh(*cmd, "kill", "-s", "HUP", "smppengine", env=env)
            reloaded = await wait_for("reload", lambda: '"config_reloaded"' in sh("docker", "logs", cid).stdout, 20)
            check("compose: kill -s HUP reloads the config", bool(reloaded))
            stop = await asyncio.to_thread(sh, *cmd, "stop", "smppengine", check_rc=False, env=env)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(listen(lambda: presence.get("state") == "offline"), 10)
        code = docker_json("inspect", cid)[0]["State"]["ExitCode"]
        check("compose: stop exits 0 and the engine goes offline",
              stop.returncode == 0 and code == 0 and presence.get("state") == "offline",
              f"exit code {code}, presence {presence.get('state')}")
    finally:
        sh(*cmd, "down", "-v", "--remove-orphans", check_rc=False, env=env)
        shutil.rmtree(work, ignore_errors=True)


def docker_json(*args: str) -> Any:
    return json.loads(sh("docker", *args).stdout)


def health(container: str) -> str | None:
    """The container's health once it is settled (healthy / unhealthy), or its status if it stopped; else None."""
    state = docker_json("inspect", container)[0]["State"]
    status: str | None = state.get("Health", {}).get("Status")
    return status if status in ("healthy", "unhealthy") or not state["Running"] else None


async def wait_for(what: str, probe: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        await asyncio.sleep(0.5)
    return None


async def run_checks(image: str, keep: bool) -> None:
    import aiomqtt

    work = Path(tempfile.mkdtemp(prefix="smppengine-docker-check-"))
    broker = Mosquitto(workdir=str(work / "mqtt"))
    (work / "mqtt").mkdir()
    sim = Simulator(credentials={"acme": "secret"}, receipt_delay=0.2)
    name = f"smppengine-check-{uuid.uuid4().hex[:8]}"
    volume = f"{name}-store"
    http_port = free_port()
    await broker.start()
    await sim.start()
    try:
        (work / "config.toml").write_text(
            '[engine]\ninstance = "docker"\nstore = "/var/lib/smppengine/engine.db"\n'
            f'[mqtt]\nurl = "mqtt://127.0.0.1:{broker.port}"\ntopic_prefix = "sms"\n'
            f'[http]\nlisten = "127.0.0.1:{http_port}"\n[log]\nformat = "json"\n'
            f'[[smsc]]\nname = "sim"\nhost = "127.0.0.1"\nport = {sim.port}\nsystem_id = "acme"\n'
            'password = "secret"\n')
        os.chmod(work / "config.toml", 0o644)
        os.chmod(work, 0o755)
        sh("docker", "run", "-d", "--name", name, "--network", "host",
           "-v", f"{work / 'config.toml'}:/etc/smppengine/config.toml:ro", "-v", f"{volume}:/var/lib/smppengine",
           "-e", f"SMPPENGINE_HEALTHZ_URL=http://127.0.0.1:{http_port}/healthz",
           "--health-interval", "2s", "--health-start-period", "30s", image)

        cfg = docker_json("inspect", name)[0]["Config"]
        uid = sh("docker", "exec", name, "id", "-u").stdout.strip()
        check("runs as a non-root user", cfg.get("User") == "smppengine" and uid not in ("", "0"),
              f"User={cfg.get('User')!r}, uid {uid}")
        check("the healthcheck is the Dockerfile's", "SMPPENGINE_HEALTHZ_URL" in " ".join(
            cfg.get("Healthcheck", {}).get("Test", [])), " ".join(cfg.get("Healthcheck", {}).get("Test", []))[:80])

        t0 = time.monotonic()
        status = await wait_for("healthy", lambda: health(name), 90)
        check("HEALTHCHECK turns healthy", status == "healthy", f"{status} after {time.monotonic() - t0:.1f} s")

        presence: dict[str, Any] = {}
        events: list[dict[str, Any]] = []
        async with aiomqtt.Client("127.0.0.1", broker.port, identifier=f"check-{uuid.uuid4().hex[:6]}") as client:
            await client.subscribe("sms/status/#", qos=1)
            await client.subscribe("sms/engine/+", qos=1)
            await client.publish("sms/outbound", json.dumps(
                {"id": "docker-1", "to": "+447700900123", "from": "ACME", "text": "through the container"}), qos=1)

            async def listen(until: Any) -> None:
                async for m in client.messages:
                    doc = json.loads(bytes(m.payload))  # type: ignore[arg-type]
                    if str(m.topic).startswith("sms/engine/"):
                        presence.update(doc)
                    else:
                        events.append(doc)
                    if until():
                        return

            try:
                await asyncio.wait_for(listen(lambda: events and events[-1]["state"] in (
                    "delivered", "undelivered", "failed", "rejected", "expired")), 30)
            except TimeoutError:
                pass
            states = [e["state"] for e in events]
            check("a request published to the broker is delivered through the container",
                  states == ["queued", "submitted", "delivered"] and len(sim.ok_submits()) == 1, " → ".join(states))
            check("presence online while running", presence.get("state") == "online", str(presence))

            t0 = time.monotonic()
            stop = await asyncio.to_thread(sh, "docker", "stop", "-t", "30", name)
            took = time.monotonic() - t0
            try:
                await asyncio.wait_for(listen(lambda: presence.get("state") == "offline"), 10)
            except TimeoutError:
                pass
        state = docker_json("inspect", name)[0]["State"]
        logs = sh("docker", "logs", name).stdout.splitlines()
        stopped = [line for line in logs if '"engine_stopped"' in line]
        check("docker stop is a clean SIGTERM: exit code 0", stop.returncode == 0 and state["ExitCode"] == 0
              and not state.get("OOMKilled"), f"exit code {state['ExitCode']} after {took:.1f} s")
        check("engine_stopped logged", bool(stopped), stopped[0][:120] if stopped else logs[-1:][0] if logs else "")
        check("retained presence offline after the stop", presence.get("state") == "offline", str(presence))
        store = sh("docker", "run", "--rm", "-v", f"{volume}:/s", "--entrypoint", "ls", image, "-ln", "/s").stdout
        check("the store is on the volume, owned by the container's user",
              "engine.db" in store and " 10001 " in store, store.strip().replace("\n", "; ")[:160])
    finally:
        if not keep:
            sh("docker", "rm", "-f", name, check_rc=False)
            sh("docker", "volume", "rm", "-f", volume, check_rc=False)
        await sim.stop()
        await broker.stop()
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", help=f"base image (default: {PUBLIC_BASE}, else a local Debian bookworm)")
    ap.add_argument("--tag", default="smppengine:check")
    ap.add_argument("--keep", action="store_true", help="keep the container and its volume")
    ap.add_argument("--no-compose", action="store_true", help="skip deploy/docker-compose.yml")
    args = ap.parse_args()
    logs.configure("warning", "console", stream=sys.stderr)      # the simulator's lines: warnings only
    info = sh("docker", "version", "--format", "{{.Server.Version}}", check_rc=False)
    if info.returncode != 0:
        print(f"no Docker daemon: {info.stderr.strip()}", file=sys.stderr)
        return 2
    base = base_image(args.base)
    t0 = time.monotonic()
    build = sh("docker", "build", "--network", "host", "--build-arg", f"BASE={base}", "-t", args.tag, str(ROOT),
               check_rc=False)
    if not check(f"docker build (BASE={base})", build.returncode == 0, f"{time.monotonic() - t0:.0f} s"):
        print(build.stdout[-3000:], build.stderr[-3000:], file=sys.stderr)
        return 1
    asyncio.run(run_checks(args.tag, args.keep))
    if not args.no_compose:
        asyncio.run(compose_checks(base))
    return summary("docker_check", server=info.stdout.strip(), base=base)


if __name__ == "__main__":
    raise SystemExit(main())
