"""What OpenTelemetry traces (freeapi/telemetry.py) cost per request, telemetry off and on.

1. The call sites alone (no network, no event loop): per request, off = the pipeline's
   `is not None` checks (Pipeline.run, Failover._attempts, Pipeline.finished) on a fresh
   Exchange; on = the request span, one attempt span and their ends, exported by the batch
   processor (its own thread) to an OTLP/HTTP receiver on 127.0.0.1 that discards them.
   Making the Exchange is the yardstick.
2. Whole requests: non-stream chat requests one after another through a gateway in this
   process in front of the tests' fake DeepSeek, off and on, rounds interleaved, the best
   round of each (the machine is shared: compare within one run).

Needs the `otel` extra for the "on" rows. Run:
    PYTHONPATH=$PWD .venv/bin/python bench/otel_cost.py [--requests 2000]
"""

import argparse
import asyncio
import http.server
import json
import sys
import threading
import time
import timeit

from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

from freeapi.app import Gateway, make_app
from freeapi.config import parse_config
from freeapi.pipeline.exchange import Exchange
from freeapi.plugins import make_plugin_manager, provider_types
from freeapi.server import make_server

N = 50_000


class _Discard(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


class Door:
    """What the telemetry calls read of a door."""
    endpoint, caller = "chat", None

    def header(self, name):
        return None

    def elapsed(self):
        return 0.001

    def request_id(self):
        return "0123456789abcdef01234567"

    def get_status(self):
        return 200


class _Provider:
    name = "deepseek"


class _Target:
    provider, upstream_model = _Provider(), "deepseek-v4-flash"


class _Lease:
    id = "sk-...0001"


def gateway(endpoint=None, upstream=None):
    pm = make_plugin_manager()
    types = provider_types(pm)
    cfg = {"auth": {"allow_anonymous": True}}
    if upstream:
        cfg["providers"] = {"deepseek": {"base_url": upstream,
                                         "api_keys": ["sk-good-0000000000000001"]}}
    if endpoint:
        cfg["telemetry"] = {"otlp_endpoint": endpoint}
    return Gateway(parse_config(cfg, types), pm, types)


def call_sites(endpoint):
    door, target, lease = Door(), _Target(), _Lease()
    entry = {"status": 200, "provider": "deepseek", "upstream_model": "deepseek-v4-flash",
             "prompt_tokens": 11, "completion_tokens": 7, "key": None, "ttfb_ms": 4}
    off, on = gateway(), gateway(endpoint)
    if on.telemetry is None:
        sys.exit("the `otel` extra is not installed: pip install 'freeapi[otel]'")

    def yardstick():
        Exchange(door)

    def disabled():  # the pipeline's checks with telemetry off
        ex = Exchange(door)
        if off.telemetry is not None:
            off.telemetry.request_started(ex, "deepseek-chat", False)
        if ex.span is not None:
            pass
        if ex.span is not None:
            pass

    tracing = on.telemetry

    def enabled():
        ex = Exchange(door)
        if on.telemetry is not None:
            tracing.request_started(ex, "deepseek-chat", False)
        if ex.span is not None:
            span = tracing.attempt_started(ex, target, lease, {})
            tracing.attempt_ended(span, result=b"")
        ex.entry = entry
        if ex.span is not None:
            tracing.request_ended(ex)

    def us(fn, n=N):
        return min(timeit.repeat(fn, number=n, repeat=5)) / n * 1e6

    print(f"{'call sites':36} us per request")
    base = us(yardstick)
    print(f"{'yardstick: Exchange(door)':36} {base:8.3f}")
    print(f"{'telemetry off (the checks)':36} {us(disabled) - base:8.3f}  (beyond the yardstick)")
    # Rounds of 500 requests (1,000 spans: the batch queue holds 2,048), each exported
    # after its timing: what the request path pays, not the exporter thread.
    rounds = []
    for _ in range(5):
        rounds.append(timeit.timeit(enabled, number=500) / 500 * 1e6)
        tracing.flush()
    print(f"{'telemetry on (2 spans)':36} {min(rounds) - base:8.3f}")
    off.close()
    on.close()


async def requests(endpoint, n):
    from tests.fakes import deepseek as fake
    sock, port = bind_unused_port()
    vendor = HTTPServer(fake.make_app(fake.State()))
    vendor.add_sockets([sock])
    upstream = f"http://127.0.0.1:{port}"
    client = AsyncHTTPClient()
    body = json.dumps({"model": "deepseek-chat",
                       "messages": [{"role": "user", "content": "hi"}]})
    best = {}
    gws = {"off": gateway(upstream=upstream), "on": gateway(endpoint, upstream)}
    urls = {}
    for name, gw in gws.items():
        s, p = bind_unused_port()
        server = make_server(make_app(gw), gw.config)
        server.add_sockets([s])
        urls[name] = f"http://127.0.0.1:{p}/v1/chat/completions"
    for _ in range(5):
        for name, url in urls.items():
            t = time.perf_counter()
            for _ in range(n // 5):
                r = await client.fetch(url, method="POST", body=body)
                assert r.code == 200
            took = (time.perf_counter() - t) / (n // 5) * 1e6
            best[name] = min(best.get(name, took), took)
        gws["on"].telemetry.flush()
    print(f"\n{'whole requests (non-stream chat)':36} us per request (best of 5 rounds)")
    for name in ("off", "on"):
        print(f"{'telemetry ' + name:36} {best[name]:8.1f}")
    for gw in gws.values():
        gw.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=2000)
    args = ap.parse_args()
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Discard)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{receiver.server_address[1]}"
    call_sites(endpoint)
    asyncio.run(requests(endpoint, args.requests))
    receiver.shutdown()


if __name__ == "__main__":
    main()
