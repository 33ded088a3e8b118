"""Kimi (Moonshot) behind the gateway: the choices[0].usage quirk, balance key check."""

import openai
import pytest

from tests.fakes import kimi as fake
from tests.fakes.common import ANSWER, REASONING
from tests.sibling import HI, assert_no_secret, client, collect, token_check
from tests.sibling import start_vendor  # noqa: F401 (a fixture)


@pytest.fixture
def gw(start_vendor, make_gateway):
    url, state = start_vendor(fake)
    base, gateway = make_gateway({"providers": {"kimi": {"base_url": url + "/v1"}}})
    return base, state


async def test_stream_usage_moves_to_top_level(gw):
    base, _ = gw
    out = await collect(await client(base, fake.GOOD).chat.completions.create(
        model="moonshot-v1-8k", messages=HI, stream=True))
    assert out["content"] == "".join(ANSWER) and out["finish"] == "stop"
    assert out["usage"].total_tokens == fake.USAGE["total_tokens"]
    last = out["chunks"][-1]
    assert "usage" not in (last.choices[0].model_extra or {})


async def test_include_usage_gets_openai_final_chunk(gw):
    base, _ = gw
    out = await collect(await client(base, fake.GOOD).chat.completions.create(
        model="moonshot-v1-8k", messages=HI, stream=True,
        stream_options={"include_usage": True}))
    assert out["chunks"][-1].choices == []
    assert out["chunks"][-1].usage.prompt_tokens == fake.USAGE["prompt_tokens"]


async def test_non_stream_and_thinking(gw):
    base, state = gw
    c = client(base, fake.GOOD)
    r = await c.chat.completions.create(model="kimi-k2-thinking", messages=HI)
    assert r.object == "chat.completion" and r.model == "kimi-k2-thinking"
    assert r.choices[0].message.content == "".join(ANSWER)
    assert r.choices[0].message.model_extra["reasoning_content"] == "".join(REASONING)
    out = await collect(await c.chat.completions.create(
        model="kimi/kimi-k2-thinking-fold", messages=HI, stream=True))
    assert out["content"] == f"<think>\n{''.join(REASONING)}\n</think>\n\n{''.join(ANSWER)}"
    assert state.requests[-1]["body"]["model"] == "kimi-k2-thinking"


@pytest.mark.parametrize("key,cls,status", [
    (fake.DEAD, openai.AuthenticationError, 401),
    (fake.POOR, openai.RateLimitError, 429),
])
async def test_errors(gw, key, cls, status):
    base, _ = gw
    with pytest.raises(cls) as e:
        await client(base, key).chat.completions.create(model="moonshot-v1-8k", messages=HI)
    assert e.value.status_code == status and "kimi" in e.value.message
    assert_no_secret(e.value.message, key)


async def test_key_check_uses_balance(gw):
    base, state = gw
    assert await token_check(base, "kimi", fake.GOOD) == (200, {"live": True})
    assert await token_check(base, "kimi", fake.POOR) == (200, {"live": False})
    assert await token_check(base, "kimi", fake.DEAD) == (200, {"live": False})
    assert state.requests[-1]["path"] == "/v1/users/me/balance"


async def test_models_listed(gw):
    base, _ = gw
    ids = {m.id for m in (await client(base, fake.GOOD).models.list()).data}
    assert {"moonshot-v1-8k", "kimi-k2-thinking", "kimi-k2-thinking-fold",
            "kimi-k2-thinking-silent", "deepseek-flash"} <= ids
