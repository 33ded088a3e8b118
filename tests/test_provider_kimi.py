"""Kimi (Moonshot) behind the gateway: the choices[0].usage quirk, balance key check, the
out-of-balance 429 and the concurrency 429 told apart."""

import asyncio

import openai
import pytest

from tests.fakes import kimi as fake
from tests.fakes.common import ANSWER, REASONING
from tests.helpers import (HI, assert_no_secret, client, collect, eventually, request,
                           token_check)


@pytest.fixture
def gw(start_vendor, make_gateway):
    url, state = start_vendor(fake)
    base, gateway = make_gateway({"providers": {"kimi": {"base_url": url + "/v1"}}})
    state.url = url
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


@pytest.mark.parametrize("key,cls,status,code", [
    (fake.DEAD, openai.AuthenticationError, 401, "invalid_authentication_error"),
    # HTTP 429 exceeded_current_quota_error is an account out of balance: 402.
    (fake.POOR, openai.APIStatusError, 402, "insufficient_balance"),
    (fake.POOR403, openai.APIStatusError, 402, "insufficient_balance"),
    # The organization's concurrency limit is a rate limit: 429, never a dead key.
    (fake.BUSY, openai.RateLimitError, 429, "rate_limit_reached_error"),
])
async def test_errors(gw, key, cls, status, code):
    base, _ = gw
    with pytest.raises(cls) as e:
        await client(base, key).chat.completions.create(model="moonshot-v1-8k", messages=HI)
    assert e.value.status_code == status and "kimi" in e.value.message
    assert e.value.body["code"] == code
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


async def test_out_of_balance_key_waits_for_the_balance_check(start_vendor, make_gateway):
    """A key Kimi suspends for its balance is marked no_balance (not cooled down for
    seconds), and only GET /users/me/balance restores it, once money is back."""
    url, state = start_vendor(fake)
    base, gateway = make_gateway({"auth": {"allow_anonymous": True}, "providers": {"kimi": {
        "base_url": url + "/v1", "api_keys": [fake.POOR, fake.GOOD],
        "key_pool": {"recheck_interval": 0.05}}}})
    pool = gateway.pools["kimi"]
    for _ in range(2):  # whichever key goes first, the answer comes from the good one
        r = await client(base, "x").chat.completions.create(model="moonshot-v1-8k", messages=HI)
        assert r.choices[0].message.content == "".join(ANSWER)
    poor = pool.status([fake.POOR])[0]
    assert poor["state"] == "no_balance"

    def checks():
        return [r for r in state.requests if r["headers"].get("Authorization") ==
                f"Bearer {fake.POOR}" and r["path"] != "/v1/chat/completions"]
    await eventually(lambda: len(checks()) >= 2, "several re-checks")
    assert pool.status([fake.POOR])[0]["state"] == "no_balance"  # the balance is still 0
    checks = checks()
    assert checks and {r["path"] for r in checks} == {"/v1/users/me/balance"}
    state.keys[fake.POOR] = "ok"  # topped up
    for _ in range(100):
        if pool.status([fake.POOR])[0]["state"] == "ok":
            break
        await asyncio.sleep(0.05)
    assert pool.status([fake.POOR])[0]["state"] == "ok"


async def test_concurrency_limit_cools_the_key_for_the_time_kimi_names(start_vendor,
                                                                        make_gateway):
    url, _ = start_vendor(fake)
    base, gateway = make_gateway({"auth": {"allow_anonymous": True}, "providers": {"kimi": {
        "base_url": url + "/v1", "api_keys": [fake.BUSY]}}})
    with pytest.raises(openai.RateLimitError):
        await client(base, "x").chat.completions.create(model="moonshot-v1-8k", messages=HI)
    busy = gateway.pools["kimi"].status([fake.BUSY])[0]
    assert busy["state"] == "cooldown" and 6 <= busy["cooldown_remaining"] <= 7


async def test_current_models_served_and_retired_refused(gw):
    base, state = gw
    c = client(base, fake.GOOD)
    listed = {m.id for m in (await c.models.list()).data}
    assert {"kimi-k2.6", "kimi-k2.6-fold", "kimi-k2.6-silent", "kimi-k2.5",
            "moonshot-v1-128k"} <= listed
    assert not listed & set(fake.RETIRED)
    r = await c.chat.completions.create(model="kimi-k2.6", messages=HI)
    assert r.model == "kimi-k2.6" and state.requests[-1]["body"]["model"] == "kimi-k2.6"
    # kimi-k2.6 thinks unless told not to.
    assert r.choices[0].message.model_extra["reasoning_content"] == "".join(REASONING)
    r = await c.chat.completions.create(model="kimi-k2.6", messages=HI,
                                        extra_body={"thinking": {"type": "disabled"}})
    assert "reasoning_content" not in (r.choices[0].message.model_extra or {})
    vendor = openai.AsyncOpenAI(base_url=state.url + "/v1", api_key=fake.GOOD, max_retries=0)
    for retired in fake.RETIRED:  # the fake follows today's model list
        with pytest.raises(openai.NotFoundError):
            await vendor.chat.completions.create(model=retired, messages=HI)


async def test_retired_names_reach_kimi_k2_6_and_new_names_reach_kimi(gw):
    base, state = gw
    c = client(base, fake.GOOD)
    r = await c.chat.completions.create(model="kimi-latest", messages=HI)
    assert r.model == "kimi-latest"  # the name the client used
    sent = state.requests[-1]["body"]
    assert sent["model"] == "kimi-k2.6" and sent["thinking"] == {"type": "disabled"}
    assert "reasoning_content" not in (r.choices[0].message.model_extra or {})
    r = await c.chat.completions.create(model="kimi-thinking-preview", messages=HI)
    assert state.requests[-1]["body"]["model"] == "kimi-k2.6"
    assert r.choices[0].message.model_extra["reasoning_content"] == "".join(REASONING)
    # A name this version does not know goes to Kimi, which answers for itself.
    with pytest.raises(openai.NotFoundError) as e:
        await c.chat.completions.create(model="kimi-k9-unreleased", messages=HI)
    assert state.requests[-1]["body"]["model"] == "kimi-k9-unreleased"
    assert "Not found the model" in e.value.message


@pytest.mark.parametrize("model,extra,reasoning_budget", [
    ("kimi-k2.6", {}, True),  # thinking is on by default
    ("kimi-k2.6", {"thinking": {"type": "enabled"}}, True),
    ("kimi-k2.6", {"thinking": {"type": "disabled"}}, False),
    ("kimi-k2.5", {"thinking": {"type": "disabled"}}, False),
    ("kimi-latest", {}, False),  # translated to kimi-k2.6 with thinking disabled
    ("kimi-thinking-preview", {}, True),
    # kimi-k2-thinking* always think: the switch does not turn them off.
    ("kimi-k2-thinking", {"thinking": {"type": "disabled"}}, True),
    ("kimi-k2-thinking-turbo", {"thinking": {"type": "disabled"}}, True),
    ("moonshot-v1-8k", {}, False),
])
def test_kimi_with_thinking_off_gets_the_ordinary_first_byte_budget(make_gateway, model,
                                                                     extra, reasoning_budget):
    """A thinking model told not to think answers as fast as a chat model: it gets the
    ordinary first-byte timeout, not the long one meant for a model that reasons first."""
    _, gateway = make_gateway({"providers": {"kimi": {"timeouts": {
        "first_byte": 7, "first_byte_reasoning": 300}}}})
    route = gateway.resolve(model)
    body = route.body_for({"model": model, "messages": HI, **extra})
    budget = route.provider.first_byte_timeout(route.upstream_model, body)
    assert budget == (300 if reasoning_budget else 7)


async def test_a_malformed_tools_field_is_the_vendors_400(gw):
    """Kimi answers invalid_request_error (HTTP 400) to `tools` that is not an array: the
    caller gets that 400, not a server error."""
    base, _ = gw
    r = await request(base + "/v1/chat/completions", "POST",
                      dict(model="kimi-k2-thinking", messages=HI, tools=1), key=fake.GOOD)
    assert r.code == 400, r.body
