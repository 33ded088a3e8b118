"""The `-search` model suffix turns on the vendor's own web search: GLM's `web_search` tool
(sources in the answer's `web_search`), Qwen's `enable_search`, StepFun's `web_search` tool,
Kimi's builtin `$web_search` (thinking switched off, which it needs) whose round trip the
gateway completes so the client just gets the answer."""

import json

import pytest

from tests.fakes import glm as fake_glm
from tests.fakes import kimi as fake_kimi
from tests.fakes import qwen as fake_qwen
from tests.fakes import step as fake_step
from tests.helpers import client, collect, error_of, request, stream_raw
from tests.test_usage import ledger

ASK = [{"role": "user", "content": "what happened today?"}]


@pytest.fixture
def gw(start_vendor, make_gateway):
    urls = {name: start_vendor(fake) for name, fake in (
        ("glm", fake_glm), ("kimi", fake_kimi), ("qwen", fake_qwen), ("step", fake_step))}
    base, gateway = make_gateway({"auth": {"allow_anonymous": True}, "providers": {
        "glm": {"base_url": urls["glm"][0] + "/api/paas/v4", "api_keys": [fake_glm.GOOD]},
        "kimi": {"base_url": urls["kimi"][0] + "/v1", "api_keys": [fake_kimi.GOOD],
                 "discover": False},
        "qwen": {"base_url": urls["qwen"][0] + "/compatible-mode/v1",
                 "api_keys": [fake_qwen.GOOD], "discover": False},
        "step": {"base_url": urls["step"][0] + "/v1", "api_keys": [fake_step.GOOD],
                 "discover": False}}})
    return base, gateway, {name: state for name, (_, state) in urls.items()}


async def test_kimi_search_round_trip_is_completed_by_the_gateway(gw):
    base, gateway, states = gw
    r = await client(base, "x").chat.completions.create(model="moonshot-v1-8k-search",
                                                         messages=ASK)
    assert r.choices[0].message.content == fake_kimi.SEARCHED
    assert r.choices[0].finish_reason == "stop" and r.model == "moonshot-v1-8k-search"
    # Both rounds' tokens: what the vendor bills.
    assert r.usage.total_tokens == 2 * fake_kimi.SEARCH_USAGE["total_tokens"]
    first, second = [q["body"] for q in states["kimi"].requests]
    assert first["model"] == "moonshot-v1-8k" and first["stream"] is False
    assert first["tools"] == [{"type": "builtin_function",
                               "function": {"name": "$web_search"}}]
    assert [m["role"] for m in second["messages"]] == ["user", "assistant", "tool"]
    [e] = await ledger(gateway, 1)
    assert e["model"] == "moonshot-v1-8k-search" and e["total_tokens"] == 76


async def test_kimi_search_as_a_stream(gw):
    base, _, states = gw
    out = await collect(await client(base, "x").chat.completions.create(
        model="moonshot-v1-8k-search", messages=ASK, stream=True,
        stream_options={"include_usage": True}))
    assert out["content"] == fake_kimi.SEARCHED and out["finish"] == "stop"
    assert out["usage"].total_tokens == 76
    resp, raw = await stream_raw(base, {"model": "moonshot-v1-8k-search", "messages": ASK,
                                        "stream": True}, key="x")
    assert raw.endswith(b"data: [DONE]\n\n") and b"$web_search" not in raw


async def test_glm_search_tool_and_its_sources(gw):
    base, _, states = gw
    resp = await request(base + "/v1/chat/completions", "POST",
                         {"model": "glm-4.7-flash-search", "messages": ASK}, key="x")
    data = json.loads(resp.body)
    assert resp.code == 200 and data["web_search"] == fake_glm.SOURCES
    assert data["model"] == "glm-4.7-flash-search"
    sent = states["glm"].requests[-1]["body"]
    assert sent["model"] == "glm-4.7-flash" and sent["tools"][0]["type"] == "web_search"
    assert sent["tools"][0]["web_search"]["enable"] is True


async def test_qwen_search_switch(gw):
    base, _, states = gw
    r = await client(base, "x").chat.completions.create(model="qwen-plus-search",
                                                         messages=ASK)
    assert r.choices[0].message.content
    sent = states["qwen"].requests[-1]["body"]
    assert sent["model"] == "qwen-plus" and sent["enable_search"] is True


async def test_search_on_a_vendor_without_it_is_a_clear_400(gw):
    base, _, _ = gw
    err = error_of(await request(base + "/v1/chat/completions", "POST", {
        "model": "deepseek-flash-search", "messages": ASK}, key="x"), 400)
    assert err["code"] == "search_not_supported" and "'deepseek-flash'" in err["message"]
    err = error_of(await request(base + "/v1/chat/completions", "POST", {
        "model": "no-such-model-search", "messages": ASK}, key="x"), 404)
    assert "no-such-model-search" in err["message"]


@pytest.mark.parametrize("model", ["glm-4.7-flash-search-fold", "glm-4.7-flash-fold-search"])
async def test_search_and_a_display_suffix_combine_in_either_order(gw, model):
    base, _, states = gw
    resp = await request(base + "/v1/chat/completions", "POST",
                         {"model": model, "messages": ASK}, key="x")
    assert resp.code == 200, resp.body
    assert json.loads(resp.body)["model"] == model
    sent = states["glm"].requests[-1]["body"]
    assert sent["model"] == "glm-4.7-flash" and sent["tools"][0]["type"] == "web_search"


@pytest.mark.parametrize("model", ["qwen-plus-search-search", "kimi-k2.6-search-search"])
async def test_a_doubled_search_suffix_is_refused_before_any_vendor_call(gw, model):
    base, _, states = gw
    err = error_of(await request(base + "/v1/chat/completions", "POST", {
        "model": model, "messages": ASK}, key="x"), 400)
    assert "taken once" in err["message"]
    assert all(s.requests == [] for s in states.values())


async def test_search_is_a_listed_capability(gw):
    base, _, _ = gw
    caps = {m["id"]: m["capabilities"] for m in json.loads(
        (await request(base + "/v1/models", key="x")).body)["data"]}
    assert "search" in caps["glm-4.7-flash"] and "search" in caps["moonshot-v1-8k"]
    assert "search" in caps["qwen-plus"] and "search" not in caps["deepseek-flash"]


# -- Kimi's thinking models: $web_search needs thinking disabled -----------------------------

async def test_kimi_search_switches_thinking_off_even_over_the_clients_enabled(gw):
    base, _, states = gw
    c = client(base, "x")
    for model, extra in (("kimi-k2.6-search", {"thinking": {"type": "enabled"}}),
                         ("kimi-k2.5-search", {})):
        r = await c.chat.completions.create(model=model, messages=ASK, extra_body=extra)
        assert r.choices[0].message.content == fake_kimi.SEARCHED and r.model == model
    sent = [q["body"] for q in states["kimi"].requests]
    assert len(sent) == 4 and {b["model"] for b in sent} == {"kimi-k2.6", "kimi-k2.5"}
    assert all(b["thinking"] == {"type": "disabled"} for b in sent)
    out = await collect(await c.chat.completions.create(
        model="kimi-k2.6-search", messages=ASK, stream=True))
    assert out["content"] == fake_kimi.SEARCHED and out["reasoning"] == ""
    # Without the suffix the client's thinking is the client's.
    await c.chat.completions.create(model="kimi-k2.6", messages=ASK)
    assert "thinking" not in states["kimi"].requests[-1]["body"]


async def test_kimi_search_on_an_always_thinking_model_is_a_400_naming_one_that_can(gw):
    base, _, states = gw
    for model in ("kimi-k2-thinking-search", "kimi-k2-thinking-turbo-search"):
        err = error_of(await request(base + "/v1/chat/completions", "POST", {
            "model": model, "messages": ASK}, key="x"), 400)
        assert err["code"] == "search_not_supported" and err["param"] == "model"
        assert "kimi-k2.6-search" in err["message"] and "thinking" in err["message"]
    assert states["kimi"].requests == []
    caps = {m["id"]: m["capabilities"] for m in json.loads(
        (await request(base + "/v1/models", key="x")).body)["data"]}
    assert "search" not in caps["kimi-k2-thinking"] and "search" in caps["kimi-k2.6"]


async def test_kimi_search_without_thinking_gets_the_plain_first_byte_budget(gw):
    _, gateway, _ = gw
    route = await gateway.resolve_fresh("kimi-k2.6-search")
    p, t = route.provider, route.provider.timeouts
    assert t.first_byte_reasoning > t.first_byte  # else this test could not tell them apart
    body = route.body_for({"model": "kimi-k2.6-search", "messages": ASK,
                           "thinking": {"type": "enabled"}})
    assert body["thinking"] == {"type": "disabled"}
    assert p.first_byte_timeout(route.upstream_model, body) == t.first_byte
    plain = (await gateway.resolve_fresh("kimi-k2.6")).body_for({"model": "kimi-k2.6",
                                                                 "messages": ASK})
    assert p.first_byte_timeout("kimi-k2.6", plain) == t.first_byte_reasoning


# -- StepFun's web_search tool (shape 3p, unverified) -----------------------------------------

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}


async def test_step_search_adds_the_web_search_tool_next_to_the_clients_tools(gw):
    base, _, states = gw
    r = await client(base, "x").chat.completions.create(
        model="step-3.5-flash-search", messages=ASK, tools=[WEATHER])
    assert r.choices[0].message.content == "".join(fake_step.SEARCHED)
    assert r.model == "step-3.5-flash-search"
    sent = states["step"].requests[-1]["body"]
    assert sent["model"] == "step-3.5-flash" and not sent.get("stream")
    assert sent["tools"] == [WEATHER, {"type": "web_search", "function": {
        "description": sent["tools"][1]["function"]["description"]}}]
    assert sent["tools"][1]["function"]["description"]


async def test_step_search_as_a_stream(gw):
    base, _, states = gw
    out = await collect(await client(base, "x").chat.completions.create(
        model="step-3.7-flash-search", messages=ASK, stream=True,
        stream_options={"include_usage": True}))
    assert out["content"] == "".join(fake_step.SEARCHED) and out["finish"] == "stop"
    assert out["reasoning"] == "".join(fake_step.REASONING)  # a reasoner: it still thinks
    sent = states["step"].requests[-1]["body"]
    assert sent["stream"] is True and [t["type"] for t in sent["tools"]] == ["web_search"]


async def test_step_search_keeps_a_clients_own_web_search_tool_and_adds_none(gw):
    base, _, states = gw
    mine = {"type": "web_search", "function": {"description": "search news sites"}}
    c = client(base, "x")
    await c.chat.completions.create(model="step-3.5-flash-search", messages=ASK,
                                    tools=[mine])
    assert states["step"].requests[-1]["body"]["tools"] == [mine]
    # A malformed one is the vendor's 400, passed on: the gateway does not rewrite it.
    bad = {"type": "web_search", "function": {}}
    err = error_of(await request(base + "/v1/chat/completions", "POST", {
        "model": "step-3.5-flash-search", "messages": ASK, "tools": [bad]}, key="x"), 400)
    assert "description" in err["message"]
    assert states["step"].requests[-1]["body"]["tools"] == [bad]


async def test_step_chat_models_list_search(gw):
    base, _, _ = gw
    caps = {m["id"]: m["capabilities"] for m in json.loads(
        (await request(base + "/v1/models", key="x")).body)["data"]}
    for model in ("step-3.7-flash", "step-3.5-flash", "step-1o-turbo-vision"):
        assert "search" in caps[model], model
    assert "search" not in caps["step-tts-2"] and "search" not in caps["step-asr"]
