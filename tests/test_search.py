"""The `-search` model suffix turns on the vendor's own web search: GLM's `web_search` tool
(sources in the answer's `web_search`), Qwen's `enable_search`, Kimi's builtin `$web_search`
whose round trip the gateway completes so the client just gets the answer."""

import json

import pytest

from tests.fakes import glm as fake_glm
from tests.fakes import kimi as fake_kimi
from tests.fakes import qwen as fake_qwen
from tests.helpers import error_of, request, stream_raw
from tests.sibling import client, collect, start_vendor  # noqa: F401 (a fixture)
from tests.test_usage import ledger

ASK = [{"role": "user", "content": "what happened today?"}]


@pytest.fixture
def gw(start_vendor, make_gateway):
    urls = {name: start_vendor(fake) for name, fake in (
        ("glm", fake_glm), ("kimi", fake_kimi), ("qwen", fake_qwen))}
    base, gateway = make_gateway({"auth": {"allow_anonymous": True}, "providers": {
        "glm": {"base_url": urls["glm"][0] + "/api/paas/v4", "api_keys": [fake_glm.GOOD]},
        "kimi": {"base_url": urls["kimi"][0] + "/v1", "api_keys": [fake_kimi.GOOD],
                 "discover": False},
        "qwen": {"base_url": urls["qwen"][0] + "/compatible-mode/v1",
                 "api_keys": [fake_qwen.GOOD], "discover": False}}})
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


async def test_search_is_a_listed_capability(gw):
    base, _, _ = gw
    caps = {m["id"]: m["capabilities"] for m in json.loads(
        (await request(base + "/v1/models", key="x")).body)["data"]}
    assert "search" in caps["glm-4.7-flash"] and "search" in caps["moonshot-v1-8k"]
    assert "search" in caps["qwen-plus"] and "search" not in caps["deepseek-flash"]
