"""Micro-benchmark of what issue 12 adds to every request (no network, no event loop):
the request id and log context, and the metrics of one finished request with one upstream
attempt, as freeapi records them in one process (plain dicts, families built when scraped)
and, for comparison, through prometheus-client's metric objects (what --workers N uses,
there backed by files). Prints microseconds per request, with a dict update as the
machine's yardstick. Run: .venv/bin/python bench/hotpath.py"""

import timeit

from freeapi import logs
from freeapi.ledger import entry
from freeapi.metrics import Metrics

N = 200_000


def main():
    d = {}

    def yardstick():
        d["x"] = d.get("x", 0) + 1

    m = Metrics()
    # The same families as prometheus-client objects (in memory here: the environment has no
    # PROMETHEUS_MULTIPROC_DIR, so only the code path differs, not the storage).
    objects = Metrics(multiproc_dir="(objects)")
    usage = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18,
             "prompt_tokens_details": {"cached_tokens": 8}}
    plain = entry(caller=None, vendor_key="sk-...0001", provider="deepseek",
                  model="deepseek-chat", upstream_model="deepseek-chat", status=200,
                  error=None, stream=False, latency_ms=12, ttfb_ms=11, usage=usage)
    stream = dict(plain, stream=True)

    def request_id():
        logs.begin(None)

    def client_id():
        logs.begin("trace-0123456789")

    def non_stream():
        m.attempt("deepseek", "ok")
        m.request_done(plain, 0.011)

    def a_stream():
        m.attempt("deepseek", "ok")
        m.request_done(stream, 0.011)

    def non_stream_objects():
        objects.attempt("deepseek", "ok")
        objects.request_done(plain, 0.011)

    def a_stream_objects():
        objects.attempt("deepseek", "ok")
        objects.request_done(stream, 0.011)

    for name, fn in (("yardstick: one dict update", yardstick),
                     ("request id (generated) + log context", request_id),
                     ("request id (client's, checked) + log context", client_id),
                     ("metrics: non-stream request, 1 attempt", non_stream),
                     ("metrics: stream, 1 attempt (+ TTFT)", a_stream),
                     ("  same via prometheus-client objects", non_stream_objects),
                     ("  same, stream", a_stream_objects)):
        best = min(timeit.repeat(fn, number=N, repeat=5)) / N
        print(f"{name:48s} {best * 1e6:6.2f} us")


if __name__ == "__main__":
    main()
