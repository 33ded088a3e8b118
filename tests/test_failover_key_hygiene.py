"""Keys and key slots across failover: a failure never keeps a key slot, a caller's key
never reaches another vendor, an error as a stream's first event fails over, error events
mid-stream are scrubbed of keys, and a refused server-side key is not the caller's 401."""

import openai
import pytest

from freeapi.keys import mask
from tests.fakes import deepseek as fake_deepseek
from tests.fakes.common import serve
from tests.fakes.deepseek import ANSWER, GOOD, GOOD2
from tests.helpers import chat_body, check_stream, error_of, request, stream_raw

TEXT = "".join(ANSWER)
USER = "gw-user-key-0002"


@pytest.fixture
def other_vendor(io_loop):
    state = fake_deepseek.State()
    url, server = serve(fake_deepseek.make_app(state))
    yield url, state
    server.stop()


async def test_an_unexpected_failure_never_keeps_a_key_slot(make_gateway, monkeypatch):
    base, gw = make_gateway({"auth": {"keys": [USER]}, "providers": {"deepseek": {
        "api_keys": [GOOD], "key_pool": {"max_concurrency": 1, "queue_timeout": 0.5}}}})
    provider = gw.providers["deepseek"]
    real = provider.chat_request

    def broken(*args, **kwargs):
        raise RuntimeError("a provider bug")

    monkeypatch.setattr(provider, "chat_request", broken)
    resp = await request(base + "/v1/chat/completions", "POST", chat_body(), key=USER)
    assert error_of(resp, 500)["code"] == "internal_error"
    assert gw.pools["deepseek"].in_flight == {}
    monkeypatch.setattr(provider, "chat_request", real)
    resp = await request(base + "/v1/chat/completions", "POST", chat_body(), key=USER)
    assert resp.code == 200  # not a 429 queue_timeout behind a slot nobody holds


async def test_pass_through_keys_never_reach_another_vendor(make_gateway, upstream_state,
                                                            other_vendor):
    url, other = other_vendor
    base, _ = make_gateway({
        "providers": {"deepseek": {}, "backup": {"type": "deepseek", "base_url": url}},
        "models": {"deepseek-chat": "deepseek/deepseek-chat"},
        "fallbacks": {"deepseek-chat": ["backup/deepseek-chat"]}})
    upstream_state.fail_next, upstream_state.fail_status = 10, 503
    client = openai.AsyncOpenAI(base_url=base + "/v1", api_key=GOOD, max_retries=0)
    with pytest.raises(openai.APIStatusError) as info:
        await client.chat.completions.create(model="deepseek-chat",
                                             messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 503 and "deepseek" in info.value.message
    assert other.requests == []  # the client's DeepSeek key never went to `backup`


async def test_an_error_as_the_first_stream_event_fails_over(make_gateway, upstream_state):
    upstream_state.error_event_keys = {GOOD}
    base, gw = make_gateway({"auth": {"keys": [USER]},
                             "providers": {"deepseek": {"api_keys": [GOOD, GOOD2]}}})
    for _ in range(3):  # rotation reaches GOOD within three requests
        resp, raw = await stream_raw(base, chat_body(stream=True), key=USER)
        text, err = check_stream(raw, TEXT)
        assert resp.code == 200 and err is None and text == TEXT
        assert resp.headers["x-freeapi-key"] == mask(GOOD2)
    row = {r["id"]: r for r in gw.pools["deepseek"].status([GOOD, GOOD2])}[mask(GOOD)]
    assert row["state"] == "cooldown"  # counted as the 429 it was, not as a success


async def test_vendor_error_events_mid_stream_are_scrubbed_of_keys(make_gateway):
    base, _ = make_gateway()
    resp, raw = await stream_raw(base, chat_body("!error-event", stream=True), key=GOOD)
    assert resp.code == 200 and b'"error"' in raw and raw.endswith(b"data: [DONE]\n\n")
    assert GOOD.encode() not in raw and mask(GOOD).encode() in raw


async def test_a_forbidden_server_side_key_is_not_the_callers_403(make_gateway,
                                                                   upstream_state):
    upstream_state.keys[GOOD] = (403, "This key may not call this API.", "permission_error")
    base, _ = make_gateway({"auth": {"keys": [USER]},
                            "providers": {"deepseek": {"api_keys": [GOOD]}}})
    resp = await request(base + "/v1/chat/completions", "POST", chat_body(), key=USER)
    err = error_of(resp, 503)
    assert err["code"] == "upstream_key_rejected" and "may not call" in err["message"]


async def test_a_refused_server_side_key_is_not_the_callers_401(make_gateway):
    from tests.fakes.deepseek import DEAD
    base, _ = make_gateway({"auth": {"keys": [USER]},
                            "providers": {"deepseek": {"api_keys": [DEAD]}}})
    resp = await request(base + "/v1/chat/completions", "POST", chat_body(), key=USER)
    err = error_of(resp, 503)
    assert err["code"] == "upstream_key_rejected" and "providers.deepseek.api_keys" in \
        err["message"] and DEAD not in err["message"]


async def test_an_error_event_quoting_the_key_reaches_the_caller_masked(make_gateway,
                                                                        upstream_state):
    # The stream's first event is the vendor's error, quoting the key it was sent; no key
    # is left to fail over to, so that error is what the caller hears. The key does not
    # look like a token (no `sk-`): only knowing it as the key used removes it.
    plain = "vendor-pass-42"
    upstream_state.keys[plain] = "ok"
    upstream_state.error_event_keys = {plain}
    base, _ = make_gateway({"auth": {"keys": [USER]},
                            "providers": {"deepseek": {"api_keys": [plain]}}})
    resp, raw = await stream_raw(base, chat_body(stream=True), key=USER)
    assert resp.code == 429 and b"Rate limit reached for" in raw
    assert plain.encode() not in raw and mask(plain).encode() in raw
