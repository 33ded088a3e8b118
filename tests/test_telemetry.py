"""OpenTelemetry traces (freeapi/telemetry.py) exported to a real OTLP/HTTP receiver on
127.0.0.1 that decodes the protobuf body as a collector does (opentelemetry-proto's
ExportTraceServiceRequest): one span per request, a child span per vendor attempt, the
GenAI attributes, masked keys, no content by default, the client's traceparent continued.
"""

import gzip
import http.server
import subprocess
import sys
import threading

import anthropic
import openai
import pytest
# In the test extra (setup.py), with the `otel` extra the gateway exports through.
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as trace_service

from freeapi.config import parse_config
from freeapi.configbase import ConfigError
from freeapi.keys import mask
from freeapi.plugins import make_plugin_manager, provider_types
from tests.fakes.deepseek import ANSWER, GOOD, GOOD2, USAGE


PROMPT = "the secret plan is blue pelicans"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


class Receiver:
    """An OTLP/HTTP trace receiver: POST /v1/traces, protobuf bodies, spans kept."""

    def __init__(self):
        self.spans = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                ok = self.path == "/v1/traces" and \
                    self.headers.get("Content-Type") == "application/x-protobuf"
                if ok:
                    req = trace_service.ExportTraceServiceRequest()
                    req.ParseFromString(body)
                    with receiver.lock:
                        for rs in req.resource_spans:
                            resource = attrs(rs.resource.attributes)
                            for ss in rs.scope_spans:
                                receiver.spans.extend((s, resource) for s in ss.spans)
                answer = trace_service.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if ok else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def attrs(kvs) -> dict:
    out = {}
    for kv in kvs:
        v = kv.value
        out[kv.key] = getattr(v, v.WhichOneof("value")) if v.WhichOneof("value") else None
    return out


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


async def exported(gateway, receiver, count: int) -> list[tuple]:
    """(span, its attributes) of the `count` spans exported so far, once the gateway's
    batch processor has flushed them (off the event loop: the export is a blocking POST)."""
    import asyncio
    loop = asyncio.get_running_loop()
    for _ in range(50):  # each flush exports what has ended; a request ends on on_finish
        assert await loop.run_in_executor(None, gateway.telemetry.flush)
        with receiver.lock:
            if len(receiver.spans) >= count:
                break
        await asyncio.sleep(0.02)
    with receiver.lock:
        assert len(receiver.spans) == count, [s.name for s, _ in receiver.spans]
        return [(s, attrs(s.attributes), resource) for s, resource in receiver.spans]


def everything(spans) -> str:
    """All the text the spans carry, to look for what must not be in it."""
    return " ".join(f"{s.name} {a} {[(e.name, attrs(e.attributes)) for e in s.events]}"
                    for s, a, _ in spans)


def traced(receiver, **telemetry) -> dict:
    return {"auth": {"keys": [{"key": "fa-team-a-000000000001", "name": "team-a"}]},
            "providers": {"deepseek": {"api_keys": [GOOD, GOOD2]}},
            "telemetry": {"otlp_endpoint": receiver.url, **telemetry}}


async def test_failover_attempts_are_child_spans_of_the_request(make_gateway, receiver,
                                                                upstream_state):
    base, gw = make_gateway(traced(receiver))
    upstream_state.fail_next, upstream_state.fail_status = 1, 429  # first key refused
    client = openai.AsyncOpenAI(base_url=base + "/v1", api_key="fa-team-a-000000000001",
                                max_retries=0)
    r = await client.chat.completions.with_raw_response.create(
        model="deepseek-chat", messages=[{"role": "user", "content": PROMPT}])
    assert r.headers["x-freeapi-attempts"] == "2"
    assert r.parse().choices[0].message.content == "".join(ANSWER)

    spans = await exported(gw, receiver, 3)
    (request, ra, resource), = [s for s in spans if s[0].kind == s[0].SPAN_KIND_SERVER]
    attempts = sorted((s for s in spans if s[0].kind == s[0].SPAN_KIND_CLIENT),
                      key=lambda s: s[0].start_time_unix_nano)
    assert resource["service.name"] == "freeapi"
    assert request.name == "chat deepseek-chat"
    assert request.parent_span_id == b""  # no traceparent: a new trace
    assert ra["gen_ai.operation.name"] == "chat"
    assert ra["gen_ai.request.model"] == "deepseek-chat"
    assert ra["gen_ai.provider.name"] == "deepseek"
    assert ra["gen_ai.response.model"] == upstream_state.requests[-1]["body"]["model"]
    assert ra["gen_ai.usage.input_tokens"] == USAGE["prompt_tokens"]
    assert ra["gen_ai.usage.output_tokens"] == USAGE["completion_tokens"]
    assert ra["freeapi.door"] == "chat" and ra["freeapi.caller"] == "team-a"
    assert ra["http.response.status_code"] == 200
    assert ra["freeapi.vendor_key"] == r.headers["x-freeapi-key"]

    assert len(attempts) == 2
    for span, a, _ in attempts:  # children of the request span, in its trace
        assert span.trace_id == request.trace_id
        assert span.parent_span_id == request.span_id
        assert span.name == f"chat {ra['gen_ai.response.model']}"
        assert a["gen_ai.provider.name"] == "deepseek"
        assert a["freeapi.vendor_key"] in (mask(GOOD), mask(GOOD2))
        assert a["freeapi.attempt.ttfb_ms"] >= 0
    (first, fa, _), (second, sa, _) = attempts
    assert fa["freeapi.attempt.outcome"] == fa["error.type"] == "rate_limit_error"
    assert fa["http.response.status_code"] == 429
    assert first.status.code == first.status.STATUS_CODE_ERROR
    assert sa["freeapi.attempt.outcome"] == "ok"
    assert sa["freeapi.vendor_key"] == r.headers["x-freeapi-key"] != fa["freeapi.vendor_key"]

    text = everything(spans)
    for secret in (GOOD, GOOD2, "fa-team-a-000000000001", PROMPT, "".join(ANSWER)):
        assert secret not in text  # keys masked; no prompt, no answer by default


async def test_messages_request_continues_the_clients_traceparent(make_gateway, receiver):
    base, gw = make_gateway(traced(receiver))
    client = anthropic.AsyncAnthropic(base_url=base, api_key="fa-team-a-000000000001",
                                      max_retries=0)
    async with client.messages.stream(
            model="deepseek-chat", max_tokens=64,
            messages=[{"role": "user", "content": PROMPT}],
            extra_headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}) as stream:
        text = await stream.get_final_text()
    assert text == "".join(ANSWER)

    spans = await exported(gw, receiver, 2)
    (request, ra, _), = [s for s in spans if s[0].kind == s[0].SPAN_KIND_SERVER]
    (attempt, aa, _), = [s for s in spans if s[0].kind == s[0].SPAN_KIND_CLIENT]
    assert request.trace_id.hex() == TRACE_ID  # the client's trace, continued
    assert request.parent_span_id.hex() == PARENT_ID
    assert attempt.trace_id == request.trace_id and attempt.parent_span_id == request.span_id
    assert ra["freeapi.door"] == "messages" and ra["gen_ai.operation.name"] == "chat"
    assert ra["freeapi.stream"] is True and ra["http.response.status_code"] == 200
    assert ra["gen_ai.usage.output_tokens"] == USAGE["completion_tokens"]
    assert aa["freeapi.attempt.outcome"] == "ok"
    assert PROMPT not in everything(spans) and "".join(ANSWER) not in everything(spans)


async def test_capture_content_puts_the_prompt_and_answer_in_the_attempt_span(
        make_gateway, receiver):
    base, gw = make_gateway(traced(receiver, capture_content=True))
    client = openai.AsyncOpenAI(base_url=base + "/v1", api_key="fa-team-a-000000000001",
                                max_retries=0)
    await client.chat.completions.create(
        model="deepseek-chat", messages=[{"role": "user", "content": PROMPT}])
    spans = await exported(gw, receiver, 2)
    (_, aa, _), = [s for s in spans if s[0].kind == s[0].SPAN_KIND_CLIENT]
    assert PROMPT in aa["gen_ai.input.messages"]
    assert "".join(ANSWER) in aa["gen_ai.output.messages"]


async def test_a_client_not_sampled_is_not_traced(make_gateway, receiver):
    base, gw = make_gateway(traced(receiver))
    client = openai.AsyncOpenAI(base_url=base + "/v1", api_key="fa-team-a-000000000001",
                                max_retries=0)
    await client.chat.completions.create(  # sampled flag 00: the client decided no
        model="deepseek-chat", messages=[{"role": "user", "content": PROMPT}],
        extra_headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-00"})
    await client.chat.completions.create(
        model="deepseek-chat", messages=[{"role": "user", "content": PROMPT}])
    spans = await exported(gw, receiver, 2)  # the second request's alone
    assert all(s.trace_id.hex() != TRACE_ID for s, _, _ in spans)


def test_telemetry_section_is_checked():
    types = provider_types(make_plugin_manager())
    cfg = parse_config({"telemetry": {"otlp_endpoint": "http://collector:4318",
                                      "sample_ratio": 0.25}}, types)
    assert cfg.telemetry.otlp_endpoint == "http://collector:4318"
    assert cfg.telemetry.sample_ratio == 0.25 and cfg.telemetry.capture_content is False
    for bad in ({"sample_ratio": 2}, {"otlp_endpoint": "collector:4318"},
                {"capture_content": "yes"}, {"endpoint": "http://x:4318"}):
        with pytest.raises(ConfigError, match="telemetry"):
            parse_config({"telemetry": bad}, types)


def test_off_imports_no_opentelemetry():
    """No endpoint configured: a gateway serving requests never imports opentelemetry."""
    code = """
import sys
from freeapi.app import Gateway
from freeapi.config import parse_config
from freeapi.plugins import make_plugin_manager, provider_types
pm = make_plugin_manager(); types = provider_types(pm)
gw = Gateway(parse_config({"auth": {"allow_anonymous": True}}, types), pm, types)
assert gw.telemetry is None
loaded = [m for m in sys.modules if m.startswith("opentelemetry")]
assert not loaded, loaded
gw.close()
"""
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("OTEL_")}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


async def test_an_operation_request_is_traced_with_its_operation_name(
        start_vendor, make_gateway, receiver):
    """Embeddings go through Pipeline.call, not run: traced the same way."""
    from tests.fakes import glm as fake_glm
    glm_url, _ = start_vendor(fake_glm)
    base, gw = make_gateway({
        "auth": {"keys": [{"key": "fa-team-a-000000000001", "name": "team-a"}]},
        "providers": {"glm": {"base_url": glm_url + "/api/paas/v4",
                              "api_keys": [fake_glm.GOOD]}},
        "telemetry": {"otlp_endpoint": receiver.url}})
    client = openai.AsyncOpenAI(base_url=base + "/v1", api_key="fa-team-a-000000000001",
                                max_retries=0)
    await client.embeddings.create(model="embedding-3", input=PROMPT)
    spans = await exported(gw, receiver, 2)
    (request, ra, _), = [s for s in spans if s[0].kind == s[0].SPAN_KIND_SERVER]
    (attempt, aa, _), = [s for s in spans if s[0].kind == s[0].SPAN_KIND_CLIENT]
    assert request.name == "embeddings embedding-3"
    assert ra["gen_ai.operation.name"] == aa["gen_ai.operation.name"] == "embeddings"
    assert ra["gen_ai.provider.name"] == aa["gen_ai.provider.name"] == "glm"
    assert attempt.parent_span_id == request.span_id
    assert aa["freeapi.vendor_key"] == mask(fake_glm.GOOD)
    assert PROMPT not in everything(spans) and fake_glm.GOOD not in everything(spans)


async def test_a_malformed_traceparent_starts_a_new_trace(make_gateway, receiver):
    base, gw = make_gateway(traced(receiver))
    client = openai.AsyncOpenAI(base_url=base + "/v1", api_key="fa-team-a-000000000001",
                                max_retries=0)
    r = await client.chat.completions.create(
        model="deepseek-chat", messages=[{"role": "user", "content": PROMPT}],
        extra_headers={"traceparent": "00-" + "z" * 32 + "-" + PARENT_ID + "-01",
                       "tracestate": "=" * 600})
    assert r.choices[0].message.content == "".join(ANSWER)
    spans = await exported(gw, receiver, 2)
    (request, _, _), = [s for s in spans if s[0].kind == s[0].SPAN_KIND_SERVER]
    assert request.parent_span_id == b"" and len(request.trace_id) == 16


async def test_an_attempt_that_raises_ends_its_span_as_failed(make_gateway, receiver,
                                                              monkeypatch):
    base, gw = make_gateway(traced(receiver))

    def broken(*args, **kwargs):
        raise RuntimeError("a provider bug")

    monkeypatch.setattr(gw.providers["deepseek"], "chat_request", broken)
    client = openai.AsyncOpenAI(base_url=base + "/v1", api_key="fa-team-a-000000000001",
                                max_retries=0)
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(
            model="deepseek-chat", messages=[{"role": "user", "content": "hi"}])
    spans = await exported(gw, receiver, 2)
    (attempt, a, _), = [s for s in spans if s[0].kind == s[0].SPAN_KIND_CLIENT]
    assert a["freeapi.attempt.outcome"] == a["error.type"] == "runtime_error"
    assert attempt.status.code == attempt.status.STATUS_CODE_ERROR
