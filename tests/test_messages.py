"""POST /v1/messages, driven by the official `anthropic` SDK
against the fake DeepSeek: translated to its chat completions (`anthropic_base_url:
false`), and passed through to its native Anthropic endpoint (the default)."""

from __future__ import annotations

import json

import anthropic
import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from tests.fakes.deepseek import ANSWER, DEAD, GOOD, GOOD2, REASONING
from tests.helpers import assert_no_keys, request

TEXT = "".join(ANSWER)
TRANSLATED = {"providers": {"deepseek": {"anthropic_base_url": False}}}
WEATHER = {"name": "get_weather", "description": "The weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                            "required": ["city"]}}


def client(base: str, key: str = GOOD, **kw) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=base, api_key=key, max_retries=0, **kw)


def user(text: str) -> list:
    return [{"role": "user", "content": text}]


async def raw_stream(base: str, body: dict, key: str = GOOD) -> tuple[int, list[tuple]]:
    """POST a streamed Messages request; (status, [(event name, data)])."""
    req = HTTPRequest(base + "/v1/messages?beta=true", method="POST",
                      body=json.dumps(dict(body, stream=True)), request_timeout=10,
                      headers={"x-api-key": key, "anthropic-version": "2023-06-01",
                               "Content-Type": "application/json"})
    resp = await AsyncHTTPClient().fetch(req, raise_error=False)
    assert_no_keys(resp.body)
    events = []
    for block in resp.body.decode().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in lines:
            events.append((lines["event"], json.loads(lines["data"])))
    return resp.code, events


def check_order(events: list[tuple]) -> list[dict]:
    """Anthropic's event grammar: one message_start first, then blocks each started,
    delta'd and stopped before the next, then message_delta and message_stop. Returns
    the blocks as assembled."""
    names = [n for n, _ in events if n != "ping"]
    assert names[0] == "message_start" and names.count("message_start") == 1
    assert names[-2:] == ["message_delta", "message_stop"]
    blocks, open_index = [], None
    for name, data in events:
        if name == "content_block_start":
            assert open_index is None, "a block opened before the last one was stopped"
            open_index = data["index"]
            assert open_index == len(blocks)
            blocks.append(dict(data["content_block"]))
        elif name == "content_block_delta":
            assert data["index"] == open_index
            d, block = data["delta"], blocks[open_index]
            if d["type"] == "text_delta":
                block["text"] += d["text"]
            elif d["type"] == "thinking_delta":
                block["thinking"] += d["thinking"]
            elif d["type"] == "signature_delta":
                block["signature"] = d["signature"]
            elif d["type"] == "input_json_delta":
                block["partial"] = block.get("partial", "") + d["partial_json"]
        elif name == "content_block_stop":
            assert data["index"] == open_index
            open_index = None
    assert open_index is None
    return blocks


# -- translated to chat completions ----------------------------------------------------------

async def test_translated_message_from_a_chat_vendor(make_gateway, upstream_state):
    base, _ = make_gateway(TRANSLATED)
    msg = await client(base).messages.create(
        model="deepseek-chat", max_tokens=64, system="Be brief.", messages=user("hi"),
        stop_sequences=["END"], extra_body={"temperature": 0.5})
    assert msg.type == "message" and msg.role == "assistant" and msg.model == "deepseek-chat"
    assert [b.type for b in msg.content] == ["text"] and msg.content[0].text == TEXT
    assert msg.stop_reason == "end_turn"
    # The fake's usage: 11 prompt tokens of which 8 cached, 7 completion tokens.
    assert (msg.usage.input_tokens, msg.usage.cache_read_input_tokens,
            msg.usage.output_tokens) == (3, 8, 7)
    sent = upstream_state.requests[-1]
    assert sent["path"] == "/chat/completions"
    assert sent["body"]["messages"] == [{"role": "system", "content": "Be brief."},
                                        {"role": "user", "content": "hi"}]
    assert (sent["body"]["max_tokens"], sent["body"]["stop"],
            sent["body"]["temperature"]) == (64, ["END"], 0.5)


async def test_translated_stream_keeps_anthropic_event_order(make_gateway):
    base, _ = make_gateway(TRANSLATED)
    status, events = await raw_stream(base, {"model": "deepseek-reasoner", "max_tokens": 64,
                                             "messages": user("hi")})
    assert status == 200
    blocks = check_order(events)
    assert [b["type"] for b in blocks] == ["thinking", "text"]
    assert blocks[0]["thinking"] == "".join(REASONING) and blocks[0]["signature"]
    assert blocks[1]["text"] == TEXT
    delta = [d for n, d in events if n == "message_delta"][0]
    assert delta["delta"]["stop_reason"] == "end_turn"
    assert delta["usage"]["output_tokens"] == 11


async def test_translated_stream_through_the_sdk(make_gateway):
    base, _ = make_gateway(TRANSLATED)
    async with client(base).messages.stream(model="deepseek-chat", max_tokens=64,
                                            messages=user("hi")) as stream:
        text = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    assert text == TEXT and final.content[0].text == TEXT
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 7


async def test_translated_tool_loop(make_gateway, upstream_state):
    base, _ = make_gateway(TRANSLATED)
    c = client(base)
    first = await c.messages.create(model="deepseek-v4-pro", max_tokens=64, tools=[WEATHER],
                                    tool_choice={"type": "auto"}, messages=user("!tools"))
    assert first.stop_reason == "tool_use"
    assert [b.type for b in first.content] == ["thinking", "tool_use"]
    assert first.content[0].thinking == "".join(REASONING) and first.content[0].signature
    call = first.content[1]
    assert (call.name, call.input) == ("get_weather", {"city": "Paris"})
    sent = upstream_state.requests[-1]["body"]
    assert sent["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": WEATHER["description"],
        "parameters": WEATHER["input_schema"]}}]
    assert sent["tool_choice"] == "auto"
    history = user("!tools") + [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                      "content": "18 degrees, sunny"}]}]
    second = await c.messages.create(model="deepseek-v4-pro", max_tokens=64, tools=[WEATHER],
                                     messages=history)
    assert second.content[-1].text == TEXT and second.stop_reason == "end_turn"
    sent = upstream_state.requests[-1]["body"]["messages"]
    assert sent[-2]["role"] == "assistant" and sent[-2]["tool_calls"][0]["id"] == call.id
    assert sent[-2]["reasoning_content"] == "".join(REASONING)  # from the thinking block
    assert json.loads(sent[-2]["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris"}
    assert sent[-1] == {"role": "tool", "tool_call_id": call.id, "content": "18 degrees, sunny"}


@pytest.mark.parametrize("stream", [False, True])
async def test_dropped_thinking_comes_back_for_the_vendor(make_gateway, upstream_state,
                                                          stream):
    # Claude Code drops thinking blocks it cannot verify; DeepSeek then answers 400
    # ("reasoning_content ... must be passed back"). The gateway kept it by tool-call id.
    base, _ = make_gateway(TRANSLATED)
    c = client(base)
    if stream:
        _, events = await raw_stream(base, {"model": "deepseek-v4-pro", "max_tokens": 64,
                                            "tools": [WEATHER], "messages": user("!tools")})
        call = check_order(events)[-1]
        call_id = call["id"]
    else:
        first = await c.messages.create(model="deepseek-v4-pro", max_tokens=64,
                                        tools=[WEATHER], messages=user("!tools"))
        call_id = first.content[-1].id
    history = user("!tools") + [
        {"role": "assistant", "content": [{"type": "tool_use", "id": call_id,
                                           "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call_id,
                                      "content": "18 degrees"}]}]
    second = await c.messages.create(model="deepseek-v4-pro", max_tokens=64, tools=[WEATHER],
                                     messages=history)
    assert second.content[-1].text == TEXT
    sent = upstream_state.requests[-1]["body"]["messages"]
    assert sent[-2]["reasoning_content"] == "".join(REASONING)
    # Another caller cannot pull that reasoning with the same tool-call id.
    other = client(base, key=GOOD2)
    with pytest.raises(anthropic.BadRequestError):
        await other.messages.create(model="deepseek-v4-pro", max_tokens=64, tools=[WEATHER],
                                    messages=history)


async def test_translated_tool_call_streams_input_json(make_gateway):
    base, _ = make_gateway(TRANSLATED)
    status, events = await raw_stream(base, {"model": "deepseek-chat", "max_tokens": 64,
                                             "tools": [WEATHER], "messages": user("!tools")})
    blocks = check_order(events)
    assert [b["type"] for b in blocks] == ["tool_use"]
    assert blocks[0]["id"].startswith("call_") and blocks[0]["name"] == "get_weather"
    assert json.loads(blocks[0]["partial"]) == {"city": "Paris"}
    assert [d for n, d in events if n == "message_delta"][0]["delta"]["stop_reason"] == \
        "tool_use"


async def test_ping_while_the_vendor_is_silent(make_gateway):
    base, _ = make_gateway({**TRANSLATED, "server": {"keepalive_interval": 0.1}})
    status, events = await raw_stream(base, {"model": "deepseek-chat", "max_tokens": 64,
                                             "messages": user("!queued 3")})
    assert status == 200
    names = [n for n, _ in events]
    assert names[0] == "ping" and ("ping", {"type": "ping"}) in events
    check_order(events)


async def test_failure_after_the_first_byte_ends_with_an_error_event(make_gateway):
    base, _ = make_gateway(TRANSLATED)
    status, events = await raw_stream(base, {"model": "deepseek-chat", "max_tokens": 64,
                                             "messages": user("!cut")})
    assert status == 200
    name, data = events[-1]
    assert name == "error" and data["type"] == "error"
    assert data["error"]["type"] == "api_error" and "incomplete" in data["error"]["message"]
    assert "message_stop" not in [n for n, _ in events]


async def test_system_messages_inside_messages(make_gateway, upstream_state):
    base, _ = make_gateway(TRANSLATED)
    resp = await request(base + "/v1/messages", "POST", {
        "model": "deepseek-chat", "max_tokens": 64, "system": [{"type": "text", "text": "A"}],
        "messages": [{"role": "system", "content": "B"}, {"role": "user", "content": "hi"},
                     {"role": "assistant", "content": "yes?"},
                     {"role": "system", "content": "C"}, {"role": "user", "content": "go"}]})
    assert resp.code == 200, resp.body
    assert upstream_state.requests[-1]["body"]["messages"] == [
        {"role": "system", "content": "A\n\nB"}, {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "yes?"}, {"role": "system", "content": "C"},
        {"role": "user", "content": "go"}]


# -- native pass-through ---------------------------------------------------------------------

async def test_native_pass_through_rewrites_the_model(make_gateway, upstream_state):
    base, gw = make_gateway({"models": {"ds": "deepseek/deepseek-chat"}})
    msg = await client(base).messages.create(model="ds", max_tokens=64, messages=user("hi"))
    assert msg.model == "ds" and msg.content[0].text == TEXT and msg.id == "msg_fake_1"
    sent = upstream_state.requests[-1]
    assert sent["path"] == "/anthropic/v1/messages"
    assert sent["body"]["model"] == "deepseek-flash" and sent["headers"]["X-Api-Key"] == GOOD
    # The retired name's translation defaults reach the native request too.
    assert sent["body"]["thinking"] == {"type": "disabled"}
    assert "Authorization" not in sent["headers"]
    await gw.store.flush()
    row = (await gw.store.ledger())[-1]
    assert (row["endpoint"], row["model"], row["upstream_model"]) == ("messages", "ds",
                                                                      "deepseek-flash")
    assert (row["prompt_tokens"], row["cached_tokens"], row["completion_tokens"]) == (11, 8, 7)


async def test_native_stream_and_tool_loop(make_gateway, upstream_state):
    base, gw = make_gateway({"models": {"ds": "deepseek/deepseek-v4-pro"}})
    status, events = await raw_stream(base, {"model": "ds", "max_tokens": 64,
                                             "tools": [WEATHER], "messages": user("!tools")})
    assert status == 200
    blocks = check_order(events)
    assert [b["type"] for b in blocks] == ["thinking", "tool_use"]
    assert events[0][1]["message"]["model"] == "ds"
    assert json.loads(blocks[1]["partial"]) == {"city": "Paris"}
    assert upstream_state.requests[-1]["path"] == "/anthropic/v1/messages"
    c = client(base)
    history = user("!tools") + [
        {"role": "assistant", "content": [dict(b, input={"city": "Paris"}) if
                                          b["type"] == "tool_use" else b for b in blocks]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": blocks[1]["id"],
                                      "content": "18 degrees"}]}]
    for b in history[1]["content"]:
        b.pop("partial", None)
    final = await c.messages.create(model="ds", max_tokens=64, messages=history)
    assert final.content[-1].text == TEXT
    # Passed through as the client sent it, thinking block and signature included.
    assert upstream_state.requests[-1]["body"]["messages"] == history
    await gw.store.flush()
    row = (await gw.store.ledger())[0]
    assert row["stream"] and row["error"] is None and row["completion_tokens"] == 7


async def test_native_vendor_error_is_anthropic_shaped(make_gateway):
    base, _ = make_gateway({"models": {"ds": "deepseek/deepseek-chat"}})
    with pytest.raises(anthropic.RateLimitError) as info:
        await client(base).messages.create(model="ds", max_tokens=64,
                                           messages=user("!status 429"))
    assert info.value.body["type"] == "error"
    assert info.value.body["error"]["type"] == "rate_limit_error"


# -- errors ----------------------------------------------------------------------------------

async def test_bad_body_is_a_400_in_anthropic_shape(make_gateway):
    base, _ = make_gateway()
    with pytest.raises(anthropic.BadRequestError) as info:
        await client(base).messages.create(model="deepseek-chat", max_tokens=0,
                                           messages=user("hi"))
    assert info.value.body == {"type": "error", "error": {
        "type": "invalid_request_error",
        "message": "max_tokens: Field required (an integer of at least 1)."}}
    resp = await request(base + "/v1/messages", "POST", b"{not json")
    body = json.loads(resp.body)
    assert resp.code == 400 and body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"


async def test_bad_gateway_key_is_401_authentication_error(make_gateway):
    base, _ = make_gateway({"auth": {"keys": ["gw-team-key-0001"]}})
    with pytest.raises(anthropic.AuthenticationError) as info:
        await client(base, key="gw-wrong-key").messages.create(
            model="deepseek-chat", max_tokens=8, messages=user("hi"))
    assert info.value.body["error"]["type"] == "authentication_error"
    # Claude Code's ANTHROPIC_AUTH_TOKEN arrives as a bearer token.
    ok = anthropic.AsyncAnthropic(base_url=base, auth_token="gw-team-key-0001", max_retries=0)
    with pytest.raises(anthropic.InternalServerError) as info:  # past auth: no vendor key
        await ok.messages.create(model="deepseek-chat", max_tokens=8, messages=user("hi"))
    assert info.value.status_code == 503 and "api_keys" in info.value.body["error"]["message"]


async def test_unknown_model_is_404_not_found_error(make_gateway):
    base, _ = make_gateway()
    with pytest.raises(anthropic.NotFoundError) as info:
        await client(base).messages.create(model="claude-nope", max_tokens=8,
                                           messages=user("hi"))
    assert info.value.body["error"]["type"] == "not_found_error"


async def test_vendor_rejecting_the_key_is_anthropic_shaped(make_gateway):
    base, _ = make_gateway(TRANSLATED)
    with pytest.raises(anthropic.AuthenticationError) as info:
        await client(base, key=DEAD).messages.create(model="deepseek-chat", max_tokens=8,
                                                     messages=user("hi"))
    assert DEAD not in json.dumps(info.value.body)


# -- model names agents send -----------------------------------------------------------------

async def test_glob_model_map_routes_claude_names(make_gateway, upstream_state):
    base, _ = make_gateway({**TRANSLATED, "models": {
        "claude-*-haiku-*": "deepseek/deepseek-flash", "claude-*": "deepseek/deepseek-v4-pro",
        "claude-3-5-haiku-exact": "deepseek/deepseek-v4-pro"}})
    c = client(base)
    msg = await c.messages.create(model="claude-3-5-haiku-20241022", max_tokens=8,
                                  messages=user("hi"))
    assert msg.model == "claude-3-5-haiku-20241022"
    assert upstream_state.requests[-1]["body"]["model"] == "deepseek-flash"
    await c.messages.create(model="claude-sonnet-x", max_tokens=8, messages=user("hi"))
    assert upstream_state.requests[-1]["body"]["model"] == "deepseek-v4-pro"
    # An exact name wins over the globs that also match it.
    await c.messages.create(model="claude-3-5-haiku-exact", max_tokens=8, messages=user("hi"))
    assert upstream_state.requests[-1]["body"]["model"] == "deepseek-v4-pro"


async def test_server_tools_are_dropped_and_named(make_gateway, upstream_state):
    base, _ = make_gateway(TRANSLATED)
    resp = await request(base + "/v1/messages", "POST", {
        "model": "deepseek-flash", "max_tokens": 8, "messages": user("hi"),
        "tools": [WEATHER, {"type": "web_search_20250305", "name": "web\nsearch"}]},
        headers={"x-api-key": GOOD})
    assert resp.code == 200, resp.body
    assert resp.headers["x-freeapi-dropped-tools"] == "web?search"
    assert [t["function"]["name"] for t in upstream_state.requests[-1]["body"]["tools"]] == \
        ["get_weather"]
