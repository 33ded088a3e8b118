#!/usr/bin/env python3
"""asyncio load client for freeapi's benchmark (stdlib only; see bench/README.md).

  client.py ttfb  URL [-H 'Name: value']... [-n 300]      time to first streamed byte
  client.py slow  URL [-H ...] [-n 2000] [--pid PID]...   concurrent slow streams + RSS

Both print one line `BENCHJSON {...}`. Requests are HTTP/1.1 over plain asyncio streams
with keep-alive, so what is timed is the server, not a client library.

ttfb: sequential 20-chunk streams on one connection; per request the time from the
request's last byte to the first body byte that carries `data:`, and to the end; every
stream is checked (chunks tok0..tok18 in order, then [DONE]).

slow: N concurrent streams of the fake upstream's slow mode (model name with "slow": one
chunk every 250 ms for 30 s), opened in a ramp of --ramp seconds; a stream counts as OK
only if it answered 200, delivered chunks 0..K-1 exactly in order and ended with [DONE].
Also reported: time from connect to the response head (open_*; the fake upstream sends its
head with the first chunk, 250 ms in, and a full accept queue shows up here as 1 s / 3 s
SYN retries) and chunk lag: per stream, arrival(i) - i * 250 ms, minus the smallest such
value in that stream, i.e. how far each chunk fell behind the stream's best pace (every 4th
chunk sampled, complete streams only).
While they run, VmRSS of each --pid (and its children) is sampled from /proc every 0.25 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import time
from urllib.parse import urlsplit


class HTTPError(Exception):
    pass


class Conn:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, url: str, headers: list[tuple[str, str]]):
        u = urlsplit(url)
        self.host, self.port = u.hostname, u.port or 80
        self.path = u.path or "/"
        self.headers = headers
        self.reader = self.writer = None

    async def open(self):
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port,
                                                                 limit=1 << 20)

    def close(self):
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def send(self, body: bytes):
        head = [f"POST {self.path} HTTP/1.1", f"Host: {self.host}:{self.port}",
                "Content-Type: application/json", f"Content-Length: {len(body)}",
                "Accept: text/event-stream"]
        head += [f"{k}: {v}" for k, v in self.headers]
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)

    async def head(self) -> tuple[int, dict]:
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        return status, headers

    async def body(self, headers: dict):
        """Yield body pieces as they arrive."""
        r = self.reader
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await r.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    while await r.readuntil(b"\r\n") != b"\r\n":
                        pass
                    return
                data = await r.readexactly(size + 2)
                yield data[:-2]
        elif "content-length" in headers:
            n = int(headers["content-length"])
            while n > 0:
                data = await r.read(min(n, 65536))
                if not data:
                    raise HTTPError("closed mid-body")
                n -= len(data)
                yield data
        else:
            while True:
                data = await r.read(65536)
                if not data:
                    return
                yield data


class StreamCheck:
    """Checks SSE content numbers arrive 0,1,2,... and the stream ends with [DONE]."""

    def __init__(self, pattern: bytes, interval: float | None = None, lags=None):
        self.re = re.compile(pattern)
        self.buf = b""
        self.next = 0
        self.done = False
        self.error = None
        # Slow mode: arrival of chunk i minus i * interval; the earliest of these is when
        # the stream "started", and every chunk's lag is its own value minus that.
        self.interval, self.lags, self.offsets = interval, lags, []

    def feed(self, data: bytes):
        buf = (self.buf + data).replace(b"\r\n", b"\n")
        events = buf.split(b"\n\n")
        self.buf = events.pop()
        for ev in events:
            if self.error:
                return
            if b"data:" not in ev:
                continue  # keep-alive comment
            if b"[DONE]" in ev:
                self.done = True
                continue
            if self.done:
                self.error = "data after [DONE]"
            elif b'"error"' in ev and b'"choices"' not in ev:
                self.error = "error event: " + ev[:200].decode("utf-8", "replace")
            else:
                m = self.re.search(ev)
                if m:
                    n = int(m.group(1))
                    if n != self.next:
                        self.error = f"chunk {n} where {self.next} was due"
                    if self.interval:
                        self.offsets.append(time.monotonic() - n * self.interval)
                    self.next += 1

    def record_lags(self):
        if self.offsets:
            start = min(self.offsets)
            self.lags.extend(o - start for o in self.offsets[::4])


def _body(model: str) -> bytes:
    return json.dumps({"model": model, "stream": True,
                       "messages": [{"role": "user", "content": "Say hello."}]}).encode()


def _pct(values, p):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


async def ttfb(args):
    conn = Conn(args.url, args.headers)
    body = _body(args.model)
    first, total, errors, bad = [], [], 0, []
    expect = args.chunks
    await conn.open()
    stop_at = None
    for i in range(args.warmup + args.n):
        if i == args.warmup:
            stop_at = time.monotonic() + args.max_seconds
        elif stop_at is not None and time.monotonic() > stop_at:
            break
        check = StreamCheck(rb'"content":\s*"tok(\d+) "')
        try:
            t0 = time.perf_counter()
            conn.send(body)
            await conn.writer.drain()
            t0 = time.perf_counter()
            status, headers = await asyncio.wait_for(conn.head(), 10)
            tf = None
            async for data in conn.body(headers):
                if tf is None and b"data:" in data:
                    tf = time.perf_counter()
                check.feed(data)
            t1 = time.perf_counter()
            if status != 200:
                raise HTTPError(f"status {status}")
            if check.error or not check.done or check.next != expect:
                raise HTTPError(check.error or f"{check.next}/{expect} chunks, "
                                               f"done={check.done}")
            if headers.get("connection", "").lower() == "close":
                conn.close()
                await conn.open()
        except (HTTPError, OSError, asyncio.IncompleteReadError, asyncio.TimeoutError,
                ValueError) as e:
            errors += 1
            if len(bad) < 3:
                bad.append(f"{type(e).__name__}: {e}")
            conn.close()
            await conn.open()
            continue
        if i >= args.warmup:
            first.append((tf - t0) * 1000)
            total.append((t1 - t0) * 1000)
    conn.close()
    out = {"n": len(first), "errors": errors, "error_samples": bad,
           "first_p50_ms": _pct(first, 50), "first_p90_ms": _pct(first, 90),
           "first_min_ms": min(first) if first else None,
           "total_p50_ms": _pct(total, 50)}
    print("BENCHJSON " + json.dumps(out), flush=True)


def _rss_kb(pid: int) -> int:
    """VmRSS of pid plus its children (for --workers), in kB; 0 when gone."""
    total = 0
    pids = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            pids += [int(p) for p in f.read().split()]
    except OSError:
        pass
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


async def slow(args):
    results = {"ok": 0, "errors": 0, "error_samples": [], "chunks": 0}
    late = []  # seconds a stream ended after its due time
    lags = []  # seconds every 4th chunk arrived after its due time (see StreamCheck)
    opened = []  # seconds from connect() to the response head
    expect = args.chunks
    body = _body(args.model)
    stop_sampling = asyncio.Event()
    peak = {p: 0 for p in args.pid}
    start_rss = {p: _rss_kb(p) for p in args.pid}

    async def sample():
        while not stop_sampling.is_set():
            for p in args.pid:
                peak[p] = max(peak[p], _rss_kb(p))
            try:
                await asyncio.wait_for(stop_sampling.wait(), 0.25)
            except asyncio.TimeoutError:
                pass

    def fail(msg):
        results["errors"] += 1
        if len(results["error_samples"]) < 5:
            results["error_samples"].append(msg)

    async def one(i):
        await asyncio.sleep(args.ramp * i / args.n)
        conn = Conn(args.url, args.headers)
        check = StreamCheck(rb'"content":\s*"(\d+) "', args.interval, lags)
        t0 = time.monotonic()
        try:
            await asyncio.wait_for(conn.open(), 10)
            conn.send(body)
            status, headers = await asyncio.wait_for(conn.head(), 20)
            opened.append(time.monotonic() - t0)
            if status != 200:
                raise HTTPError(f"status {status}")
            async for data in conn.body(headers):
                check.feed(data)
                if check.error:
                    break
            if check.error or not check.done or check.next != expect:
                raise HTTPError(check.error or f"{check.next}/{expect} chunks, "
                                               f"done={check.done}")
            results["ok"] += 1
            check.record_lags()
            late.append(time.monotonic() - t0 - args.expected_seconds)
        except (HTTPError, OSError, asyncio.IncompleteReadError, asyncio.TimeoutError,
                ValueError) as e:
            fail(f"stream {i}: {type(e).__name__}: {e}")
        finally:
            results["chunks"] += check.next
            conn.close()

    sampler = asyncio.ensure_future(sample())
    t0 = time.monotonic()
    tasks = [asyncio.ensure_future(one(i)) for i in range(args.n)]
    done, pending = await asyncio.wait(tasks, timeout=args.ramp + args.expected_seconds + 30)
    for t in pending:
        t.cancel()
        fail("did not finish in time")
    await asyncio.gather(*pending, return_exceptions=True)
    stop_sampling.set()
    await sampler
    results.update({
        "n": args.n, "seconds": round(time.monotonic() - t0, 1),
        "end_late_p50_s": round(_pct(late, 50), 3) if late else None,
        "end_late_max_s": round(max(late), 3) if late else None,
        "open_p50_ms": round(_pct(opened, 50) * 1000, 1) if opened else None,
        "open_max_ms": round(max(opened) * 1000, 1) if opened else None,
        "chunk_lag_p50_ms": round(_pct(lags, 50) * 1000, 1) if lags else None,
        "chunk_lag_p99_ms": round(_pct(lags, 99) * 1000, 1) if lags else None,
        "chunk_lag_max_ms": round(max(lags) * 1000, 1) if lags else None,
        "rss_start_mb": {str(p): round(v / 1024, 1) for p, v in start_rss.items()},
        "rss_peak_mb": {str(p): round(v / 1024, 1) for p, v in peak.items()},
    })
    print("BENCHJSON " + json.dumps(results), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("mode", choices=["ttfb", "slow"])
    p.add_argument("url")
    p.add_argument("-H", dest="headers", action="append", default=[],
                   type=lambda s: tuple(x.strip() for x in s.split(":", 1)))
    p.add_argument("-n", type=int)
    p.add_argument("--model")
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--max-seconds", type=float, default=8.0,
                   help="ttfb: stop measuring after this long even if -n is not reached")
    p.add_argument("--chunks", type=int, help="content chunks each stream must carry")
    p.add_argument("--ramp", type=float, default=2.0, help="slow: seconds to open all streams")
    p.add_argument("--expected-seconds", type=float, default=30.25,
                   help="slow: how long a stream lasts at the source (120 chunks + the "
                        "finish chunk, 250 ms apart)")
    p.add_argument("--interval", type=float, default=0.25, help="slow: seconds per chunk")
    p.add_argument("--pid", type=int, action="append", default=[])
    args = p.parse_args()
    if args.mode == "ttfb":
        args.n = args.n or 300
        args.model = args.model or "deepseek-chat"
        args.chunks = args.chunks or 19
        asyncio.run(ttfb(args))
    else:
        args.n = args.n or 2000
        args.model = args.model or "slow"
        args.chunks = args.chunks or 120
        asyncio.run(slow(args))


if __name__ == "__main__":
    sys.exit(main())
