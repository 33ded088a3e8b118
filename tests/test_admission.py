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
