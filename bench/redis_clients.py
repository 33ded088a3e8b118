"""freeapi's own RESP client vs redis-py (asyncio, hiredis parser), same run, same server.

The store's hot operations, as RedisStore sends them: the limits `hit` script (EVALSHA of
the real _HITS script, two counters), key-health get (MGET of 3 `kh` records) and a kv_get
(MGET of one JSON record). For each client and operation: latency one at a time (p50 /
p99, microseconds) and throughput with 64 callers at once (operations per second). It
starts its own redis-server on a free port in a temporary directory (never the shared
one) and stops it by its pid.

    PYTHONPATH=$PWD:/tmp/redispy .venv/bin/python bench/redis_clients.py [--n 4000]

redis-py is not a dependency of freeapi: install it somewhere apart for this bench
(`pip install --target /tmp/redispy redis hiredis`) and put that on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from freeapi.store.redis import _HITS
from freeapi.store.resp import RespClient

PREFIX = "bench:"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(tmp: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", tmp],
                            stdout=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.1).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    raise SystemExit("redis-server did not start")


def ops_for(send_own, send_py):
    """(name, own coroutine factory, redis-py coroutine factory) per hot operation."""
    hit_keys = [f"{PREFIX}c:k1:rpm", f"{PREFIX}c:k1:tpm"]
    hit_args = [1, 60000, 10**9, 0, 60000, 10**9]
    kh = [f"{PREFIX}kv:kh:deepseek:{i}" for i in range(3)]
    kv = [f"{PREFIX}kv:rm:abc"]
    return [
        ("limits hit (EVALSHA)",
         lambda: send_own("EVALSHA", _HITS.sha, 2, *hit_keys, *hit_args),
         lambda: send_py("EVALSHA", _HITS.sha, 2, *hit_keys, *hit_args)),
        ("key-health get (MGET x3)", lambda: send_own("MGET", *kh), lambda: send_py("MGET", *kh)),
        ("kv_get (MGET x1)", lambda: send_own("MGET", *kv), lambda: send_py("MGET", *kv)),
    ]


async def latency(factory, n: int) -> tuple[float, float]:
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        await factory()
        samples.append((time.perf_counter() - t) * 1e6)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99)]


async def throughput(factory, n: int, callers: int = 64) -> float:
    per = n // callers

    async def caller():
        for _ in range(per):
            await factory()
    t = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return per * callers / (time.perf_counter() - t)


async def main(n: int):
    try:
        import redis.asyncio as aredis
        from redis.utils import HIREDIS_AVAILABLE
    except ImportError:
        raise SystemExit("redis-py is not importable: see this file's docstring")
    tmp = tempfile.mkdtemp(prefix="freeapi-bench-redis-")
    proc, port = start_redis(tmp)
    try:
        url = f"redis://127.0.0.1:{port}/0"
        own = RespClient(url, 5)
        py = aredis.Redis.from_url(url, max_connections=64)
        health = json.dumps({"state": "ok", "until": 0, "fails": 0, "why": "x" * 40})
        await own.execute("SCRIPT", "LOAD", _HITS.source)
        for i in range(3):
            await own.execute("SET", f"{PREFIX}kv:kh:deepseek:{i}", health)
        await own.execute("SET", f"{PREFIX}kv:rm:abc", json.dumps({"text": "y" * 800}))
        rows = []
        for name, f_own, f_py in ops_for(own.execute, py.execute_command):
            for client, f in (("freeapi resp.py", f_own), ("redis-py + hiredis", f_py)):
                await latency(f, n // 10)  # warm up (connections, pool)
                p50, p99 = await latency(f, n)
                tput = await throughput(f, n * 2)
                rows.append((name, client, p50, p99, tput))
        print(f"redis-py {aredis.__name__} hiredis={HIREDIS_AVAILABLE}, n={n}, "
              f"python {sys.version.split()[0]}")
        print(f"{'operation':26} {'client':20} {'p50 us':>8} {'p99 us':>8} {'ops/s (c=64)':>13}")
        for name, client, p50, p99, tput in rows:
            print(f"{name:26} {client:20} {p50:8.1f} {p99:8.1f} {tput:13.0f}")
        own.close()
        await py.aclose()
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=4000)
    asyncio.run(main(ap.parse_args().n))
