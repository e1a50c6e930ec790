"""Smoke test of the benchmark scripts: they run and print one JSON line with the documented keys.

Not a performance test: no figure is compared with a threshold, except lost / duplicates == 0.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
E2E_KEYS = {"n", "submit_msg_s", "full_life_msg_s", "engine_cpu_s_per_1k", "peak_rss_mb", "lost", "duplicates",
            "sink_ceiling_msg_s"}
MICRO_KEYS = {"pdu_encode_submit_sm_us", "pdu_decode_deliver_sm_us", "receipt_parse_us", "text_gsm7_1part_us",
              "store_accept_batch100_us", "store_accept_batch1000_us", "store_part_submitted_us", "store_receipt_us"}


def _one_json_line(argv: list[str], timeout: float) -> dict[str, object]:
    proc = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stdout[-2000:]
    doc = json.loads(lines[0])
    assert isinstance(doc, dict)
    return doc


def test_bench_scripts_smoke() -> None:
    e2e = _one_json_line(["bench/e2e.py", "--n", "300", "--ceiling-n", "500", "--pin", "0", "--repeat", "2"],
                         timeout=50)
    assert E2E_KEYS <= e2e.keys()
    assert e2e["n"] == 300
    assert e2e["lost"] == 0 and e2e["duplicates"] == 0
    assert len(e2e["runs_full_life_msg_s"]) == 2 and e2e["pinned"] == "0"
    assert e2e["machine"]["yardstick_ms"] > 0 and e2e["machine"]["nproc"] >= 1   # type: ignore[index]
    micro = _one_json_line(["bench/micro.py", "--quick"], timeout=20)
    assert MICRO_KEYS <= micro.keys()
    assert all(isinstance(micro[k], int | float) for k in MICRO_KEYS)
    assert micro["machine"]["yardstick_ms"] > 0   # type: ignore[index]


def test_bench_e2e_on_the_postgresql_store_leaves_no_schema_behind() -> None:
    import asyncio

    import asyncpg

    from .helpers import PG_URL

    async def bench_schemas() -> int:
        conn = await asyncpg.connect(PG_URL)
        try:
            return int(await conn.fetchval(
                "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name LIKE 'bench\\_%'"))
        finally:
            await conn.close()

    before = asyncio.run(bench_schemas())
    e2e = _one_json_line(["bench/e2e.py", "--n", "200", "--ceiling-n", "0", "--pin", "0", "--store", PG_URL],
                         timeout=60)
    assert e2e["store"] == "postgresql" and e2e["n"] == 200
    # the engine's backends were found (writer, listener, read pool) and their CPU counted
    assert int(e2e["pg_backends"]) >= 3 and float(e2e["pg_backends_cpu_s_per_1k"]) >= 0   # type: ignore[arg-type]
    assert e2e["lost"] == 0 and e2e["duplicates"] == 0
    assert asyncio.run(bench_schemas()) == before


def test_bench_scale_runs_in_namespaces_and_leaves_nothing_behind() -> None:
    """bench/scale.py, one instance on loopback and one in a network namespace behind the 0.5 ms delay
    proxy: one JSON line with the per-part figures, nothing lost, and afterwards no namespace, no veth and
    no schema of its own left."""
    import asyncio

    import asyncpg

    async def scale_schemas(pid: int) -> int:
        conn = await asyncpg.connect(user="postgres", host="127.0.0.1", port=5432, database="smppbench")
        try:
            return int(await conn.fetchval(
                "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name LIKE $1", f"scale\\_{pid}\\_%"))
        finally:
            await conn.close()

    def namespaces() -> set[str]:
        out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
        return {line.split()[0] for line in out.splitlines() if line.startswith("smppb")}

    before = namespaces()
    doc = _one_json_line(["bench/scale.py", "--n", "150", "--instances", "1", "--modes", "loopback,netns0.5"],
                         timeout=240)
    assert doc["lost"] == 0 and doc["duplicates"] == 0 and doc["submitted_twice"] == 0
    runs = {r["mode"]: r for r in doc["runs"]}   # type: ignore[union-attr]
    assert set(runs) == {"loopback", "netns0.5"}
    for r in runs.values():
        assert r["msg_s"] > 0 and r["complete"]
        assert r["cpu_ms_per_msg"]["engines"] > 0 and r["cpu_ms_per_msg"]["pg_backends"] > 0
        assert r["xact_per_msg"] > 0 and r["instances"][0]["messages"] == 150
    proxied = runs["netns0.5"]
    assert proxied["instances"][0]["pg_chunks_per_msg"][0] > 0     # its PostgreSQL traffic went through the proxy
    # (a fraction of a chunk per message: the store's group commit is a few round trips per batch)
    assert proxied["proxy"]["hold_p50_ms"] >= 0.5                    # and was held at least the delay
    assert namespaces() == before
    pid = int(doc["pid"])   # type: ignore[arg-type]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    assert f"sb{pid % 100000}h" not in links
    assert asyncio.run(scale_schemas(pid)) == 0
