"""Qwen (DashScope compatible mode): stream-only models answer `stream: false` too."""

import openai
import pytest

from tests.fakes import qwen as fake
from tests.fakes.common import ANSWER, REASONING
from tests.sibling import HI, client, collect, token_check
from tests.sibling import start_vendor  # noqa: F401 (a fixture)


@pytest.fixture
def gw(start_vendor, make_gateway):
    url, state = start_vendor(fake)
    base, _ = make_gateway({"providers": {"qwen": {"base_url": url + "/compatible-mode/v1"}}})
    return base, state


async def test_stream_only_model_assembled(gw):
    base, state = gw
    r = await client(base, fake.GOOD).chat.completions.create(model="qwq-plus", messages=HI)
    assert r.object == "chat.completion" and r.model == "qwq-plus"
    assert r.choices[0].message.content == "".join(ANSWER)
    assert r.choices[0].message.model_extra["reasoning_content"] == "".join(REASONING)
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.total_tokens == fake.USAGE["total_tokens"]  # the vendor's, not made up
    sent = state.requests[-1]["body"]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


async def test_stream_only_tool_calls_and_fold(gw):
    base, _ = gw
    c = client(base, fake.GOOD)
    r = await c.chat.completions.create(model="qvq-max",
                                        messages=[{"role": "user", "content": "!tools"}])
    call = r.choices[0].message.tool_calls[0]
    assert (call.id, call.function.name) == ("call_abc", "get_weather")
    assert call.function.arguments == '{"city": "Hangzhou"}'
    assert r.choices[0].finish_reason == "tool_calls"
    r = await c.chat.completions.create(model="qwq-plus-fold", messages=HI)
    assert r.choices[0].message.content == (
        f"<think>\n{''.join(REASONING)}\n</think>\n\n{''.join(ANSWER)}")


async def test_other_models_not_streamed(gw):
    base, state = gw
    r = await client(base, fake.GOOD).chat.completions.create(model="qwen-plus", messages=HI)
    assert r.choices[0].message.content == "".join(ANSWER)
    assert not state.requests[-1]["body"].get("stream")


async def test_usage_only_with_include_usage_and_passthrough(gw):
    base, state = gw
    c = client(base, fake.GOOD)
    out = await collect(await c.chat.completions.create(
        model="qwen-plus", messages=HI, stream=True))
    assert out["usage"] is None and out["content"] == "".join(ANSWER)
    out = await collect(await c.chat.completions.create(
        model="qwen-plus", messages=HI, stream=True, stream_options={"include_usage": True},
        extra_body={"enable_thinking": True, "enable_search": True}))
    assert out["chunks"][-1].choices == [] and out["usage"].prompt_tokens == 10
    assert out["reasoning"] == "".join(REASONING)
    sent = state.requests[-1]["body"]
    assert sent["enable_thinking"] is True and sent["enable_search"] is True


@pytest.mark.parametrize("key,cls,status", [
    (fake.POOR, openai.APIStatusError, 402),
    (fake.DEAD, openai.AuthenticationError, 401),
])
async def test_errors(gw, key, cls, status):
    base, _ = gw
    for stream in (False, True):
        with pytest.raises(cls) as e:
            r = await client(base, key).chat.completions.create(model="qwq-plus", messages=HI,
                                                                stream=stream)
            [c async for c in r]
        assert e.value.status_code == status


async def test_key_check(gw):
    base, state = gw
    assert await token_check(base, "qwen", fake.GOOD) == (200, {"live": True})
    assert state.requests[-1]["path"] == "/compatible-mode/v1/models"
    assert await token_check(base, "qwen", fake.DEAD) == (200, {"live": False})


async def test_stream_usage_is_asked_for_the_ledger_but_hidden_from_the_client(
        start_vendor, make_gateway):
    """DashScope reports stream usage only when asked; the gateway always asks (the ledger
    and token limits need the real numbers) and drops the usage-only chunk that a client
    which did not ask would trip over (`chunk.choices[0]`)."""
    url, state = start_vendor(fake)
    base, gateway = make_gateway({"providers": {"qwen": {
        "base_url": url + "/compatible-mode/v1"}}})
    out = await collect(await client(base, fake.GOOD).chat.completions.create(
        model="qwen-plus", messages=HI, stream=True))
    assert out["content"] == "".join(ANSWER) and out["usage"] is None
    assert all(chunk.choices for chunk in out["chunks"])
    assert state.requests[-1]["body"]["stream_options"] == {"include_usage": True}
    for _ in range(200):
        await gateway.store.flush()
        rows = await gateway.store.ledger()
        if rows:
            break
    assert rows[-1]["prompt_tokens"] == fake.USAGE["prompt_tokens"]
