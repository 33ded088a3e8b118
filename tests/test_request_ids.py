"""Request ids and structured logs: every response carries `x-request-id` (the client's own
when sane), the ledger entry has it, and JSON log lines carry it with the request's fields."""

import json
import logging
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import tests.conftest
from freeapi import logs
from freeapi.app import make_app
from freeapi.cli import _log_request
from freeapi.log_redaction import RedactKeys
from tests.conftest import free_port
from tests.fakes.deepseek import GOOD
from tests.helpers import ThreadedFake, chat_body, request, stream_raw, wait_listening
from tests.test_usage import ledger

ROOT = Path(__file__).resolve().parent.parent
HEX_ID = r"[0-9a-f]{24}"


async def test_a_sane_client_id_is_kept_and_reaches_the_ledger(make_gateway):
    base, gw = make_gateway()
    resp = await request(base + "/v1/chat/completions", "POST", chat_body(),
                         headers={"X-Request-Id": "trace-42.a:b/c"})
    assert resp.code == 200
    assert resp.headers["X-Request-Id"] == "trace-42.a:b/c"
    resp, _ = await stream_raw(base, chat_body(stream=True))
    generated = resp.headers["X-Request-Id"]
    assert len(generated) == 24 and int(generated, 16) >= 0
    rows = await ledger(gw, 2)
    assert [r["request_id"] for r in rows] == ["trace-42.a:b/c", generated]


@pytest.mark.parametrize("bad", ["x" * 129, "two words", "semi;colon", "quote\"d", "é"])
async def test_an_insane_client_id_is_replaced(make_gateway, bad):
    base, _ = make_gateway()
    resp = await request(base + "/v1/models",
                         headers={"X-Request-Id": bad.encode().decode("latin-1")})
    rid = resp.headers["X-Request-Id"]
    assert rid != bad and len(rid) == 24 and int(rid, 16) >= 0


async def test_errors_carry_the_request_id_too(make_gateway):
    base, _ = make_gateway({"auth": {"keys": ["gw-key-0001"]}})
    got = [await request(base + "/nowhere", headers={"X-Request-Id": "r404"}),
           await request(base + "/v1/chat/completions", "POST", chat_body(), key="wrong",
                         headers={"X-Request-Id": "r401"}),
           await request(base + "/v1/chat/completions", "POST", "{bad", key="gw-key-0001",
                         headers={"X-Request-Id": "r400"})]
    assert [(r.code, r.headers["X-Request-Id"]) for r in got] == [
        (404, "r404"), (401, "r401"), (400, "r400")]


async def test_every_log_line_of_a_request_carries_its_id(make_gateway, caplog):
    """A vendor failure logs a warning while the request runs: the record has the
    request's id (the handler filter adds it)."""
    base, _ = make_gateway()
    handler = logging.StreamHandler()
    handler.addFilter(logs.ContextFilter())
    records = []
    handler.emit = records.append
    logging.getLogger().addHandler(handler)
    try:
        resp = await request(base + "/v1/chat/completions", "POST", chat_body("!status 500"),
                             headers={"X-Request-Id": "failing-one"})
    finally:
        logging.getLogger().removeHandler(handler)
    assert resp.code == 500 and resp.headers["X-Request-Id"] == "failing-one"
    mine = [r for r in records if "answered 500" in r.getMessage()]
    assert mine and all(r.request_id == "failing-one" for r in mine)


async def test_the_serve_line_of_an_early_error_carries_its_status_and_latency(
        make_gateway, monkeypatch):
    """`freeapi serve` logs Tornado's line for a 5xx (cli._log_request) with the request's
    fields, filled in from its log context even when no ledger entry brought them (here:
    a request refused while the gateway drains for shutdown; one without a body, which its
    handler answers: one with a body is answered before it, by the body gate)."""
    def served_as_the_cli_does(gateway):
        app = make_app(gateway)
        app.settings["log_function"] = _log_request
        return app
    monkeypatch.setattr(tests.conftest, "make_app", served_as_the_cli_does)
    base, gw = make_gateway()
    gw.draining = True
    handler = logging.StreamHandler()
    handler.addFilter(logs.ContextFilter())
    records = []
    handler.emit = records.append
    logging.getLogger("freeapi").addHandler(handler)
    try:
        resp = await request(base + "/v1/chat/completions", "POST", "",
                             headers={"X-Request-Id": "drained-1"})
    finally:
        logging.getLogger("freeapi").removeHandler(handler)
    assert resp.code == 503
    line, = [r for r in records if r.getMessage().startswith("503 POST")]
    assert (line.request_id, line.status) == ("drained-1", 503)
    assert isinstance(line.latency_ms, int) and line.latency_ms >= 0


def test_json_lines_carry_the_fields_and_keep_keys_masked():
    stream = __import__("io").StringIO()
    root = logging.getLogger()
    handler = logging.StreamHandler(stream)
    saved = root.handlers[:]
    root.handlers = [handler]
    redactor = RedactKeys()
    redactor.keys = [GOOD]
    try:
        logs.install("json", redactor)
        token = logs.current.set(logs.RequestLog("req-1"))
        try:
            logging.getLogger("freeapi.test").warning("key %s failed", GOOD)
        finally:
            logs.current.reset(token)
        logging.getLogger("freeapi.test").warning("outside any request")
    finally:
        root.handlers = saved
    first, second = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert first["request_id"] == "req-1" and first["level"] == "warning"
    assert GOOD not in first["message"] and "sk-...0001" in first["message"]
    assert first["time"].endswith("Z") and first["logger"] == "freeapi.test"
    assert "request_id" not in second and second["message"] == "outside any request"


def test_the_real_cli_writes_json_lines_with_the_request_fields(tmp_path):
    port = free_port()
    with ThreadedFake() as fake:
        cfg = tmp_path / "config.yaml"
        cfg.write_text(f"server: {{host: 127.0.0.1, port: {port}, log_format: json}}\n"
                       f"providers:\n  deepseek: {{base_url: '{fake.url}'}}\n")
        err = open(tmp_path / "stderr.txt", "w+")
        proc = subprocess.Popen([sys.executable, "-m", "freeapi", "--config", str(cfg),
                                 "--log-level", "debug"], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=err)
        try:
            wait_listening(port, proc)
            import http.client
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            for rid, text, status in (("cli-req-7", "hi", 200), ("cli-req-8", "!status 500", 500)):
                c.request("POST", "/v1/chat/completions", json.dumps(chat_body(text)),
                          {"Authorization": f"Bearer {GOOD}", "X-Request-Id": rid,
                           "Content-Type": "application/json"})
                r = c.getresponse()
                r.read()
                assert r.status == status and r.headers["X-Request-Id"] == rid
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
        err.seek(0)
        text = err.read()
    assert GOOD not in text
    lines = [json.loads(line) for line in text.splitlines()]  # every line is one object
    ok = [ln for ln in lines if ln.get("request_id") == "cli-req-7"]
    # One line for a served request even at debug: freeapi's access line, not Tornado's.
    assert [ln["message"][:30] for ln in ok] == ["POST /v1/chat/completions 200 "]
    assert ok[0]["status"] == 200 and ok[0]["latency_ms"] >= 0
    failed = [ln for ln in lines if ln.get("request_id") == "cli-req-8"]
    assert any("answered 500" in ln["message"] and ln["level"] == "warning"
               and ln["endpoint"] == "chat" for ln in failed)
    assert any(ln["message"].startswith("500 POST") and ln["status"] == 500 for ln in failed)
    assert any(ln["message"].startswith("freeapi ") and "listening" in ln["message"]
               for ln in lines)
