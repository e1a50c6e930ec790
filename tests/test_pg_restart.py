"""PostgreSQL goes away mid-flow: every connection to it is cut and new ones are refused for 2 s.

The engines (real `smppengine run` processes) reach PostgreSQL through tests/delayproxy.py (no delay),
which aborts every connection (RST both ways) and closes its listening port for 2 s, as a PostgreSQL
restart or a network cut does. Messages are at every stage when it happens: being accepted, submitted,
answered, receipted, published. Afterwards:

- every request reaches exactly one final state (`delivered`: the simulator receipts everything);
- no message is submitted twice at the simulator (the engine process never stopped: what it knew when the
  connection went, it still knows, and a submit whose attempt or resp was not committed is not re-sent);
- the engine says so in its log: a line for the lost store (`store_connection_lost`, or
  `store_commit_failed` / `requests_not_committed` from a commit that failed) and `store_reconnected` after
  it, by itself, without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from pathlib import Path
from typing import Any

from smppengine.broker import Mosquitto

from .delayproxy import DelayProxy
from .helpers import EngineProcess, SimProcess, Watcher, drop_pg_schemas, pg_store_url, smsc, write_toml

LOST_EVENTS = {"store_connection_lost", "store_commit_failed", "requests_not_committed"}
REFUSE_S = 2.0


def _proxied(url: str, port: int) -> str:
    """The store URL with 127.0.0.1:5432 replaced by the proxy's port."""
    head, _, tail = url.partition("://")
    auth, _, rest = tail.partition("@")
    _, _, path = rest.partition("/")
    return f"{head}://{auth}@127.0.0.1:{port}/{path}"


def _lost_then_regained(e: EngineProcess) -> str | None:
    """None when the log has a lost-store line followed by `store_reconnected`, else what is missing."""
    events = [d.get("event") for d in e.lines]
    lost = [i for i, ev in enumerate(events) if ev in LOST_EVENTS]
    if not lost:
        return f"no {sorted(LOST_EVENTS)} line"
    if not any(ev == "store_reconnected" for ev in events[lost[0]:]):
        return "no store_reconnected line after the store was lost"
    return None


async def _stored_states(schema: str, ids: list[str]) -> dict[str, Any]:
    """Where the given messages are in the store (read directly, not through the proxy): their states, and
    how many status events wait in the outbox."""
    import asyncpg

    from .helpers import PG_URL

    try:
        conn = await asyncpg.connect(PG_URL, server_settings={"search_path": schema})
    except (OSError, asyncpg.PostgresError) as exc:
        return {"error": repr(exc)}
    try:
        rows = await conn.fetch("SELECT state, COUNT(*) AS n FROM messages WHERE id = ANY($1::text[]) GROUP BY state",
                                ids)
        out: dict[str, Any] = {str(r["state"]): int(r["n"]) for r in rows}
        out["not_stored"] = len(ids) - sum(int(r["n"]) for r in rows)
        out["outbox_rows"] = int(await conn.fetchval("SELECT COUNT(*) FROM outbox"))
        return out
    except asyncpg.PostgresError as exc:
        return {"error": repr(exc)}
    finally:
        await conn.close()


async def _run_cut(tmp_path: Path, broker: Mosquitto, instances: int, n: int) -> None:
    sim = SimProcess()                 # records every submit; receipts at once
    await sim.start()
    proxy = DelayProxy(0.0)
    port = await proxy.add("pg", "127.0.0.1", 0, "127.0.0.1", 5432)
    url = pg_store_url()
    schema = url.rsplit("schema=", 1)[1]
    engines: list[EngineProcess] = []
    try:
        for k in range(instances):
            cfg: dict[str, Any] = {
                "engine": {"instance": f"r{k}", "store": _proxied(url, port), "instances": instances,
                           "lease_s": 30},
                "mqtt": {"url": broker.url, **({"share_group": "cut"} if instances > 1 else {})},
                "http": {"listen": ""},
                "log": {"level": "info", "format": "json"},
                "smsc": [smsc("acct", sim.port, binds=2, window=50, tps=100_000)],
            }
            engines.append(EngineProcess(write_toml(str(tmp_path / f"r{k}.toml"), cfg)))
        for e in engines:
            await e.start()
            await e.wait_log("engine_ready", timeout=60)
            await e.wait_log("session_bound", n=2, timeout=30)
        ids = [f"cut{k:05d}" for k in range(n)]
        async with Watcher(broker.url, persistent=True) as w:
            async def publish(chunk: list[str]) -> None:
                for j in range(0, len(chunk), 100):
                    await asyncio.gather(*(w.publish({"id": i, "to": "+447700900123", "text": f"cut {i}"})
                                           for i in chunk[j:j + 100]))

            await publish(ids[: n // 2])
            await w.wait(lambda: len(w.final_ids) >= n // 8, timeout=60, what="an eighth of the messages final")
            cut = await proxy.cut(REFUSE_S)
            assert cut > 0, "the engines had no connection to PostgreSQL to cut"
            # the rest arrives while PostgreSQL cannot be reached: nothing may be acknowledged before its commit
            await publish(ids[n // 2:])
            try:
                await w.wait_final(ids, timeout=120)
            except AssertionError:
                tails = {f"r{k}": [d.get("event") for d in e.lines[-15:]] for k, e in enumerate(engines)}
                missing = [i for i in ids if i not in w.final_ids]
                before = sum(1 for i in missing if i in ids[: n // 2])
                seen = Counter(w.states(i)[-1] if w.states(i) else "none" for i in missing)
                stored = await _stored_states(schema, missing)
                raise AssertionError(f"{len(missing)} of {n} without a final state after 120 s ({before} published "
                                     f"before the cut), their last events {dict(seen)}, in the store: {stored}; "
                                     f"engine log tails: {tails}") from None
            await asyncio.sleep(0.5)   # let a duplicate final event, if any, arrive
        for i in ids:
            finals = {ev["state"] for ev in w.final(i)}
            assert finals == {"delivered"}, (i, w.states(i))
        per_text = Counter(r["short_message"] for r in await sim.submits() if r["status"] == 0)
        sent = {bytes.fromhex(t).decode(): c for t, c in per_text.items()}
        assert all(sent.get(f"cut {i}", 0) >= 1 for i in ids)
        twice = {t: c for t, c in sent.items() if c > 1}
        assert not twice, f"{len(twice)} messages submitted more than once, e.g. {list(twice.items())[:5]}"
        for k, e in enumerate(engines):
            missing = _lost_then_regained(e)
            assert missing is None, f"instance r{k}: {missing}; last lines {e.lines[-10:]}"
            assert e.proc is not None and e.proc.returncode is None, f"instance r{k} exited"
        print(f"\n{n} messages on {instances} instance(s), {cut} PostgreSQL connections cut, {REFUSE_S} s refused: "
              f"all delivered once; store_reconnected lines: {[e.count('store_reconnected') for e in engines]}")
    finally:
        for e in engines:
            if e.proc is not None and e.proc.returncode is None:
                with contextlib.suppress(Exception):
                    await e.terminate(timeout=20)
        await proxy.close()
        await sim.stop()
        await drop_pg_schemas([schema])


async def test_postgresql_connections_cut_mid_flow_one_instance(tmp_path: Path, broker: Mosquitto) -> None:
    await _run_cut(tmp_path, broker, instances=1, n=600)


async def test_postgresql_connections_cut_mid_flow_three_instances(tmp_path: Path, broker: Mosquitto) -> None:
    await _run_cut(tmp_path, broker, instances=3, n=900)
