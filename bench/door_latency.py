#!/usr/bin/env python3
"""/v1/responses (or --door messages: /v1/messages translated to chat completions) against
/v1/chat/completions, end to end at c=1: the same request through both doors of one
freeapi process, in front of bench/upstream.js (zero latency), one keep-alive connection
each, requests interleaved so both see the same machine load. Stdlib only:

    .venv/bin/python bench/door_latency.py [-n 500] [--door responses|messages]

Prints p50 / p90 per door and the difference (issue 11: the translation path may add at
most 0.3 ms per request at c=1). Every process it starts is stopped by pid at the end.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FREEAPI = os.path.join(ROOT, ".venv", "bin", "freeapi")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(port: int, proc, seconds=30.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"port {port} never opened")


def timed(conn, path: str, body: dict) -> float:
    raw = json.dumps(body)
    t = time.perf_counter()
    conn.request("POST", path, raw, {"Authorization": "Bearer bench-key",
                                     "Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    took = time.perf_counter() - t
    if resp.status != 200:
        raise SystemExit(f"{path}: HTTP {resp.status}: {data[:300]!r}")
    return took


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=500)
    ap.add_argument("--door", choices=("responses", "messages"), default="responses")
    args = ap.parse_args()
    n, door = args.n, args.door
    tmp = tempfile.mkdtemp(prefix="freeapi-doors-")
    up_port, port = free_port(), free_port()
    cfg = os.path.join(tmp, "freeapi.yaml")
    with open(cfg, "w") as f:
        f.write(f"""server: {{host: 127.0.0.1, port: {port}, log_level: warning}}
auth: {{keys: [bench-key]}}
responses: {{ttl: 60}}
providers:
  deepseek: {{enabled: false}}
  bench:
    type: openai
    base_url: "http://127.0.0.1:{up_port}/v1"
    api_keys: [sk-bench]
    models: [deepseek-chat]
    discover: false
    anthropic_base_url: false
""")
    procs = []
    try:
        up = subprocess.Popen(["node", os.path.join(HERE, "upstream.js"), "--port",
                               str(up_port)], stdout=subprocess.DEVNULL)
        procs.append(up)
        wait(up_port, up)
        gw = subprocess.Popen([FREEAPI, "--config", cfg], stderr=subprocess.DEVNULL)
        procs.append(gw)
        wait(port, gw)
        chat_conn = http.client.HTTPConnection("127.0.0.1", port)
        resp_conn = http.client.HTTPConnection("127.0.0.1", port)
        rows = []
        for stream in (False, True):
            chat = {"model": "deepseek-chat", "stream": stream,
                    "messages": [{"role": "user", "content": "hi"}]}
            if door == "responses":
                other = {"model": "deepseek-chat", "stream": stream, "input": "hi",
                         "store": False}
            else:
                other = {"model": "deepseek-chat", "stream": stream, "max_tokens": 64,
                         "messages": [{"role": "user", "content": "hi"}]}
            got: dict[str, list] = {"chat": [], door: []}
            for i in range(n + 50):
                a = timed(chat_conn, "/v1/chat/completions", chat)
                b = timed(resp_conn, f"/v1/{door}", other)
                if i >= 50:  # warm-up left out
                    got["chat"].append(a)
                    got[door].append(b)
            for name, runs in got.items():
                runs.sort()
                rows.append((name, stream, statistics.median(runs) * 1e3,
                             runs[int(len(runs) * 0.9)] * 1e3))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
    print(f"| door (c=1, n={n}) | stream | p50 | p90 |\n|---|---|---|---|")
    for name, stream, p50, p90 in rows:
        print(f"| {name} | {stream} | {p50:.2f} ms | {p90:.2f} ms |")
    for stream in (False, True):
        chat, other = [r for r in rows if r[1] == stream]
        print(f"{door} - chat, stream={stream}: p50 {other[2] - chat[2]:+.2f} ms")


if __name__ == "__main__":
    sys.exit(main())
