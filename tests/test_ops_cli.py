"""The operator's CLI on a real store: trace, stats, check-config."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import orjson

from smppengine.broker import Mosquitto
from smppengine.simulator import Simulator

from .helpers import Watcher, make_config, running_engine, smsc, wait_bound, write_toml


async def cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "smppengine.cli", *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_trace_and_stats_show_a_delivered_message(tmp_path: Path, broker: Mosquitto, sim: Simulator) -> None:
    path = str(tmp_path / "e.db")
    cfg = make_config(path, broker.url, [smsc("carrier-a", sim.port)])
    store = cfg.engine.store        # the SQLite file, or its PostgreSQL stand-in under SMPPENGINE_TEST_STORE
    long_text = "Your parcel is on its way. " * 8       # two parts
    async with Watcher(broker.url) as w, running_engine(cfg) as engine:
        await wait_bound(engine)
        await w.publish({"id": "order-1", "to": "+447700900123", "from": "ACME", "text": long_text,
                         "meta": {"tenant": "t1"}})
        await w.publish({"id": "bad-1", "text": "no destination"})
        await w.wait_final(["order-1", "bad-1"])
    smsc_ids = w.final("order-1")[0]["smsc_message_ids"]
    assert len(smsc_ids) == 2

    rc, out, _ = await cli("trace", "order-1", "--store", store)
    assert rc == 0
    assert out.splitlines()[0] == "message order-1: delivered (final)"
    assert "to +447700900123  from ACME  smsc carrier-a  parts 2  attempts 1" in out
    for sid in smsc_ids:
        assert any(sid in line and "delivered" in line and "DELIVRD" in line for line in out.splitlines()), out
    events = [line.split()[1] for line in out.split("  events:\n", 1)[1].splitlines()]
    assert events == ["queued", "submitted", "delivered"]

    rc, out, _ = await cli("trace", "order-1", "--store", store, "--json")
    doc = orjson.loads(out)
    assert rc == 0 and doc["state"] == "delivered" and doc["final"] is True
    assert [e["state"] for e in doc["events"]] == ["queued", "submitted", "delivered"]
    assert [p["smsc_message_id"] for p in doc["part_rows"]] == smsc_ids
    assert doc["request"]["meta"] == {"tenant": "t1"}

    rc, out, _ = await cli("trace", "bad-1", "--store", store)
    assert rc == 0 and "rejected (final)" in out and "invalid_request" in out
    assert "  to -  from -" in out and "None" not in out, out

    rc, _, err = await cli("trace", "nope", "--store", store)
    assert rc == 1 and "no message 'nope'" in err

    rc, out, _ = await cli("stats", "--store", store, "--json")
    doc = orjson.loads(out)
    assert rc == 0 and doc["queue"] == []
    outcomes = {(r["state"], r["smsc"]): r["count"] for r in doc["outcomes"]}
    assert outcomes[("delivered", "carrier-a")] == 1 and outcomes[("rejected", "")] == 1
    rc, out, _ = await cli("stats", "--store", store)
    assert rc == 0 and "delivered" in out and "carrier-a" in out and "(empty)" in out


async def test_check_config(tmp_path: Path) -> None:
    doc = {"engine": {"store": str(tmp_path / "x.db")},
           "smsc": [{"name": "a", "host": "127.0.0.1", "port": 2775, "system_id": "acme", "password": "secret"}]}
    good = write_toml(str(tmp_path / "good.toml"), doc)
    rc, out, _ = await cli("check-config", good)
    assert (rc, out.strip()) == (0, f"{good}: OK (1 SMSC, 1 route)")
    doc["smsc"][0]["tps"] = 0
    bad = write_toml(str(tmp_path / "bad.toml"), doc)
    rc, out, err = await cli("check-config", bad)
    assert rc == 2 and out == ""
    assert err.strip() == f"config error: {bad}: smsc[0].tps: expected a positive number, got 0"


async def test_trace_of_an_expired_message_names_its_destination_and_the_parts_never_sent(
        tmp_path: Path, broker: Mosquitto, sim: Simulator) -> None:
    path = str(tmp_path / "e.db")
    cfg = make_config(path, broker.url, [smsc("busy", sim.port)])
    store = cfg.engine.store
    sim.fail_next(10_000, 0x08)                     # ESME_RSYSERR, transient: retried until the ttl passes
    async with Watcher(broker.url) as w, running_engine(cfg) as engine:
        await wait_bound(engine)
        await w.publish({"id": "late-1", "to": "+447700900123", "text": "Your parcel is on its way. " * 8,
                         "ttl": 2})
        await w.wait_final(["late-1"])
    assert w.final("late-1")[0]["state"] == "expired"
    rc, out, err = await cli("trace", "late-1", "--store", store)
    assert rc == 0, err
    assert out.splitlines()[0] == "message late-1: expired (final)"
    assert "to +447700900123  from -" in out and "None" not in out, out
    parts = out.split("  parts:\n", 1)[1].split("  events:", 1)[0].splitlines()
    assert parts and all("not sent" in line and "pending" not in line for line in parts), out


async def test_check_config_never_prints_a_secret(tmp_path: Path) -> None:
    cases = {
        "password = 12345": "smsc[0].password: expected a string, got an integer",
        "password = [\"hunter22\"]": "smsc[0].password: expected a string, got an array",
    }
    for line, expected in cases.items():
        path = tmp_path / "s.toml"
        path.write_text('[[smsc]]\nname = "a"\nhost = "h"\nport = 1\nsystem_id = "x"\n' + line + "\n")
        for args in (("check-config", str(path)), ("run", "--config", str(path))):
            rc, out, err = await cli(*args)
            assert rc == 2 and err.strip() == f"config error: {path}: {expected}", (args, err)
            assert "12345" not in out + err and "hunter22" not in out + err
    path.write_text('[mqtt]\nusername = "u"\npassword = 987654\n[[smsc]]\nname = "a"\nhost = "h"\nport = 1\n'
                    'system_id = "x"\npassword = "y"\n')
    rc, out, err = await cli("check-config", str(path))
    assert rc == 2 and "mqtt.password: expected a string, got an integer" in err and "987654" not in err
    path.write_text('[mqtt]\nurl = "mqtt://u:s3cr3tpw@broker:port"\n[[smsc]]\nname = "a"\nhost = "h"\nport = 1\n'
                    'system_id = "x"\npassword = "y"\n')
    rc, out, err = await cli("check-config", str(path))
    assert rc == 2 and 'mqtt.url: invalid port in "mqtt://u:***@broker:port"' in err and "s3cr3tpw" not in err


async def test_parts_of_empty_text_is_an_error_like_the_engine_s() -> None:
    rc, out, err = await cli("parts", "")
    assert rc == 1 and out == ""
    assert err.strip() == "error: empty text: the engine rejects a request whose text is empty"


def test_every_sim_option_has_help_and_no_help_or_doc_points_to_a_missing_file() -> None:
    import argparse
    import subprocess

    from smppengine.cli import _parser

    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    sim = sub.choices["sim"]
    options = [a for a in sim._actions if a.option_strings and a.dest != "help"]
    assert len(options) >= 10
    assert [a.option_strings[0] for a in options if not a.help] == []
    for cmd in ("run", "send", "trace", "stats", "sim", "parts", "check-config"):
        out = subprocess.run([sys.executable, "-m", "smppengine.cli", cmd, "--help"], capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0 and "CONTRACT" not in out.stdout and "contract §" not in out.stdout, cmd
    root = Path(__file__).resolve().parent.parent
    for doc in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        text = doc.read_text()
        assert "CONTRACT.md" not in text and "contract §" not in text, doc.name


async def test_read_only_commands_never_create_a_postgresql_store() -> None:
    import uuid

    import asyncpg

    from .helpers import PG_URL, pg_store_url

    schema = "t_" + uuid.uuid4().hex[:16]
    url = pg_store_url(schema)
    for args in (("trace", "x", "--store", url), ("stats", "--store", url), ("optout", "--store", url, "list")):
        rc, out, err = await cli(*args)
        assert rc == 1 and out == "", (args, out, err)
        assert f"no smppengine tables in schema {schema}" in err, err
    conn = await asyncpg.connect(PG_URL)
    try:
        assert await conn.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname = $1", schema) == 0
    finally:
        await conn.close()
