"""What a budgeted request waits for at admission: one Store.tally_reserve (the key's three
periods) beside one Store.hits (the rpm counter a key with limits waits for), per call,
sequentially, on an SQLite file and on Redis (127.0.0.1:6379):

    PYTHONPATH=$PWD .venv/bin/python bench/budget_tally.py
"""
import asyncio
import os
import tempfile
import time
import uuid

from freeapi.store import Tally, Hit
from freeapi.store.sqlite import SQLiteStore
from freeapi.store.redis import RedisStore


async def run(store, name):
    items = [Tally(f"b:k:{p}", 7000, 10**15, None) for p in ("d", "m", "t")]
    await store.tally_reserve(items)
    n = 2000
    t = time.perf_counter()
    for _ in range(n):
        await store.tally_reserve(items)
    r = (time.perf_counter() - t) / n * 1e6
    hits = [Hit("k:rpm", 1, 60, 10**9)]
    t = time.perf_counter()
    for _ in range(n):
        await store.hits(hits)
    h = (time.perf_counter() - t) / n * 1e6
    print(f"{name}: tally_reserve (key, 3 periods) {r:.0f} us/call; hits (one rpm counter) {h:.0f} us/call")



async def main():
    s = SQLiteStore(os.path.join(tempfile.mkdtemp(), "s.db"))
    await run(s, "sqlite file")
    s.close()
    r = RedisStore("redis://127.0.0.1:6379/0", prefix=f"bench:{uuid.uuid4().hex}:")
    await run(r, "redis")
    await r.delete_all()
    r.close()


asyncio.run(main())
