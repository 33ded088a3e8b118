"""A reload (freeapi/reload.py) applies `providers:`, `models:`, `fallbacks:` and `free:`
in the running gateway: a request in flight keeps the provider and key pool it began
with and finishes; the next one uses the new config; unchanged providers keep their key
pools, a changed one's kept keys keep their health; a file whose sections do not hold
together changes nothing and logs one line. (Real processes and --workers:
tests/test_config_reload.py.)"""

import asyncio
import json

from freeapi.keys import mask
from freeapi.reload import reload_config
from tests.fakes.deepseek import ANSWER, DEAD, GOOD, GOOD2
from tests.helpers import check_stream, chat_body, error_of, request, stream_raw

GW = "gw-reload-0000000000001"
FLASH = "deepseek-v4-flash"


def config(upstream, spare=None, **sections) -> dict:
    """deepseek with GOOD, and `spare` (an OpenAI-compatible provider at the same fake,
    serving FLASH) when given its settings."""
    providers = {"deepseek": {"base_url": upstream, "api_keys": [GOOD]}}
    if spare is not None:
        providers["spare"] = dict({"type": "openai", "base_url": upstream, "discover": False,
                                   "api_keys": [GOOD], "models": [FLASH]}, **spare)
    return {"auth": {"keys": [{"key": GW, "name": "gw"}]}, "providers": providers,
            **sections}


def reload_with(gw, tmp_path, cfg: dict) -> bool:
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(cfg))
    return reload_config(gw, str(path))


def sent_key(upstream_state) -> str:
    return upstream_state.requests[-1]["headers"]["Authorization"].removeprefix("Bearer ")


async def test_a_stream_in_flight_finishes_when_a_reload_removes_its_provider(
        make_gateway, upstream, upstream_state, tmp_path):
    # spare's first key is dead: its background re-probe runs until the reload stops it.
    base, gw = make_gateway(config(upstream, {"api_keys": [DEAD, GOOD]}))
    old = gw.providers["spare"]
    old_pool = gw.pools["spare"]
    for _ in range(2):  # the keys take turns: one of the two requests meets DEAD
        assert (await request(base + "/v1/chat/completions", "POST",
                              chat_body(model=f"spare/{FLASH}"), key=GW)).code == 200
    assert DEAD in old_pool.probe_at  # re-probed in the background

    got = asyncio.Event()
    streaming = asyncio.ensure_future(stream_raw(
        base, chat_body("!stall 1", model=f"spare/{FLASH}", stream=True), key=GW,
        on_data=lambda _: got.set()))
    await asyncio.wait_for(got.wait(), 10)  # the answer has begun
    assert old_pool.in_flight == {GOOD: 1}
    assert reload_with(gw, tmp_path, config(upstream))  # spare is gone
    assert "spare" not in gw.providers and "spare" not in gw.pools

    resp, raw = await streaming
    assert resp.code == 200
    text, error = check_stream(raw, "".join(ANSWER))
    assert error is None  # the whole answer, from the removed provider
    assert old_pool.in_flight == {}  # its lease went back to the pool it came from
    assert gw.pool_for(old) is old_pool
    await asyncio.sleep(0)
    assert old_pool.probe_at == {}  # the removed provider's probe was stopped

    err = error_of(await request(base + "/v1/chat/completions", "POST",
                                 chat_body(model=f"spare/{FLASH}"), key=GW), 404)
    assert err["code"] == "model_not_found"
    assert (await request(base + "/v1/chat/completions", "POST", chat_body(),
                          key=GW)).code == 200  # deepseek serves on


async def test_a_reload_adds_changes_and_keeps_providers(make_gateway, upstream,
                                                         upstream_state, tmp_path):
    base, gw = make_gateway(config(upstream, {}))
    deepseek_pool, spare_pool = gw.pools["deepseek"], gw.pools["spare"]
    # A vendor failure on spare's key: health the changed provider's kept key keeps.
    assert (await request(base + "/v1/chat/completions", "POST",
                          chat_body("!status 500", model=f"spare/{FLASH}"), key=GW)).code == 500
    new = config(upstream, {"api_keys": [GOOD2, GOOD], "models": [FLASH, "deepseek-v4-pro"]},
                 models={"my-pro": "spare/deepseek-v4-pro"},
                 fallbacks={"deepseek-chat": ["extra/deepseek-v4-pro"]},
                 free={"add": [f"spare/{FLASH}"]})
    new["providers"]["extra"] = {"type": "openai", "base_url": upstream, "discover": False,
                                 "api_keys": [GOOD2], "models": ["deepseek-v4-pro"]}
    assert reload_with(gw, tmp_path, new)

    assert gw.pools["deepseek"] is deepseek_pool  # unchanged: the same pool
    assert gw.pools["spare"] is not spare_pool
    rows = {r["id"]: r for r in gw.pools["spare"].status([GOOD, GOOD2])}
    assert rows[mask(GOOD)]["last_error"] == "HTTP 500" and rows[mask(GOOD2)]["last_error"] is None

    # An alias to a model spare did not serve before: served.
    resp = await request(base + "/v1/chat/completions", "POST", chat_body(model="my-pro"), key=GW)
    assert resp.code == 200 and resp.headers["x-freeapi-provider"] == "spare"
    assert resp.headers["x-freeapi-upstream-model"] == "deepseek-v4-pro"
    # The new provider, as a fallback: deepseek's 503s move there.
    upstream_state.fail_next, upstream_state.fail_status = 1, 503
    resp = await request(base + "/v1/chat/completions", "POST", chat_body(), key=GW)
    assert resp.code == 200 and resp.headers["x-freeapi-provider"] == "extra"
    # The `free` model's candidates follow `free:` and the new providers.
    resp = await request(base + "/v1/chat/completions", "POST", chat_body(model="free"),
                         key=GW)
    assert resp.code == 200 and resp.headers["x-freeapi-provider"] == "spare"

    # Only the new key: it is the one used.
    assert reload_with(gw, tmp_path, config(upstream, {"api_keys": [GOOD2]}))
    for _ in range(3):
        resp = await request(base + "/v1/chat/completions", "POST",
                             chat_body(model=f"spare/{FLASH}"), key=GW)
        assert resp.code == 200 and sent_key(upstream_state) == GOOD2
    resp = await request(base + "/v1/chat/completions", "POST", chat_body(model="my-pro"),
                         key=GW)
    assert error_of(resp, 404)["code"] == "model_not_found"  # the alias went with the file


async def test_a_file_whose_providers_do_not_hold_together_changes_nothing(
        make_gateway, upstream, tmp_path, caplog):
    base, gw = make_gateway(config(upstream, {}))
    providers, pools = gw.providers, dict(gw.pools)
    broken = config(upstream, fallbacks={"deepseek-chat": [f"spare/{FLASH}"]})  # spare gone
    broken["auth"]["keys"].append({"key": "gw-reload-0000000000002", "name": "second"})
    with caplog.at_level("INFO", logger="freeapi.reload"):
        assert not reload_with(gw, tmp_path, broken)
    lines = [r.getMessage() for r in caplog.records if r.name == "freeapi.reload"]
    assert len(lines) == 1 and "keeping the running config" in lines[0], lines
    assert "fallbacks.deepseek-chat[0]" in lines[0]
    assert gw.providers is providers and gw.pools == pools
    assert len(gw.config.gateway_keys) == 1  # nothing of the file was applied
    assert (await request(base + "/v1/chat/completions", "POST",
                          chat_body(model=f"spare/{FLASH}"), key=GW)).code == 200


async def test_a_key_a_request_of_the_replaced_pool_finds_dead_is_rechecked_by_the_new_one(
        make_gateway, upstream, upstream_state, tmp_path):
    # One key, one request at a time: the second request queues in the pool of the
    # provider as it was, and is served there after the reload changed the provider.
    cfg = config(upstream)
    cfg["providers"]["deepseek"].update(api_keys=[GOOD2], key_pool={
        "max_concurrency": 1, "recheck_interval": 0.05})
    base, gw = make_gateway(cfg)
    old_pool = gw.pools["deepseek"]
    got = asyncio.Event()
    first = asyncio.ensure_future(stream_raw(base, chat_body("!stall 1", stream=True),
                                             key=GW, on_data=lambda _: got.set()))
    await asyncio.wait_for(got.wait(), 10)
    queued = asyncio.ensure_future(request(base + "/v1/chat/completions", "POST",
                                           chat_body("!status 401"), key=GW))
    while old_pool.waiting == 0:
        await asyncio.sleep(0.01)
    cfg["providers"]["deepseek"]["timeouts"] = {"total": 120}
    assert reload_with(gw, tmp_path, cfg)
    new_pool = gw.pools["deepseek"]
    assert new_pool is not old_pool

    assert (await first)[0].code == 200
    assert (await queued).code == 503  # the vendor said GOOD2 is invalid, after the reload
    assert new_pool.status([GOOD2])[0]["state"] == "invalid"
    # The key is still the provider's: its re-check runs in the pool that serves now (the
    # replaced pool runs none), and brings it back, as the vendor accepts it.
    for _ in range(500):
        if new_pool.status([GOOD2])[0]["state"] == "ok":
            break
        await asyncio.sleep(0.02)
    assert new_pool.status([GOOD2])[0]["state"] == "ok"
    assert GOOD2 in upstream_state.balance_checks
    assert (await request(base + "/v1/chat/completions", "POST", chat_body(),
                          key=GW)).code == 200


async def test_a_provider_a_reload_adds_during_a_discovery_round_is_asked_too(
        make_gateway, upstream, start_vendor, tmp_path):
    from tornado import web
    from tests.fakes import openai_compat as fake_local
    from tests.fakes.common import serve
    asked, answer = asyncio.Event(), asyncio.Event()

    class SlowModels(web.RequestHandler):
        async def get(self):  # a server slow to list its models: the round stays open
            asked.set()
            await answer.wait()
            self.finish({"object": "list", "data": []})
    slow_url, slow_server = serve(web.Application([(r"/v1/models", SlowModels)]))
    try:
        cfg = config(upstream, discovery={"interval": 0, "on_miss": 0})
        cfg["providers"]["slow"] = {"type": "openai", "base_url": slow_url + "/v1"}
        base, gw = make_gateway(cfg)
        first = asyncio.ensure_future(gw.discovery.rerun())  # the round after startup
        await asyncio.wait_for(asked.wait(), 10)
        url, _ = start_vendor(fake_local)
        cfg["providers"]["local"] = {"type": "openai", "base_url": url + "/v1"}
        assert reload_with(gw, tmp_path, cfg)  # asks for a round: one is in flight
        answer.set()
        await first
        for _ in range(500):  # the round the reload asked for, in the background
            if gw.providers["local"].discovered:
                break
            await asyncio.sleep(0.01)
        # The round in flight began before `local` existed: it was asked in one of its own.
        assert set(gw.providers["local"].discovered) == set(fake_local.MODELS)
        assert gw.resolve(fake_local.MODELS[0]).provider is gw.providers["local"]
    finally:
        slow_server.stop()
