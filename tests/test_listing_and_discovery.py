"""/v1/models lists what the gateway can serve for the caller (a missing server-side key is
a 503: tests/test_keys.py), and models a local server gains after startup are found by
periodic discovery and, rate-limited, by the first request that names one."""

from __future__ import annotations

import asyncio
import json

import pytest

from freeapi.config import ConfigError, parse_config
from freeapi.plugins import make_plugin_manager, provider_types
from tests.fakes.deepseek import GOOD
from tests.helpers import chat_body, error_of, request
from tests.localserver import LlamaCpp

GW_KEY = "gw-key-for-the-listing-tests"
NARROW = "gw-key-that-may-use-one-model-only"


def local(url, **extra):
    return {"type": "openai", "base_url": url, **extra}


async def ids(base, key=GW_KEY) -> set:
    resp = await request(base + "/v1/models", key=key)
    assert resp.code == 200
    return {m["id"] for m in json.loads(resp.body)["data"]}


# -- listings and errors for the caller --------------------------------------------------

async def test_with_auth_and_no_vendor_keys_only_servable_models_are_listed(make_gateway):
    fake = LlamaCpp()
    fake.start()
    try:
        base, _ = make_gateway({"auth": {"keys": [GW_KEY]},
                                "providers": {"local": local(fake.url, discover=False,
                                                             models=["qwen3"])}})
        listed = await ids(base)
        assert listed == {"qwen3"}  # no vendor the gateway holds no key for
        err = error_of(await request(base + "/v1/models/deepseek-chat", key=GW_KEY), 404)
        assert err["code"] == "model_not_found"
        assert (await request(base + "/v1/models/local/qwen3", key=GW_KEY)).code == 200
    finally:
        fake.stop()


async def test_a_keys_model_allowlist_shapes_its_listing(make_gateway):
    base, _ = make_gateway({
        "auth": {"keys": [GW_KEY, {"key": NARROW, "name": "narrow",
                                   "models": ["deepseek-v4-pro"]}]},
        "providers": {"deepseek": {"api_keys": [GOOD]}}})
    assert {"deepseek-v4-pro", "deepseek-v4-flash", "deepseek-v4-pro-fold"} <= await ids(base)
    narrow = await ids(base, NARROW)
    assert {"deepseek-v4-pro", "deepseek-v4-pro-fold"} <= narrow
    assert not {"deepseek-v4-flash", "deepseek-flash"} & narrow
    error_of(await request(base + "/v1/models/deepseek-v4-flash", key=NARROW), 404)


async def test_pass_through_mode_lists_every_vendor(gateway):
    # No gateway keys: any caller may bring a vendor key, so every vendor can serve.
    assert {"deepseek-v4-pro", "deepseek-v4-flash"} <= await ids(gateway, key=None)


# -- discovery after startup ---------------------------------------------------------------

async def test_a_model_a_local_server_gains_later_is_found_by_the_first_request(make_gateway):
    fake = LlamaCpp(models=["qwen3"])
    base, gw = make_gateway({"auth": {"keys": [GW_KEY]}, "discovery": {"on_miss": 600},
                             "providers": {"local": local(fake.reserve())}})
    await gw.discovery.run()  # the startup round: the server is not up yet
    error_of(await request(base + "/v1/chat/completions", "POST", chat_body(model="qwen3"),
                           key=GW_KEY), 404)
    fake.start()
    try:
        gw.discovery.last_miss_round -= 600  # as if discovery.on_miss had passed since that miss
        resp = await request(base + "/v1/chat/completions", "POST",
                             chat_body(model="qwen3"), key=GW_KEY)
        assert resp.code == 200 and fake.calls == 1
        # A miss asks again at most once per discovery.on_miss seconds, however many come.
        listings = fake.listings
        for name in ("nope-1", "nope-2", "nope-3"):
            error_of(await request(base + "/v1/chat/completions", "POST",
                                   chat_body(model=name), key=GW_KEY), 404)
        assert fake.listings == listings
    finally:
        fake.stop()


async def test_discovery_repeats_every_interval(make_gateway):
    fake = LlamaCpp(models=["qwen3"])
    fake.start()
    base, gw = make_gateway({"auth": {"keys": [GW_KEY]},
                             "discovery": {"interval": 0.1, "on_miss": 0},
                             "providers": {"local": local(fake.url)}})
    loop = asyncio.ensure_future(gw.discovery.loop())
    try:
        for _ in range(100):
            if "qwen3" in await ids(base):
                break
            await asyncio.sleep(0.05)
        fake.models.append("llama3.2:1b")  # pulled while the gateway runs
        for _ in range(100):
            if "llama3.2:1b" in await ids(base):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the new model was never discovered")
        # on_miss: 0 turns miss-triggered rounds off.
        listings = fake.listings
        loop.cancel()
        error_of(await request(base + "/v1/chat/completions", "POST",
                               chat_body(model="nope"), key=GW_KEY), 404)
        assert fake.listings == listings
    finally:
        loop.cancel()
        fake.stop()


@pytest.mark.parametrize("section", [{"interval": -1}, {"on_miss": "soon"}, {"every": 5}])
def test_discovery_config_errors_name_the_key(section):
    types = provider_types(make_plugin_manager())
    with pytest.raises(ConfigError) as e:
        parse_config({"discovery": section}, types)
    assert f"discovery.{next(iter(section))}" in str(e.value)
