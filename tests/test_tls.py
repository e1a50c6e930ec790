"""Transport security: SMPP over TLS to an SMSC, MQTT over TLS with username/password."""

from __future__ import annotations

import asyncio
import getpass
import ssl
import subprocess
from pathlib import Path

import pytest

from smppengine.broker import Mosquitto, free_port
from smppengine.simulator import Simulator

from .helpers import Watcher, make_config, running_engine, smsc, wait_bound


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throw-away CA and a server certificate for 127.0.0.1 (openssl CLI)."""
    d = tmp_path_factory.mktemp("pki")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=smppengine test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=127.0.0.1")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")
    return d


async def test_smpp_over_tls(tmp_path: Path, broker: Mosquitto, pki: Path) -> None:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki / "server.pem", pki / "server.key")
    sim = Simulator(credentials={"acme": "secret"}, ssl=ctx)
    await sim.start()
    try:
        cfg = make_config(str(tmp_path / "e.db"), broker.url,
                          [smsc("tls", sim.port, tls=True, tls_ca_file=str(pki / "ca.pem"))])
        async with Watcher(broker.url) as w, running_engine(cfg) as engine:
            await wait_bound(engine)
            await w.publish({"id": "secure", "to": "+447700900123", "text": "over TLS"})
            await w.wait_final(["secure"])
            assert w.states("secure") == ["queued", "submitted", "delivered"]
        # without the CA the certificate is refused: no bind
        cfg = make_config(str(tmp_path / "f.db"), broker.url, [smsc("tls", sim.port, tls=True)])
        async with running_engine(cfg) as engine:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(engine.clients["tls"].up.wait(), 1.5)
    finally:
        await sim.stop()


class TlsMosquitto(Mosquitto):
    def __init__(self, workdir: str, pki: Path) -> None:
        super().__init__(workdir=workdir)
        self.plain_port = free_port()
        self.pki = pki

    def _write_config(self) -> Path:
        pw = self.dir / "passwd"
        subprocess.run(["mosquitto_passwd", "-b", "-c", str(pw), "engine", "s3cret!"], check=True)
        conf = self.dir / "mosquitto.conf"
        conf.write_text("\n".join([
            "per_listener_settings true",
            f"user {getpass.getuser()}",
            f"listener {self.port} 127.0.0.1",
            f"cafile {self.pki / 'ca.pem'}", f"certfile {self.pki / 'server.pem'}",
            f"keyfile {self.pki / 'server.key'}",
            "allow_anonymous false", f"password_file {pw}",
            f"listener {self.plain_port} 127.0.0.1",
            "allow_anonymous true",
            "persistence false", f"log_dest file {self.dir}/mosquitto.log",
        ]) + "\n")
        return conf


async def test_mqtt_over_tls_with_password(tmp_path: Path, sim: Simulator, pki: Path) -> None:
    (tmp_path / "mqtt").mkdir()
    broker = TlsMosquitto(str(tmp_path / "mqtt"), pki)
    await broker.start()
    try:
        cfg = make_config(str(tmp_path / "e.db"), f"mqtts://127.0.0.1:{broker.port}", [smsc("a", sim.port)],
                          mqtt={"ca_file": str(pki / "ca.pem"), "username": "engine", "password": "s3cret!"})
        async with Watcher(f"mqtt://127.0.0.1:{broker.plain_port}") as w, running_engine(cfg) as engine:
            await wait_bound(engine)
            await w.publish({"id": "tls-mqtt", "to": "+447700900123", "text": "hello"})
            await w.wait_final(["tls-mqtt"])
            assert w.states("tls-mqtt") == ["queued", "submitted", "delivered"]
        wrong = make_config(str(tmp_path / "g.db"), f"mqtts://127.0.0.1:{broker.port}", [smsc("a", sim.port)],
                            mqtt={"ca_file": str(pki / "ca.pem"), "username": "engine", "password": "nope"})
        from smppengine.engine import Engine

        engine = Engine(wrong)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(engine.start(), 2)     # never connected: refused credentials
        await engine.stop(grace=0.5)
    finally:
        await broker.stop()
