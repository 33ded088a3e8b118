"""What `model: "free"` adds to a request before it is sent: one read of the used-up
quotas from the state store and the candidates' health (freeapi/free.py), against
resolving a model by name. No network to vendors; the store is SQLite in memory (the
zero-config default) or Redis (`--redis URL`).

    .venv/bin/python bench/free_routing.py [--redis redis://127.0.0.1:6379/0]

Prints microseconds per resolution (best of 5 runs of N). Timing figures belong here,
not in unit tests.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

from freeapi.app import Gateway
from freeapi.config import parse_config
from freeapi.plugins import make_plugin_manager, provider_types


def gateway(redis: str | None) -> Gateway:
    pm = make_plugin_manager()
    types = provider_types(pm)
    cfg = {"auth": {"keys": ["bench-key"]},
           "providers": {"glm": {"api_keys": ["0123456789abcdef0123456789abcdef.Bench1"]},
                         "qwen": {"api_keys": ["sk-bench-qwen-000000000001"],
                                  "free_quota_only": True},
                         "local": {"type": "openai", "base_url": "http://127.0.0.1:9/v1",
                                   "models": ["llama3"], "discover": False}},
           "free": {"add": ["local/llama3"]}}
    if redis:
        cfg["state"] = {"redis_url": redis, "prefix": f"freeapi-bench-{uuid.uuid4().hex}:"}
    return Gateway(parse_config(cfg, types), pm, types)


async def per_call(fn, n: int) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            await fn()
        best = min(best, (time.perf_counter() - start) / n)
    return best * 1e6


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--redis")
    ap.add_argument("-n", type=int, default=2000)
    args = ap.parse_args()
    gw = gateway(args.redis)
    try:
        await gw.resolve_fresh("free")  # opens the store
        rows = [("glm-4.7-flash (by name)", lambda: gw.resolve_fresh("glm-4.7-flash")),
                ("free (8 candidates)", lambda: gw.resolve_fresh("free")),
                ("free-embedding (2)", lambda: gw.resolve_fresh("free-embedding"))]
        print(f"store: {gw.store.describe()}")
        for label, fn in rows:
            print(f"{label:28} {await per_call(fn, args.n):8.1f} us/call")
        if args.redis:
            await gw.store.delete_all()
    finally:
        gw.close()


if __name__ == "__main__":
    asyncio.run(main())
