"""Prometheus metrics (GET /metrics), with prometheus-client.

Each fact is counted in one place: request totals, duration, tokens and time to first token
where the ledger entry is built (`request_done`), upstream attempts by failover
(`attempt`), limit refusals by freeapi/limits.py (`limit_rejected`). What is a state rather
than an event (key health, keys' and endpoints' requests in flight) is read from the key
pools and the gateway when scraped (`refresh`), so the request path pays nothing for it.

With `--workers N` prometheus-client's multiprocess mode aggregates the workers: every
worker writes its values to files in PROMETHEUS_MULTIPROC_DIR (the CLI makes a temporary
one when the user set none) and whichever worker is scraped merges them. There the state
gauges are also refreshed every few seconds by each worker, since only the scraped one
refreshes at scrape time.

Names follow the OpenTelemetry GenAI conventions where they map: freeapi_tokens_total is
gen_ai.client.token.usage (type input/output, plus cached and reasoning), and
freeapi_time_to_first_token_seconds is gen_ai.client.operation.time_to_first_chunk.
Labels never carry a key, only its masked id (`sk-...abcd`).
"""

from __future__ import annotations

import os

# The multiprocess mode is chosen by prometheus-client when it is first imported (from
# PROMETHEUS_MULTIPROC_DIR), so it is imported when the first Metrics is built, after the
# CLI has set the variable up; see freeapi/cli.py.

KEY_STATES = {"ok": 0, "cooldown": 1, "invalid": 2, "no_balance": 3}
TOKEN_TYPES = (("input", "prompt_tokens"), ("output", "completion_tokens"),
               ("cached", "cached_tokens"), ("reasoning", "reasoning_tokens"))
ATTEMPT_OUTCOMES = ("ok", "retried", "fallback", "failed")
# A client may name any model (`deepseek/ANYTHING` routes), and each name would be a new
# label value kept forever: past this many model names per process, the rest are "other".
MAX_MODELS = 500

_SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
_FIRST_TOKEN = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120)
_OVERHEAD = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)


class Metrics:
    """The gateway's metric families, in a registry of its own (several gateways may live in
    one process, as in the tests)."""

    def __init__(self, multiproc_dir: str | None = None):
        import prometheus_client
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
        # `*_created` series double the output and no dashboard here uses them.
        prometheus_client.disable_created_metrics()
        self.multiproc_dir = multiproc_dir
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "freeapi_requests_total", "Requests that reached routing, by final status.",
            ("endpoint", "provider", "model", "status"), registry=r)
        self.duration = Histogram(
            "freeapi_request_duration_seconds", "Time from the request's arrival to its "
            "end (the whole stream for streams).", ("endpoint", "provider", "model"),
            buckets=_SECONDS, registry=r)
        self.first_token = Histogram(
            "freeapi_time_to_first_token_seconds", "Streams: time until the vendor's first "
            "data event.", ("provider", "model"), buckets=_FIRST_TOKEN, registry=r)
        self.tokens = Counter(
            "freeapi_tokens_total", "Tokens as the vendor reported them.",
            ("provider", "model", "type"), registry=r)
        self.attempts = Counter(
            "freeapi_upstream_attempts_total", "Vendor calls by outcome: ok; retried (on "
            "another key of the same provider); fallback (the next target took over); "
            "failed (the request's last attempt failed).", ("provider", "outcome"),
            registry=r)
        self.key_state = Gauge(
            "freeapi_key_state", "Server-side key health: 0 ok, 1 cooldown, 2 invalid, "
            "3 no balance.", ("provider", "key"), multiprocess_mode="livemax", registry=r)
        self.key_inflight = Gauge(
            "freeapi_key_inflight", "Requests in flight on a server-side key.",
            ("provider", "key"), multiprocess_mode="livesum", registry=r)
        self.inflight = Gauge(
            "freeapi_inflight_requests", "Requests being served, by front door.",
            ("endpoint",), multiprocess_mode="livesum", registry=r)
        self.limit_rejections = Counter(
            "freeapi_limit_rejections_total", "Requests a gateway key's limit refused.",
            ("limit",), registry=r)
        self.overhead = Histogram(
            "freeapi_gateway_overhead_seconds", "Time a request spent in the gateway "
            "itself: its duration minus the time spent waiting for vendors.",
            buckets=_OVERHEAD, registry=r)
        # Bound label children, by label values: a dict lookup per request instead of
        # prometheus-client's labels() (a lock and argument checks).
        self._req: dict = {}
        self._dur: dict = {}
        self._ttft: dict = {}
        self._tok: dict = {}
        self._att: dict = {}
        self._models: set = set()
        self._seen_endpoints: set = set()

    # -- events, on the request path ---------------------------------------------------

    def _model(self, provider, model) -> str:
        pm = (provider, model)
        if pm in self._models:
            return model
        if len(self._models) >= MAX_MODELS:
            return "other"
        self._models.add(pm)
        return model

    def request_done(self, e: dict, upstream_s: float | None = None) -> None:
        """One finished request, from its ledger entry (freeapi/ledger.py entry())."""
        provider = e["provider"] or ""
        model = self._model(provider, e["model"] or "")
        endpoint = e["endpoint"]
        k = (endpoint, provider, model, e["status"])
        child = self._req.get(k)
        if child is None:
            child = self._req[k] = self.requests.labels(endpoint, provider, model,
                                                        str(e["status"]))
        child.inc()
        latency = e["latency_ms"] / 1000.0
        k = (endpoint, provider, model)
        child = self._dur.get(k)
        if child is None:
            child = self._dur[k] = self.duration.labels(*k)
        child.observe(latency)
        if e["stream"] and e["ttfb_ms"] is not None:
            k = (provider, model)
            child = self._ttft.get(k)
            if child is None:
                child = self._ttft[k] = self.first_token.labels(*k)
            child.observe(e["ttfb_ms"] / 1000.0)
        for kind, field in TOKEN_TYPES:
            n = e[field]
            if n:
                k = (provider, model, kind)
                child = self._tok.get(k)
                if child is None:
                    child = self._tok[k] = self.tokens.labels(*k)
                child.inc(n)
        if upstream_s is not None:
            self.overhead.observe(max(0.0, latency - upstream_s))

    def attempt(self, provider: str, outcome: str) -> None:
        k = (provider, outcome)
        child = self._att.get(k)
        if child is None:
            child = self._att[k] = self.attempts.labels(provider, outcome)
        child.inc()

    def limit_rejected(self, limit: str) -> None:
        self.limit_rejections.labels(limit).inc()

    # -- states, when scraped ----------------------------------------------------------

    def refresh(self, gateway) -> None:
        """Key health and requests in flight as they are now in this process."""
        for name, provider in gateway.providers.items():
            pool = gateway.pools.get(name)
            if pool is None or not provider.api_keys:
                continue  # clients' pass-through keys are theirs, and unbounded
            for row in pool.status(provider.api_keys):
                self.key_state.labels(name, row["id"]).set(KEY_STATES.get(row["state"], 0))
                self.key_inflight.labels(name, row["id"]).set(row["in_flight"])
        counts: dict[str, int] = dict.fromkeys(self._seen_endpoints, 0)
        for handler in list(gateway.active):
            endpoint = getattr(handler, "endpoint", None) or "chat"
            counts[endpoint] = counts.get(endpoint, 0) + 1
        for endpoint, n in counts.items():
            self._seen_endpoints.add(endpoint)
            self.inflight.labels(endpoint).set(n)

    async def keep_fresh(self, gateway, every: float = 2.0) -> None:
        """Multiprocess mode: keep this worker's state gauges current for whichever worker
        is scraped."""
        import asyncio
        while True:
            self.refresh(gateway)
            await asyncio.sleep(every)

    def render(self, gateway, accept: str | None) -> tuple[bytes, str]:
        """(body, content type) for a scrape; all workers' values in multiprocess mode."""
        from prometheus_client import exposition
        self.refresh(gateway)
        registry = self.registry
        if self.multiproc_dir:
            from prometheus_client import CollectorRegistry, multiprocess
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=self.multiproc_dir)
        encoder, content_type = exposition.choose_encoder(accept or "")
        return encoder(registry), content_type


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
        os.makedirs(os.environ[_ENV], exist_ok=True)
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
