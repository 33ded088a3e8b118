"""The generic `openai` provider (named instances, keyless local servers, discovery) and
routing across providers: provider/model, the models: map, ambiguity, discovered names."""

import json

import openai
import pytest

from freeapi.config import ConfigError
from tests.conftest import free_port
from tests.fakes import kimi as fake_kimi
from tests.fakes import openai_compat as fake_local
from tests.fakes import qwen as fake_qwen
from tests.fakes.common import ANSWER
from tests.helpers import HI, client, collect, request, token_check

GW_KEY = "gw-key-for-the-routing-tests"


def local(url, **extra):
    return {"type": "openai", "base_url": url + "/v1", **extra}


async def test_named_local_instance_without_keys(start_vendor, make_gateway):
    url, state = start_vendor(fake_local)
    # (discovery on a miss is off here: tests/test_listing_and_discovery.py covers it)
    base, gw = make_gateway({"auth": {"keys": [GW_KEY]}, "discovery": {"on_miss": 0},
                             "providers": {"local": local(url)}})
    assert "openai" not in gw.providers  # the type is not enabled on its own
    c = client(base, GW_KEY)
    # Before discovery only the explicit name reaches it.
    r = await c.chat.completions.create(model="local/llama3.2:1b", messages=HI)
    assert r.choices[0].message.content == "".join(ANSWER) and r.model == "local/llama3.2:1b"
    assert "Authorization" not in state.requests[-1]["headers"]  # never the gateway key
    with pytest.raises(openai.NotFoundError):
        await c.chat.completions.create(model="llama3.2:1b", messages=HI)
    await gw.discovery.run()
    ids = {m.id for m in (await c.models.list()).data}
    assert set(fake_local.MODELS) <= ids
    out = await collect(await c.chat.completions.create(model="qwen2.5:0.5b", messages=HI,
                                                        stream=True))
    assert out["content"] == "".join(ANSWER)
    assert await token_check(base, "local", "anything", auth=GW_KEY) == (200, {"live": True})


async def test_static_models_think_tags_and_close_matches(start_vendor, make_gateway):
    url, _ = start_vendor(fake_local)
    base, gw = make_gateway({"providers": {"ollama": local(
        url, models=["deepseek-r1:1.5b"], reasoning_models=["deepseek-r1:1.5b"],
        think_tags=True, discover=False)}})
    await gw.discovery.run()  # off for this instance: the static list stays
    assert gw.providers["ollama"].model_ids() == ["deepseek-r1:1.5b"]
    c = client(base, "none")
    out = await collect(await c.chat.completions.create(model="deepseek-r1:1.5b", messages=HI,
                                                        stream=True))
    assert out["reasoning"] == "Hmm." and out["content"] == "".join(ANSWER)
    r = await c.chat.completions.create(model="deepseek-r1:1.5b-fold", messages=HI)
    assert r.choices[0].message.content == "<think>\nHmm.\n</think>\n\n" + "".join(ANSWER)
    with pytest.raises(openai.NotFoundError) as e:
        # (`deepseek-r1:1.5` would match DeepSeek's `deepseek-*` pattern and go there.)
        await c.chat.completions.create(model="deepsek-r1:1.5b", messages=HI)
    assert "Did you mean: deepseek-r1:1.5b" in e.value.body["message"]


async def test_ambiguous_names_and_the_models_map(start_vendor, make_gateway):
    url, _ = start_vendor(fake_local)
    config = {"providers": {"box1": local(url), "box2": local(url)}}
    base, gw = make_gateway(config)
    await gw.discovery.run()
    c = client(base, "none")
    with pytest.raises(openai.BadRequestError) as e:
        await c.chat.completions.create(model="qwen2.5:0.5b", messages=HI)
    err = e.value.body
    assert err["code"] == "model_ambiguous"
    assert "box1/qwen2.5:0.5b" in err["message"] and "box2/qwen2.5:0.5b" in err["message"]
    r = await c.chat.completions.create(model="box2/qwen2.5:0.5b", messages=HI)
    assert r.choices[0].message.content == "".join(ANSWER)
    config["models"] = {"qwen2.5:0.5b": "box2/qwen2.5:0.5b", "small": "box1/llama3.2:1b"}
    base, gw = make_gateway(config)
    await gw.discovery.run()
    c = client(base, "none")
    raw = await c.chat.completions.with_raw_response.create(model="qwen2.5:0.5b", messages=HI)
    assert raw.headers["x-freeapi-provider"] == "box2"
    raw = await c.chat.completions.with_raw_response.create(model="small", messages=HI)
    assert raw.headers["x-freeapi-provider"] == "box1"
    assert raw.headers["x-freeapi-upstream-model"] == "llama3.2:1b"


async def test_a_name_two_servers_list_is_ambiguous_before_any_pattern_claims_it(
        start_vendor, make_gateway, upstream_state):
    """Two local servers both list `deepseek-r1:1.5b`, which DeepSeek's `deepseek-*`
    pattern also matches: the name is the ambiguity error naming both servers (never sent
    to DeepSeek behind the operator's back) until a `models:` entry settles it."""
    url, state = start_vendor(fake_local)
    config = {"providers": {"box1": local(url), "box2": local(url)}}
    base, gw = make_gateway(config)
    await gw.discovery.run()
    seen = len(state.requests)  # the two GET /models
    c = client(base, "none")
    for name in ("deepseek-r1:1.5b", "deepseek-r1:1.5b-fold"):
        with pytest.raises(openai.BadRequestError) as e:
            await c.chat.completions.create(model=name, messages=HI)
        err = e.value.body
        assert err["code"] == "model_ambiguous", name
        assert "box1/deepseek-r1:1.5b" in err["message"]
        assert "box2/deepseek-r1:1.5b" in err["message"]
    assert upstream_state.requests == [] and len(state.requests) == seen
    # A name only DeepSeek's pattern claims still goes there.
    assert gw.resolve("deepseek-r1:7b").provider.name == "deepseek"
    config["models"] = {"deepseek-r1:1.5b": "box1/deepseek-r1:1.5b"}
    base, gw = make_gateway(config)
    await gw.discovery.run()
    raw = await client(base, "none").chat.completions.with_raw_response.create(
        model="deepseek-r1:1.5b", messages=HI)
    assert raw.headers["x-freeapi-provider"] == "box1"


async def test_discovered_names_never_take_static_ones(start_vendor, make_gateway):
    url, _ = start_vendor(fake_qwen)
    base, gw = make_gateway({"auth": {"keys": [GW_KEY]}, "providers": {
        "qwen": {"base_url": url + "/compatible-mode/v1", "api_keys": [fake_qwen.GOOD]}}})
    await gw.discovery.run()
    assert "deepseek-r1" in gw.providers["qwen"].discovered_ids()
    assert gw.resolve("deepseek-r1").provider.name == "deepseek"  # DeepSeek's alias stays
    assert gw.resolve("qwen/deepseek-r1").provider.name == "qwen"
    raw = await client(base, GW_KEY).chat.completions.with_raw_response.create(
        model="qwen-plus", messages=HI)
    assert raw.headers["x-freeapi-provider"] == "qwen"


async def test_discovery_falls_back_to_the_static_list(start_vendor, make_gateway):
    url, _ = start_vendor(fake_kimi)
    dead = f"http://127.0.0.1:{free_port()}/v1"
    base, gw = make_gateway({"auth": {"keys": [GW_KEY]}, "providers": {
        "kimi": {"base_url": url + "/v1", "api_keys": [fake_kimi.GOOD]},
        "moonshot-intl": {"type": "kimi", "base_url": dead, "api_keys": [fake_kimi.GOOD]}}})
    # A type configured under another name is not also started under its own.
    assert set(gw.providers) >= {"kimi", "moonshot-intl"}
    await gw.discovery.run(timeout=2)
    assert gw.providers["kimi"].discovered_ids() == ["kimi-k3-preview"]
    assert gw.providers["moonshot-intl"].discovered_ids() == []
    assert "moonshot-v1-8k" in gw.providers["moonshot-intl"].model_ids()
    # Both claim the static names; the discovered one is kimi's alone.
    assert gw.resolve("kimi-k3-preview").provider.name == "kimi"
    with pytest.raises(Exception) as e:
        gw.resolve("moonshot-v1-8k")
    assert e.value.status == 400 and "moonshot-intl/moonshot-v1-8k" in e.value.message


def test_configured_type_is_not_started_twice(make_gateway, start_vendor):
    url, _ = start_vendor(fake_kimi)
    _, gw = make_gateway({"providers": {"moonshot": {"type": "kimi", "base_url": url}}})
    assert "moonshot" in gw.providers and "kimi" not in gw.providers
    assert "glm" in gw.providers  # other built-ins still start


@pytest.mark.parametrize("section,path", [
    ({"type": "openai"}, "providers.local.base_url"),
    ({"type": "openai", "base_url": "http://x/v1", "models": ["ok", 3]}, "providers.local.models"),
    ({"type": "qwen", "stream_only_models": [None]}, "providers.local.stream_only_models"),
])
def test_generic_config_errors(make_gateway, section, path):
    with pytest.raises(ConfigError) as e:
        make_gateway({"providers": {"local": section}})
    assert path in str(e.value)


async def test_a_local_servers_answer_is_relayed_as_it_came(start_vendor, make_gateway):
    """Without think_tags nothing in a non-stream answer changes (the name asked for is
    the server's own): its bytes go out as they are, not parsed and encoded again."""
    url, _ = start_vendor(fake_local)
    base, gw = make_gateway({"providers": {"local": local(
        url, models=["llama3.2:1b"], discover=False)}})
    resp = await request(base + "/v1/chat/completions", "POST",
                         {"model": "llama3.2:1b", "messages": HI}, key="none")
    assert resp.code == 200
    # The fake writes `"key": value` with a space; the gateway's own encoding has none.
    assert resp.body.startswith(b'{"id": "chatcmpl-123", ')
    assert json.loads(resp.body)["choices"][0]["message"]["content"] == "".join(ANSWER)
