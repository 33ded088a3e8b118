#!/usr/bin/env python3
"""What Python's cyclic garbage collector costs freeapi under load: time in collections per
request, by generation, at c=32 under wrk (gc.callbacks timing each collection), for the
gateway as it starts and with other gen0 thresholds forced from outside.

  python bench/gc_cost.py [--thresholds as-is,700,10000] [--duration 5] [--stream]

Each threshold gets its own freeapi (bench.py's config: gateway key, ledger, metrics)
pinned to the server core, the fake upstream and wrk on the other, one after the other;
"as-is" is freeapi as it sets itself up (cli.py), a number forces that gen0 threshold
(generations 1 and 2 keep 10) by making freeapi's own gc.set_threshold a no-op.
Also counts the objects each request leaves in reference cycles (only the collector
frees those), from 200 sequential requests with gc.DEBUG_SAVEALL.
"""
from __future__ import annotations

import argparse
import ast
import os
import signal
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench  # noqa: E402
import instructions  # noqa: E402  (its sequential keep-alive client)

# Runs `python -m freeapi` with collection timing, answering signals: SIGUSR1 writes the
# totals so far to $GC_OUT, SIGUSR2 starts keeping cyclic garbage, SIGRTMIN+1 writes what
# was kept (types and counts) to $GC_OUT.garbage. $GC_GEN0 forces a gen0 threshold.
WRAPPER = r'''
import collections, gc, os, runpy, signal, sys, time
totals, started = {0: [0, 0.0], 1: [0, 0.0], 2: [0, 0.0]}, [0.0]
def timing(phase, info):
    if phase == "start":
        started[0] = time.perf_counter()
    else:
        t = totals[info["generation"]]
        t[0] += 1
        t[1] += time.perf_counter() - started[0]
gc.callbacks.append(timing)
def write_totals(*_):
    with open(os.environ["GC_OUT"], "w") as f:
        f.write(repr({"totals": totals, "threshold": gc.get_threshold(),
                      "tracked": len(gc.get_objects())}))
def keep_garbage(*_):
    gc.collect()
    gc.garbage.clear()
    gc.set_debug(gc.DEBUG_SAVEALL)
def write_garbage(*_):
    gc.collect()
    kinds = collections.Counter(type(o).__module__ + "." + type(o).__qualname__
                                for o in gc.garbage)
    with open(os.environ["GC_OUT"] + ".garbage", "w") as f:
        f.write(repr((len(gc.garbage), kinds.most_common(20))))
    gc.set_debug(0)
    gc.garbage.clear()
signal.signal(signal.SIGUSR1, write_totals)
signal.signal(signal.SIGUSR2, keep_garbage)
signal.signal(signal.SIGRTMIN + 1, write_garbage)
if os.environ.get("GC_GEN0"):
    gc.set_threshold(int(os.environ["GC_GEN0"]), 10, 10)
    gc.set_threshold = lambda *a: None
sys.argv = ["freeapi"] + sys.argv[1:]
runpy.run_module("freeapi", run_name="__main__", alter_sys=True)
'''


def read(path: str):
    for _ in range(50):
        time.sleep(0.1)
        try:
            with open(path) as f:
                return ast.literal_eval(f.read())
        except (OSError, SyntaxError, ValueError):
            continue
    raise RuntimeError(f"no answer in {path}")


def one(tmp: str, up_port: int, threshold: str, args) -> dict:
    port = bench.free_port()
    cfg = bench.freeapi_config(tmp, up_port, port)
    out = os.path.join(tmp, f"gc-{threshold}.txt")
    env = {"GC_OUT": out}
    if threshold != "as-is":
        env["GC_GEN0"] = threshold
    p = bench.start(f"freeapi-{threshold}", bench.pinned(
        args.server_cpu, [bench.PY, "-c", WRAPPER, "--config", cfg]), env=env, logdir=tmp)
    try:
        bench.wait_http(f"http://127.0.0.1:{port}/ping", p)
        # cycles per request, sequentially
        path, stream, dialect = instructions.CELLS["st" if args.stream else "ns"]
        client = instructions.Client(port, "bench-key")
        body = instructions.body_of(dialect, stream)
        for _ in range(100):
            client.request(path, body)
        os.kill(p.pid, signal.SIGUSR2)
        time.sleep(0.3)
        for _ in range(200):
            client.request(path, body)
        os.kill(p.pid, signal.SIGRTMIN + 1)
        cyclic, kinds = read(out + ".garbage")
        # collections under load
        t = bench.Target("freeapi", f"http://127.0.0.1:{port}{bench.PATH}", auth="bench-key")
        bench.wrk(t, 8, 2, args.stream, args.client_cpu)
        os.kill(p.pid, signal.SIGUSR1)
        before = read(out)
        os.remove(out)
        c0 = bench.cpu_seconds(p.pid)
        r = bench.wrk(t, 32, args.duration, args.stream, args.client_cpu)
        cpu = bench.cpu_seconds(p.pid) - c0
        os.kill(p.pid, signal.SIGUSR1)
        after = read(out)
    finally:
        bench.stop(p)
    n = max(1, r["requests"])
    gens = {g: ((after["totals"][g][0] - before["totals"][g][0]) / n,
                1e6 * (after["totals"][g][1] - before["totals"][g][1]) / n) for g in (0, 1, 2)}
    return {"threshold": after["threshold"], "rps": r["ok_rps"], "cpu_us": 1e6 * cpu / n,
            "gens": gens, "cyclic": cyclic / 200, "kinds": kinds[:8]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--thresholds", default="as-is,700,10000")
    ap.add_argument("--duration", type=float, default=5)
    ap.add_argument("--stream", action="store_true", help="20-chunk streams instead")
    ap.add_argument("--server-cpu", default="0")
    ap.add_argument("--client-cpu", default="1")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="freeapi-gc-")
    up, up_port = bench.start_upstream(tmp, args.client_cpu)
    try:
        rows = [one(tmp, up_port, th, args) for th in args.thresholds.split(",")]
    finally:
        bench.stop(up)
    print(f"{'20-chunk stream' if args.stream else 'non-stream'} c=32, {args.duration:g} s each")
    print("| gen0 threshold | req/s | CPU per request | in collections per request "
          "(gen0 / gen1 / gen2) | collections per 1,000 requests (gen0 / gen1 / gen2) "
          "| objects left in cycles per request |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        g = r["gens"]
        print(f"| {r['threshold']} | {r['rps']:,.0f} | {r['cpu_us']:.0f} us | "
              f"{g[0][1] + g[1][1] + g[2][1]:.1f} us ({g[0][1]:.1f} / {g[1][1]:.1f} / "
              f"{g[2][1]:.1f}) | {1000 * g[0][0]:.1f} / {1000 * g[1][0]:.2f} / "
              f"{1000 * g[2][0]:.2f} | {r['cyclic']:.1f} |")
    print("cycles left by one request (the first run's):",
          ", ".join(f"{k / 200:.1f} {name}" for name, k in rows[0]["kinds"]))


if __name__ == "__main__":
    main()
