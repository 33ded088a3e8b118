"""How long one request with a flood of pass-through keys blocks the gateway's event loop.

    .venv/bin/python bench/key_flood.py [N_KEYS]    # default 15000 (a 91 KB header); 0 skips

Starts the gateway in-process (zero-config, pass-through) in front of the fake DeepSeek
from tests/fakes on 127.0.0.1, then sends one chat request whose `Authorization: Bearer
k1,k2,...` carries N made-up keys, twice (a cold and a warm health store), while a ticker
measures the longest stretch the event loop was blocked. Prints the status, the request's
time and the longest block; then how long 20,000 new pass-through keys take to enter the
key health store once it holds its 10,000; and 500 requests of 32 new keys each.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

sys.path.insert(0, __file__.rsplit("/bench/", 1)[0])

from freeapi.app import Gateway, make_app  # noqa: E402
from freeapi.config import parse_config  # noqa: E402
from freeapi.keypool import HealthStore  # noqa: E402
from freeapi.plugins import make_plugin_manager, provider_types  # noqa: E402
from tests.fakes import deepseek as fake  # noqa: E402


async def main(n: int):
    sock, port = bind_unused_port()
    up = HTTPServer(fake.make_app(fake.State()))
    up.add_sockets([sock])
    pm = make_plugin_manager()
    types = provider_types(pm)
    cfg = parse_config({"providers": {"deepseek": {"base_url": f"http://127.0.0.1:{port}"}}},
                       types)
    gw = Gateway(cfg, pm, types)
    sock2, gport = bind_unused_port()
    server = HTTPServer(make_app(gw), max_header_size=1 << 20)
    server.add_sockets([sock2])
    worst = 0.0

    async def ticker():
        nonlocal worst
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.005)
            now = time.monotonic()
            worst = max(worst, now - last)
            last = now

    tick = asyncio.ensure_future(ticker())
    keys = ",".join(f"k{i}" for i in range(n))
    body = json.dumps({"model": "deepseek-chat",
                       "messages": [{"role": "user", "content": "hi"}]})
    client = AsyncHTTPClient(max_header_size=1 << 20)
    for run in ("cold", "warm") if n else ():
        worst = 0.0
        started = time.monotonic()
        req = HTTPRequest(f"http://127.0.0.1:{gport}/v1/chat/completions", "POST", body=body,
                          headers={"Authorization": "Bearer " + keys,
                                   "Content-Type": "application/json"},
                          request_timeout=600)
        resp = await client.fetch(req, raise_error=False)
        took = time.monotonic() - started
        code = json.loads(resp.body or b"{}").get("error", {}).get("code")
        print(f"{run}: {n} keys ({len(keys) // 1024} KB header): HTTP {resp.code} {code}, "
              f"request {took:.3f}s, event loop blocked at most {worst:.3f}s")
    # The allowed maximum, many times: 500 callers x 32 made-up keys (16,000 keys, more
    # than the health store keeps), one after another.
    worst, started = 0.0, time.monotonic()
    for n in range(500):
        many = ",".join(f"k{n}-{i}" for i in range(32))
        req = HTTPRequest(f"http://127.0.0.1:{gport}/v1/chat/completions", "POST", body=body,
                          headers={"Authorization": "Bearer " + many,
                                   "Content-Type": "application/json"}, request_timeout=60)
        await client.fetch(req, raise_error=False)
    print(f"500 requests x 32 new keys: {time.monotonic() - started:.2f}s in all, event loop "
          f"blocked at most {worst:.3f}s, health store holds {len(gw.health._h)} client keys")
    tick.cancel()
    server.stop()
    up.stop()
    gw.close()
    store = HealthStore()
    started = time.perf_counter()
    for i in range(20000):
        store.get("p", f"k{i}")
    print(f"health store: 20000 new pass-through keys past its {store._limit} entries: "
          f"{time.perf_counter() - started:.3f}s")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 15000))
