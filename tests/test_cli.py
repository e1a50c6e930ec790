"""The command line as a user runs it: parts, check-config (exit 2 with file: key: reason), send."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from smppengine.broker import Mosquitto
from smppengine.simulator import Simulator

from .helpers import make_config, running_engine, smsc, wait_bound

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "smppengine.cli", *args], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)


def test_parts_reports_encoding_and_part_count() -> None:
    out = cli("parts", "--json", "a" * 161)
    assert out.returncode == 0, out.stderr
    info = orjson.loads(out.stdout)
    assert info["encoding"] == "gsm7" and info["data_coding"] == 0 and info["parts"] == 2
    assert info["remaining"] == 153 * 2 - 161
    emoji = orjson.loads(cli("parts", "--json", "🎉" * 35).stdout)
    assert emoji["encoding"] == "ucs2" and emoji["units"] == 70 and emoji["parts"] == 1
    human = cli("parts", "Price 10€")
    assert human.returncode == 0 and "1" in human.stdout
    bad = cli("parts", "--encoding", "gsm7", "привет")
    assert bad.returncode == 1 and "'п'" in bad.stderr


def test_check_config_ok_and_errors(tmp_path: Path) -> None:
    ok = cli("check-config", "config/example.toml")
    assert ok.returncode == 0 and "OK" in ok.stdout
    cases = {
        "missing host": ('[[smsc]]\nname="a"\nport=2775\nsystem_id="x"\npassword="y"\n', "smsc[0].host"),
        "wrong type": ('[[smsc]]\nname="a"\nhost="h"\nport=2775\nsystem_id="x"\npassword="y"\ntps="fast"\n',
                       'smsc[0].tps: expected a positive number, got "fast"'),
        "unknown key": ('[engine]\ninstanse="x"\n[[smsc]]\nname="a"\nhost="h"\nport=1\nsystem_id="x"\npassword="y"\n',
                        "engine.instanse: unknown key"),
        "bind mode": ('[[smsc]]\nname="a"\nhost="h"\nport=1\nsystem_id="x"\npassword="y"\nbind="both"\n',
                      "smsc[0].bind"),
        "unknown route smsc": ('[[smsc]]\nname="a"\nhost="h"\nport=1\nsystem_id="x"\npassword="y"\n'
                               '[[route]]\nprefix="+44"\nsmsc=["z"]\n', 'route[0].smsc: unknown SMSC "z"'),
    }
    for name, (body, expected) in cases.items():
        path = tmp_path / f"{name.replace(' ', '_')}.toml"
        path.write_text(body)
        for args in (("check-config", str(path)), ("run", "--config", str(path))):
            out = cli(*args)
            assert out.returncode == 2, (name, args, out.stdout, out.stderr)
            assert f"{path}: {expected}" in out.stderr, (name, out.stderr)


async def test_send_follows_a_message_to_its_final_state(tmp_path: Path, broker: Mosquitto, sim: Simulator) -> None:
    import asyncio

    cfg = make_config(str(tmp_path / "e.db"), broker.url, [smsc("a", sim.port)])
    async with running_engine(cfg) as engine:
        await wait_bound(engine)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "smppengine.cli", "send", "--url", broker.url, "--to", "+447700900123",
            "--text", "hello from send", "--id", "via-cli", stdout=asyncio.subprocess.PIPE, cwd=ROOT)
        stdout, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0
    states = [orjson.loads(line)["state"] for line in stdout.decode().splitlines()[1:]]
    assert states == ["queued", "submitted", "delivered"]


async def test_trace_shows_a_delivered_message(tmp_path: Path, broker: Mosquitto, sim: Simulator) -> None:
    import asyncio

    from .helpers import Watcher

    cfg = make_config(str(tmp_path / "e.db"), broker.url, [smsc("a", sim.port)])
    async with Watcher(broker.url) as w, running_engine(cfg) as engine:
        await wait_bound(engine)
        await w.publish({"id": "traced", "to": "+447700900123", "text": "x" * 200})
        await w.wait_final(["traced"])
    store = cfg.engine.store        # a SQLite file, or a PostgreSQL URL with SMPPENGINE_TEST_STORE=postgresql
    out = await asyncio.to_thread(cli, "trace", "traced", "--store", store, "--json")
    assert out.returncode == 0, out.stderr
    doc = orjson.loads(out.stdout)
    assert doc["state"] == "delivered" and doc["parts"] == 2
    assert [e["state"] for e in doc["events"]] == ["queued", "submitted", "delivered"]
    assert [p["stat"] for p in doc["part_rows"]] == ["DELIVRD", "DELIVRD"]
    table = await asyncio.to_thread(cli, "trace", "traced", "--store", store)
    assert "delivered (final)" in table.stdout and "#1" in table.stdout
    missing = await asyncio.to_thread(cli, "trace", "nope", "--store", store)
    assert missing.returncode == 1


def test_run_with_an_mqtt_client_outside_the_tested_range_stops_with_one_clear_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from smppengine import cli as cli_module
    from smppengine.mqtt import paho_internals

    def changed() -> None:
        raise paho_internals.InternalsChanged("paho-mqtt internals changed: Client._packet_queue is missing "
                                              "(installed paho-mqtt 9.9.9, aiomqtt 9.9.9)")

    monkeypatch.setattr(paho_internals, "check_installed", changed)
    path = tmp_path / "engine.toml"
    path.write_text(f'[engine]\nstore="{tmp_path / "e.db"}"\n[mqtt]\nurl="mqtt://127.0.0.1:1"\n[log]\nlevel="error"\n'
                    '[[smsc]]\nname="a"\nhost="127.0.0.1"\nport=1\nsystem_id="x"\npassword="y"\n')
    assert cli_module.main(["run", "--config", str(path)]) == cli_module.EXIT_INSTALL == 4
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "Client._packet_queue is missing" in err and "pip install 'paho-mqtt>=2.2.0,<2.3'" in err
