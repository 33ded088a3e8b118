"""OpenTelemetry traces: one span per request, a child span per vendor attempt.

Optional (`pip install 'freeapi[otel]'`), on when config `telemetry.otlp_endpoint` or the
standard OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT variable is set.
Off (nothing configured, OTEL_SDK_DISABLED=true, or the extra not installed), `start`
returns None, opentelemetry is never imported and the pipeline's calls below are skipped
by one `is not None` check each (bench/otel_cost.py measures it).

The pipeline's call sites, the whole of them:

    Pipeline.run / Pipeline.call        request_started   freeapi/pipeline/__init__.py
    Pipeline.finished / client_left     request_ended     (after the ledger entry)
    Failover._attempts, around send     attempt_started / attempt_ended  failover.py

Spans follow the OpenTelemetry GenAI semantic conventions (status Development;
https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-spans/, names as in
opentelemetry-semantic-conventions 0.66b2's gen_ai_attributes): `gen_ai.operation.name`,
`gen_ai.provider.name`, `gen_ai.request.model`, `gen_ai.response.model`,
`gen_ai.usage.input_tokens` / `output_tokens`; freeapi's own under `freeapi.*`. The
client's W3C `traceparent` is continued; vendors are never sent one (they are third
parties). Prompts and answers (`gen_ai.input.messages` / `gen_ai.output.messages`) only
with `telemetry.capture_content: true`.

Spans are exported by a BatchSpanProcessor, on its own thread, off the request path;
`close` (Gateway.close) flushes what is queued.
"""

from __future__ import annotations

import json
import logging
import os
import time

log = logging.getLogger("freeapi.telemetry")

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
#: The door's ledger name -> gen_ai.operation.name (the convention's well-known values;
#: a door with none keeps its own name).
OPERATIONS = {"chat": "chat", "messages": "chat", "responses": "chat",
              "embeddings": "embeddings", "images": "generate_content"}


def start(config) -> "Tracing | None":
    """The gateway's tracing (config: a config.Telemetry), or None when off."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if config.otlp_endpoint is None and not any(os.environ.get(v)
                                                for v in ENDPOINT_VARIABLES):
        return None
    try:
        return Tracing(config)
    except ImportError as e:
        log.warning("telemetry: an OTLP endpoint is configured but OpenTelemetry is not "
                    "installed (pip install 'freeapi[otel]'); no traces (%s)", str(e))
        return None


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL of a collector's base URL (as OTEL_EXPORTER_OTLP_ENDPOINT
    is read: `/v1/traces` appended), or the URL itself when it already names the path."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"


class Tracing:
    """A TracerProvider of the gateway's own (the process-global one is left alone), its
    batch exporter, and the spans' shapes."""

    def __init__(self, config):
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
        from opentelemetry.trace.propagation.tracecontext import (
            TraceContextTextMapPropagator)

        attributes = {}
        if config.service_name:
            attributes["service.name"] = config.service_name
        elif not os.environ.get("OTEL_SERVICE_NAME"):
            attributes["service.name"] = "freeapi"
        # Parent-based: a client's sampled flag decides its traces; the ratio the rest.
        self.provider = TracerProvider(
            resource=Resource.create(attributes),
            sampler=ParentBased(TraceIdRatioBased(config.sample_ratio)))
        # No endpoint given: the exporter reads the OTEL_EXPORTER_OTLP_* variables itself
        # (endpoint, headers, timeout, compression, certificates).
        exporter = OTLPSpanExporter(endpoint=traces_url(config.otlp_endpoint)
                                    if config.otlp_endpoint else None)
        self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer("freeapi")
        self.propagator = TraceContextTextMapPropagator()
        self.capture = config.capture_content
        self._in_context = trace.set_span_in_context
        self._server, self._client = trace.SpanKind.SERVER, trace.SpanKind.CLIENT
        self._status, self._error = trace.Status, trace.StatusCode.ERROR

    # -- the request --------------------------------------------------------------------

    def request_started(self, ex, model: str, stream) -> None:
        """The request's span, begun when the request arrived, the client's traceparent
        as its parent; kept as `ex.span` when sampled."""
        door = ex.door
        carrier = {}
        for name in ("traceparent", "tracestate"):
            value = door.header(name)
            if value:
                carrier[name] = value
        parent = self.propagator.extract(carrier) if carrier else None
        op = OPERATIONS.get(door.endpoint, door.endpoint)
        caller = door.caller
        attributes = {"gen_ai.operation.name": op, "gen_ai.request.model": model,
                      "freeapi.door": door.endpoint, "freeapi.stream": bool(stream)}
        if caller is not None and caller.name:
            attributes["freeapi.caller"] = caller.name
        request_id = door.request_id()
        if request_id:
            attributes["freeapi.request_id"] = request_id
        span = self.tracer.start_span(
            f"{op} {model}", context=parent, kind=self._server, attributes=attributes,
            start_time=time.time_ns() - int(door.elapsed() * 1e9))
        if span.is_recording():  # not sampled: nothing more to do for this request
            ex.span = span

    def request_ended(self, ex) -> None:
        """The request's span ends with what its ledger entry says (Accounting)."""
        span, ex.span = ex.span, None  # never twice (client_left, then on_finish)
        door = ex.door
        e = ex.entry or {}
        status = e.get("status") or door.get_status()
        error = e.get("error") if ex.entry is not None else ex.error
        attributes = {"http.response.status_code": status}
        for name, value in (("freeapi.caller", e.get("key")),
                            ("gen_ai.provider.name", e.get("provider")),
                            ("gen_ai.response.model", e.get("upstream_model")),
                            ("freeapi.vendor_key", e.get("vendor_key")),
                            ("freeapi.ttfb_ms", e.get("ttfb_ms")),
                            ("gen_ai.usage.input_tokens", e.get("prompt_tokens")),
                            ("gen_ai.usage.output_tokens", e.get("completion_tokens")),
                            ("freeapi.usage_estimated", e.get("estimated") or None),
                            ("error.type", error)):
            if value is not None:
                attributes[name] = value
        span.set_attributes(attributes)
        # As the HTTP server conventions: 5xx, a client gone (499) or a stream that broke
        # after its 200 are the gateway's errors; other 4xx are the caller's.
        if status >= 499 or (error is not None and status < 400):
            span.set_status(self._status(self._error, error or f"http_{status}"))
        span.end()

    # -- one vendor attempt ---------------------------------------------------------------

    def attempt_started(self, ex, target, lease, body: dict):
        """A child of the request's span for one attempt with one key (masked); `body`:
        the request as sent to the vendor."""
        provider, upstream = target.provider.name, target.upstream_model
        op = OPERATIONS.get(ex.door.endpoint, ex.door.endpoint)
        attributes = {"gen_ai.operation.name": op, "gen_ai.provider.name": provider,
                      "gen_ai.request.model": upstream, "freeapi.vendor_key": lease.id}
        if self.capture and isinstance(body.get("messages"), list):
            attributes["gen_ai.input.messages"] = _json(body["messages"])
        return self.tracer.start_span(
            f"{op} {upstream}", context=self._in_context(ex.span), kind=self._client,
            attributes=attributes)

    def attempt_ended(self, span, err=None, exc: BaseException | None = None,
                      result=None) -> None:
        """`err`: the APIError the attempt failed with; `exc`: what it raised instead;
        `result`: what it got (a whole answer's bytes, or an open stream)."""
        # Time to the vendor's first byte as the gateway sees it: a stream's first event,
        # a whole body's arrival.
        attributes = {"freeapi.attempt.ttfb_ms": round((time.time_ns() - span.start_time)
                                                       / 1e6, 3)}
        if err is None and exc is None:
            attributes["freeapi.attempt.outcome"] = "ok"
            if self.capture and isinstance(result, bytes):
                attributes.update(output(result))
        else:
            outcome = (err.code or f"http_{err.status}") if err is not None \
                else getattr(exc, "code", None) or _snake(type(exc).__name__)
            attributes["freeapi.attempt.outcome"] = attributes["error.type"] = outcome
            if err is not None:
                attributes["http.response.status_code"] = err.status
            span.set_status(self._status(self._error, outcome))
        span.set_attributes(attributes)
        span.end()

    # -- lifecycle --------------------------------------------------------------------------

    def flush(self, timeout_ms: int = 30000) -> bool:
        return self.provider.force_flush(timeout_ms)

    def close(self) -> None:
        """Export what is queued, then stop (Gateway.close)."""
        self.provider.shutdown()


def output(answer: bytes) -> dict:
    """`gen_ai.output.messages` of a whole chat answer (telemetry.capture_content; a
    stream's answer is not kept)."""
    try:
        parsed = json.loads(answer)
    except (ValueError, RecursionError, UnicodeDecodeError):
        return {}
    if isinstance(parsed, dict) and isinstance(parsed.get("choices"), list):
        return {"gen_ai.output.messages": _json(
            [c.get("message") for c in parsed["choices"] if isinstance(c, dict)])}
    if isinstance(parsed, dict) and isinstance(parsed.get("content"), list):  # Anthropic
        return {"gen_ai.output.messages": _json(
            [{"role": "assistant", "content": parsed["content"]}])}
    return {}


def _snake(name: str) -> str:
    """`ClientGone` -> `client_gone`: an exception's name as the ledger spells codes."""
    return "".join(f"_{c.lower()}" if c.isupper() and i else c.lower()
                   for i, c in enumerate(name))


def _json(value) -> str:
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        return ""
