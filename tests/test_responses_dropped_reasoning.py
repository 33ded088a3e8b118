"""A Responses client (the official `openai` SDK's responses API) that sends back only the
`function_call` item of a tool-call answer, not the `reasoning` item before it: many
clients do, and OpenAI's own API tolerates it, but DeepSeek answers 400 ("The
reasoning_content in the thinking mode must be passed back", tests/fakes/deepseek.py). The
gateway remembers the reasoning of tool-call answers and puts it back, translated or passed
through to a vendor's own Responses API, streamed or not, stored or not.

Also who that memory belongs to: callers with no credentials have none (one would get
another's reasoning), and a streamed answer is filed under the same key as a non-stream
one (caller, call id, name and arguments; never the id alone).
"""

from __future__ import annotations

import json

import anthropic
import openai
import pytest

from tests.fakes import agent_vendor as agent
from tests.fakes import deepseek as ds
from tests.helpers import error_of, request, sdk, sse_events
from tests.test_responses import vendor  # noqa: F401 (a fixture: the agent vendor)

REASONING, ANSWER = "".join(ds.REASONING), "".join(ds.ANSWER)
TOOLS = [{"type": "function", "name": "get_weather", "description": "Weather of a city.",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]
TRANSLATED = {"providers": {"deepseek": {"anthropic_base_url": False}}}
ANONYMOUS = {"auth": {"allow_anonymous": True}, "providers": {"deepseek": {
    "api_keys": [ds.GOOD], "anthropic_base_url": False}}}


def user(text: str) -> dict:
    return {"role": "user", "content": text}


async def respond(c: openai.AsyncOpenAI, stream: bool, **kw):
    """The Response a client ends up with (the final event's, when streamed)."""
    if not stream:
        return await c.responses.create(**kw)
    final = None
    async for ev in await c.responses.create(stream=True, **kw):
        if ev.type == "response.completed":
            final = ev.response
    return final


def returned(first, output: str = "sunny") -> list:
    """What a client that drops reasoning items sends back: the function calls and their
    results, no reasoning item."""
    calls = [o for o in first.output if o.type == "function_call"]
    assert calls and any(o.type == "reasoning" for o in first.output)
    return [{"type": "function_call", "call_id": c.call_id, "name": c.name,
             "arguments": c.arguments} for c in calls] + [
        {"type": "function_call_output", "call_id": c.call_id, "output": output}
        for c in calls]


def tool_turn(body: dict) -> dict:
    [turn] = [m for m in body["messages"] if m.get("tool_calls")]
    return turn


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("mode", ["store", "no-store", "previous_response_id"])
async def test_a_function_call_returned_without_its_reasoning_gets_it_back(
        make_gateway, upstream_state, stream, mode):
    """Translated to DeepSeek's chat completions. `previous_response_id`: the tool-call
    answer was not stored (store: false), so the client continues from an earlier stored
    response and sends the calls again, without their reasoning."""
    base, _ = make_gateway()
    c = sdk(base, ds.GOOD)
    extra: dict = {"store": False} if mode != "store" else {}
    if mode == "previous_response_id":
        earlier = await c.responses.create(model="deepseek-flash", input="Hello")
        extra["previous_response_id"] = earlier.id
    first = await respond(c, stream, model="deepseek-flash", input=[user("!tools")],
                          tools=TOOLS, **extra)
    final = await respond(c, stream, model="deepseek-flash", tools=TOOLS,
                          input=[user("!tools")] + returned(first), **extra)
    assert final.output_text == ANSWER
    turn = tool_turn(upstream_state.requests[-1]["body"])
    assert turn["reasoning_content"] == REASONING
    assert turn["tool_calls"][0]["id"] == returned(first)[0]["call_id"]


@pytest.mark.parametrize("stream", [False, True])
async def test_a_pass_through_gets_the_vendors_own_reasoning_item_back(
        make_gateway, vendor, stream):  # noqa: F811 (the fixture imported above)
    """A vendor's own Responses API (`responses_base_url`): the reasoning item it sent goes
    back to it as it came (its id and encrypted_content too), before the call."""
    key = "gw-key-native-0001"
    base, _ = make_gateway({"auth": {"keys": [key]}, "providers": {"agent": {
        "type": "openai", "base_url": vendor.url, "api_keys": [agent.KEY],
        "models": [agent.MODEL], "discover": False, "responses_base_url": "/v1"}}})
    c = sdk(base, key)
    first = await respond(c, stream, model="agent/thinker", input=[user("weather?")],
                          tools=TOOLS)
    given = [o.model_dump(exclude_none=True) for o in first.output]
    final = await respond(c, stream, model="agent/thinker", tools=TOOLS,
                          input=[user("weather?")] + returned(first))
    assert final.output_text == agent.NATIVE_TEXT and vendor.rejected == []
    sent = vendor.native_requests[-1]["input"]
    assert [i.get("type", "message") for i in sent] == [
        "message", "reasoning", "function_call", "function_call_output"]
    assert sent[1] == vendor_item(given[0])
    assert sent[1]["encrypted_content"] == "opaque-1"


def vendor_item(item: dict) -> dict:
    # The SDK adds nothing the vendor did not send, but drops nothing either.
    return {k: v for k, v in item.items() if v is not None}


async def test_the_vendor_still_refuses_a_caller_that_dropped_reasoning_nobody_kept(
        make_gateway, upstream_state):
    """The other side: a call whose reasoning was never remembered (another caller's)
    still reaches DeepSeek without it, and its 400 comes back in the Responses shape."""
    base, _ = make_gateway()
    first = await sdk(base, ds.GOOD).responses.create(model="deepseek-flash",
                                                      input=[user("!tools")], tools=TOOLS)
    with pytest.raises(openai.BadRequestError) as e:
        await sdk(base, ds.GOOD2).responses.create(
            model="deepseek-flash", tools=TOOLS, input=[user("!tools")] + returned(first))
    assert "reasoning_content" in e.value.message
    assert "reasoning_content" not in tool_turn(upstream_state.requests[-1]["body"])


# -- who the memory belongs to --------------------------------------------------------------

async def _anonymous_answer(base: str, door: str, stream: bool) -> dict:
    """Caller A, with no credentials: a tool-call answer through `door`; the call as a
    client would send it back, in chat-completions form."""
    if door == "responses":
        resp = await request(base + "/v1/responses", "POST", {
            "model": "deepseek-flash", "input": [user("!tools")], "tools": TOOLS,
            "stream": stream}, key=None)
        assert resp.code == 200, resp.body
        if stream:
            done = [json.loads(e) for e in sse_events(resp.body)][-1]["response"]
        else:
            done = json.loads(resp.body)
        [call] = [o for o in done["output"] if o["type"] == "function_call"]
        return {"id": call["call_id"], "name": call["name"],
                "input": json.loads(call["arguments"])}
    resp = await request(base + "/v1/messages", "POST", {
        "model": "deepseek-flash", "max_tokens": 64, "messages": [user("!tools")],
        "tools": [{"name": "get_weather", "input_schema": TOOLS[0]["parameters"]}],
        "stream": stream}, key=None, headers={"anthropic-version": "2023-06-01"})
    assert resp.code == 200, resp.body
    if stream:
        starts = [json.loads(e) for e in sse_events(resp.body)]
        block = [e["content_block"] for e in starts if e["type"] == "content_block_start"
                 and e["content_block"]["type"] == "tool_use"][0]
        return {"id": block["id"], "name": block["name"], "input": {"city": "Paris"}}
    block = [b for b in json.loads(resp.body)["content"] if b["type"] == "tool_use"][0]
    return {"id": block["id"], "name": block["name"], "input": block["input"]}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("door", ["messages", "responses"])
async def test_an_anonymous_caller_never_receives_another_anonymous_callers_reasoning(
        make_gateway, upstream_state, door, stream):
    """Callers with no credentials are all one owner to the gateway, so it keeps no
    reasoning for them: caller B, sending back the very call A got, gets none of A's."""
    base, _ = make_gateway(ANONYMOUS)
    call = await _anonymous_answer(base, door, stream)
    if door == "responses":
        resp = await request(base + "/v1/responses", "POST", {
            "model": "deepseek-flash", "tools": TOOLS, "input": [
                user("!tools"),
                {"type": "function_call", "call_id": call["id"], "name": call["name"],
                 "arguments": json.dumps(call["input"])},
                {"type": "function_call_output", "call_id": call["id"], "output": "x"}]},
            key=None)
    else:
        resp = await request(base + "/v1/messages", "POST", {
            "model": "deepseek-flash", "max_tokens": 64, "messages": [
                user("!tools"),
                {"role": "assistant", "content": [dict(call, type="tool_use")]},
                {"role": "user", "content": [{"type": "tool_result",
                                              "tool_use_id": call["id"], "content": "x"}]}],
            "tools": [{"name": "get_weather", "input_schema": TOOLS[0]["parameters"]}]},
            key=None, headers={"anthropic-version": "2023-06-01"})
    assert resp.code == 400, resp.body  # DeepSeek's refusal: nothing was put back
    assert "reasoning_content" not in tool_turn(upstream_state.requests[-1]["body"])


async def test_silent_with_tools_and_no_credentials_is_refused_up_front(make_gateway,
                                                                        upstream_state):
    """`-silent` hides the reasoning the vendor wants back; with no memory for a caller
    without credentials, a tool loop could not go on after the tool ran: the gateway says
    so before anything is sent. Without tools (or without -silent) it answers."""
    base, _ = make_gateway(ANONYMOUS)
    body = {"model": "deepseek-flash-silent", "messages": [user("!tools")],
            "tools": [{"type": "function", "function": {
                "name": "get_weather", "parameters": TOOLS[0]["parameters"]}}]}
    err = error_of(await request(base + "/v1/chat/completions", "POST", body, key=None), 401)
    assert err["code"] == "missing_api_key" and "-silent" in err["message"]
    assert upstream_state.requests == []
    plain = await request(base + "/v1/chat/completions", "POST",
                          dict(body, model="deepseek-flash"), key=None)
    assert plain.code == 200, plain.body
    chat = await request(base + "/v1/chat/completions", "POST",
                         {"model": "deepseek-flash-silent", "messages": [user("Hi")]},
                         key=None)
    assert chat.code == 200 and "reasoning_content" not in \
        json.loads(chat.body)["choices"][0]["message"]


@pytest.mark.parametrize("stream", [False, True])
async def test_a_streamed_answer_is_remembered_under_the_full_key_like_a_non_stream_one(
        make_gateway, upstream_state, stream):
    """The messages door: a turn that only reuses the call id (another session, with
    other arguments) gets nothing back; the call as it was gets its reasoning."""
    base, _ = make_gateway(TRANSLATED)
    c = anthropic.AsyncAnthropic(base_url=base, api_key=ds.GOOD, max_retries=0)
    tools = [{"name": "get_weather", "input_schema": TOOLS[0]["parameters"]}]
    if stream:
        async with c.messages.stream(model="deepseek-flash", max_tokens=64, tools=tools,
                                     messages=[user("!tools")]) as s:
            first = await s.get_final_message()
    else:
        first = await c.messages.create(model="deepseek-flash", max_tokens=64, tools=tools,
                                        messages=[user("!tools")])
    call = first.content[-1]
    assert call.type == "tool_use" and call.input == {"city": "Paris"}

    def history(city: str) -> list:
        return [user("!tools"),
                {"role": "assistant", "content": [{"type": "tool_use", "id": call.id,
                                                   "name": call.name,
                                                   "input": {"city": city}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                              "content": "sunny"}]}]

    with pytest.raises(anthropic.BadRequestError):
        await c.messages.create(model="deepseek-flash", max_tokens=64, tools=tools,
                                messages=history("Rome"))
    assert "reasoning_content" not in tool_turn(upstream_state.requests[-1]["body"])
    again = await c.messages.create(model="deepseek-flash", max_tokens=64, tools=tools,
                                    messages=history("Paris"))
    assert again.content[-1].text == ANSWER
    assert tool_turn(upstream_state.requests[-1]["body"])["reasoning_content"] == REASONING


async def test_malformed_function_calls_get_the_dialects_400_not_a_crash(make_gateway):
    """The memory looks at input items before the dialect checks them: odd items (not
    objects, a numeric call_id, arguments nested past what json takes) still get the
    Responses door's 400."""
    base, _ = make_gateway()
    deep = "[" * 100_000 + "]" * 100_000
    for items in ([7, {"type": "function_call", "call_id": 5, "name": "f", "arguments": ""}],
                  [{"type": "function_call", "call_id": "c", "name": "f", "arguments": deep},
                   {"type": "function_call_output", "call_id": "c", "output": {"x": 1}}],
                  [{"type": "function_call", "call_id": "c", "name": ["f"],
                    "arguments": {"a": 1}}]):
        resp = await request(base + "/v1/responses", "POST",
                             {"model": "deepseek-flash", "input": items}, key=ds.GOOD)
        assert error_of(resp, 400)["param"].startswith("input")
