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
- vendor-urls (not in the default run): a hostile vendor (GLM images, Qwen-TTS, Qwen image
  edits on one fake) answers URLs of an internal service on another loopback port, then
  12 image URLs of 30 MiB each for n=1. Reported: internal bodies that reached the
  client, statuses, the answer's size and the gateway's peak VmRSS (HOSTILE_IMAGE_MB
  sets the image size). Run it from outside the checkout (`cd /tmp`) when PYTHONPATH
  points at another one: `python -m freeapi` would otherwise import the current
  directory's freeapi.

The file store's scenarios (issue 20) are in bench/hostile_files.py:
`python bench/hostile.py files` runs them all (or name one: upload-flood,
stalled-downloads, stored-responses, redis-metadata).

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
    def __init__(self, config: str, prefix: list[str] = (), state: str | None = None):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="freeapi-hostile-")
        path = os.path.join(self.dir, "config.yaml")
        with open(path, "w") as f:
            f.write(config + (state or f"\nstate: {{path: {self.dir}/state.db}}\n"))
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


# -- issue 20: work before authentication, /metrics, buffered bodies --------------------------
# python bench/hostile.py preauth [empty-flood|empty-flood-auth|count-tokens|metrics-flood|
#                                  uploads]
# Each reports the HTTP statuses, the longest /ping wait (a /ping every 20 ms) and the
# gateway's peak VmRSS over its idle RSS. The gateway's vendor is a local stub that answers
# every call with a small completion (or the status a model name asks for), so nothing
# leaves the machine whatever the gateway forwards.

BODY_MB = int(os.environ.get("HOSTILE_BODY_MB", "48"))


async def _stub_vendor():
    """A vendor on 127.0.0.1: `.../s4xx-...` model names get that status, others a 200."""
    async def serve(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(l.split(b":")[1]) for l in head.split(b"\r\n")
                               if l.lower().startswith(b"content-length:")), 0)
                body = await reader.readexactly(length)
                status = 200
                if b'"model": "s' in body or b'"model":"s' in body:
                    status = int(body.split(b'"model":', 1)[1].split(b'"')[1][1:4])
                data = (b'{"id":"c","object":"chat.completion","created":1,"model":"m",'
                        b'"choices":[{"index":0,"message":{"role":"assistant","content":'
                        b'"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,'
                        b'"completion_tokens":1,"total_tokens":2}}') if status == 200 else \
                    b'{"error":{"message":"no","type":"invalid_request_error"}}'
                writer.write(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (status, len(data), data))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, IndexError):
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def _watched(gw: Gateway, load) -> tuple[object, float, float, float]:
    """Run `load()` while pinging and sampling RSS: (its result, worst /ping s, idle MB,
    peak MB)."""
    idle = gw.rss_mb()
    peak = [idle]
    done = asyncio.get_running_loop().create_future()

    async def sample():
        while not done.done():
            peak[0] = max(peak[0], gw.rss_mb())
            await asyncio.sleep(0.05)

    pinger = asyncio.ensure_future(worst_ping(gw.port, done))
    sampler = asyncio.ensure_future(sample())
    try:
        result = await load()
        await asyncio.sleep(0.3)
    finally:
        done.set_result(None)
    worst = await pinger
    await sampler
    return result, worst, idle, peak[0]


def _report(name: str, statuses, worst: float, idle: float, peak: float, extra: str = ""):
    counts = {}
    for st in statuses:
        counts[st] = counts.get(st, 0) + 1
    shown = ", ".join(f"{n} x {st}" for st, n in sorted(counts.items()))
    print(f"{name}: HTTP {shown}; longest /ping wait {worst * 1000:.0f} ms; RSS idle "
          f"{idle:.0f} MB, peak {peak:.0f} MB (+{peak - idle:.0f} MB){extra}")


def _post_bytes(path: str, body: bytes, key: str | None) -> bytes:
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    return (f"POST {path} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n{auth}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body


def _flood_body(size: int, n: int | None = None) -> bytes:
    """`n` empty objects (by default as many as fill `size` bytes) beside a chat request."""
    head = b'{"model":"deepseek-chat","messages":[{"role":"user","content":"hi"}],"x":['
    n = (size - len(head) - 2) // 3 if n is None else n
    return head + b",".join([b"{}"] * n) + b"]}"


async def _flood(auth: bool):
    vendor, url = await _stub_vendor()
    config = f"providers:\n  deepseek:\n    base_url: {url}\n"
    if auth:
        config += f"auth:\n  keys: [{GW_KEY}]\n"
    gw = Gateway(config)
    try:
        await asyncio.sleep(1)
        body = _flood_body((BODY_MB << 20) - 1024)
        raw = _post_bytes("/v1/chat/completions", body, GW_KEY if auth else None)

        async def load():
            return [(await http(gw.port, raw, 300))[0]]

        statuses, worst, idle, peak = await _watched(gw, load)
        who = "a gateway key" if auth else "no credentials (pass-through)"
        _report(f"empty-flood ({len(body) >> 20} MiB of [{{}},{{}},...], {who})", statuses,
                worst, idle, peak)
        # The most a body may cost now: just under server.max_json_values' default.
        body = _flood_body(0, 249_990)
        raw = _post_bytes("/v1/chat/completions", body, GW_KEY if auth else None)
        statuses, worst, idle, peak = await _watched(gw, load)
        _report(f"  the same at the value cap (249,990 objects, {len(body) / 1e6:.1f} MB)",
                statuses, worst, idle, peak)
    finally:
        gw.stop()
        vendor.close()


async def empty_flood():
    await _flood(False)


async def empty_flood_auth():
    await _flood(True)


async def count_tokens_blocks():
    vendor, url = await _stub_vendor()
    gw = Gateway(f"providers:\n  deepseek:\n    base_url: {url}\n")
    try:
        await asyncio.sleep(1)
        head = b'{"model":"deepseek-chat","messages":[{"role":"user","content":['
        n = ((BODY_MB << 20) - 1024 - len(head)) // 13
        body = head + b",".join([b'{"type":"x"}'] * n) + b"]}]}"
        raw = _post_bytes("/v1/messages/count_tokens", body, "sk-bench-0000000000000000")

        async def load():
            return [(await http(gw.port, raw, 300))[0]]

        statuses, worst, idle, peak = await _watched(gw, load)
        _report(f"count-tokens ({n / 1e6:.1f}M blocks, {len(body) >> 20} MiB)", statuses,
                worst, idle, peak)
        # The most an estimate may walk now: 19,999 blocks and their message.
        n = 19_999
        body = head + b",".join([b'{"type":"x"}'] * n) + b"]}]}"
        raw = _post_bytes("/v1/messages/count_tokens", body, "sk-bench-0000000000000000")
        statuses, worst, idle, peak = await _watched(gw, load)
        _report(f"  the same at the walk's cap ({n} blocks)", statuses, worst, idle, peak)
    finally:
        gw.stop()
        vendor.close()


async def metrics_flood():
    """600 model names x 3 doors, half of them failing with assorted statuses; then one
    scrape (its size and time), then 4 scrapers in parallel for 5 s."""
    vendor, url = await _stub_vendor()
    gw = Gateway(f"providers:\n  deepseek:\n    base_url: {url}\n")
    codes = (400, 401, 402, 422, 429, 500, 503)
    try:
        await asyncio.sleep(1)
        sem = asyncio.Semaphore(16)

        async def one(i, door):
            name = f"deepseek/m{i}" if i % 2 else f"deepseek/s{codes[i % 7]}-m{i}"
            body = {"model": name, "messages": [{"role": "user", "content": "hi"}]}
            path = "/v1/chat/completions"
            if door == 1:
                path, body = "/v1/messages", dict(body, max_tokens=8)
            elif door == 2:
                path, body = "/v1/responses", {"model": name, "input": "hi"}
            async with sem:
                await http(gw.port, post(path, body, "sk-bench-0000000000000000"), 30)

        await asyncio.gather(*(one(i, d) for i in range(600) for d in range(3)))
        scrape = b"GET /metrics HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"
        t = time.monotonic()
        status, text = await http(gw.port, scrape, 60)
        took = time.monotonic() - t
        series = sum(1 for line in text.split(b"\n") if line and not line.startswith(b"#"))
        scrapes = []

        async def load():
            end = time.monotonic() + 5

            async def scraper():
                while time.monotonic() < end:
                    scrapes.append((await http(gw.port, scrape, 60))[0])
            await asyncio.gather(*(scraper() for _ in range(4)))
            return scrapes

        statuses, worst, idle, peak = await _watched(gw, load)
        _report(f"metrics-flood (1800 requests, 600 model names x 3 doors; one scrape: "
                f"HTTP {status}, {series} series, {len(text) / 1e6:.2f} MB, "
                f"{took * 1000:.0f} ms; then 4 parallel scrapers for 5 s)", statuses, worst,
                idle, peak)
    finally:
        gw.stop()
        vendor.close()


async def _send_reading(port: int, raw: bytes) -> int:
    """Send `raw` in pieces while reading the answer, which may come (a refusal) before the
    body is all sent: its status, or 0."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answer = asyncio.ensure_future(asyncio.wait_for(reader.read(), 300))
    try:
        for i in range(0, len(raw), 1 << 16):
            if answer.done():
                break
            writer.write(raw[i:i + (1 << 16)])
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    try:
        data = await answer
    except (ConnectionError, OSError, asyncio.TimeoutError):
        data = b""
    writer.close()
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0


async def big_uploads():
    """12 concurrent 19 MiB multipart uploads to /v1/files (no gateway keys)."""
    gw = Gateway("server: {}")
    try:
        await asyncio.sleep(1)
        data = os.urandom(19 << 20)
        form = (b'--bb\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nuser_data\r\n'
                b'--bb\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\n'
                b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n--bb--\r\n")
        raw = (b"POST /v1/files HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n"
               b"Content-Type: multipart/form-data; boundary=bb\r\n"
               b"Content-Length: %d\r\n\r\n" % len(form)) + form

        async def load():
            return await asyncio.gather(*(_send_reading(gw.port, raw) for _ in range(12)))

        statuses, worst, idle, peak = await _watched(gw, load)
        _report("uploads (12 concurrent 19 MiB multipart, /v1/files)", statuses, worst, idle,
                peak)
    finally:
        gw.stop()


PREAUTH = {"empty-flood": empty_flood, "empty-flood-auth": empty_flood_auth,
           "count-tokens": count_tokens_blocks, "metrics-flood": metrics_flood,
           "uploads": big_uploads}


async def preauth(which):
    for name in which or PREAUTH:
        await PREAUTH[name]()


# -- vendor-urls: a hostile vendor's download URLs (issue 20) ---------------------------------

SECRET = b"\x89PNG\r\n\x1a\nINTERNAL-SECRET-BODY-issue20"
BIG_MB = int(os.environ.get("HOSTILE_IMAGE_MB", "30"))
BIG_COUNT = 12


async def _serve_http(handler):
    """A stdlib HTTP/1.1 server on 127.0.0.1 answering one request per connection:
    `handler(method, path, body)` returns (status, content type, body bytes or a list of
    pieces)."""
    async def conn(reader, writer):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            method, path = head.split(b" ", 2)[:2]
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = await reader.readexactly(length)
            status, ctype, out = handler(method.decode(), path.decode(), body)
            pieces = out if isinstance(out, list) else [out]
            writer.write(b"HTTP/1.1 %d X\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
                         b"Connection: close\r\n\r\n" % (status, ctype.encode(),
                                                        sum(map(len, pieces))))
            for piece in pieces:
                writer.write(piece)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()
    server = await asyncio.start_server(conn, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _count(port: int, raw: bytes, timeout: float = 300) -> tuple[int, int, bytes]:
    """(status, body size, the first 1 MB of the body): the body is counted, not kept."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    writer.write(raw)
    head = b""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        size, first = 0, b""
        while data := await asyncio.wait_for(reader.read(1 << 20), timeout):
            size += len(data)
            if len(first) < 1 << 20:
                first += data
    finally:
        writer.close()
    return int(head.split(b" ", 2)[1]), size, first


async def vendor_urls():
    import base64
    secret_hits = []

    def internal(method, path, body):
        secret_hits.append(path)
        return 200, "image/png", SECRET

    big = b"\x89PNG\r\n\x1a\n" + b"\0" * ((BIG_MB << 20) - 8)
    mode = {"urls": []}

    def vendor(method, path, body):
        urls = [u.replace("{own}", f"http://127.0.0.1:{vport}") for u in mode["urls"]]
        if path.endswith("/images/generations"):  # GLM CogView
            return 200, "application/json", json.dumps(
                {"created": 1, "data": [{"url": u} for u in urls]}).encode()
        if path.endswith("/multimodal-generation/generation"):  # Qwen-TTS, Qwen-Image-Edit
            if b'"voice"' in body:  # Qwen-TTS (an edit has none)
                out = {"output": {"finish_reason": "stop", "audio": {"url": urls[0]}}}
            else:
                out = {"output": {"choices": [{"message": {"content": [
                    {"image": u} for u in urls]}}]}}
            return 200, "application/json", json.dumps(out).encode()
        if path.startswith("/files/big"):
            return 200, "image/png", [big[i:i + (1 << 20)] for i in range(0, len(big), 1 << 20)]
        return 404, "text/plain", b"no"

    sserver, sport = await _serve_http(internal)
    vserver, vport = await _serve_http(vendor)
    gw = Gateway(f"auth:\n  keys: [{GW_KEY}]\nproviders:\n"
                 f"  glm: {{base_url: 'http://127.0.0.1:{vport}/api/paas/v4', "
                 f"api_keys: [sk-bench-hostile-0001]}}\n"
                 f"  qwen: {{base_url: 'http://127.0.0.1:{vport}/compatible-mode/v1', "
                 f"api_keys: [sk-bench-hostile-0002], discover: false}}\n")
    boundary = "benchboundary"
    png = b"\x89PNG\r\n\x1a\nclient-image"
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n"
            f"qwen-image-edit\r\n--{boundary}\r\nContent-Disposition: form-data; "
            f"name=\"prompt\"\r\n\r\nx\r\n--{boundary}\r\nContent-Disposition: form-data; "
            f"name=\"response_format\"\r\n\r\nb64_json\r\n--{boundary}\r\n"
            f"Content-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + png + f"\r\n--{boundary}--\r\n".encode()
    edit = (f"POST /v1/images/edits HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n"
            f"Authorization: Bearer {GW_KEY}\r\nContent-Type: multipart/form-data; "
            f"boundary={boundary}\r\nContent-Length: {len(form)}\r\n\r\n").encode() + form
    paths = {
        "images": post("/v1/images/generations", {"model": "cogview-3-flash", "prompt": "x",
                                                  "response_format": "b64_json"}, GW_KEY),
        "speech": post("/v1/audio/speech", {"model": "qwen3-tts-flash", "voice": "alloy",
                                            "input": "hi", "response_format": "wav"}, GW_KEY),
        "edits": edit,
    }
    marks = (SECRET, base64.b64encode(SECRET))
    try:
        await asyncio.sleep(1)
        for name, target in (("another loopback port", f"http://127.0.0.1:{sport}/s"),
                             ("localhost", f"http://localhost:{sport}/s"),
                             ("decimal notation", f"http://2130706433:{sport}/s"),
                             ("IPv4-mapped IPv6", f"http://[::ffff:127.0.0.1]:{sport}/s")):
            mode["urls"] = [target]
            leaked, statuses = 0, []
            for path, raw in paths.items():
                status, _, first = await _count(gw.port, raw, 60)
                statuses.append(f"{path} {status}")
                leaked += any(m in first for m in marks)
            print(f"vendor-urls: internal URL ({name}): {leaked} of 3 bodies leaked to the "
                  f"client; {', '.join(statuses)}; internal service hit {len(secret_hits)}x")
            secret_hits.clear()
        mode["urls"] = [f"{{own}}/files/big{i}.png" for i in range(BIG_COUNT)]
        idle = peak = gw.rss_mb()
        task = asyncio.ensure_future(_count(gw.port, paths["images"], 300))
        t0 = time.monotonic()
        while not task.done():
            peak = max(peak, gw.rss_mb())
            await asyncio.sleep(0.05)
        status, size, _ = task.result()
        print(f"vendor-urls: n=1 answered with {BIG_COUNT} x {BIG_MB} MiB URLs: HTTP {status}, "
              f"answer {size / (1 << 20):.0f} MiB, {time.monotonic() - t0:.1f} s, gateway RSS "
              f"idle {idle:.0f} MB, peak {peak:.0f} MB (+{peak - idle:.0f} MB)")
    finally:
        gw.stop()
        sserver.close()
        vserver.close()


async def main(which):
    from hostile_files import SCENARIOS as files_scenarios  # issue 20 (bench/)
    for name in which:
        await {"endless-line": endless_line, "unauth-flood": unauth_flood,
               "fd-limit": fd_limit, "vendor-urls": vendor_urls, **files_scenarios}[name]()


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    if sys.argv[1:2] == ["preauth"]:
        asyncio.run(preauth(sys.argv[2:]))
        sys.exit()
    asyncio.run(main(sys.argv[1:] or ["endless-line", "unauth-flood", "fd-limit"]))
