"""The state store's two hot operations on each backend, on this machine: a limit check
(`hits`: rpm + tpm of one key, as a request with limits does, awaited alone) and the
ledger's background writing (entries recorded, then flushed). Figures, not assertions.

    python bench/state_backends.py [--n 2000] [--rows 20000]

SQLite in a temporary file; Redis on 127.0.0.1:6379 and PostgreSQL on 127.0.0.1:5432/test
(FREEAPI_TEST_REDIS / FREEAPI_TEST_POSTGRES), each under a prefix or schema of its own,
removed afterwards. PostgreSQL needs asyncpg (pip install 'freeapi[postgres]').
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time

from freeapi.store import Hit
from freeapi.store.redis import RedisStore
from freeapi.store.sqlite import SQLiteStore

REDIS = os.environ.get("FREEAPI_TEST_REDIS", "redis://127.0.0.1:6379/0")
POSTGRES = os.environ.get("FREEAPI_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def entry(i):
    return {"ts": time.time(), "key": "alice", "vendor_key": "sk-...0001",
            "provider": "deepseek", "model": "deepseek-chat", "status": 200,
            "stream": True, "latency_ms": 120 + i % 50, "ttfb_ms": 40, "prompt_tokens": 11,
            "completion_tokens": 7, "total_tokens": 18, "endpoint": "chat",
            "request_id": f"r{i}", "estimated": False}


async def measure(name, store, n, rows):
    await store.ping()
    lat = []
    for i in range(n):
        t = time.perf_counter()
        await store.hits([Hit(f"k{i % 50}:rpm", 1, 60, 10 ** 9),
                          Hit(f"k{i % 50}:tpm", 0, 60, 10 ** 9)])
        lat.append(time.perf_counter() - t)
    lat.sort()
    t = time.perf_counter()
    for i in range(rows):
        store.record(entry(i))
        if i % 500 == 499:
            await asyncio.sleep(0)  # as requests would: the writer gets its turns
    await store.flush(timeout=120)
    ledger_s = time.perf_counter() - t
    print(f"{name:15} hits p50 {lat[n // 2] * 1e6:6.0f}us p99 {lat[int(n * .99)] * 1e6:6.0f}us"
          f" | ledger {rows / ledger_s:8.0f} rows/s")


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--rows", type=int, default=20000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        s = SQLiteStore(os.path.join(tmp, "b.db"))
        await measure("sqlite", s, args.n, args.rows)
        s.close()
    prefix = f"freeapi-bench:{os.urandom(4).hex()}:"
    r = RedisStore(REDIS, prefix=prefix)
    await measure("redis", r, args.n, args.rows)
    await r.delete_all()
    r.close()
    try:
        import asyncpg
    except ImportError:
        print("postgres: not measured (asyncpg is not installed)")
        return
    from freeapi.store.postgres import PostgresStore
    for hot in (False, True):
        schema = f"bench_{os.urandom(4).hex()}"
        admin = await asyncpg.connect(POSTGRES)
        await admin.execute(f"CREATE SCHEMA {schema}")
        try:
            hot_store = RedisStore(REDIS, prefix=prefix) if hot else None
            p = PostgresStore(f"{POSTGRES}?search_path={schema}", hot=hot_store)
            await measure("postgres+redis" if hot else "postgres", p, args.n, args.rows)
            if hot_store is not None:
                await hot_store.delete_all()
            await p.aclose()
        finally:
            await admin.execute(f"DROP SCHEMA {schema} CASCADE")
            await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
