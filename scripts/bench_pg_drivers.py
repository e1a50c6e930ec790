"""Which PostgreSQL driver for the store: asyncpg or psycopg 3 (async)?

A batch of 1000 accept-like inserts (message row + outbox row, 300-byte payloads) in one transaction, then
commit -- the store's group-commit shape. psycopg is not a project dependency: pip install 'psycopg[binary]',
then: python scripts/bench_pg_drivers.py [DSN]
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid

import asyncpg
import psycopg

DSN = sys.argv[1] if len(sys.argv) > 1 else "postgresql://postgres@127.0.0.1:5432/test"
N = 1000
ROUNDS = 5
SCHEMA = "bench_" + uuid.uuid4().hex[:8]
DDL = [
    f"CREATE SCHEMA {SCHEMA}",
    f"CREATE TABLE {SCHEMA}.messages (id TEXT PRIMARY KEY, req BYTEA NOT NULL, state TEXT NOT NULL,"
    " created_at DOUBLE PRECISION NOT NULL)",
    f"CREATE TABLE {SCHEMA}.outbox (seq BIGSERIAL PRIMARY KEY, topic TEXT NOT NULL, payload BYTEA NOT NULL)",
]
PAYLOAD = b"x" * 300


def rows(tag: str) -> list[tuple[str, bytes, str, float]]:
    return [(f"{tag}-{i}", PAYLOAD, "queued", time.time()) for i in range(N)]


async def bench_asyncpg() -> dict[str, float]:
    c = await asyncpg.connect(DSN)
    out: dict[str, float] = {}
    ins = f"INSERT INTO {SCHEMA}.messages VALUES ($1,$2,$3,$4) ON CONFLICT DO NOTHING"
    obx = f"INSERT INTO {SCHEMA}.outbox(topic, payload) VALUES ($1,$2)"
    t = time.perf_counter()
    for _ in range(200):
        await c.fetchval("SELECT 1")
    out["round_trip_us"] = (time.perf_counter() - t) / 200 * 1e6
    for mode in ("one_by_one", "executemany", "unnest"):
        best = 1e9
        for r in range(ROUNDS):
            data = rows(f"a{mode}{r}")
            t = time.perf_counter()
            async with c.transaction():
                if mode == "one_by_one":
                    for row in data:
                        await c.execute(ins, *row)
                        await c.execute(obx, "sms/status/" + row[0], row[1])
                elif mode == "executemany":
                    await c.executemany(ins, data)
                    await c.executemany(obx, [("sms/status/" + d[0], d[1]) for d in data])
                else:
                    await c.execute(
                        f"INSERT INTO {SCHEMA}.messages SELECT * FROM unnest($1::text[], $2::bytea[], $3::text[],"
                        " $4::float8[]) ON CONFLICT DO NOTHING",
                        [d[0] for d in data], [d[1] for d in data], [d[2] for d in data], [d[3] for d in data])
                    await c.execute(f"INSERT INTO {SCHEMA}.outbox(topic, payload) SELECT * FROM unnest($1::text[],"
                                    " $2::bytea[])", ["sms/status/" + d[0] for d in data], [d[1] for d in data])
            best = min(best, time.perf_counter() - t)
        out[mode + "_rows_per_s"] = N / best
    await c.close()
    return out


async def bench_psycopg() -> dict[str, float]:
    c = await psycopg.AsyncConnection.connect(DSN)
    out: dict[str, float] = {}
    ins = f"INSERT INTO {SCHEMA}.messages VALUES (%s,%s,%s,%s) ON CONFLICT DO NOTHING"
    obx = f"INSERT INTO {SCHEMA}.outbox(topic, payload) VALUES (%s,%s)"
    t = time.perf_counter()
    for _ in range(200):
        await (await c.execute("SELECT 1")).fetchone()
    out["round_trip_us"] = (time.perf_counter() - t) / 200 * 1e6
    await c.commit()
    for mode in ("one_by_one", "pipeline", "executemany", "unnest"):
        best = 1e9
        for r in range(ROUNDS):
            data = rows(f"p{mode}{r}")
            t = time.perf_counter()
            async with c.transaction():
                if mode == "one_by_one":
                    for row in data:
                        await c.execute(ins, row)
                        await c.execute(obx, ("sms/status/" + row[0], row[1]))
                elif mode == "pipeline":
                    async with c.pipeline():
                        for row in data:
                            await c.execute(ins, row)
                            await c.execute(obx, ("sms/status/" + row[0], row[1]))
                elif mode == "executemany":
                    async with c.cursor() as cur:
                        await cur.executemany(ins, data)
                        await cur.executemany(obx, [("sms/status/" + d[0], d[1]) for d in data])
                else:
                    await c.execute(
                        f"INSERT INTO {SCHEMA}.messages SELECT * FROM unnest(%s::text[], %s::bytea[], %s::text[],"
                        " %s::float8[]) ON CONFLICT DO NOTHING",
                        ([d[0] for d in data], [d[1] for d in data], [d[2] for d in data], [d[3] for d in data]))
                    await c.execute(f"INSERT INTO {SCHEMA}.outbox(topic, payload) SELECT * FROM unnest(%s::text[],"
                                    " %s::bytea[])", (["sms/status/" + d[0] for d in data], [d[1] for d in data]))
            best = min(best, time.perf_counter() - t)
        out[mode + "_rows_per_s"] = N / best
    await c.close()
    return out


async def main() -> None:
    setup = await asyncpg.connect(DSN)
    for stmt in DDL:
        await setup.execute(stmt)
    try:
        for name, fn in (("asyncpg", bench_asyncpg), ("psycopg", bench_psycopg)):
            res = await fn()
            print(name, " ".join(f"{k}={v:,.0f}" for k, v in res.items()))
    finally:
        await setup.execute(f"DROP SCHEMA {SCHEMA} CASCADE")
        await setup.close()


if __name__ == "__main__":
    asyncio.run(main())
