"""The usage ledger: one entry per chat request with the vendor's real usage, and the
`freeapi usage` report (with prices), including after a kill -9 of the gateway."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from freeapi.config import Price
from freeapi.ledger import token_counts, usage_from_body
from freeapi.store.ledger_queue import LEDGER_DELAY
from freeapi.store.sqlite import SQLiteStore
from freeapi.usage import parse_time, render, summarize
from tests.conftest import free_port
from tests.fakes.deepseek import BUSY, GOOD, GOOD2, REASONER_USAGE, USAGE
from tests.helpers import ThreadedFake, chat_body, check_stream, request, sse_events, \
    stream_raw, wait_listening
from tests.test_streaming import open_raw

ROOT = Path(__file__).resolve().parent.parent
TEXT = "Hello! How can I help?"
GW = "gw-key-alice-0001"


async def ledger(gw, n=None):
    """The gateway's ledger once `n` entries (or everything queued) are written."""
    for _ in range(200):
        await gw.store.flush()
        rows = await gw.store.ledger()
        if n is None or len(rows) >= n:
            return rows
        await asyncio.sleep(0.01)
    return rows


def tokens(usage):
    return token_counts(usage)


async def chat(base, key=GOOD, **kw):
    return await request(base + "/v1/chat/completions", "POST", chat_body(**kw), key=key)


# -- what one entry holds -----------------------------------------------------------------

async def test_a_non_stream_request_records_the_vendors_usage(make_gateway):
    base, gw = make_gateway()
    resp = await chat(base)
    assert resp.code == 200
    [e] = await ledger(gw, 1)
    assert e == {**e, "key": None, "vendor_key": "sk-...0001", "provider": "deepseek",
                 "model": "deepseek-chat", "upstream_model": "deepseek-flash", "status": 200,
                 "error": None, "stream": False, "prompt_tokens": 11, "completion_tokens": 7,
                 "cached_tokens": 8, "reasoning_tokens": None, "total_tokens": 18}
    assert abs(e["ts"] - time.time()) < 5
    assert 0 <= e["ttfb_ms"] <= e["latency_ms"] < 5000


@pytest.mark.parametrize("include", [False, True])
async def test_a_stream_records_usage_whether_or_not_the_client_asked(make_gateway, include):
    base, gw = make_gateway()
    extra = {"stream_options": {"include_usage": True}} if include else {}
    resp, raw = await stream_raw(base, chat_body(stream=True, **extra))
    check_stream(raw, TEXT)
    chunks = [json.loads(ev) for ev in sse_events(raw)[:-1]]
    # What the client gets is unchanged: a usage-only chunk only when it asked for one.
    assert any(c["choices"] == [] for c in chunks) is include
    [e] = await ledger(gw, 1)
    assert (e["stream"], e["status"], e["error"]) == (True, 200, None)
    assert {k: e[k] for k in tokens(USAGE)} == tokens(USAGE)


@pytest.mark.parametrize("model", ["deepseek-reasoner", "deepseek-r1", "deepseek-r1-fold"])
@pytest.mark.parametrize("stream", [False, True])
async def test_reasoning_tokens_aliases_and_display_variants(make_gateway, model, stream):
    base, gw = make_gateway()
    if stream:
        resp, _ = await stream_raw(base, chat_body(model=model, stream=True))
    else:
        resp = await chat(base, model=model)
    assert resp.code == 200
    [e] = await ledger(gw, 1)
    assert (e["model"], e["upstream_model"]) == (model, "deepseek-flash")
    assert e["reasoning_tokens"] == 4 and e["completion_tokens"] == 11
    assert {k: e[k] for k in tokens(REASONER_USAGE)} == tokens(REASONER_USAGE)


async def test_gateway_key_name_and_the_server_key_that_served(make_gateway):
    base, gw = make_gateway({"auth": {"keys": [{"key": GW, "name": "alice"}]},
                             "providers": {"deepseek": {"api_keys": [BUSY, GOOD2]}}})
    for _ in range(2):
        assert (await chat(base, key=GW)).code == 200
    rows = await ledger(gw, 2)
    assert [(e["key"], e["vendor_key"]) for e in rows] == [("alice", "sk-...0002")] * 2


async def test_failures_are_recorded_and_only_a_served_stream_is_estimated(make_gateway,
                                                                           upstream_state):
    base, gw = make_gateway()
    assert (await chat(base, content="!status 400")).code == 400
    assert (await chat(base, model="nonexistent")).code == 404  # not routed: not recorded
    assert (await request(base + "/v1/chat/completions", "POST", b"{", key=GOOD)).code == 400
    resp, raw = await stream_raw(base, chat_body("!cut", stream=True))
    assert check_stream(raw, TEXT)[1] is not None
    rows = await ledger(gw, 2)
    assert len(rows) == 2
    bad, cut = rows
    assert (bad["status"], bad["error"], bad["stream"]) == (400, "invalid_request_error", False)
    assert (cut["status"], cut["stream"]) == (200, True) and cut["error"].startswith("upstream")
    # Nothing was served: no numbers. The cut stream was (the vendor bills what it sent):
    # an estimate, marked as such.
    assert all(bad[k] is None for k in tokens(None)) and not bad["estimated"]
    assert cut["estimated"] and cut["prompt_tokens"] >= 1 and cut["completion_tokens"] >= 3


async def test_a_client_that_leaves_is_recorded_as_499(make_gateway, upstream_state):
    base, gw = make_gateway()
    stream = await open_raw(base, chat_body("!stall 30", stream=True))
    got = b""
    while got.count(b"data: ") < 3:
        got += await asyncio.wait_for(stream.read_bytes(4096, partial=True), 2)
    stream.close()
    [e] = await ledger(gw, 1)
    assert (e["status"], e["error"], e["stream"]) == (499, "client_gone", True)


async def test_ledger_recording_never_waits_for_the_store(make_gateway, monkeypatch):
    """A store that takes 0.3s per write delays no answer."""
    base, gw = make_gateway()
    slow = gw.store._append

    async def append(entries):
        await asyncio.sleep(0.3)
        await slow(entries)
    monkeypatch.setattr(gw.store, "_append", append)
    start = time.monotonic()
    for _ in range(3):
        assert (await chat(base)).code == 200
    assert time.monotonic() - start < 0.25
    assert len(await ledger(gw, 3)) == 3


# -- helpers and the report ---------------------------------------------------------------

def test_usage_from_body_reads_only_the_usage_object():
    body = json.dumps({"id": "x", "choices": [{"message": {"content": 'say "usage": {1}'}}],
                       "usage": USAGE}).encode()
    assert usage_from_body(body) == USAGE
    assert usage_from_body(body.decode()) == USAGE
    assert usage_from_body(b'{"choices": [], "usage" : {"prompt_tokens": 1}}') == \
        {"prompt_tokens": 1}
    for bad in (b'{"choices": []}', b'{"usage": null}', b'{"usage": {"a": ', None, b""):
        assert usage_from_body(bad) is None


def test_token_counts_across_vendor_shapes():
    assert token_counts({"prompt_tokens": 5, "completion_tokens": 2, "cached_tokens": 3}) == {
        "prompt_tokens": 5, "completion_tokens": 2, "cached_tokens": 3,
        "reasoning_tokens": None, "total_tokens": None}  # Kimi's cached_tokens
    assert token_counts({"prompt_tokens": 5, "prompt_cache_hit_tokens": 4})["cached_tokens"] \
        == 4
    assert token_counts({"prompt_tokens": "5", "completion_tokens": -1, "total_tokens": True}) \
        == token_counts(None)  # nonsense is unknown, not a number


def test_parse_time():
    now = 1_800_000_000.0
    assert parse_time("7d", now) == now - 7 * 86400
    assert parse_time("90m", now) == now - 5400
    assert parse_time("2026-11-01", now) == 1793491200.0
    assert parse_time("2026-11-01T12:00", now) == 1793491200.0 + 43200
    assert parse_time("2026-11-01T12:00+01:00", now) == 1793491200.0 + 39600
    for bad in ("yesterday", "7x", "2026-13-01"):
        with pytest.raises(ValueError, match="span back from now"):
            parse_time(bad, now)


DAY1, DAY2 = 1793491200.0, 1793491200.0 + 86400  # 2026-11-01, 2026-11-02 (UTC)


def sample_entries():
    base = {"vendor_key": "sk-...0001", "provider": "deepseek", "upstream_model":
            "deepseek-chat", "status": 200, "error": None, "stream": False,
            "latency_ms": 10, "ttfb_ms": 5, "reasoning_tokens": None}

    def e(ts, key, model, p, c, cached, **kw):
        return {**base, "ts": ts, "key": key, "model": model, "prompt_tokens": p,
                "completion_tokens": c, "cached_tokens": cached, "total_tokens": p + c, **kw}
    return [e(DAY1 + 5, "alice", "deepseek-chat", 1000, 500, 600),
            e(DAY1 + 9, "alice", "deepseek-chat", 2000, 100, 0),
            e(DAY1 + 60, None, "deepseek-chat", 100, 10, None, vendor_key="sk-...9999"),
            e(DAY2 + 1, "bob", "deepseek-reasoner", 10, 30, None,
              upstream_model="deepseek-reasoner", reasoning_tokens=20),
            e(DAY2 + 2, "bob", "deepseek-reasoner", 0, 0, None, status=429,
              error="rpm_exceeded", upstream_model=None, provider=None)]


def test_summarize_totals_per_day_key_and_model_with_cost():
    prices = {"deepseek-chat": Price(input=0.5, output=2.0, cached=0.1)}
    s = summarize(sample_entries(), prices)
    assert [(r["day"], r["key"], r["model"], r["requests"]) for r in s["rows"]] == [
        ("2026-11-01", "alice", "deepseek-chat", 2),
        ("2026-11-01", "sk-...9999", "deepseek-chat", 1),
        ("2026-11-02", "bob", "deepseek-reasoner", 2)]
    alice = s["rows"][0]
    assert (alice["prompt_tokens"], alice["cached_tokens"], alice["completion_tokens"]) == (
        3000, 600, 600)
    # (3000 - 600) * 0.5 + 600 * 0.1 + 600 * 2.0, per million
    assert alice["cost"] == pytest.approx((2400 * 0.5 + 60 + 1200) / 1e6)
    bob = next(r for r in s["by_key"] if r["key"] == "bob")
    assert (bob["requests"], bob["errors"], bob["reasoning_tokens"], bob["cost"]) == (
        2, 1, 20, 0.0)
    assert s["total"]["requests"] == 5 and s["unpriced"] == ["deepseek-reasoner"]
    text = render(s, DAY1, None, "SQLite x.db", True)
    assert "since 2026-11-01 00:00 UTC" in text and "cost" in text
    assert "no price configured for: deepseek-reasoner" in text
    assert "cost" not in render(summarize(sample_entries(), {}), None, None, "x", False)


# -- the real command ---------------------------------------------------------------------

def run(*args, timeout=20):
    return subprocess.run([sys.executable, "-m", "freeapi", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


async def test_usage_command_reads_the_ledger(tmp_path):
    store = SQLiteStore(str(tmp_path / "freeapi.db"))
    await store.ledger_append(sample_entries())
    store.close()
    cfg = tmp_path / "config.yaml"
    cfg.write_text("prices:\n  deepseek-chat: {input: 0.5, output: 2.0, cached: 0.1}\n")
    p = run("usage", "--config", str(cfg), "--since", "2026-11-02")
    assert p.returncode == 0, p.stderr
    assert "bob" in p.stdout and "alice" not in p.stdout and "cost" in p.stdout
    p = run("usage", "--config", str(cfg), "--json")
    data = json.loads(p.stdout)
    assert data["total"]["requests"] == 5 and len(data["rows"]) == 3
    p = run("usage", "--config", str(cfg), "--until", "2026-11-01T00:00:06", "--json")
    assert json.loads(p.stdout)["total"]["requests"] == 1
    p = run("usage", "--config", str(cfg), "--since", "last week")
    assert p.returncode == 2 and "span back from now" in p.stderr
    p = run("usage")
    assert p.returncode == 2 and "in memory" in p.stderr


def start_gateway(cfg: Path, port: int):
    """The real `freeapi --config cfg`, once it answers /ping: (process, connection)."""
    import http.client
    proc = subprocess.Popen([sys.executable, "-m", "freeapi", "--config", str(cfg)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_listening(port, proc)
    return proc, http.client.HTTPConnection("127.0.0.1", port, timeout=5)


def call(c, method, path, body=None):
    c.request(method, path, json.dumps(body) if body is not None else None,
              {"Authorization": f"Bearer {GOOD}", "Content-Type": "application/json"})
    r = c.getresponse()
    return r.status, r.read()


def test_kill_9_loses_at_most_the_request_in_flight(tmp_path):
    """Requests answered before a kill -9 are in the ledger after a restart, and the
    conversation they built is intact."""
    import http.client
    port = free_port()
    with ThreadedFake() as fake:
        cfg = tmp_path / "config.yaml"
        cfg.write_text(f"server: {{host: 127.0.0.1, port: {port}}}\n"
                       f"providers:\n  deepseek: {{base_url: '{fake.url}'}}\n")
        proc, c = start_gateway(cfg, port)
        try:
            cid = json.loads(call(c, "POST", "/v1/conversations")[1])["id"]
            for i in range(20):
                body = dict(chat_body(f"turn {i}", stream=i % 2 == 0), conversation_id=cid)
                status, raw = call(c, "POST", "/v1/chat/completions", body)
                assert status == 200 and raw
            # One more request is in flight when the kill comes; entries are committed
            # within LEDGER_DELAY (50 ms) of their answer, so 0.3s is plenty for the rest.
            c2 = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c2.request("POST", "/v1/chat/completions", json.dumps(chat_body("!slow 5")),
                       {"Authorization": f"Bearer {GOOD}", "Content-Type": "application/json"})
            time.sleep(LEDGER_DELAY + 0.25)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)
            proc, c = start_gateway(cfg, port)  # restarted on the same state
            status, raw = call(c, "GET", f"/v1/conversations/{cid}")
            assert status == 200, raw
            messages = json.loads(raw)["messages"]
            assert [m["content"] for m in messages[::2]] == [f"turn {i}" for i in range(20)]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    p = run("usage", "--config", str(cfg), "--json")
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    assert data["total"]["requests"] == 20, data  # only the request in flight is lost
    assert data["total"]["prompt_tokens"] == 11 * 20
