"""Vendor churn: retired names keep working (translated), new names route by pattern,
operators add their own; DeepSeek as its docs describe it today
(https://api-docs.deepseek.com/, .../guides/thinking_mode)."""

from __future__ import annotations

import json

import openai
import pytest

from freeapi.config import ConfigError, ProviderConfig, parse_config
from freeapi.plugins import make_plugin_manager, provider_types
from freeapi.routing import Catalog
from tests.fakes import deepseek as ds
from tests.helpers import error_of, request, sdk

HI = [{"role": "user", "content": "hi"}]
ON, OFF = {"type": "enabled"}, {"type": "disabled"}


def types():
    return provider_types(make_plugin_manager())


# -- retired names ----------------------------------------------------------------------------

async def test_the_fake_refuses_retired_names_as_deepseek_does(upstream):
    resp = await request(upstream + "/chat/completions", "POST",
                         {"model": "deepseek-chat", "messages": HI})
    assert resp.code == 400 and json.loads(resp.body)["error"]["message"] == "Model Not Exist"


@pytest.mark.parametrize("name", ["deepseek_chat", "deepseek_code"])
async def test_the_fake_refuses_the_seeds_underscore_names_as_deepseek_would(upstream, name):
    resp = await request(upstream + "/chat/completions", "POST",
                         {"model": name, "messages": HI})
    assert resp.code == 400 and json.loads(resp.body)["error"]["message"] == "Model Not Exist"


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("name,thinking", [
    ("deepseek-chat", OFF), ("deepseek-coder", OFF), ("deepseek-reasoner", ON),
    ("deepseek-r1", ON), ("deepseek-think", ON),
    # The names the seed project documented (underscore), translated like their
    # hyphenated namesakes.
    ("deepseek_chat", OFF), ("deepseek_code", OFF)])
async def test_retired_names_are_translated(gateway, upstream_state, name, thinking, stream):
    c = sdk(gateway)
    raw = await c.chat.completions.with_raw_response.create(model=name, messages=HI,
                                                            stream=stream)
    assert raw.headers["x-freeapi-upstream-model"] == "deepseek-flash"
    sent = upstream_state.requests[-1]["body"]
    assert (sent["model"], sent["thinking"]) == ("deepseek-flash", thinking)
    if stream:
        chunks = [ch async for ch in raw.parse()]
        assert {ch.model for ch in chunks} == {name}
        reasoning = "".join((ch.choices[0].delta.model_extra or {}).get("reasoning_content")
                            or "" for ch in chunks if ch.choices)
    else:
        r = raw.parse()
        assert r.model == name  # the client's name, not the vendor's
        reasoning = (r.choices[0].message.model_extra or {}).get("reasoning_content") or ""
    assert reasoning == ("".join(ds.REASONING) if thinking is ON else "")


async def test_retired_and_seed_names_are_served_but_not_listed(gateway):
    listed = {m.id async for m in sdk(gateway).models.list()}
    for name in ("deepseek-chat", "deepseek-coder", "deepseek-reasoner", "deepseek_chat",
                 "deepseek_code"):
        assert not {name, name + "-fold", name + "-silent"} & listed, name
    assert "deepseek-flash" in listed


async def test_the_clients_own_thinking_wins_over_a_translation(gateway, upstream_state):
    r = await sdk(gateway).chat.completions.create(
        model="deepseek-chat", messages=HI, extra_body={"thinking": ON},
        reasoning_effort="high")
    sent = upstream_state.requests[-1]["body"]
    assert sent["thinking"] == ON and sent["reasoning_effort"] == "high"
    assert r.choices[0].message.model_extra["reasoning_content"] == "".join(ds.REASONING)


# -- current names ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["deepseek-flash", "deepseek-v4-pro", "deepseek-v4-flash"])
async def test_current_names_are_served_as_is_and_think_by_default(gateway, upstream_state,
                                                                   name):
    r = await sdk(gateway).chat.completions.create(model=name, messages=HI)
    sent = upstream_state.requests[-1]["body"]
    assert sent["model"] == name and "thinking" not in sent  # the vendor's default: on
    assert r.choices[0].message.model_extra["reasoning_content"] == "".join(ds.REASONING)
    listed = {m.id async for m in sdk(gateway).models.list()}
    assert {name, name + "-fold", name + "-silent"} <= listed


async def test_thinking_disabled_gets_no_reasoning(gateway, upstream_state):
    r = await sdk(gateway).chat.completions.create(
        model="deepseek-flash", messages=HI, extra_body={"thinking": OFF})
    assert "reasoning_content" not in (r.choices[0].message.model_extra or {})
    assert r.choices[0].message.content == "".join(ds.ANSWER)


IMAGE = [{"role": "user", "content": [
    {"type": "text", "text": "what is this?"},
    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]


async def test_the_fake_refuses_images_to_v4_pro_as_deepseek_documents(upstream):
    # "图像理解: 不支持" for deepseek-v4-pro
    # (https://api-docs.deepseek.com/zh-cn/quick_start/pricing, read 2026-12-06).
    resp = await request(upstream + "/chat/completions", "POST",
                         {"model": "deepseek-v4-pro", "messages": IMAGE})
    assert resp.code == 400
    resp = await request(upstream + "/chat/completions", "POST",
                         {"model": "deepseek-flash", "messages": IMAGE})
    assert resp.code == 200


async def test_images_to_v4_pro_get_the_gateways_400_naming_flash(gateway, upstream_state):
    sent = len(upstream_state.requests)
    with pytest.raises(openai.BadRequestError) as info:
        await sdk(gateway).chat.completions.create(model="deepseek-v4-pro", messages=IMAGE)
    err = info.value.body
    assert err["code"] == "model_not_vision" and "deepseek/deepseek-flash" in err["message"]
    assert len(upstream_state.requests) == sent  # refused before the vendor
    r = await sdk(gateway).chat.completions.create(model="deepseek-flash", messages=IMAGE)
    assert r.choices[0].message.content == "".join(ds.ANSWER)
    caps = {m["id"]: m.get("capabilities") for m in json.loads((await request(
        gateway + "/v1/models")).body)["data"]}
    assert "vision" in caps["deepseek-flash"] and "vision" not in caps["deepseek-v4-pro"]


async def test_the_default_body_limit_fits_deepseeks_48_mib_image_requests():
    # https://api-docs.deepseek.com/guides/vision: inline images count toward 48 MiB.
    assert parse_config(None, types()).max_body_size >= 48 * 1024 * 1024


# -- name patterns ----------------------------------------------------------------------------

async def test_an_unreleased_deepseek_name_reaches_the_vendor(gateway, upstream_state):
    """Pass-through mode (the client's own key): no release of the gateway needed; the
    vendor itself says whether the model exists."""
    with pytest.raises(openai.BadRequestError) as info:
        await sdk(gateway).chat.completions.create(model="deepseek-v5-preview", messages=HI)
    assert "Model Not Exist" in info.value.message
    assert upstream_state.requests[-1]["body"]["model"] == "deepseek-v5-preview"


async def test_a_pattern_routed_name_takes_display_suffixes(make_gateway, upstream_state):
    # The operator names the model the vendor serves under a new id.
    base, gw = make_gateway()
    route = gw.resolve("deepseek-v5-preview-fold")
    assert (route.provider.name, route.upstream_model, route.display) == (
        "deepseek", "deepseek-v5-preview", "fold")
    assert gw.resolve("deepseek-v5-preview-silent").display == "silent"
    with pytest.raises(openai.BadRequestError):
        await sdk(base).chat.completions.create(model="deepseek-v5-preview-fold", messages=HI)
    assert upstream_state.requests[-1]["body"]["model"] == "deepseek-v5-preview"


async def test_two_patterns_claiming_a_name_is_the_ambiguity_error(make_gateway, upstream):
    config = {"providers": {"mirror": {"type": "deepseek", "base_url": upstream}}}
    base, _ = make_gateway(config)
    err = error_of(await request(base + "/v1/chat/completions", "POST",
                                 {"model": "deepseek-v5", "messages": HI}), 400)
    assert err["code"] == "model_ambiguous" and err["param"] == "model"
    assert "deepseek/deepseek-v5" in err["message"] and "mirror/deepseek-v5" in err["message"]
    # The operator settles it: patterns off for the mirror, or a models: entry.
    config["providers"]["mirror"]["patterns"] = []
    base, gw = make_gateway(config)
    assert gw.resolve("deepseek-v5").provider.name == "deepseek"
    base, gw = make_gateway({**config, "models": {"deepseek-v5": "mirror/deepseek-v5"}})
    assert gw.resolve("deepseek-v5").provider.name == "mirror"


async def test_exact_names_and_the_models_map_win_over_patterns(make_gateway, upstream_state):
    base, gw = make_gateway({"models": {"deepseek-house": "deepseek/deepseek-v4-pro"}})
    await sdk(base).chat.completions.create(model="deepseek-house", messages=HI)
    assert upstream_state.requests[-1]["body"]["model"] == "deepseek-v4-pro"
    assert gw.resolve("deepseek-reasoner").defaults == {"thinking": ON}


async def test_configured_patterns_route_other_names(make_gateway, upstream_state):
    base, gw = make_gateway({"providers": {"deepseek": {"patterns": ["house-*"]}}})
    with pytest.raises(openai.BadRequestError):  # the fake knows no such model
        await sdk(base).chat.completions.create(model="house-7b", messages=HI)
    assert upstream_state.requests[-1]["body"]["model"] == "house-7b"
    with pytest.raises(openai.NotFoundError):  # deepseek-* was replaced
        await sdk(base).chat.completions.create(model="deepseek-v5", messages=HI)


def test_pattern_results_are_remembered_within_a_bound(monkeypatch):
    import freeapi.routing as routing
    monkeypatch.setattr(routing, "PATTERN_CACHE", 8)
    t = types()
    cfg = parse_config(None, t)
    catalog = Catalog({n: t[pc.type](pc) for n, pc in cfg.providers.items()})
    catalog.resolve("deepseek-flash")  # an exact name never looks at patterns
    assert catalog._by_pattern == {}
    for i in range(50):
        assert catalog.resolve(f"deepseek-x{i}").upstream_model == f"deepseek-x{i}"
    assert 0 < len(catalog._by_pattern) <= 8


# -- operators' translations ------------------------------------------------------------------

async def test_configured_translations(make_gateway, upstream_state):
    base, gw = make_gateway({"providers": {"deepseek": {"translations": {
        "my-old-model": {"model": "deepseek-v4-pro", "defaults": {"reasoning_effort": "max"}},
        "deepseek-chat": "deepseek-v4-flash",  # the operator's choice beats the built-in
    }}}})
    c = sdk(base)
    r = await c.chat.completions.create(model="my-old-model", messages=HI)
    assert r.model == "my-old-model"
    sent = upstream_state.requests[-1]["body"]
    assert (sent["model"], sent["reasoning_effort"]) == ("deepseek-v4-pro", "max")
    await c.chat.completions.create(model="my-old-model-fold", messages=HI,
                                    reasoning_effort="low")
    assert upstream_state.requests[-1]["body"]["reasoning_effort"] == "low"
    await c.chat.completions.create(model="deepseek-chat", messages=HI)
    sent = upstream_state.requests[-1]["body"]
    assert sent["model"] == "deepseek-v4-flash" and "thinking" not in sent


@pytest.mark.parametrize("section,where,says", [
    ({"translations": ["a"]}, "providers.deepseek.translations", "a mapping"),
    ({"translations": {"old": {}}}, "providers.deepseek.translations.old.model", "required"),
    ({"translations": {"old": {"model": "new", "fallback": 1}}},
     "providers.deepseek.translations.old.fallback", "unknown key"),
    ({"translations": {"old": {"model": "new", "defaults": {"model": "x"}}}},
     "providers.deepseek.translations.old.defaults.model", "cannot have a default"),
    ({"translations": {"old": {"model": "new", "defaults": "x"}}},
     "providers.deepseek.translations.old.defaults", "a mapping"),
    ({"patterns": "deepseek-*"}, "providers.deepseek.patterns", "a list"),
    ({"patterns": ["*"]}, "providers.deepseek.patterns[0]", "matches every name"),
])
def test_bad_translations_and_patterns_are_clear_config_errors(section, where, says):
    with pytest.raises(ConfigError) as info:
        parse_config({"providers": {"deepseek": section}}, types())
    assert f"config: {where}: " in str(info.value) and says in str(info.value)


def test_a_provider_instance_takes_the_configs_translations_and_patterns():
    from providers.deepseek import DeepSeek
    pc = ProviderConfig(name="ds", type="deepseek",
                        translations={"x": ("deepseek-flash", {})}, patterns=["ds-*"])
    p = DeepSeek(pc)
    assert p.retired["x"] == ("deepseek-flash", {}) and "deepseek-chat" in p.retired
    assert p.patterns == ("ds-*",) and DeepSeek.patterns == ("deepseek-*",)
    assert "x" not in DeepSeek.retired  # the class is not changed


async def test_a_translation_to_a_retired_name_follows_it(make_gateway, upstream_state):
    base, gw = make_gateway({"providers": {"deepseek": {"translations": {
        "team-default": {"model": "deepseek-chat", "defaults": {"max_tokens": 99}}}}}})
    route = gw.resolve("team-default")
    assert route.upstream_model == "deepseek-flash"
    assert route.defaults == {"thinking": OFF, "max_tokens": 99}


def test_translations_in_a_circle_are_a_config_error():
    from freeapi.app import Gateway
    t = types()
    cfg = parse_config({"providers": {"deepseek": {"translations": {
        "a": "b", "b": "a"}}}}, t)
    with pytest.raises(ConfigError) as info:
        Gateway(cfg, make_plugin_manager(), t)
    assert "providers.deepseek.translations." in str(info.value) and "circle" in str(info.value)


def test_the_reasoning_section_is_validated():
    t = types()
    cfg = parse_config({"reasoning": {"ttl": 600, "max_chars": 1000}}, t)
    assert (cfg.reasoning.ttl, cfg.reasoning.max_chars) == (600, 1000)
    for section, where in (({"ttl": 0}, "reasoning.ttl"), ({"max_chars": "x"},
                                                           "reasoning.max_chars"),
                           ({"size": 1}, "reasoning.size")):
        with pytest.raises(ConfigError) as info:
            parse_config({"reasoning": section}, t)
        assert f"config: {where}: " in str(info.value)
