"""Log output of a running `smppengine run`: a SIGHUP that changes `[log] format` changes every line, also those
of loggers bound before it (an SMPP session binds its logger when it is created)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

from smppengine.broker import Mosquitto
from smppengine.simulator import Simulator

from .helpers import EngineProcess, smsc, write_toml


async def _wait_text(engine: EngineProcess, start: int, word: str, n: int = 1, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while sum(1 for d in engine.lines[start:] if d.get("event") == "_text" and word in d["text"]) < n:
            assert engine.proc is not None and engine.proc.returncode is None, engine.lines[-10:]
            await asyncio.sleep(0.05)


async def test_sighup_switches_every_line_to_the_new_format(tmp_path: Path, broker: Mosquitto, sim: Simulator) -> None:
    doc: dict[str, Any] = {
        "engine": {"instance": "fmt", "store": str(tmp_path / "engine.db")},
        "mqtt": {"url": broker.url}, "http": {"listen": ""}, "log": {"level": "info", "format": "json"},
        "smsc": [smsc("a", sim.port)],
    }
    path = write_toml(str(tmp_path / "engine.toml"), doc)
    engine = EngineProcess(path)
    await engine.start()
    try:
        await engine.wait_log("engine_ready")
        await engine.wait_log("session_bound")
        assert engine.proc is not None

        # JSON -> console, and a's window changes: its session (bound under JSON) is closed after the reload
        doc["log"]["format"] = "console"
        doc["smsc"][0]["window"] = 7
        write_toml(path, doc)
        mark = len(engine.lines)
        engine.proc.send_signal(signal.SIGHUP)
        await _wait_text(engine, mark, "config_reloaded")
        await _wait_text(engine, mark, "session_closed")
        await _wait_text(engine, mark, "session_bound")
        after = engine.lines[mark:]
        assert [d for d in after if d.get("event") != "_text"] == [], "JSON lines after the switch to console"

        # console -> JSON, a rebound again: the session bound under console closes in JSON
        doc["log"]["format"] = "json"
        doc["smsc"][0]["window"] = 8
        write_toml(path, doc)
        mark = len(engine.lines)
        engine.proc.send_signal(signal.SIGHUP)
        await engine.wait_log("config_reloaded")
        await engine.wait_log("session_bound", n=2)
        await engine.wait_log("session_closed")         # the first one in JSON: the one of this reload
        after = engine.lines[mark:]
        assert [d["text"] for d in after if d.get("event") == "_text"] == [], "console lines after the switch"
        closed = [d for d in after if d.get("event") == "session_closed"]
        assert closed and closed[0]["session"] == "a/0" and closed[0]["smsc"] == "a"
    finally:
        assert await engine.terminate() == 0


def test_a_logger_bound_before_a_change_follows_the_new_format_and_level() -> None:
    import io

    import orjson
    import structlog

    from smppengine import logs

    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=True)
    try:
        logs.configure("info", "json", stream=out)
        bound = structlog.get_logger("t").bind(session="s/0")
        bound.info("first", password="hunter2")
        logs.configure("warning", "console", stream=out)
        bound.info("hidden")
        bound.warning("second")
        logs.configure("info", "json", stream=out)
        bound.info("third")
        lines = out.buffer.getvalue().decode().splitlines()   # type: ignore[attr-defined]
    finally:
        logs.configure("info", "auto")
    assert len(lines) == 3
    first, third = orjson.loads(lines[0]), orjson.loads(lines[2])
    assert (first["event"], first["session"], first["password"]) == ("first", "s/0", "***")
    assert not lines[1].startswith("{") and "second" in lines[1] and "session=s/0" in lines[1]
    assert third["event"] == "third" and third["session"] == "s/0"
