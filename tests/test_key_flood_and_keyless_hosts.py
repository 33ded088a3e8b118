"""Key health under hostile or careless callers: a flood of pass-through keys neither blocks
the gateway nor makes it forget its own keys, and a keyless provider (a local llama.cpp) is
as healthy as its host: one client's failing requests or a restart lock nobody out."""

from __future__ import annotations

import asyncio
import time

from freeapi import keypool, keyprobes
from freeapi.keypool import INVALID
from tests.fakes.deepseek import DEAD
from tests.helpers import chat_body, error_of, request
from tests.localserver import LlamaCpp

GW_KEY = "gw-key-for-the-keyless-tests"


# -- a flood of pass-through keys -------------------------------------------------------------

async def test_more_pass_through_keys_than_allowed_are_refused_before_any_vendor_call(
        gateway, upstream_state):
    keys = ",".join(f"sk-flood-{i:012d}" for i in range(33))
    err = error_of(await request(gateway + "/v1/chat/completions", "POST", chat_body(),
                                 key=keys), 400)
    assert err["code"] == "too_many_keys" and "32" in err["message"]
    assert upstream_state.requests == []
    # 32 are fine: they are tried like any list (the fake knows none of them).
    keys = ",".join(f"sk-flood-{i:012d}" for i in range(32))
    resp = await request(gateway + "/v1/chat/completions", "POST", chat_body(), key=keys)
    assert resp.code == 401 and upstream_state.requests


async def test_a_flood_of_client_keys_never_evicts_the_gateways_own_keys(make_gateway,
                                                                        upstream, upstream_state):
    # deepseek holds one server-side key, which is dead; `other` is pass-through.
    base, gw = make_gateway({
        "auth": {"allow_anonymous": True},
        "providers": {"deepseek": {"api_keys": [DEAD]},
                      "other": {"type": "openai", "base_url": upstream,
                                "discover": False}}})
    gw.health._limit = 20
    resp = await request(base + "/v1/chat/completions", "POST", chat_body(), key=None)
    assert error_of(resp, 503)["code"] == "upstream_key_rejected"
    assert gw.health.get("deepseek", DEAD).state == INVALID
    for n in range(8):  # 8 callers x 32 made-up keys each: far more than the memory holds
        keys = ",".join(f"sk-made-up-{n:02d}-{i:08d}" for i in range(32))
        resp = await request(base + "/v1/chat/completions", "POST",
                             chat_body(model="other/deepseek-chat"), key=keys)
        assert resp.code == 401
    assert len(gw.health._h) <= 20  # the clients' keys stay bounded ...
    sent = len(upstream_state.requests)
    # ... and the gateway still knows its own key is dead: it is not spent again.
    resp = await request(base + "/v1/chat/completions", "POST", chat_body(), key=None)
    assert error_of(resp, 503)["code"] == "no_usable_key"
    assert len(upstream_state.requests) == sent


# -- keyless providers: the health of the host ----------------------------------------------

def local_gateway(make_gateway, url):
    return make_gateway({"auth": {"keys": [GW_KEY]}, "providers": {"local": {
        "type": "openai", "base_url": url, "models": ["qwen3"], "discover": False}}})


async def test_one_clients_failing_requests_do_not_lock_out_a_keyless_server(make_gateway):
    fake = LlamaCpp()
    base, _ = local_gateway(make_gateway, fake.start())
    try:
        for _ in range(8):  # one client's requests that the server answers with 500
            resp = await request(base + "/v1/chat/completions", "POST",
                                 chat_body("!bad", model="local/qwen3"), key=GW_KEY)
            err = error_of(resp, 500)  # the server's real answer, every time
            assert "failed to parse" in err["message"]
        resp = await request(base + "/v1/chat/completions", "POST",
                             chat_body(model="local/qwen3"), key=GW_KEY)
        assert resp.code == 200  # everyone else is still served
        assert fake.calls == 9
    finally:
        fake.stop()


async def test_a_stopped_keyless_server_fails_fast_and_is_back_as_soon_as_it_answers(
        make_gateway, monkeypatch):
    monkeypatch.setattr(keyprobes, "HOST_PROBE_INTERVAL", 0.2)
    fake = LlamaCpp()
    base, gw = local_gateway(make_gateway, fake.start())
    fake.stop()
    try:
        for i in range(8):
            resp = await request(base + "/v1/chat/completions", "POST",
                                 chat_body(model="local/qwen3"), key=GW_KEY)
            err = error_of(resp, 502)  # the real error, never "keys cooling down"
            assert err["code"] == "upstream_unreachable"
            assert resp.headers["Retry-After"] == "1"  # the host is probed every second
            if i:  # after the first failure: the interval in use, not the default's
                assert "checks it every 0.2s" in err["message"]
        fake.start()
        started = time.monotonic()
        while True:
            resp = await request(base + "/v1/chat/completions", "POST",
                                 chat_body(model="local/qwen3"), key=GW_KEY)
            if resp.code == 200:
                break
            # (without the probe, a caller would retry the host only after HOST_RETRY_MAX)
            assert time.monotonic() - started < keypool.HOST_RETRY_MAX / 2, \
                "traffic did not come back"
            await asyncio.sleep(0.05)
        assert fake.calls == 1  # the probe, not a caller, found it back
    finally:
        if fake.server is not None:
            fake.stop()
