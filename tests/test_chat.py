"""The official openai SDK against the gateway in front of the fake DeepSeek."""

import asyncio

import openai
import pytest

from tests.fakes.deepseek import ANSWER, GOOD, REASONING, REASONER_USAGE, USAGE

HI = [{"role": "user", "content": "hi"}]


def client(base, key=GOOD):
    return openai.AsyncOpenAI(base_url=base + "/v1", api_key=key, max_retries=0)


async def test_non_stream(gateway, upstream_state):
    r = await client(gateway).chat.completions.create(model="deepseek-chat", messages=HI)
    assert r.object == "chat.completion"
    assert r.choices[0].message.content == "".join(ANSWER)
    assert r.system_fingerprint == "fp_fake_prompt_cache"
    assert r.usage.prompt_tokens == USAGE["prompt_tokens"]
    assert r.usage.model_extra["prompt_cache_hit_tokens"] == 8
    assert upstream_state.requests[0]["body"]["messages"] == HI


async def test_stream(gateway):
    stream = await client(gateway).chat.completions.create(
        model="deepseek-chat", messages=HI, stream=True)
    text, finish, usage = "", None, None
    async for chunk in stream:
        assert chunk.object == "chat.completion.chunk"
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        usage = chunk.usage or usage
    assert text == "".join(ANSWER) and finish == "stop"
    assert usage.total_tokens == USAGE["total_tokens"]


async def test_stream_include_usage(gateway):
    stream = await client(gateway).chat.completions.create(
        model="deepseek-reasoner", messages=HI, stream=True,
        stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == REASONER_USAGE["completion_tokens"]
    reasoning = "".join(c.choices[0].delta.model_extra.get("reasoning_content") or ""
                        for c in chunks if c.choices)
    assert reasoning == "".join(REASONING)


async def test_sync_sdk(gateway, io_loop):
    def call():
        c = openai.OpenAI(base_url=gateway + "/v1", api_key=GOOD, max_retries=0)
        r = c.chat.completions.create(model="deepseek-chat", messages=HI)
        s = c.chat.completions.create(model="deepseek-chat", messages=HI, stream=True)
        return r.choices[0].message.content, "".join(
            ch.choices[0].delta.content or "" for ch in s if ch.choices)
    full, streamed = await asyncio.get_running_loop().run_in_executor(None, call)
    assert full == streamed == "".join(ANSWER)


@pytest.mark.parametrize("model", ["deepseek-r1", "deepseek-think"])
async def test_aliases(gateway, upstream_state, model):
    r = await client(gateway).chat.completions.create(model=model, messages=HI)
    sent = upstream_state.requests[-1]["body"]
    assert (sent["model"], sent["thinking"]) == ("deepseek-flash", {"type": "enabled"})
    assert r.model == model
    assert r.choices[0].message.model_extra["reasoning_content"] == "".join(REASONING)


async def test_fold_and_silent(gateway):
    c = client(gateway)
    r = await c.chat.completions.create(model="deepseek-reasoner-fold", messages=HI)
    assert r.choices[0].message.content == (
        "<think>\n" + "".join(REASONING) + "\n</think>\n\n" + "".join(ANSWER))
    s = await c.chat.completions.create(model="deepseek-r1-fold", messages=HI, stream=True)
    text = "".join([ch.choices[0].delta.content or "" async for ch in s if ch.choices])
    assert text == r.choices[0].message.content
    r = await c.chat.completions.create(model="deepseek-reasoner-silent", messages=HI)
    assert r.choices[0].message.content == "".join(ANSWER)
    assert "reasoning_content" not in (r.choices[0].message.model_extra or {})
    s = await c.chat.completions.create(model="deepseek-reasoner-silent", messages=HI,
                                        stream=True)
    chunks = [ch async for ch in s]
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == \
        "".join(ANSWER)
    assert not any((ch.choices[0].delta.model_extra or {}).get("reasoning_content")
                   for ch in chunks if ch.choices)


async def test_tools_stream(gateway, upstream_state):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}]
    s = await client(gateway).chat.completions.create(
        model="deepseek-chat", messages=[{"role": "user", "content": "!tools"}], tools=tools,
        tool_choice="auto", stream=True, temperature=0.3,
        extra_body={"never_heard_of": {"x": [1]}})
    args, finish = "", None
    async for ch in s:
        if ch.choices:
            for tc in ch.choices[0].delta.tool_calls or ():
                args += tc.function.arguments or ""
            finish = ch.choices[0].finish_reason or finish
    assert args == '{"city": "Paris"}' and finish == "tool_calls"
    sent = upstream_state.requests[-1]["body"]
    assert sent["tools"] == tools and sent["tool_choice"] == "auto"
    assert sent["temperature"] == 0.3 and sent["never_heard_of"] == {"x": [1]}


async def test_non_stream_tools_and_json_mode(gateway, upstream_state):
    c = client(gateway)
    r = await c.chat.completions.create(
        model="deepseek-chat", messages=[{"role": "user", "content": "!tools"}],
        tools=[{"type": "function", "function": {"name": "get_weather"}}])
    call = r.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and call.function.arguments == '{"city": "Paris"}'
    assert r.choices[0].finish_reason == "tool_calls"
    r = await c.chat.completions.create(
        model="deepseek-chat", messages=[{"role": "user", "content": "!json"}],
        response_format={"type": "json_object"}, max_tokens=50, stop=["\n\n"], top_p=0.9,
        logprobs=False, user="u-1", frequency_penalty=0.1, presence_penalty=0.2)
    assert r.choices[0].message.content == '{"answer": 42}'
    sent = upstream_state.requests[-1]["body"]
    assert sent == {"model": "deepseek-flash", "thinking": {"type": "disabled"},
                    "messages": [{"role": "user", "content": "!json"}],
                    "response_format": {"type": "json_object"}, "max_tokens": 50,
                    "stop": ["\n\n"], "top_p": 0.9, "logprobs": False, "user": "u-1",
                    "frequency_penalty": 0.1, "presence_penalty": 0.2}


async def test_multi_round_history_is_sent_as_is(gateway, upstream_state):
    history = [{"role": "system", "content": "be brief"},
               {"role": "user", "content": "hi"},
               {"role": "assistant", "content": "Hello!"},
               {"role": "user", "content": [{"type": "text", "text": "again"}]}]
    r = await client(gateway).chat.completions.create(model="deepseek-coder", messages=history)
    assert r.model == "deepseek-coder"
    sent = upstream_state.requests[-1]["body"]
    assert sent["messages"] == history and sent["model"] == "deepseek-flash"
    assert sent["thinking"] == {"type": "disabled"}


async def test_fold_history_gives_its_think_block_back_as_reasoning(gateway, upstream_state):
    folded = "<think>\nLet me think.\n</think>\n\nHello!"
    await client(gateway).chat.completions.create(model="deepseek-reasoner-fold", messages=[
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": folded},
        {"role": "user", "content": "and?"}])
    sent = upstream_state.requests[-1]["body"]["messages"]
    assert sent[1] == {"role": "assistant", "content": "Hello!",
                       "reasoning_content": "Let me think."}
    assert sent[2] == {"role": "user", "content": "and?"}


async def test_provider_prefixed_model_name(gateway, upstream_state):
    r = await client(gateway).chat.completions.create(model="deepseek/deepseek-chat",
                                                      messages=HI)
    assert r.model == "deepseek/deepseek-chat"
    sent = upstream_state.requests[-1]["body"]
    assert (sent["model"], sent["thinking"]) == ("deepseek-flash", {"type": "disabled"})


async def test_stream_usage_without_include_usage_is_the_vendors(gateway):
    """Without include_usage DeepSeek puts usage on the last content chunk; the gateway
    relays it there and adds no usage-only chunk of its own."""
    s = await client(gateway).chat.completions.create(model="deepseek-chat", messages=HI,
                                                      stream=True)
    chunks = [c async for c in s]
    assert all(c.choices for c in chunks)
    assert [c.usage.model_dump(exclude_none=True) for c in chunks if c.usage] == [USAGE]
