#!/usr/bin/env python3
"""Two freeapi trees against each other under wrk, rounds interleaved (A, B, B, A, ...), for
an A/B of a hot-path change in wall-clock terms. bench/instructions.py is the steadier
figure; this one says whether it shows in requests per second and CPU per request.

Both servers run bench.py's freeapi config (gateway key, ledger, metrics) pinned to the
server core, one after the other (never both under load at once), the fake upstream and
wrk on the client core, as in bench/run.sh.

  python bench/ab.py /tmp/before /tmp/after [--rounds 5] [--duration 4]
      [--cells ns1,ns32,st32] [--asyncio]

--asyncio hides uvloop from both (freeapi takes it when importable).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench  # noqa: E402  (bench/bench.py: the harness's helpers)

CELLS = {"ns1": (1, False), "ns32": (32, False), "st32": (32, True)}
# `python -m freeapi` with uvloop hidden from the import system
NO_UVLOOP = ("import sys, runpy; sys.modules['uvloop'] = None; "
             "runpy.run_module('freeapi', run_name='__main__', alter_sys=True)")


def start(tree: str, name: str, tmp: str, up_port: int, cpu: str, asyncio_only: bool):
    port = bench.free_port()
    cfg = bench.freeapi_config(tmp, up_port, port)
    argv = ([bench.PY, "-c", NO_UVLOOP, "--config", cfg] if asyncio_only
            else [bench.FREEAPI, "--config", cfg])
    p = bench.start(name, bench.pinned(cpu, argv), env={"PYTHONPATH": tree}, logdir=tmp)
    bench.wait_http(f"http://127.0.0.1:{port}/ping", p)
    return p, bench.Target(name, f"http://127.0.0.1:{port}{bench.PATH}", auth="bench-key")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=float, default=4)
    ap.add_argument("--cells", default="ns1,ns32,st32")
    ap.add_argument("--asyncio", action="store_true")
    ap.add_argument("--server-cpu", default="0")
    ap.add_argument("--client-cpu", default="1")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="freeapi-ab-")
    up, up_port = bench.start_upstream(tmp, args.client_cpu)
    servers = {}
    try:
        for name, tree in (("A", args.a), ("B", args.b)):
            servers[name] = start(tree, name, tmp, up_port, args.server_cpu, args.asyncio)
        for _, t in servers.values():  # warm-up
            bench.wrk(t, 8, 1, False, args.client_cpu)
            bench.wrk(t, 8, 1, True, args.client_cpu)
        cells = args.cells.split(",")
        got = {n: {c: [] for c in cells} for n in servers}
        for r in range(args.rounds):
            order = ("A", "B") if r % 2 == 0 else ("B", "A")
            for cell in cells:
                conns, stream = CELLS[cell]
                for name in order:
                    proc, t = servers[name]
                    c0 = bench.cpu_seconds(proc.pid)
                    res = bench.wrk(t, conns, args.duration, stream, args.client_cpu)
                    cpu = 1e6 * (bench.cpu_seconds(proc.pid) - c0) / max(1, res["requests"])
                    got[name][cell].append((res["p50_us"] / 1000 if cell == "ns1"
                                            else res["ok_rps"], cpu, res["errors"]))
                    bench.log(f"round {r + 1} {name} {cell}: {got[name][cell][-1]}")
    finally:
        for p, _ in servers.values():
            bench.stop(p)
        bench.stop(up)
    print(f"A = {args.a}, B = {args.b}; {args.rounds} interleaved rounds of {args.duration:g} s"
          f"{' (asyncio)' if args.asyncio else ''}; medians (every round)")
    print("| cell | A | B | B/A | CPU per request A / B |")
    print("|---|---|---|---|---|")
    for cell in cells:
        a = [x[0] for x in got["A"][cell]]
        b = [x[0] for x in got["B"][cell]]
        unit = "ms p50" if cell == "ns1" else "req/s"
        ca = statistics.median(x[1] for x in got["A"][cell])
        cb = statistics.median(x[1] for x in got["B"][cell])
        fmt = (lambda v: f"{v:.3f}") if cell == "ns1" else (lambda v: f"{v:,.0f}")
        print(f"| {cell} ({unit}) | {fmt(statistics.median(a))} ({', '.join(map(fmt, a))}) "
              f"| {fmt(statistics.median(b))} ({', '.join(map(fmt, b))}) "
              f"| {statistics.median(b) / statistics.median(a):.3f} | {ca:.0f} / {cb:.0f} us |")
    errors = sum(x[2] for n in got.values() for c in n.values() for x in c)
    if errors:
        print(f"errors: {errors}")


if __name__ == "__main__":
    main()
