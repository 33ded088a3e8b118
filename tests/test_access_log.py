"""One access line per request at the default level (info), in both log formats, from
the real `freeapi` command: its request id, door, provider, models, status, latency, time
to first byte, tokens, masked vendor key and gateway key name; never a secret; control
characters escaped; `server.access_log: false` turns it off; /ping is left out."""

from __future__ import annotations

import asyncio
import http.client
import io
import json
import logging
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from freeapi import access_log, logs
from freeapi.log_redaction import RedactKeys
from tests.conftest import free_port
from tests.fakes.deepseek import GOOD
from tests.helpers import ThreadedFake, chat_body, wait_listening

ROOT = Path(__file__).resolve().parent.parent
GW_KEY = "team-pass-0123456789abcdef"  # a gateway key that does not look like one


def _serve_and_call(tmp_path, fmt: str, extra: str = "") -> str:
    """Start `freeapi` with `log_format: fmt`, send a few requests, stop it; its stderr."""
    port = free_port()
    with ThreadedFake() as fake:
        cfg = tmp_path / "config.yaml"
        cfg.write_text(
            f"server: {{host: 127.0.0.1, port: {port}, log_format: {fmt}{extra}}}\n"
            f"auth: {{keys: [{{key: {GW_KEY}, name: team-a}}]}}\n"
            f"providers:\n  deepseek: {{base_url: '{fake.url}', api_keys: ['{GOOD}']}}\n")
        err = open(tmp_path / "stderr.txt", "w+")
        proc = subprocess.Popen([sys.executable, "-m", "freeapi", "--config", str(cfg)],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
        try:
            wait_listening(port, proc)
            for rid, method, path, body, key in (
                    ("acc-chat", "POST", "/v1/chat/completions", chat_body(), GW_KEY),
                    ("acc-stream", "POST", "/v1/chat/completions",
                     chat_body(stream=True), GW_KEY),
                    ("acc-401", "POST", "/v1/chat/completions", chat_body(), "wrong-key"),
                    ("acc-404", "GET", f"/nowhere?key={GOOD}", None, GW_KEY),
                    ("acc-path", "GET", f"/v1/{GW_KEY}/{GOOD}", None, GW_KEY),
                    ("acc-ping", "GET", "/ping", None, None)):
                headers = {"X-Request-Id": rid, "Content-Type": "application/json"}
                if key:
                    headers["Authorization"] = f"Bearer {key}"
                # A new connection each: a refusal before the body closes its connection.
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request(method, path, json.dumps(body) if body else None, headers)
                r = c.getresponse()
                r.read()
                c.close()
                assert r.headers["X-Request-Id"] == rid
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
        err.seek(0)
        return err.read()


def _no_secret(text: str):
    assert GOOD not in text and GW_KEY not in text


def test_text_access_lines_one_per_request_at_the_default_level(tmp_path):
    text = _serve_and_call(tmp_path, "text")
    _no_secret(text)
    access = [ln for ln in text.splitlines() if " freeapi.access: " in ln]
    by_id = {re.search(r"request_id=(\S+)$", ln).group(1): ln for ln in access}
    assert len(access) == len(by_id) == 5 and "acc-ping" not in by_id  # /ping left out
    chat = by_id["acc-chat"]
    assert " INFO freeapi.access: POST /v1/chat/completions 200 door=chat " in chat
    for field in ("provider=deepseek", "model=deepseek-chat", "upstream_model=",
                  "latency_ms=", "ttfb_ms=", "prompt_tokens=", "completion_tokens=",
                  "total_tokens=", "vendor_key=sk-...", "gateway_key=team-a"):
        assert field in chat, field
    assert "ttfb_ms=" in by_id["acc-stream"] and "total_tokens=" in by_id["acc-stream"]
    assert " 401 " in by_id["acc-401"] and "provider=" not in by_id["acc-401"]
    assert "error=invalid_api_key" in by_id["acc-401"]
    nowhere = by_id["acc-404"]  # logged without its query string (which held a key)
    assert "GET /nowhere 404 " in nowhere and "error=unknown_route" in nowhere


def test_json_access_lines_carry_the_fields(tmp_path):
    text = _serve_and_call(tmp_path, "json")
    _no_secret(text)
    lines = [json.loads(ln) for ln in text.splitlines()]  # every line is one object
    access = {ln["request_id"]: ln for ln in lines if ln["logger"] == "freeapi.access"}
    assert set(access) == {"acc-chat", "acc-stream", "acc-401", "acc-404", "acc-path"}
    chat = access["acc-chat"]
    assert chat["level"] == "info" and chat["status"] == 200 and chat["door"] == "chat"
    assert chat["provider"] == "deepseek" and chat["model"] == "deepseek-chat"
    assert chat["gateway_key"] == "team-a" and chat["vendor_key"].startswith("sk-...")
    assert chat["total_tokens"] > 0 and chat["latency_ms"] >= 0 and chat["ttfb_ms"] >= 0
    assert chat["path"] == "/v1/chat/completions" and chat["method"] == "POST"
    assert access["acc-stream"]["ttfb_ms"] is not None
    assert access["acc-401"]["status"] == 401 and "provider" not in access["acc-401"]
    assert access["acc-404"]["path"] == "/nowhere"
    assert access["acc-path"]["path"].startswith("/v1/")  # keys in it masked (_no_secret)


def test_the_switch_turns_access_lines_off(tmp_path):
    text = _serve_and_call(tmp_path, "text", ", access_log: false")
    assert "freeapi.access" not in text
    assert "listening on" in text  # the log itself is on


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_an_access_line_escapes_control_characters_and_masks_key_lookalikes(fmt):
    rlog = logs.RequestLog("ctl-1")
    rlog.endpoint = "chat"
    rlog.entry = {"status": 200, "latency_ms": 3, "key": "bob", "provider": "deepseek",
                  "model": "evil\nmodel 2026-12-06 INFO forged: line",
                  "upstream_model": f"x {GOOD}", "ttfb_ms": 1, "prompt_tokens": 1,
                  "completion_tokens": 2, "total_tokens": 3, "vendor_key": "sk-...0001",
                  "error": None}
    stream = io.StringIO()
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    root.handlers = [logging.StreamHandler(stream)]
    root.setLevel(logging.INFO)
    try:
        logs.install(fmt, RedactKeys())
        access_log.write(rlog, "POST", "/v1/chat/completions", 200, 3, "bob")
    finally:
        root.handlers, root.level = saved, level
    out = stream.getvalue()
    assert out.count("\n") == 1 and GOOD not in out  # one line; the key masked
    if fmt == "json":
        line = json.loads(out)
        assert line["model"].startswith("evil\nmodel") and line["request_id"] == "ctl-1"
    else:
        assert "\\nmodel 2026-12-06" in out and out.rstrip().endswith("request_id=ctl-1")


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_configured_keys_are_masked_in_every_field_of_an_access_line_also_after_reload(fmt):
    """The redactor masks each field of an access line (memoized per field value) instead
    of scanning the whole line: a configured key that looks like no key, sent as the
    method, in the path, as a model name or echoed in a vendor's error code, never reaches
    the line, also once the keys change (a reload) after the same values were seen."""
    rlog = logs.RequestLog("red-1")
    rlog.endpoint = "chat"
    rlog.entry = {"status": 502, "latency_ms": 3, "key": "bob", "provider": "deepseek",
                  "model": "m-team-pass", "upstream_model": "team-pass x",
                  "ttfb_ms": None, "prompt_tokens": None, "completion_tokens": None,
                  "total_tokens": None, "vendor_key": "sk-...0001",
                  "error": "bad_key_team-pass"}
    stream = io.StringIO()
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    root.handlers = [logging.StreamHandler(stream)]
    root.setLevel(logging.INFO)
    redactor = RedactKeys()
    try:
        logs.install(fmt, redactor)
        redactor.keys = ["other-secret"]
        access_log.write(rlog, "team-pass", "/v1/team-pass/x", 502, 3, "bob")
        assert stream.getvalue().count("team-pass") >= 4  # not a key yet: left as is
        stream.seek(0)
        stream.truncate()
        redactor.keys = ["team-pass", "other-secret"]  # as serve() sets them on a reload
        access_log.write(rlog, "team-pass", "/v1/team-pass/x", 502, 3, "bob")
    finally:
        root.handlers, root.level = saved, level
    out = stream.getvalue()
    assert out.count("\n") == 1 and "team-pass" not in out
    assert "/v1/" in out and "red-1" in out


@pytest.fixture
def access_records():
    """The access records emitted while a test runs (the gateway in this process)."""
    records = []
    handler = logging.Handler(logging.INFO)
    handler.addFilter(logs.ContextFilter())
    handler.emit = records.append
    logger = logging.getLogger("freeapi.access")
    saved = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(saved)


async def test_a_client_that_leaves_gets_one_line_with_status_499(make_gateway,
                                                                  access_records):
    from tests.test_streaming import open_raw
    base, gw = make_gateway()
    stream = await open_raw(base, chat_body("!stall 30", stream=True))
    got = b""
    while got.count(b"data: ") < 3:
        got += await asyncio.wait_for(stream.read_bytes(4096, partial=True), 2)
    rid = re.search(rb"(?i)x-request-id: (\S+)", got).group(1).decode()
    stream.close()
    for _ in range(100):  # the line comes once the gateway has seen the close
        if access_records:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)  # and no second line after it
    [rec] = access_records
    assert rec.request_id == rid
    assert (rec.access["status"], rec.access["error"]) == (499, "client_gone")
    assert rec.access["provider"] == "deepseek" and rec.access["door"] == "chat"
