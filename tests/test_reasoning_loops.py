"""An agent's tool loop through the gateway (the official openai SDK) against fakes that
enforce today's rule: DeepSeek (https://api-docs.deepseek.com/guides/thinking_mode) and
Kimi's thinking models answer 400 when an assistant turn with tool calls comes back
without its `reasoning_content`. Every display mode must get the reasoning back to them.

Turn 1 asks for the weather ("!tools": the fakes answer with a tool call); turn 2 sends
the tool's result and gets the final answer. The client sends its assistant turn back as
it received it: plain clients keep `reasoning_content` (as DeepSeek documents), `-fold`
clients return the `<think>` block inside `content`, `-silent` clients have nothing to
return.
"""

from __future__ import annotations

import json
import uuid

import openai
import pytest

from tests.fakes import deepseek as ds
from tests.fakes import kimi
from tests.fakes.common import ANSWER as KIMI_ANSWER
from tests.fakes.common import REASONING as KIMI_REASONING
from tests.helpers import request, sdk
from tests.sibling import start_vendor  # noqa: F401 (a fixture)
from tests.test_store import REDIS_URL

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "properties": {
        "city": {"type": "string"}}}}}]
DISPLAYS = ["", "-fold", "-silent"]


class Vendor:
    """One vendor under test: the gateway in front of its fake, what the fake saw."""

    def __init__(self, base, key, model, requests, answer, reasoning):
        self.base, self.key, self.model = base, key, model
        self.requests, self.answer, self.reasoning = requests, answer, reasoning

    def client(self, base=None) -> openai.AsyncOpenAI:
        return sdk(base or self.base, key=self.key)


@pytest.fixture(params=["deepseek", "kimi"])
def vendor(request, make_gateway, upstream_state, start_vendor):
    if request.param == "deepseek":
        base, _ = make_gateway()
        return Vendor(base, ds.GOOD, "deepseek-flash", upstream_state.requests,
                      "".join(ds.ANSWER), "".join(ds.REASONING))
    url, state = start_vendor(kimi)
    base, _ = make_gateway({"providers": {"kimi": {"base_url": url + "/v1"}}})
    return Vendor(base, kimi.GOOD, "kimi-k2-thinking", state.requests, "".join(KIMI_ANSWER),
                  "".join(KIMI_REASONING))


async def ask(c: openai.AsyncOpenAI, model: str, messages: list, stream: bool, **extra):
    """The assistant message the client ends up with, as a dict it would send back."""
    if not stream:
        r = await c.chat.completions.create(model=model, messages=messages, tools=TOOLS,
                                            **extra)
        return r.choices[0].message.model_dump(exclude_none=True)
    s = await c.chat.completions.create(model=model, messages=messages, tools=TOOLS,
                                        stream=True, **extra)
    msg, calls = {"role": "assistant", "content": ""}, {}
    async for chunk in s:
        for choice in chunk.choices:
            d = choice.delta
            msg["content"] += d.content or ""
            reasoning = (d.model_extra or {}).get("reasoning_content")
            if reasoning:
                msg["reasoning_content"] = msg.get("reasoning_content", "") + reasoning
            for tc in d.tool_calls or ():
                call = calls.setdefault(tc.index, {"id": "", "type": "function",
                                                   "function": {"name": "", "arguments": ""}})
                call["id"] = tc.id or call["id"]
                if tc.function:
                    call["function"]["name"] += tc.function.name or ""
                    call["function"]["arguments"] += tc.function.arguments or ""
    if calls:
        msg["tool_calls"] = [calls[i] for i in sorted(calls)]
    return msg


def tool_result(assistant: dict) -> dict:
    return {"role": "tool", "tool_call_id": assistant["tool_calls"][0]["id"],
            "content": "sunny, 21 C"}


def answer_text(message: dict) -> str:
    """The final answer's text, after any folded reasoning block."""
    return message["content"].rsplit("</think>\n\n", 1)[-1]


def sent_assistant(v: Vendor) -> dict:
    [turn] = [m for m in v.requests[-1]["body"]["messages"] if m["role"] == "assistant"]
    return turn


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("display", DISPLAYS)
async def test_a_tool_loop_gets_its_reasoning_back_to_the_vendor(vendor, display, stream):
    c, model = vendor.client(), vendor.model + display
    messages = [{"role": "user", "content": "!tools"}]
    first = await ask(c, model, messages, stream)
    assert first["tool_calls"][0]["function"]["name"] == "get_weather"
    if display == "-fold":
        assert first["content"].startswith("<think>\n" + vendor.reasoning)
        assert "reasoning_content" not in first
    elif display == "-silent":
        assert "reasoning_content" not in first and "<think>" not in first["content"]
    else:
        assert first["reasoning_content"] == vendor.reasoning
    messages += [first, tool_result(first)]
    final = await ask(c, model, messages, stream)
    assert answer_text(final) == vendor.answer  # the vendor accepted the history
    back = sent_assistant(vendor)
    assert back["reasoning_content"] == vendor.reasoning
    assert back["tool_calls"][0]["id"] == first["tool_calls"][0]["id"]
    assert "<think>" not in (back.get("content") or "")


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("display", DISPLAYS)
async def test_an_agent_loop_of_several_tool_calls_keeps_every_turns_reasoning(
        vendor, display, stream):
    """A coding agent calls tools several times before it answers: every tool-call turn
    in its growing history goes back to the vendor with that turn's own reasoning (the
    fakes check them all). The first tool's output asks for another call ("!tools")."""
    c, model = vendor.client(), vendor.model + display
    messages = [{"role": "user", "content": "!tools"}]
    first = await ask(c, model, messages, stream)
    messages += [first, dict(tool_result(first), content="!tools")]
    second = await ask(c, model, messages, stream)
    assert second["tool_calls"][0]["id"] != first["tool_calls"][0]["id"]
    messages += [second, tool_result(second)]
    final = await ask(c, model, messages, stream)
    assert answer_text(final) == vendor.answer
    back = [m for m in vendor.requests[-1]["body"]["messages"] if m["role"] == "assistant"]
    assert [m["tool_calls"][0]["id"] for m in back] == [
        first["tool_calls"][0]["id"], second["tool_calls"][0]["id"]]
    assert [m["reasoning_content"] for m in back] == [vendor.reasoning] * 2
    assert not any("<think>" in (m.get("content") or "") for m in back)


async def test_without_its_reasoning_the_vendor_refuses_the_turn(vendor):
    """What the gateway protects clients from: a plain client that drops the field."""
    c = vendor.client()
    messages = [{"role": "user", "content": "!tools"}]
    first = await ask(c, vendor.model, messages, False)
    first.pop("reasoning_content")
    with pytest.raises(openai.BadRequestError) as info:
        await ask(c, vendor.model, messages + [first, tool_result(first)], False)
    assert "reasoning_content" in info.value.message


async def test_silent_memory_belongs_to_the_caller(make_gateway, upstream_state):
    """Another caller sending the same tool-call id gets nobody's reasoning."""
    base, _ = make_gateway()
    messages = [{"role": "user", "content": "!tools"}]
    first = await ask(sdk(base, ds.GOOD), "deepseek-flash-silent", messages, False)
    with pytest.raises(openai.BadRequestError):
        await ask(sdk(base, ds.GOOD2), "deepseek-flash-silent",
                  messages + [first, tool_result(first)], False)
    sent = upstream_state.requests[-1]["body"]["messages"][1]
    assert "reasoning_content" not in sent


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("display", DISPLAYS)
async def test_a_stored_conversation_feeds_the_reasoning_back(vendor, display, stream):
    """The client sends only its new messages; the stored tool-call turn keeps its
    reasoning (docs/api.md, Conversations)."""
    created = await request(vendor.base + "/v1/conversations", "POST", {}, key=vendor.key)
    cid = json.loads(created.body)["id"]
    c, model = vendor.client(), vendor.model + display
    first = await ask(c, model, [{"role": "user", "content": "!tools"}], stream,
                      extra_body={"conversation_id": cid})
    final = await ask(c, model, [tool_result(first)], stream,
                      extra_body={"conversation_id": cid})
    assert answer_text(final) == vendor.answer
    back = sent_assistant(vendor)
    assert back["reasoning_content"] == vendor.reasoning
    assert back["tool_calls"][0]["id"] == first["tool_calls"][0]["id"]


@pytest.fixture(params=["sqlite", "redis"])
def shared_state(request, tmp_path):
    if request.param == "sqlite":
        return {"path": str(tmp_path / "shared.db")}
    return {"redis_url": REDIS_URL, "prefix": f"freeapi-test-{uuid.uuid4().hex[:8]}:"}


@pytest.mark.parametrize("stream", [False, True])
async def test_silent_memory_is_shared_by_gateways_on_one_store(make_gateway, upstream_state,
                                                                shared_state, stream):
    """Turn 1 through one gateway, turn 2 through another (another worker or instance):
    the second finds the reasoning the first remembered."""
    one, _ = make_gateway({"state": shared_state})
    two, _ = make_gateway({"state": shared_state})
    messages = [{"role": "user", "content": "!tools"}]
    first = await ask(sdk(one), "deepseek-flash-silent", messages, stream)
    assert "reasoning_content" not in first
    final = await ask(sdk(two), "deepseek-flash-silent",
                      messages + [first, tool_result(first)], stream)
    assert final["content"] == "".join(ds.ANSWER)
    back = upstream_state.requests[-1]["body"]["messages"][1]
    assert back["reasoning_content"] == "".join(ds.REASONING)


@pytest.mark.parametrize("display", ["", "-fold"])
async def test_minimax_gets_its_reasoning_back_inline(start_vendor, make_gateway, display):
    """MiniMax wants the `<think>` block kept in `content`
    (https://platform.minimax.io/docs/api-reference/text-openai-api); the gateway showed it
    as `reasoning_content` (or folded it), so it is put back the vendor's way."""
    from tests.fakes import minimax
    url, state = start_vendor(minimax)
    base, _ = make_gateway({"providers": {"minimax": {"base_url": url + "/v1"}}})
    first = await ask(sdk(base, minimax.GOOD), "MiniMax-M2.7" + display,
                      [{"role": "user", "content": "hi"}], False)
    history = [{"role": "user", "content": "hi"},
               {"role": "assistant", "content": first["content"], "tool_calls": [
                   {"id": "call_1", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"}}]},
               {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]
    if not display:
        assert first["reasoning_content"] == minimax.THINK
        history[1]["reasoning_content"] = first["reasoning_content"]
    await ask(sdk(base, minimax.GOOD), "MiniMax-M2.7" + display, history, False)
    sent = state.requests[-1]["body"]["messages"][1]
    assert sent["content"] == f"<think>\n{minimax.THINK}\n</think>\n\n" + answer_text(first)
    assert "reasoning_content" not in sent
