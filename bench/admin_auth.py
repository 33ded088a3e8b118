"""What runtime keys (freeapi/admin) cost: the auth check of one request (no network, no
event loop) for a config key, a runtime key among 10,000 and an unknown token, against
main's config-only check; and what keeping up with the store costs, per poll (one version
read), for the startup load of 10,000 records and for catching up with one change among
them, on SQLite and on Redis (127.0.0.1:6379).
Run: .venv/bin/python bench/admin_auth.py"""

import asyncio
import os
import tempfile
import time
import timeit
import uuid

from freeapi.admin.directory import Auth, Directory
from freeapi.admin.records import new_secret, secret_hash
from freeapi.config import GatewayKey
from freeapi.keys import GatewayAuth
from freeapi.store.redis import RedisStore
from freeapi.store.sqlite import SQLiteStore

N_KEYS = 10_000
N = 200_000


def records(n):
    keys, secrets = {}, []
    for i in range(n):
        secret = new_secret()
        secrets.append(secret)
        keys[f"key_{i}"] = {"id": f"key_{i}", "name": f"user{i}", "team": None,
                            "hashes": [{"hash": secret_hash(secret), "until": None}],
                            "created_at": 0, "revoked_at": None, "expires_at": None}
    return keys, secrets


def per_call(fn) -> float:
    return min(timeit.repeat(fn, number=N, repeat=3)) / N * 1e6


async def store_costs(store, keys):
    for i, (rid, rec) in enumerate(keys.items()):
        await store.admin_write("key", rid, rec, {"ts": time.time(), "actor": "bench"})
    d = Directory(store)
    t = time.perf_counter()
    polls = 200
    for _ in range(polls):
        await store.admin_version()
    poll = (time.perf_counter() - t) / polls * 1e3
    t = time.perf_counter()
    await d.refresh(force=True)
    reload_ms = (time.perf_counter() - t) * 1e3
    rid = next(iter(keys))
    await store.admin_write("key", rid, dict(keys[rid], rpm=5), {"ts": 0, "actor": "bench"})
    t = time.perf_counter()
    await d.refresh()
    change_ms = (time.perf_counter() - t) * 1e3
    return poll, reload_ms, change_ms


def main():
    config_keys = [GatewayKey(f"k{i}", f"gw-config-key-{i:08d}") for i in range(3)]
    plain = GatewayAuth(config_keys, False)
    keys, secrets = records(N_KEYS)
    directory = Directory(store=None)
    directory.install(1, keys, {})
    auth = Auth(GatewayAuth(config_keys, False), directory)
    config_token, runtime_token, unknown = config_keys[1].key, secrets[N_KEYS // 2], \
        new_secret()
    print(f"auth check per request, microseconds (best of 3 x {N}):")
    print(f"  main, config key (3 keys)            {per_call(lambda: plain.identify(config_token)):6.2f}")
    print(f"  this branch, config key               {per_call(lambda: auth.identify(config_token)):6.2f}")
    print(f"  this branch, runtime key of {N_KEYS}     {per_call(lambda: auth.identify(runtime_token)):6.2f}")
    print(f"  main, unknown token                   {per_call(lambda: plain.identify(unknown)):6.2f}")
    print(f"  this branch, unknown token            {per_call(lambda: auth.identify(unknown)):6.2f}")

    async def stores():
        with tempfile.TemporaryDirectory() as tmp:
            sqlite = SQLiteStore(os.path.join(tmp, "bench.db"))
            try:
                poll, reload_ms, change_ms = await store_costs(sqlite, keys)
                print(f"SQLite: one poll {poll:.3f} ms; startup load of {N_KEYS} keys "
                      f"{reload_ms:.0f} ms; catching up with one change {change_ms:.0f} ms")
            finally:
                sqlite.close()
        redis = RedisStore("redis://127.0.0.1:6379", prefix=f"bench-{uuid.uuid4().hex}:")
        try:
            poll, reload_ms, change_ms = await store_costs(redis, keys)
            print(f"Redis:  one poll {poll:.3f} ms; startup load of {N_KEYS} keys "
                  f"{reload_ms:.0f} ms; catching up with one change {change_ms:.0f} ms")
        finally:
            await redis.delete_all()
            redis.close()
    asyncio.run(stores())


if __name__ == "__main__":
    main()
