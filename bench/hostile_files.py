"""Hostile callers of the file store and stored responses (issue 20), against a real
`freeapi` process; run through bench/hostile.py:

    python bench/hostile.py files            # all four; or one of the names below
    cd /tmp && PYTHONPATH=/path/to/old/checkout python /path/to/bench/hostile.py files

(run the old code from a directory that holds no `freeapi`: `python -m freeapi` puts the
working directory first on the path.)

- upload-flood: zero config (pass-through): 16 x 20 MiB uploads at once without
  credentials, then with 16 different bearer tokens; one upload with a 40 MiB `purpose`;
  a gateway key with `rpm: 1` uploading 10 files. Reported: statuses, seconds, state
  storage growth, peak RSS, worst /ping.
- stalled-downloads: 40 connections ask for a 20 MiB file's content and never read.
  Reported: statuses, RSS peak and at the end of HOSTILE_HOLD_S (default 20) seconds.
- stored-responses: 25 /v1/responses (store: true) carrying an input_file of 3.9 MiB
  (its base64).
  Reported: statuses, seconds, state storage growth.
- redis-metadata: on Redis, 60 then 150 concurrent GET /v1/files/{id} of a 20 MiB file
  while /ping and another caller's chat run. Reported: statuses, worst /ping, the chat's
  latency.
"""

from __future__ import annotations

import asyncio
import base64
import glob
import json
import os
import socket
import time
from collections import Counter

from hostile import GW_KEY, Gateway, http, post, worst_ping

MB = 1 << 20
OTHER_KEY = "gw-bench-hostile-0002"
HOLD_S = float(os.environ.get("HOSTILE_HOLD_S", "20"))
REDIS_URL = os.environ.get("FREEAPI_BENCH_REDIS", "redis://127.0.0.1:6379/0")
BOUNDARY = "hostile-files-boundary"
ANSWER = json.dumps({"id": "c1", "object": "chat.completion", "created": 1, "model": "m",
                     "choices": [{"index": 0, "finish_reason": "stop", "message": {
                         "role": "assistant", "content": "ok"}}],
                     "usage": {"prompt_tokens": 1, "completion_tokens": 1,
                               "total_tokens": 2}}).encode()


def upload(size: int, key: str | None, purpose: bytes = b"user_data") -> bytes:
    body = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n"
            .encode() + purpose + f"\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; "
            f"name=\"file\"; filename=\"f.bin\"\r\nContent-Type: application/octet-stream"
            f"\r\n\r\n".encode() + b"x" * size + f"\r\n--{BOUNDARY}--\r\n".encode())
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    return (f"POST /v1/files HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n{auth}"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def get(path: str, key: str) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n"
            f"Authorization: Bearer {key}\r\n\r\n").encode()


def storage_mb(gw: Gateway) -> float:
    return sum(os.path.getsize(p) for p in glob.glob(f"{gw.dir}/state.db*")) / MB


async def watch(gw: Gateway, work):
    """Run `work` while sampling RSS and /ping: (result, seconds, peak RSS, worst ping)."""
    done = asyncio.get_running_loop().create_future()
    pinger = asyncio.ensure_future(worst_ping(gw.port, done))
    peak = gw.rss_mb()

    async def sample():
        nonlocal peak
        while not done.done():
            peak = max(peak, gw.rss_mb())
            await asyncio.sleep(0.1)
    sampler = asyncio.ensure_future(sample())
    t = time.monotonic()
    result = await work
    took = time.monotonic() - t
    done.set_result(None)
    await sampler
    return result, took, peak, await pinger


async def status_of(port: int, raw: bytes, timeout: float = 120) -> int:
    """The status of one request whose body is sent while the answer is read, so an
    answer given before the body (and the connection closed) is seen, not a reset."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return 0

    async def send():
        try:
            for at in range(0, len(raw), 1 << 16):
                writer.write(raw[at:at + (1 << 16)])
                await writer.drain()
        except (OSError, RuntimeError):
            pass
    sender = asyncio.ensure_future(send())
    try:
        line = await asyncio.wait_for(reader.readline(), timeout)
        return int(line.split()[1]) if line.startswith(b"HTTP/") else 0
    except (OSError, asyncio.TimeoutError, ValueError, IndexError):
        return 0
    finally:
        sender.cancel()
        writer.close()


def counted(statuses) -> str:
    return ", ".join(f"{n}x{s or 'conn-error'}" for s, n in sorted(Counter(statuses).items()))


async def flood(gw: Gateway, label: str, requests: list[bytes]):
    before, idle = storage_mb(gw), gw.rss_mb()
    statuses, took, peak, ping = await watch(gw, asyncio.gather(
        *(status_of(gw.port, r) for r in requests)))
    print(f"  {label}: {counted(statuses)} in {took:.1f}s; storage +{storage_mb(gw) - before:.0f}"
          f" MiB; RSS {idle:.0f} -> peak {peak:.0f} MiB; worst /ping {ping * 1000:.0f} ms")


async def upload_flood():
    print("upload-flood:")
    gw = Gateway("server: {}")  # zero config: pass-through, no gateway keys
    try:
        await asyncio.sleep(1)
        await flood(gw, "16 x 20 MiB, no credentials", [upload(20 * MB, None)] * 16)
        await flood(gw, "16 x 20 MiB, 16 bearer tokens",
                    [upload(20 * MB, f"sk-bench-{i:020d}") for i in range(16)])
        await flood(gw, "one 40 MiB `purpose`", [upload(10, "sk-bench-purpose-000000",
                                                        b"p" * (40 * MB))])
    finally:
        gw.stop()
    gw = Gateway(f"auth:\n  keys: [{{key: {GW_KEY}, name: bench, rpm: 1}}]\n")
    try:
        await asyncio.sleep(1)
        statuses = [await status_of(gw.port, upload(MB, GW_KEY)) for _ in range(10)]
        print(f"  key with rpm: 1, 10 uploads of 1 MiB: {counted(statuses)}")
    finally:
        gw.stop()


async def stalled_downloads():
    gw = Gateway(f"auth:\n  keys: [{GW_KEY}]\n")
    conns = []
    try:
        await asyncio.sleep(1)
        status, body = await http(gw.port, upload(20 * MB, GW_KEY))
        file_id = json.loads(body)["id"]
        idle = peak = gw.rss_mb()
        for _ in range(40):
            r, w = await asyncio.open_connection("127.0.0.1", gw.port, limit=1 << 16)
            sock = w.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            w.write(get(f"/v1/files/{file_id}/content", GW_KEY))
            conns.append((r, w))
        # The client reads nothing: its transport is paused so asyncio does not either.
        for _, w in conns:
            w.transport.pause_reading()
        end = time.monotonic() + HOLD_S
        while time.monotonic() < end:
            peak = max(peak, gw.rss_mb())
            await asyncio.sleep(0.2)
        held = gw.rss_mb()
        statuses = []
        for r, w in conns:
            w.transport.resume_reading()
            try:
                line = await asyncio.wait_for(r.readline(), 5)
                statuses.append(int(line.split()[1]) if line.startswith(b"HTTP/") else 0)
            except (OSError, asyncio.TimeoutError, ValueError, IndexError):
                statuses.append(0)
        print(f"stalled-downloads (40 never-reading clients, one 20 MiB file): "
              f"{counted(statuses)}; RSS {idle:.0f} -> peak {peak:.0f} MiB, {held:.0f} MiB "
              f"after {HOLD_S:g}s")
    finally:
        for _, w in conns:
            w.close()
        gw.stop()


async def _vendor(reader, writer):
    """A chat-completions server that answers `ok` to anything (keep-alive)."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(ANSWER), ANSWER))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError,
            asyncio.CancelledError):
        writer.close()


def local_provider(url: str) -> str:
    return (f"auth:\n  keys: [{GW_KEY}, {OTHER_KEY}]\nproviders:\n  local:\n    type: openai"
            f"\n    base_url: {url}\n    models: [m]\n    discover: false\n")


async def stored_responses():
    server = await asyncio.start_server(_vendor, "127.0.0.1", 0, limit=64 * MB)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
    gw = Gateway(local_provider(url))
    try:
        await asyncio.sleep(1)
        data = base64.b64encode(b"%PDF" + b"x" * int(3.9 * MB * 3 / 4)).decode()  # 3.9 MiB
        body = {"model": "local/m", "store": True, "input": [{"role": "user", "content": [
            {"type": "input_file", "filename": "a.pdf",
             "file_data": "data:application/pdf;base64," + data},
            {"type": "input_text", "text": "summarise"}]}]}
        raw = post("/v1/responses", body, GW_KEY)
        before = storage_mb(gw)
        t = time.monotonic()
        statuses = []
        for _ in range(5):
            statuses += await asyncio.gather(*(status_of(gw.port, raw) for _ in range(5)))
        took = time.monotonic() - t
        await asyncio.sleep(1)  # records are written in the background
        print(f"stored-responses (25 x store: true with a 3.9 MiB input_file): "
              f"{counted(statuses)} in {took:.1f}s; storage +{storage_mb(gw) - before:.0f} MiB")
    finally:
        gw.stop()
        server.close()


async def redis_metadata():
    prefix = f"freeapi-bench:{os.urandom(6).hex()}:"
    server = await asyncio.start_server(_vendor, "127.0.0.1", 0, limit=64 * MB)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
    gw = Gateway(local_provider(url),
                 state=f"\nstate: {{redis_url: '{REDIS_URL}', prefix: '{prefix}'}}\n")
    try:
        await asyncio.sleep(1)
        status, body = await http(gw.port, upload(20 * MB, GW_KEY))
        file_id = json.loads(body)["id"]
        chat = post("/v1/chat/completions", {"model": "local/m", "messages": [
            {"role": "user", "content": "hi"}]}, OTHER_KEY)
        for n in (60, 150):
            async def other_chat():
                await asyncio.sleep(0.2)
                t = time.monotonic()
                s = await status_of(gw.port, chat)
                return s, time.monotonic() - t

            async def both():
                return await asyncio.gather(other_chat(), *(
                    status_of(gw.port, get(f"/v1/files/{file_id}", GW_KEY))
                    for _ in range(n)))
            results, took, _, ping = await watch(gw, both())
            (chat_status, chat_s), *statuses = results
            print(f"redis-metadata ({n} concurrent GET /v1/files/{{id}} of a 20 MiB file): "
                  f"{counted(statuses)} in {took:.1f}s; worst /ping {ping * 1000:.0f} ms; "
                  f"another caller's chat HTTP {chat_status} in {chat_s * 1000:.0f} ms")
    finally:
        gw.stop()
        server.close()
        from freeapi.store.redis import RedisStore
        store = RedisStore(REDIS_URL, prefix=prefix, timeout=30)
        await store.delete_all()
        store.close()


SCENARIOS = {"upload-flood": upload_flood, "stalled-downloads": stalled_downloads,
             "stored-responses": stored_responses, "redis-metadata": redis_metadata}


async def all_files():
    for run in _EACH.values():
        await run()


_EACH = dict(SCENARIOS)


SCENARIOS["files"] = all_files
