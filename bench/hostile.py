"""Hostile vendor and hostile clients against a real `freeapi` process (issue 10 figures).

    python bench/hostile.py                     # all three scenarios, this checkout
    PYTHONPATH=/path/to/old/checkout python bench/hostile.py   # the same against old code

Scenarios (each starts its own gateway on a free 127.0.0.1 port and stops it by its pid):

- endless-line: a vendor streams a 50 MB line without a newline (64 KB writes) and closes.
  Reported: what the client got, how long it took, and the longest /ping wait meanwhile
  (a /ping every 20 ms; its worst latency is how long the event loop was blocked).
- unauth-flood: with gateway auth on, 20 connections without credentials each declare a
  16 MB body and send it. Reported: the gateway's peak VmRSS over its idle RSS.
- fd-limit: the gateway runs under `prlimit --nofile=64` and 150 clients connect and stay.
  Reported: log bytes written in 5 s, CPU seconds used meanwhile, and whether a /ping
  gets through once the clients leave.

Stdlib only; every load is bounded in time and size.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GW_KEY = "gw-bench-hostile-0001"
LINE_MB = int(os.environ.get("HOSTILE_LINE_MB", "50"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gateway:
    def __init__(self, config: str, prefix: list[str] = ()):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="freeapi-hostile-")
        path = os.path.join(self.dir, "config.yaml")
        with open(path, "w") as f:
            f.write(config + f"\nstate: {{path: {self.dir}/state.db}}\n")
        self.log = open(os.path.join(self.dir, "log"), "wb")
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "freeapi", "--config", path, "--host",
             "127.0.0.1", "--port", str(self.port)], stdout=self.log, stderr=self.log,
            env=dict(os.environ))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        text = self.log_text()[-2000:]
        self.stop()
        raise SystemExit("the gateway did not start: " + text)

    def rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def cpu_s(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log_size(self) -> int:
        self.log.flush()
        return os.path.getsize(self.log.name)

    def log_text(self) -> str:
        self.log.flush()
        with open(self.log.name, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


async def http(port: int, raw: bytes, timeout: float = 120) -> tuple[int, bytes]:
    """One request on its own connection: (status, body bytes read until close)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    try:
        data = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0
    return status, data.partition(b"\r\n\r\n")[2]


def post(path: str, body: dict, key: str | None) -> bytes:
    data = json.dumps(body).encode()
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    return (f"POST {path} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n{auth}"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
            ).encode() + data


PING = b"GET /ping HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"


async def worst_ping(port: int, until: asyncio.Future) -> float:
    worst = 0.0
    while not until.done():
        t = time.monotonic()
        try:
            await http(port, PING, 300)
        except OSError:
            pass
        worst = max(worst, time.monotonic() - t)
        await asyncio.sleep(0.02)
    return worst


# -- scenarios ------------------------------------------------------------------------------

async def endless_line():
    sent = asyncio.Event()

    async def vendor(reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(next(l for l in head.split(b"\r\n") if l.lower().startswith(
            b"content-length:")).split(b":")[1])
        await reader.readexactly(length)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Connection: close\r\n\r\ndata: ")
        piece = b"x" * 65536
        try:
            for _ in range(LINE_MB * 16):
                writer.write(piece)
                await writer.drain()
        except ConnectionError:
            pass
        sent.set()
        writer.close()

    server = await asyncio.start_server(vendor, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    gw = Gateway(f"providers:\n  deepseek:\n    base_url: {url}\n")
    try:
        done = asyncio.get_running_loop().create_future()
        pinger = asyncio.ensure_future(worst_ping(gw.port, done))
        await asyncio.sleep(0.3)
        t = time.monotonic()
        status, body = await http(gw.port, post("/v1/chat/completions", {
            "model": "deepseek-chat", "stream": True,
            "messages": [{"role": "user", "content": "hi"}]}, "sk-bench-0000000000000000"), 600)
        took = time.monotonic() - t
        done.set_result(None)
        worst = await pinger
        got = body[:160].decode("utf-8", "replace").replace("\n", " ")
        print(f"endless-line ({LINE_MB} MB, no newline): HTTP {status} after {took:.1f}s, "
              f"{len(body)} body bytes; longest /ping wait {worst * 1000:.0f} ms; "
              f"body starts: {got!r}")
    finally:
        gw.stop()
        server.close()


async def unauth_flood():
    gw = Gateway(f"auth:\n  keys: [{GW_KEY}]\n")
    try:
        await asyncio.sleep(1)
        idle = gw.rss_mb()
        size = 16 << 20
        conns = []
        for _ in range(20):
            r, w = await asyncio.open_connection("127.0.0.1", gw.port)
            w.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n"
                    b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % size)
            conns.append((r, w))
        peak = idle

        async def send(w):
            piece = b" " * 65536
            try:
                for _ in range(size // len(piece)):
                    w.write(piece)
                    await w.drain()
            except (ConnectionError, OSError):
                pass

        senders = [asyncio.ensure_future(send(w)) for _, w in conns]
        end = time.monotonic() + 5
        while time.monotonic() < end:
            peak = max(peak, gw.rss_mb())
            await asyncio.sleep(0.1)
        for s in senders:
            s.cancel()
        for _, w in conns:
            w.close()
        print(f"unauth-flood (20 x 16 MB, no credentials): idle RSS {idle:.0f} MB, peak "
              f"{peak:.0f} MB (+{peak - idle:.0f} MB) over 5 s")
    finally:
        gw.stop()


async def fd_limit():
    if not shutil.which("prlimit"):
        print("fd-limit: skipped (no prlimit)")
        return
    gw = Gateway("server: {}", prefix=["prlimit", "--nofile=64:64"])
    try:
        await asyncio.sleep(1)
        log0, cpu0 = gw.log_size(), gw.cpu_s()
        conns = []
        for _ in range(150):
            try:
                conns.append(await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", gw.port), 1))
            except (OSError, asyncio.TimeoutError):
                break
        await asyncio.sleep(5)
        logged, cpu = gw.log_size() - log0, gw.cpu_s() - cpu0
        for _, w in conns:
            w.close()
        await asyncio.sleep(1)
        try:
            status, _ = await http(gw.port, PING, 10)
        except (OSError, asyncio.TimeoutError):
            status = 0
        print(f"fd-limit (ulimit -n 64, {len(conns)} clients holding connections, 5 s): "
              f"{logged} log bytes, {cpu:.1f} CPU s; /ping afterwards: HTTP {status}")
    finally:
        gw.stop()


async def main(which):
    for name in which:
        await {"endless-line": endless_line, "unauth-flood": unauth_flood,
               "fd-limit": fd_limit}[name]()


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    asyncio.run(main(sys.argv[1:] or ["endless-line", "unauth-flood", "fd-limit"]))
