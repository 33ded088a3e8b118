"""Qwen (DashScope compatible mode): stream-only models (and thinking requests) answer
`stream: false` too; arrears and a spent free tier are out of balance."""

import asyncio

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
    state.url = url
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


async def test_thinking_without_stream_is_streamed_and_assembled(gw):
    """DashScope refuses `enable_thinking: true` without streaming; the gateway streams it
    and assembles one completion, reasoning included."""
    base, state = gw
    r = await client(base, fake.GOOD).chat.completions.create(
        model="qwen3.7-plus", messages=HI, extra_body={"enable_thinking": True})
    assert r.object == "chat.completion" and r.model == "qwen3.7-plus"
    assert r.choices[0].message.content == "".join(ANSWER)
    assert r.choices[0].message.model_extra["reasoning_content"] == "".join(REASONING)
    sent = state.requests[-1]["body"]
    assert sent["stream"] is True and sent["enable_thinking"] is True
    r = await client(base, fake.GOOD).chat.completions.create(
        model="qwen3.7-plus", messages=HI, extra_body={"enable_thinking": False})
    assert not state.requests[-1]["body"].get("stream")  # thinking off: asked as it was


async def test_free_tier_only_exhausted_is_the_models_quota_not_the_keys(start_vendor,
                                                                         make_gateway):
    # The free quota and the "Free Quota Only" switch are per model
    # (https://www.alibabacloud.com/help/doc-detail/3001515.html): the key is neither dead
    # nor out of balance for the account's other models, so it stays in rotation.
    url, state = start_vendor(fake)
    base, gateway = make_gateway({"auth": {"allow_anonymous": True}, "providers": {"qwen": {
        "base_url": url + "/compatible-mode/v1", "api_keys": [fake.FREE],
        "key_pool": {"recheck_interval": 0.05}}}})
    with pytest.raises(openai.APIStatusError) as e:
        await client(base, "x").chat.completions.create(model="qwen-plus", messages=HI)
    assert e.value.status_code == 402  # the vendor's 403, read for what it means
    assert e.value.body["code"] == "AllocationQuota.FreeTierOnly"
    assert gateway.pools["qwen"].status([fake.FREE])[0]["state"] == "ok"
    await asyncio.sleep(0.3)  # no re-probe of a key nothing is wrong with
    assert all(r["path"].endswith("/chat/completions") for r in state.requests)


async def test_free_tier_only_error_reaches_a_pass_through_client_as_402(gw):
    base, _ = gw
    with pytest.raises(openai.APIStatusError) as e:
        await client(base, fake.FREE).chat.completions.create(model="qwen-plus", messages=HI)
    assert e.value.status_code == 402
    assert e.value.body["code"] == "AllocationQuota.FreeTierOnly"
    assert e.value.body["type"] == "insufficient_quota"


async def test_current_models_listed_and_served_retired_refused(gw):
    base, state = gw
    c = client(base, fake.GOOD)
    listed = {m.id for m in (await c.models.list()).data}
    assert {"qwen3.7-max", "qwen3.7-plus", "qwen3.6-flash", "qvq-max", "qvq-max-fold"} <= listed
    assert not listed & set(fake.RETIRED)
    for model in ("qwen3.7-plus", "qwen3.6-flash", "qwen3-vl-plus"):
        r = await c.chat.completions.create(model=model, messages=HI)
        assert r.model == model and state.requests[-1]["body"]["model"] == model
    vendor = openai.AsyncOpenAI(base_url=state.url + "/compatible-mode/v1", api_key=fake.GOOD,
                                max_retries=0)
    for retired in fake.RETIRED:
        with pytest.raises(openai.NotFoundError):
            await vendor.chat.completions.create(model=retired, messages=HI)


@pytest.mark.parametrize("stream", [False, True])
async def test_moderation_stopping_a_stream_only_answer_is_the_requests_400_not_retried(
        start_vendor, make_gateway, stream):
    """DashScope's output moderation ends a stream under way with an error event. Whether
    the gateway assembles it (`stream: false` for a stream-only model) or relays it, the
    client learns what DashScope's code means, a 400 of this request: not a 502 that the
    SDK and the key pool would retry on every key, and no verdict against the key."""
    url, state = start_vendor(fake)
    base, gateway = make_gateway({"auth": {"allow_anonymous": True}, "providers": {"qwen": {
        "base_url": url + "/compatible-mode/v1", "api_keys": [fake.GOOD, fake.GOOD2]}}})
    c = openai.AsyncOpenAI(base_url=base + "/v1", api_key="x", max_retries=2)
    ask = {"model": "qwq-plus", "messages": [{"role": "user", "content": "!inspect"}]}
    if stream:
        with pytest.raises(openai.APIError) as e:
            await collect(await c.chat.completions.create(**ask, stream=True))
        assert e.value.body["code"] == "data_inspection_failed"
        assert e.value.body["type"] == "invalid_request_error"
    else:
        with pytest.raises(openai.BadRequestError) as e:
            await c.chat.completions.create(**ask)
        assert e.value.status_code == 400 and e.value.body["code"] == "data_inspection_failed"
        assert "qwen" in e.value.message and "inappropriate content" in e.value.message
    assert len([r for r in state.requests if r["path"].endswith("/chat/completions")]) == 1
    rows = gateway.pools["qwen"].status([fake.GOOD, fake.GOOD2])
    assert [r["state"] for r in rows] == ["ok", "ok"]
