"""Issue 17 item 3: the console's data with a busy day in the ledger.

Fills an SQLite state file with N ledger rows (default 1,000,000) spread over the last
24 h (20 keys, 3 teams, 8 models), their rollups included, then starts a real
`freeapi --config` on it and measures: GET /v1/status (each call uncached: one every
status.CACHE_S + 0.2 s) and GET /admin/keys, the process's RSS (VmHWM), and the longest
/ping wait while those run (a pinger every 5 ms on its own connection). Then the Redis
memory the rollups take, per request and in all (MEMORY USAGE over the rollup keys after
a day of requests fed through RedisStore.rollup_add).

Run (from a worktree):  /work/main/.venv/bin/python bench/rollups.py [--rows N]
                        [--tree /path/to/other/checkout]   (the "before": e.g. main)
                        [--skip-redis]
Not a test: prints figures and the targets (status and keys < 100 ms, RSS < 150 MB,
/ping wait < 20 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

ADMIN = "gw-bench-admin-000001"
KEYS = [f"gw-bench-user-{i:06d}" for i in range(20)]
MODELS = ["deepseek-chat", "deepseek-reasoner", "glm-4.7", "glm-5.3", "qwen3.7-max",
          "kimi-k2.6", "MiniMax-M2.7", "embedding-3"]
CHUNK = 50_000


def entries(n: int, now: float, seed: int = 7):
    rnd = random.Random(seed)
    for i in range(n):
        k = rnd.randrange(len(KEYS))
        model = rnd.choice(MODELS)
        prompt = rnd.randint(50, 8000)
        cur = "USD" if model.startswith("deepseek") else "CNY"
        yield {"ts": now - 86400 + 86400 * i / n, "key": f"user{k}",
               "key_id": f"config:user{k}", "team": f"t{k % 3}",
               "vendor_key": "sk-...0001", "provider": model.split("-")[0].lower(),
               "model": model, "upstream_model": model,
               "status": 200 if rnd.random() < .97 else rnd.choice([400, 429, 502]),
               "error": None, "stream": rnd.random() < .7,
               "latency_ms": rnd.randint(200, 30000), "ttfb_ms": rnd.randint(100, 3000),
               "prompt_tokens": prompt, "completion_tokens": rnd.randint(1, 2000),
               "cached_tokens": rnd.randint(0, prompt), "reasoning_tokens": None,
               "total_tokens": None, "endpoint": "chat", "request_id": f"req-{i:08d}",
               "estimated": False, "cost": round(prompt * 1e-6, 8), "currency": cur,
               "unpriced": False}


def fill(path: str, n: int, now: float) -> float:
    from freeapi.rollups import increments
    from freeapi.store import LEDGER_FIELDS
    from freeapi.store.sqlite import SQLiteStore
    from freeapi.store.sqlite_rollups import _ROLLUP_ADD, rollup_rows
    store = SQLiteStore(path)
    asyncio.run(store.ping())  # creates the schema
    store.close()
    t0 = time.time()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN")
    insert = (f"INSERT INTO ledger ({', '.join(LEDGER_FIELDS)}) VALUES "
              f"({', '.join('?' * len(LEDGER_FIELDS))})")
    batch = []
    for e in entries(n, now):
        batch.append(e)
        if len(batch) == CHUNK:
            db.executemany(insert, [tuple(x.get(f) for f in LEDGER_FIELDS) for x in batch])
            db.executemany(_ROLLUP_ADD, rollup_rows(increments(batch)))
            batch = []
    if batch:
        db.executemany(insert, [tuple(x.get(f) for f in LEDGER_FIELDS) for x in batch])
        db.executemany(_ROLLUP_ADD, rollup_rows(increments(batch)))
    db.execute("COMMIT")
    db.close()
    return time.time() - t0


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str, key: str | None = ADMIN, timeout: float = 120):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    t0 = time.perf_counter()
    c.request("GET", path, headers={"Authorization": f"Bearer {key}"} if key else {})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body, (time.perf_counter() - t0) * 1000


def rss_mb(pid: int) -> tuple[float, float]:
    with open(f"/proc/{pid}/status") as f:
        got = dict(line.split(":", 1) for line in f if ":" in line)
    return (int(got["VmRSS"].split()[0]) / 1024, int(got["VmHWM"].split()[0]) / 1024)


def serve_and_measure(tree: str, cfg: str, port: int, calls: int) -> dict:
    env = dict(os.environ, PYTHONPATH=tree)
    proc = subprocess.Popen([sys.executable, "-m", "freeapi", "--config", cfg, "--port",
                             str(port), "--log-level", "warning"], cwd=tree, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(300):
            try:
                if get(port, "/ping", None, 1)[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        idle = rss_mb(proc.pid)[0]
        waits, stop = [], threading.Event()

        def pinger():
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            while not stop.is_set():
                t0 = time.perf_counter()
                c.request("GET", "/ping")
                c.getresponse().read()
                waits.append((time.perf_counter() - t0) * 1000)
                time.sleep(0.005)
            c.close()
        th = threading.Thread(target=pinger)
        th.start()
        # The machine's own noise first: /ping alone for 5 s, nothing else asked.
        time.sleep(5)
        alone = sorted(waits)
        del waits[:]
        status_ms, keys_ms = [], []
        for i in range(calls):
            code, body, ms = get(port, "/v1/status")
            assert code == 200, body[:300]
            status_ms.append(ms)
            code, body, ms = get(port, "/admin/keys")
            assert code == 200, body[:300]
            keys_ms.append(ms)
            if i < calls - 1:
                time.sleep(5.2)  # past the status cache: every call is computed afresh
        stop.set()
        th.join()
        data = json.loads(get(port, "/v1/status")[1])
        during = sorted(waits)

        def q(v, p):
            return v[min(len(v) - 1, int(p * len(v)))]
        return {"status_ms": status_ms, "keys_ms": keys_ms, "ping_max_ms": max(waits),
                "ping_alone": (q(alone, .5), q(alone, .99), alone[-1]),
                "ping_during": (q(during, .5), q(during, .99), during[-1]),
                "pings": len(waits), "rss_idle_mb": idle, "rss_peak_mb": rss_mb(proc.pid)[1],
                "day_requests": sum(m["requests"] for m in data["models"]["day"])}
    finally:
        proc.terminate()
        proc.wait(10)


def redis_memory(n: int) -> dict:
    from freeapi.store.redis import RedisStore

    async def run():
        store = RedisStore("redis://127.0.0.1:6379", prefix=f"bench-rollups:{os.getpid()}:")
        now = time.time()
        batch = []
        for e in entries(n, now, seed=3):
            batch.append(e)
            if len(batch) == 2000:
                await store.rollup_add(batch)
                batch = []
        if batch:
            await store.rollup_add(batch)
        total, keys, cursor, per = 0, 0, b"0", {}
        while True:
            cursor, got = await store.client.execute("SCAN", cursor, "MATCH",
                                                     store.prefix + "r:*", "COUNT", 1000)
            for k in got:
                size = await store.client.execute("MEMORY", "USAGE", k, "SAMPLES", "0")
                period = k.decode()[len(store.prefix):].split(":")[1]
                per[period] = per.get(period, 0) + size
                total += size
                keys += 1
            if cursor in (b"0", 0):
                break
        await store.delete_all()
        store.close()
        # Kept at once: one day's buckets of each period times the days it is kept
        # (minutes: only the last 10 exist at any time, as measured).
        from freeapi.rollups import PERIODS
        steady = sum(b * max(1.0, (PERIODS[p][2] + PERIODS[p][0]) / 86400)
                     for p, b in per.items() if p != "m") + per.get("m", 0)
        return {"requests": n, "rollup_keys": keys, "rollup_bytes": total,
                "bytes_per_request": total / n, "per_period": per, "steady": steady}
    return asyncio.run(run())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--tree", default=ROOT, help="the checkout whose freeapi serves")
    ap.add_argument("--calls", type=int, default=4)
    ap.add_argument("--redis-rows", type=int, default=200_000)
    ap.add_argument("--skip-redis", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "state.db")
        took = fill(path, args.rows, time.time())
        print(f"filled {args.rows:,} rows (+ rollups) in {took:.1f}s; file "
              f"{os.path.getsize(path) / 1e6:.0f} MB")
        cfg = os.path.join(tmp, "config.yaml")
        with open(cfg, "w") as f:
            json.dump({"state": {"path": path, "ledger_days": 0},
                       "auth": {"keys": [{"key": ADMIN, "name": "ops", "role": "admin"}]
                                + [{"key": k, "name": f"user{i}", "daily_tokens": 10 ** 9}
                                   for i, k in enumerate(KEYS)]},
                       "providers": {"deepseek": {"base_url": "http://127.0.0.1:9"}}}, f)
        got = serve_and_measure(args.tree, cfg, free_port(), args.calls)
    print(f"tree {args.tree}")
    print(f"GET /v1/status   ms: {', '.join(f'{x:.0f}' for x in got['status_ms'])} "
          f"(target < 100) {'MET' if max(got['status_ms']) < 100 else 'MISSED'}")
    print(f"GET /admin/keys  ms: {', '.join(f'{x:.0f}' for x in got['keys_ms'])} "
          f"(target < 100) {'MET' if max(got['keys_ms']) < 100 else 'MISSED'}")
    print(f"RSS idle {got['rss_idle_mb']:.0f} MB, peak {got['rss_peak_mb']:.0f} MB "
          f"(target < 150) {'MET' if got['rss_peak_mb'] < 150 else 'MISSED'}")
    print(f"/ping longest wait {got['ping_max_ms']:.1f} ms over {got['pings']} pings "
          f"(target < 20) {'MET' if got['ping_max_ms'] < 20 else 'MISSED'}")
    print("/ping p50 / p99 / max ms: alone %.1f / %.1f / %.1f; during the calls "
          "%.1f / %.1f / %.1f" % (*got["ping_alone"], *got["ping_during"]))
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"status counts {got['day_requests']:,} requests in the day")
    if not args.skip_redis:
        r = redis_memory(args.redis_rows)
        print(f"Redis rollups: {r['rollup_keys']} keys, {r['rollup_bytes'] / 1e6:.2f} MB for "
              f"{r['requests']:,} requests in 24 h = {r['bytes_per_request']:.1f} B/request "
              "(bounded by buckets x distinct keys/teams/models/providers, not by traffic)")
        print("  one day's buckets by period (bytes): " + ", ".join(
            f"{p} {b:,}" for p, b in sorted(r["per_period"].items())))
        print(f"  kept at once with this traffic mix (retention m 10 min, q 2 d, h 8 d, "
              f"d 100 d): {r['steady'] / 1e6:.1f} MB, whatever the request rate")


if __name__ == "__main__":
    main()
