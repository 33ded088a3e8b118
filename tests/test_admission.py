"""What a request must have before it costs the gateway anything: credentials before a
conversation or a ledger row exists, a bounded number of conversations per caller, and a
key's `models` allowlist on every target it may be sent to, fallbacks included."""

from __future__ import annotations

import json

from tests.fakes.deepseek import GOOD
from tests.helpers import chat_body, error_of, request
from tests.localserver import LlamaCpp

GW_KEY = "gw-key-for-the-admission-tests"
NARROW = "gw-key-that-may-use-deepseek-chat-only"


async def ledger(gw) -> list:
    await gw.store.flush()
    return await gw.store.ledger()


# -- no credentials, no state ----------------------------------------------------------------

async def test_callers_without_credentials_leave_no_trace(make_gateway, upstream_state):
    # Pass-through mode with a config (an SQLite state file): the caller sends nothing.
    base, gw = make_gateway({"conversations": {"store": True}})
    for _ in range(5):
        err = error_of(await request(base + "/v1/chat/completions", "POST", chat_body(),
                                     key=None), 401)
        assert err["code"] == "missing_api_key"
    err = error_of(await request(base + "/v1/conversations", "POST", key=None), 401)
    assert "credentials" in err["message"]
    body = chat_body(conversation_id="conv-" + "0" * 32)
    error_of(await request(base + "/v1/chat/completions", "POST", body, key=None), 401)
    assert await ledger(gw) == []  # not one row for requests that were never admitted
    assert upstream_state.requests == []
    # With credentials the same request is served, kept and accounted as before.
    resp = await request(base + "/v1/chat/completions", "POST", chat_body(), key=GOOD)
    assert resp.code == 200 and json.loads(resp.body)["conversation_id"]
    assert [r["status"] for r in await ledger(gw)] == [200]


async def test_a_keyless_model_answers_anonymous_callers_without_storing_a_conversation(
        make_gateway):
    fake = LlamaCpp()
    fake.start()
    try:
        base, gw = make_gateway({"conversations": {"store": True}, "providers": {"local": {
            "type": "openai", "base_url": fake.url, "models": ["qwen3"], "discover": False}}})
        resp = await request(base + "/v1/chat/completions", "POST",
                             chat_body(model="local/qwen3"), key=None)
        assert resp.code == 200 and "conversation_id" not in json.loads(resp.body)
        assert "x-freeapi-conversation-id" not in resp.headers
    finally:
        fake.stop()


async def test_conversations_per_caller_are_capped(make_gateway):
    base, gw = make_gateway({"auth": {"keys": [GW_KEY, NARROW]},
                             "providers": {"deepseek": {"api_keys": [GOOD]}},
                             "conversations": {"max_per_caller": 3}})
    for _ in range(3):
        assert (await request(base + "/v1/conversations", "POST", key=GW_KEY)).code == 200
    resp = await request(base + "/v1/conversations", "POST", key=GW_KEY)
    err = error_of(resp, 429)
    assert err["code"] == "conversation_limit" and "max_per_caller" in err["message"]
    assert int(resp.headers["Retry-After"]) >= 1
    # Another caller has its own allowance.
    assert (await request(base + "/v1/conversations", "POST", key=NARROW)).code == 200


async def test_store_all_stops_storing_at_the_cap_but_still_answers(make_gateway):
    base, _ = make_gateway({"conversations": {"store": True, "max_per_caller": 2}})
    ids = []
    for _ in range(4):
        resp = await request(base + "/v1/chat/completions", "POST", chat_body(), key=GOOD)
        assert resp.code == 200
        ids.append(json.loads(resp.body).get("conversation_id"))
    assert all(ids[:2]) and ids[2:] == [None, None]


# -- the models allowlist and fallbacks ------------------------------------------------------

async def test_a_fallback_the_key_may_not_use_is_skipped_not_served(make_gateway,
                                                                   upstream_state):
    fake = LlamaCpp()
    fake.start()
    try:
        base, gw = make_gateway({
            "auth": {"keys": [GW_KEY, {"key": NARROW, "name": "narrow",
                                       "models": ["deepseek-chat"]}]},
            "providers": {"deepseek": {"api_keys": [GOOD]},
                          "local": {"type": "openai", "base_url": fake.url,
                                    "models": ["qwen3"], "discover": False}},
            "fallbacks": {"deepseek-chat": ["local/qwen3"]}})
        upstream_state.fail_next, upstream_state.fail_status = 10, 503
        err = error_of(await request(base + "/v1/chat/completions", "POST", chat_body(),
                                     key=NARROW), 503)
        assert err["message"].startswith("deepseek: ")  # deepseek's own error, no fallback
        assert fake.calls == 0
        # A key that may use the fallback gets it.
        resp = await request(base + "/v1/chat/completions", "POST", chat_body(), key=GW_KEY)
        assert resp.code == 200 and resp.headers["x-freeapi-provider"] == "local"
        assert fake.calls == 1
    finally:
        fake.stop()


# -- token limits and disconnects ------------------------------------------------------------

async def test_hanging_up_before_the_usage_chunk_is_still_charged(make_gateway,
                                                                  upstream_state):
    """A key with tpm reads part of each stream and hangs up before the last chunk, which
    carries the usage: an estimate is charged, so the limit still holds."""
    import asyncio

    from tests.test_reliability import eventually, open_raw
    base, gw = make_gateway({"auth": {"keys": [{"key": GW_KEY, "name": "t", "tpm": 100}]},
                             "providers": {"deepseek": {"api_keys": [GOOD]}}})
    # About 150 tokens of prompt; the fake stalls after 3 chunks (the usage comes last).
    body = {"model": "deepseek-chat", "stream": True,
            "messages": [{"role": "user", "content": "x" * 600},
                         {"role": "user", "content": "!stall 30"}]}
    s = await open_raw(base, body, key=GW_KEY)
    got = b""
    while got.count(b"data: ") < 3:
        got += await s.read_bytes(4096, partial=True)
    s.close()  # gone before the usage chunk
    await eventually(lambda: upstream_state.active.get(GOOD) == 0)
    await asyncio.sleep(0.05)
    await gw.limits.settle()
    rows = await ledger(gw)
    assert len(rows) == 1 and rows[0]["estimated"] and rows[0]["status"] == 499
    assert rows[0]["prompt_tokens"] >= 150 and rows[0]["completion_tokens"] >= 3
    assert rows[0]["total_tokens"] == rows[0]["prompt_tokens"] + rows[0]["completion_tokens"]
    err = error_of(await request(base + "/v1/chat/completions", "POST", chat_body(),
                                 key=GW_KEY), 429)
    assert err["code"] == "tpm_exceeded"


async def test_a_stream_with_the_vendors_usage_is_not_estimated(make_gateway):
    base, gw = make_gateway({"auth": {"keys": [GW_KEY]},
                             "providers": {"deepseek": {"api_keys": [GOOD]}}})
    resp = await request(base + "/v1/chat/completions", "POST", chat_body(stream=True),
                         key=GW_KEY)
    assert resp.code == 200
    rows = await ledger(gw)
    assert not rows[0]["estimated"] and rows[0]["total_tokens"] == 18  # the fake's


# -- a client that stops reading ---------------------------------------------------------------

def firehose_vendor():
    """An OpenAI-style vendor whose `!firehose` stream sends ~32 MB as fast as it can be
    read (a long answer); anything else gets a short answer."""
    import asyncio

    from tornado import web
    from tornado.httpserver import HTTPServer
    from tornado.iostream import StreamClosedError
    from tornado.testing import bind_unused_port

    class Chat(web.RequestHandler):
        async def post(self):
            body = json.loads(self.request.body)
            self.set_header("Content-Type", "text/event-stream")
            text = "x" * 4000 if body["messages"][-1]["content"] == "!firehose" else "hi"
            chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 1,
                     "model": body["model"], "choices": [
                         {"index": 0, "delta": {"content": text}, "finish_reason": None}]}
            event = b"data: " + json.dumps(chunk).encode() + b"\n\n"
            try:
                for _ in range(8000 if len(text) > 2 else 1):
                    self.write(event)
                    await self.flush()
                    await asyncio.sleep(0)
                done = dict(chunk, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}],
                            usage={"prompt_tokens": 1, "completion_tokens": 1,
                                   "total_tokens": 2})
                self.write(b"data: " + json.dumps(done).encode() + b"\n\ndata: [DONE]\n\n")
                await self.flush()
            except StreamClosedError:
                pass

    sock, port = bind_unused_port()
    server = HTTPServer(web.Application([(r"/chat/completions", Chat)]))
    server.add_sockets([sock])
    return f"http://127.0.0.1:{port}", server


async def test_a_client_that_stops_reading_is_cut_off_at_the_total_timeout(make_gateway):
    import asyncio
    import socket
    import time

    url, vendor = firehose_vendor()
    try:
        base, gw = make_gateway({"auth": {"keys": [GW_KEY]}, "providers": {"deepseek": {
            "base_url": url, "api_keys": [GOOD], "timeouts": {"total": 1},
            "key_pool": {"max_concurrency": 1, "queue_timeout": 10}}}})
        loop = asyncio.get_running_loop()
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # and never reads
        stalled.setblocking(False)
        await loop.sock_connect(stalled, ("127.0.0.1", int(base.rsplit(":", 1)[1])))
        data = json.dumps({"model": "deepseek-chat", "stream": True, "messages": [
            {"role": "user", "content": "!firehose"}]}).encode()
        await loop.sock_sendall(stalled, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                                b"Authorization: Bearer " + GW_KEY.encode() + b"\r\n"
                                b"Content-Length: " + str(len(data)).encode() + b"\r\n\r\n"
                                + data)
        pool = gw.pools["deepseek"]
        for _ in range(200):
            if pool.in_flight:
                break
            await asyncio.sleep(0.01)
        assert pool.in_flight == {GOOD: 1}  # the stalled stream holds the only slot
        started = time.monotonic()
        resp = await request(base + "/v1/chat/completions", "POST", chat_body(stream=True),
                             key=GW_KEY, timeout=20)
        # Served once the stalled stream's timeouts.total (1 s) ended it, well before the
        # queue's 10 s would have refused it.
        assert resp.code == 200 and b"[DONE]" in resp.body
        assert time.monotonic() - started < 8
        stalled.close()
        rows = await ledger(gw)
        assert sorted(r["error"] or "" for r in rows) == ["", "client_stalled"]
    finally:
        vendor.stop()


def test_the_usage_estimate_counts_text_not_json_frames():
    from freeapi.ledger import StreamSizes, estimate_usage

    frame = '{"id":"c1","object":"chat.completion.chunk","choices":[{"delta":{"content":"%s"}}]}'
    sizes = StreamSizes()
    sizes([frame % "a", frame % "bb", "[DONE]"])  # one-token events: one token each
    assert estimate_usage(400, sizes) == {"prompt_tokens": 100, "completion_tokens": 2,
                                          "total_tokens": 102}
    sizes = StreamSizes()
    sizes([frame % "", frame % ("x" * 4000), frame % ("y" * 4000)])  # batched text
    assert estimate_usage(0, sizes)["completion_tokens"] == 2000
