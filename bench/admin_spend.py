"""The console's spend figures with a minute of traffic and with a month of it.

Fills two SQLite state files through the ledger's own write path (rows + rollups): one
with N requests in the last minute, one with M requests spread over the last 30 days (20
keys, 3 teams, 8 models, as bench/rollups.py), starts a real `freeapi --config` on each
and times what the console's tabs ask: GET /admin/spend per key per day over 30 days, per
model per hour over 7 days, per team for the month, and GET /admin/keys. The answers come
from the rollups only, so the two should cost the same.

Run (from a worktree):  /work/main/.venv/bin/python bench/admin_spend.py
                        [--minute-rows N] [--month-rows M] [--calls K]
Not a test: prints the median and the slowest of K calls of each.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rollups import ADMIN, KEYS, ROOT, entries, fill, free_port, get  # noqa: E402

QUERIES = ("/admin/spend?by=key&period=day&since=30d",
           "/admin/spend?by=model&period=hour&since=7d",
           "/admin/spend?by=team&period=day&since=30d&limit=500",
           "/admin/keys")


def spread(span: float):
    """bench/rollups.py's entries, spread over `span` seconds before `now` (fill() reads
    its module's `entries`)."""
    def gen(n: int, now: float):
        for i, e in enumerate(entries(n, now)):
            e["ts"] = now - span + span * i / n
            yield e
    return gen


def measure(path: str, calls: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = os.path.join(tmp, "config.yaml")
        with open(cfg, "w") as f:
            json.dump({"state": {"path": path, "ledger_days": 0},
                       "auth": {"keys": [{"key": ADMIN, "name": "ops", "role": "admin"}]
                                + [{"key": k, "name": f"user{i}"} for i, k in enumerate(KEYS)]},
                       "providers": {"deepseek": {"base_url": "http://127.0.0.1:9"}}}, f)
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "freeapi", "--config", cfg, "--port",
                                 str(port), "--log-level", "warning"], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            for _ in range(300):
                try:
                    if get(port, "/ping", None, 1)[0] == 200:
                        break
                except OSError:
                    time.sleep(0.1)
            out = {}
            for q in QUERIES:
                times, requests = [], None
                for _ in range(calls):
                    code, body, ms = get(port, q)
                    assert code == 200, body[:300]
                    times.append(ms)
                    data = json.loads(body)
                    if "total" in data:
                        requests = data["total"]["requests"]
                out[q] = (statistics.median(times), max(times), requests)
            return out
        finally:
            proc.terminate()
            proc.wait(10)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minute-rows", type=int, default=1_000)
    ap.add_argument("--month-rows", type=int, default=300_000)
    ap.add_argument("--calls", type=int, default=20)
    args = ap.parse_args()
    import rollups
    now = time.time()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, rows, span in (("a minute", args.minute_rows, 60),
                                  ("a month", args.month_rows, 30 * 86400)):
            path = os.path.join(tmp, f"{rows}.db")
            rollups.entries = spread(span)
            took = fill(path, rows, now)
            print(f"{label}: {rows:,} requests filled in {took:.1f}s")
            results[label] = measure(path, args.calls)
    for q in QUERIES:
        line = ", ".join(f"{label} {med:.1f} ms median / {top:.1f} max"
                         + (f" ({n:,} requests)" if n is not None else "")
                         for label, (med, top, n) in ((k, v[q]) for k, v in results.items()))
        print(f"GET {q}: {line}")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
