"""asyncpg vs psycopg 3 (async) on this machine's PostgreSQL: the store's three shapes of
work — one small INSERT, one indexed SELECT (each awaited alone, as a request would) and
a batch INSERT of ledger rows (as the background writer does: one INSERT ... SELECT FROM
unnest(arrays), beside executemany and COPY). Figures, not assertions.

    python bench/postgres_driver.py [postgresql://127.0.0.1:5432/test] [--n 2000]

Needs both drivers: pip install asyncpg 'psycopg[binary]' psycopg-pool. Each run works in
a schema of its own and drops it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

COLS = "ts double precision, key text, model text, status int, prompt_tokens int, " \
       "completion_tokens int"
ROW = (0.0, "alice", "deepseek-chat", 200, 11, 7)
# One statement for a whole batch, as freeapi/store/postgres.py writes the ledger.
UNNEST = ("INSERT INTO t (ts, key, model, status, prompt_tokens, completion_tokens) SELECT * "
          "FROM unnest(%s::float8[], %s::text[], %s::text[], %s::int4[], %s::int8[], "
          "%s::int8[])")


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] * 1e6


async def bench_asyncpg(dsn, schema, n, batch):
    import asyncpg
    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=4,
                                     server_settings={"search_path": schema})
    await pool.execute(f"CREATE TABLE t (id bigserial primary key, {COLS})")
    ins, sel = [], []
    for i in range(n):
        t = time.perf_counter()
        await pool.execute("INSERT INTO t (ts, key, model, status, prompt_tokens, "
                           "completion_tokens) VALUES ($1, $2, $3, $4, $5, $6)",
                           float(i), *ROW[1:])
        ins.append(time.perf_counter() - t)
    for i in range(n):
        t = time.perf_counter()
        await pool.fetchrow("SELECT * FROM t WHERE id = $1", i + 1)
        sel.append(time.perf_counter() - t)
    rows = [(float(i),) + ROW[1:] for i in range(batch)]
    t = time.perf_counter()
    async with pool.acquire() as con:
        await con.copy_records_to_table("t", records=rows, columns=[
            "ts", "key", "model", "status", "prompt_tokens", "completion_tokens"])
    copy_s = time.perf_counter() - t
    t = time.perf_counter()
    await pool.executemany("INSERT INTO t (ts, key, model, status, prompt_tokens, "
                           "completion_tokens) VALUES ($1, $2, $3, $4, $5, $6)", rows)
    many_s = time.perf_counter() - t
    cols = [list(c) for c in zip(*rows)]
    t = time.perf_counter()
    await pool.execute(UNNEST.replace("%s", "${}").format(*range(1, 7)), *cols)
    unnest_s = time.perf_counter() - t
    await pool.close()
    return ins, sel, many_s, copy_s, unnest_s


async def bench_psycopg(dsn, schema, n, batch):
    from psycopg_pool import AsyncConnectionPool
    pool = AsyncConnectionPool(dsn, min_size=2, max_size=4, open=False,
                               kwargs={"options": f"-c search_path={schema}",
                                       "autocommit": True})
    await pool.open()
    async with pool.connection() as con:
        await con.execute(f"CREATE TABLE t (id bigserial primary key, {COLS})")
    ins, sel = [], []
    for i in range(n):
        t = time.perf_counter()
        async with pool.connection() as con:
            await con.execute("INSERT INTO t (ts, key, model, status, prompt_tokens, "
                              "completion_tokens) VALUES (%s, %s, %s, %s, %s, %s)",
                              (float(i), *ROW[1:]))
        ins.append(time.perf_counter() - t)
    for i in range(n):
        t = time.perf_counter()
        async with pool.connection() as con:
            await (await con.execute("SELECT * FROM t WHERE id = %s", (i + 1,))).fetchone()
        sel.append(time.perf_counter() - t)
    rows = [(float(i),) + ROW[1:] for i in range(batch)]
    t = time.perf_counter()
    async with pool.connection() as con:
        async with con.cursor().copy("COPY t (ts, key, model, status, prompt_tokens, "
                                     "completion_tokens) FROM STDIN") as cp:
            for r in rows:
                await cp.write_row(r)
    copy_s = time.perf_counter() - t
    t = time.perf_counter()
    async with pool.connection() as con:
        await con.cursor().executemany(
            "INSERT INTO t (ts, key, model, status, prompt_tokens, completion_tokens) "
            "VALUES (%s, %s, %s, %s, %s, %s)", rows)
    many_s = time.perf_counter() - t
    cols = [list(c) for c in zip(*rows)]
    t = time.perf_counter()
    async with pool.connection() as con:
        await con.execute(UNNEST, cols)
    unnest_s = time.perf_counter() - t
    await pool.close()
    return ins, sel, many_s, copy_s, unnest_s


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dsn", nargs="?", default="postgresql://postgres@127.0.0.1:5432/test")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=5000)
    args = ap.parse_args()
    import asyncpg
    admin = await asyncpg.connect(args.dsn)
    for name, fn in (("asyncpg", bench_asyncpg), ("psycopg3", bench_psycopg)):
        schema = f"bench_{os.urandom(4).hex()}"
        await admin.execute(f"CREATE SCHEMA {schema}")
        try:
            ins, sel, many_s, copy_s, unnest_s = await fn(args.dsn, schema, args.n,
                                                          args.batch)
        finally:
            await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        print(f"{name:9} insert p50 {pct(ins, .5):6.0f}us p99 {pct(ins, .99):6.0f}us | "
              f"select p50 {pct(sel, .5):6.0f}us p99 {pct(sel, .99):6.0f}us | "
              f"batch {args.batch}: executemany {args.batch / many_s:8.0f} rows/s, "
              f"copy {args.batch / copy_s:8.0f} rows/s, "
              f"unnest {args.batch / unnest_s:8.0f} rows/s")
    await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
