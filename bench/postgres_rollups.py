"""What the rollups cost the PostgreSQL ledger's writer, and what reading them costs.

Writes N random ledger entries (20 keys, 3 teams, 8 models; in time order at --rate
requests/s, as a live gateway makes them, or with --spread scattered over the last day, as
a backfill would) in batches of --batch, as the background writer does, into a schema of
its own, once with the rollups written in the batch's transaction (this branch) and once
with the rollup write left out (the ledger alone, as before): entries/s of each. Then the
reads behind /v1/status and GET /admin/keys: rollup_sum over the day's 24 hour buckets and
one day bucket per dimension, median of 50 calls each.

Run (from a worktree; PostgreSQL at FREEAPI_TEST_POSTGRES or 127.0.0.1:5432/test):
    /work/main/.venv/bin/python bench/postgres_rollups.py [--rows N] [--batch B]
Not a test: prints figures only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from freeapi import rollups as R  # noqa: E402
from freeapi.store import postgres_rollups  # noqa: E402
from freeapi.store.postgres import PostgresStore  # noqa: E402
from tests.conftest import POSTGRES_URL, with_search_path  # noqa: E402


def entries(n: int, now: float, rate: float = 200.0, spread: bool = False) -> list[dict]:
    rnd = random.Random(7)
    models = ["deepseek-chat", "deepseek-reasoner", "glm-4.7", "glm-5.3", "qwen3.7-max",
              "kimi-k2.6", "MiniMax-M2.7", "embedding-3"]
    return [{"ts": now - (rnd.uniform(0, 86400) if spread else (n - i) / rate), "key_id": f"k_{rnd.randrange(20)}",
             "team": f"t_{rnd.randrange(3)}", "model": rnd.choice(models),
             "provider": "deepseek", "status": rnd.choice([200] * 9 + [429]),
             "stream": True, "latency_ms": rnd.randint(50, 9000), "ttfb_ms": 40,
             "prompt_tokens": rnd.randint(0, 4000), "completion_tokens": 300,
             "cached_tokens": 0, "reasoning_tokens": None, "total_tokens": None,
             "cost": 0.001, "currency": "USD", "unpriced": False}
            for i in range(n)]


async def write(url: str, rows: list[dict], batch: int) -> float:
    store = PostgresStore(url)
    await store.ping()
    t0 = time.perf_counter()
    for at in range(0, len(rows), batch):
        await store.ledger_append(rows[at:at + batch])
    took = time.perf_counter() - t0
    await store.aclose()
    return len(rows) / took


async def median_ms(call, n=50) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        await call()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--spread", action="store_true")
    args = ap.parse_args()
    import asyncpg
    con = await asyncpg.connect(POSTGRES_URL)
    schemas = [f"freeapi_bench_{os.urandom(4).hex()}" for _ in range(2)]
    for s in schemas:
        await con.execute(f"CREATE SCHEMA {s}")
    try:
        now = time.time()
        rows = entries(args.rows, now, args.rate, args.spread)
        per_batch = statistics.mean(
            len(postgres_rollups.rollup_columns(R.increments(rows[at:at + args.batch]))[0])
            for at in range(0, len(rows), args.batch))
        with_rollups = await write(with_search_path(POSTGRES_URL, schemas[0]), rows,
                                   args.batch)
        real = postgres_rollups.add_rollups

        async def none(con, part):
            return None
        postgres_rollups.add_rollups = none
        import freeapi.store.postgres as pg
        pg.add_rollups = none
        alone = await write(with_search_path(POSTGRES_URL, schemas[1]), rows, args.batch)
        pg.add_rollups = postgres_rollups.add_rollups = real
        print(f"ledger writes, {args.rows} entries in batches of {args.batch} "
              f"({'spread over a day' if args.spread else f'{args.rate:g} req/s'}; "
              f"{per_batch:,.0f} rollup rows a batch): {alone:,.0f}/s ledger alone, "
              f"{with_rollups:,.0f}/s with rollups")
        store = PostgresStore(with_search_path(POSTGRES_URL, schemas[0]))
        hours, day = R.last("h", 24, now), R.last("d", 1, now)
        print(f"rollup_sum(h, model, 24 buckets): "
              f"{await median_ms(lambda: store.rollup_sum('h', 'model', hours)):.2f} ms")
        for dim in ("all", "key", "team", "model", "key_model"):
            ms = await median_ms(lambda: store.rollup_read("d", dim, day))
            print(f"rollup_read(d, {dim}, 1 bucket): {ms:.2f} ms")
        ms = await median_ms(lambda: store.ledger_page(key="k_3", limit=100))
        print(f"ledger_page(key=..., limit=100): {ms:.2f} ms")
        await store.aclose()
    finally:
        for s in schemas:
            await con.execute(f"DROP SCHEMA {s} CASCADE")
        await con.close()


if __name__ == "__main__":
    asyncio.run(main())
