"""Prometheus metrics (GET /metrics), with prometheus-client.

Each fact is counted in one place: request totals, duration, tokens and time to first token
where the ledger entry is built (`request_done`), upstream attempts by failover
(`attempt`), limit refusals by freeapi/limits.py (`limit_rejected`). What is a state rather
than an event (key health, keys' and endpoints' requests in flight) is read from the key
pools and the gateway when scraped, so the request path pays nothing for it.

One process (the default): events only add to plain dicts (a request costs a few dict
updates and one bisect per histogram), and a collector turns them into metric families
when scraped. prometheus-client's own metric objects take a lock and check arguments on
every call, about ten times that cost per request.

With `--workers N` prometheus-client's multiprocess mode aggregates the workers: each
worker writes its values to files in PROMETHEUS_MULTIPROC_DIR (the CLI makes a temporary
one when the user set none) and whichever worker is scraped merges them, so there events go
to prometheus-client's objects (label children cached), and every worker refreshes its
state gauges every 2 s.

Names follow the OpenTelemetry GenAI conventions where they map: freeapi_tokens_total is
gen_ai.client.token.usage (type input/output, plus cached and reasoning), and
freeapi_time_to_first_token_seconds is gen_ai.client.operation.time_to_first_chunk
(https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-metrics/, status: development).
Labels never carry a key, only its masked id (`sk-...abcd`).

Series are bounded whatever clients send: `status` is the status class (2xx, 4xx, 5xx), and
a process keeps at most `metrics.max_models` (endpoint, provider, model) label sets, the
rest counting as model="other"; so every family has a bounded number of series. A
rendered scrape is served again for `metrics.cache_seconds`, so scrapers in parallel cost
one rendering (bench/hostile.py metrics-flood measures one).
"""

from __future__ import annotations

import os
import time
from bisect import bisect_left

# The multiprocess mode is chosen by prometheus-client when it is first imported (from
# PROMETHEUS_MULTIPROC_DIR), so it is imported only when the first Metrics is built, after
# the CLI has set the variable up (freeapi/cli.py).

KEY_STATES = {"ok": 0, "cooldown": 1, "invalid": 2, "no_balance": 3}
TOKEN_TYPES = (("input", "prompt_tokens"), ("output", "completion_tokens"),
               ("cached", "cached_tokens"), ("reasoning", "reasoning_tokens"))
# A client may name any model (`deepseek/ANYTHING` routes) on any door, and each would be
# new label values kept forever: past this many (endpoint, provider, model) label sets per
# process (metrics.max_models), the rest are model="other".
MAX_MODELS = 200

_SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
_FIRST_TOKEN = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120)
_OVERHEAD = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)

# name: (kind, help, labels, buckets or multiprocess mode)
FAMILIES = {
    "freeapi_requests_total": (
        "counter", "Requests that reached routing, by final status class (2xx, 4xx, "
        "5xx).",
        ("endpoint", "provider", "model", "status"), None),
    "freeapi_request_duration_seconds": (
        "histogram", "Time from the request's arrival to its end (the whole stream for "
        "streams).", ("endpoint", "provider", "model"), _SECONDS),
    "freeapi_time_to_first_token_seconds": (
        "histogram", "Streams: time until the vendor's first data event.",
        ("provider", "model"), _FIRST_TOKEN),
    "freeapi_tokens_total": (
        "counter", "Tokens as the vendor reported them.", ("provider", "model", "type"), None),
    "freeapi_upstream_attempts_total": (
        "counter", "Vendor calls by outcome: ok; retried (on another key of the same "
        "target); fallback (the next target took over); failed (the request's last "
        "attempt failed).", ("provider", "outcome"), None),
    "freeapi_key_state": (
        "gauge", "Server-side key health: 0 ok, 1 cooldown, 2 invalid, 3 no balance.",
        ("provider", "key"), "livemax"),
    "freeapi_key_inflight": (
        "gauge", "Requests in flight on a server-side key.", ("provider", "key"), "livesum"),
    "freeapi_inflight_requests": (
        "gauge", "Requests being served, by front door.", ("endpoint",), "livesum"),
    "freeapi_limit_rejections_total": (
        "counter", "Requests a gateway key's limit refused.", ("limit",), None),
    "freeapi_gateway_overhead_seconds": (
        "histogram", "Time a request spent in the gateway itself: its duration minus the "
        "time spent waiting for vendors.", (), _OVERHEAD),
    "freeapi_budget_used_ratio": (
        "gauge", "A money budget's spend (reservations in flight included) over its amount, "
        "per key or team and period (daily, monthly, total), as last seen by this gateway.",
        ("key", "team", "period"), "mostrecent"),
    "freeapi_ledger_dropped_total": (
        "counter", "Usage ledger entries dropped unwritten: the state store was down "
        "longer than state.ledger_buffer entries could wait for it; by the store's kind "
        "(sqlite, redis, postgres).", ("store",), None),
}
_GAUGES = ("freeapi_key_state", "freeapi_key_inflight", "freeapi_inflight_requests",
           "freeapi_budget_used_ratio")
# Budget series a process keeps (one per key or team and period with a limit); holders
# beyond are not shown, so a deployment with many budgeted keys cannot grow it unbounded.
MAX_BUDGET_SERIES = 3000


def _local_inc(data: dict):
    def inc(key, n=1):
        data[key] = data.get(key, 0) + n
    return inc


def _local_observe(data: dict, bounds: tuple):
    size = len(bounds) + 2  # one count per bound, +Inf, then the sum

    def observe(key, value):
        h = data.get(key)
        if h is None:
            h = data[key] = [0] * (size - 1) + [0.0]
        h[bisect_left(bounds, value)] += 1  # `le` is inclusive: the first bound >= value
        h[-1] += value
    return observe


def _cached(metric, method: str):
    """prometheus-client: label children bound once per label values."""
    children: dict = {}

    def call(key, n=1):
        child = children.get(key)
        if child is None:
            child = children[key] = metric.labels(*key) if key else metric
        getattr(child, method)(n)
    return call


class Metrics:
    """The gateway's metric families, in a registry of its own (several gateways may live in
    one process, as in the tests)."""

    def __init__(self, multiproc_dir: str | None = None, cache_seconds: float = 1.0,
                 max_models: int = MAX_MODELS):
        import prometheus_client
        from prometheus_client import CollectorRegistry
        # `*_created` series double the output and no dashboard here uses them.
        prometheus_client.disable_created_metrics()
        self.multiproc_dir = multiproc_dir
        self.registry = CollectorRegistry(auto_describe=False)
        self.cache_seconds = cache_seconds
        self.max_models = max_models
        self.renders = 0  # scrapes actually rendered (the rest came from the cache)
        self._rendered: dict = {}  # content type -> (monotonic time, body)
        self._models: set = set()
        self._seen_endpoints: set = set()
        self._budgets: dict = {}  # (key, team, period) -> ratio
        self._gateway = None
        if multiproc_dir:
            self._objects = self._prometheus_objects()
            ev = {name: _cached(obj, "observe" if FAMILIES[name][0] == "histogram" else "inc")
                  for name, obj in self._objects.items() if name not in _GAUGES}
        else:
            self._data = {name: {} for name, spec in FAMILIES.items() if spec[0] != "gauge"}
            ev = {name: (_local_observe(d, FAMILIES[name][3])
                         if FAMILIES[name][0] == "histogram" else _local_inc(d))
                  for name, d in self._data.items()}
            self.registry.register(self)
        self._requests = ev["freeapi_requests_total"]
        self._duration = ev["freeapi_request_duration_seconds"]
        self._first_token = ev["freeapi_time_to_first_token_seconds"]
        self._tokens = ev["freeapi_tokens_total"]
        self._attempts = ev["freeapi_upstream_attempts_total"]
        self._limits = ev["freeapi_limit_rejections_total"]
        self._overhead = ev["freeapi_gateway_overhead_seconds"]
        self._ledger_dropped = ev["freeapi_ledger_dropped_total"]

    def _prometheus_objects(self) -> dict:
        from prometheus_client import Counter, Gauge, Histogram
        out = {}
        for name, (kind, doc, labels, extra) in FAMILIES.items():
            if kind == "counter":
                out[name] = Counter(name, doc, labels, registry=self.registry)
            elif kind == "histogram":
                out[name] = Histogram(name, doc, labels, buckets=extra, registry=self.registry)
            else:
                out[name] = Gauge(name, doc, labels, multiprocess_mode=extra,
                                  registry=self.registry)
        return out

    # -- events, on the request path ---------------------------------------------------

    def _model(self, endpoint, provider, model) -> str:
        key = (endpoint, provider, model)
        if key in self._models:
            return model
        if len(self._models) >= self.max_models:
            return "other"
        self._models.add(key)
        return model

    def request_done(self, e: dict, upstream_s: float | None = None,
                     routed: str | None = None) -> None:
        """One finished request, from its ledger entry (freeapi/ledger.py entry()).
        `upstream_s`: the seconds it waited for vendors, when one answered; `routed`: the
        provider it was routed to, named when none answered (the ledger says null)."""
        provider = e["provider"] or routed or ""
        endpoint = e["endpoint"]
        model = self._model(endpoint, provider, e["model"] or "")
        # The class, not the code: vendors' codes pass through and would multiply series.
        self._requests((endpoint, provider, model, f"{e['status'] // 100}xx"))
        latency = e["latency_ms"] / 1000.0
        self._duration((endpoint, provider, model), latency)
        if e["stream"] and e["ttfb_ms"] is not None:
            self._first_token((provider, model), e["ttfb_ms"] / 1000.0)
        for kind, field in TOKEN_TYPES:
            n = e[field]
            if n:
                self._tokens((provider, model, kind), n)
        if upstream_s is not None:
            self._overhead((), max(0.0, latency - upstream_s))

    def attempt(self, provider: str, outcome: str) -> None:
        self._attempts((provider, outcome))

    def limit_rejected(self, limit: str) -> None:
        self._limits((limit,))

    def budget_used(self, kind: str, name: str, period: str, ratio: float) -> None:
        """A money budget's use, from the totals a reservation or settlement returned
        (freeapi/budgets.py); `kind` is "key" or "team"."""
        labels = (name, "", period) if kind == "key" else ("", name, period)
        if labels not in self._budgets and len(self._budgets) >= MAX_BUDGET_SERIES:
            return
        self._budgets[labels] = ratio
        if self.multiproc_dir:
            self._objects["freeapi_budget_used_ratio"].labels(*labels).set(ratio)

    def ledger_dropped(self, store: str, n: int) -> None:
        # Labelled: a label-less counter of prometheus-client's multiprocess mode would
        # write a file in the parent process too, before any worker counted anything.
        self._ledger_dropped((store,), n)

    # -- states, when scraped ----------------------------------------------------------

    def _states(self, gateway):
        """(family, label values, value) for key health and requests in flight now."""
        for name, provider in gateway.providers.items():
            pool = gateway.pools.get(name)
            if pool is None or not provider.api_keys:
                continue  # clients' pass-through keys are theirs, and unbounded
            for row in pool.status(provider.api_keys):
                yield "freeapi_key_state", (name, row["id"]), KEY_STATES.get(row["state"], 0)
                yield "freeapi_key_inflight", (name, row["id"]), row["in_flight"]
        counts = dict.fromkeys(self._seen_endpoints, 0)
        for handler in list(gateway.active):
            endpoint = getattr(handler, "endpoint", None) or "chat"
            counts[endpoint] = counts.get(endpoint, 0) + 1
        self._seen_endpoints.update(counts)
        for endpoint, n in counts.items():
            yield "freeapi_inflight_requests", (endpoint,), n

    def refresh(self, gateway) -> None:
        """Multiprocess mode: write this worker's state gauges."""
        if self.multiproc_dir:
            for name, labels, value in self._states(gateway):
                self._objects[name].labels(*labels).set(value)

    def describe(self):
        return []  # the families are only known when collected

    def collect(self):
        """One process: the families from the event dicts and the gateway's state now."""
        from prometheus_client.metrics_core import (CounterMetricFamily, GaugeMetricFamily,
                                                    HistogramMetricFamily)
        for name, (kind, doc, labels, extra) in FAMILIES.items():
            if kind == "counter":
                family = CounterMetricFamily(name, doc, labels=labels)
                for key, n in list(self._data[name].items()):
                    family.add_metric(key, n)
            elif kind == "histogram":
                family = HistogramMetricFamily(name, doc, labels=labels)
                bounds = [str(float(b)) for b in extra] + ["+Inf"]
                for key, h in list(self._data[name].items()):
                    running, buckets = 0, []
                    for bound, n in zip(bounds, h[:-1]):
                        running += n
                        buckets.append((bound, running))
                    family.add_metric(key, buckets, h[-1])
            else:
                family = GaugeMetricFamily(name, doc, labels=labels)
                if name == "freeapi_budget_used_ratio":
                    for key, value in list(self._budgets.items()):
                        family.add_metric(key, value)
                elif self._gateway is not None:
                    for gname, key, value in self._states(self._gateway):
                        if gname == name:
                            family.add_metric(key, value)
            yield family

    async def keep_fresh(self, gateway, every: float = 2.0) -> None:
        """Multiprocess mode: keep this worker's state gauges current for whichever worker
        is scraped."""
        import asyncio
        while True:
            self.refresh(gateway)
            await asyncio.sleep(every)

    def render(self, gateway, accept: str | None) -> tuple[bytes, str]:
        """(body, content type) for a scrape; all workers' values in multiprocess mode.
        The same body again within `cache_seconds` of its rendering."""
        from prometheus_client import exposition
        # Keyed by the format chosen (text or OpenMetrics), not the Accept header as sent,
        # which a client could vary to miss the cache every time.
        encoder, content_type = exposition.choose_encoder(accept or "")
        hit = self._rendered.get(content_type)
        if hit is not None and time.monotonic() - hit[0] < self.cache_seconds:
            return hit[1], content_type
        body = encoder(self._registry_now(gateway))
        self.renders += 1
        if self.cache_seconds > 0:
            self._rendered[content_type] = (time.monotonic(), body)
        return body, content_type

    def _registry_now(self, gateway):
        registry = self.registry
        if self.multiproc_dir:
            from prometheus_client import CollectorRegistry, multiprocess
            self.refresh(gateway)
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=self.multiproc_dir)
        else:
            self._gateway = gateway
        return registry


_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiproc_dir() -> str | None:
    """The directory prometheus-client's multiprocess mode writes to, if it is on."""
    return os.environ.get(_ENV) or None


def prepare_processes(workers: int) -> str | None:
    """Before anything imports prometheus-client: one process uses the plain in-memory
    registry; N workers share a directory, the user's PROMETHEUS_MULTIPROC_DIR or a
    temporary one. Returns the temporary directory the caller removes at exit, if any."""
    if workers <= 1:
        os.environ.pop(_ENV, None)
        os.environ.pop(_ENV.lower(), None)
        return None
    if os.environ.get(_ENV):
        # prometheus-client's rule: the directory is wiped between runs, or the last run's
        # files (counters, and gauges of pids long gone) are merged into this one's.
        path = os.environ[_ENV]
        os.makedirs(path, exist_ok=True)
        for name in os.listdir(path):
            if name.endswith(".db"):
                os.remove(os.path.join(path, name))
        return None
    import tempfile
    path = tempfile.mkdtemp(prefix="freeapi-metrics-")
    os.environ[_ENV] = path
    return path


def worker_exited(pid: int) -> None:
    """A worker is gone: its live gauges (in flight, key state) stop counting."""
    if multiproc_dir():
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(pid)
