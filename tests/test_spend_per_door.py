"""Every ledger entry records what it cost: Σ(vendor usage × price) with cache hits priced
as cache hits, on every door and modality (chat, /v1/messages, /v1/responses, embeddings,
images), driven by the official SDKs against the fake vendors; the day rollups sum it, on
each state backend (SQLite, Redis, PostgreSQL)."""

import anthropic
import openai
import pytest

from freeapi import rollups as R
from tests.fakes import glm as fake_glm
from tests.fakes.deepseek import GOOD, USAGE
from tests.helpers import request
from tests.test_usage import ledger

ADMIN, ALICE = "gw-admin-spend-0001", "gw-alice-spend-0002"
# Round prices, so the sums below are exact: per million tokens / per image.
PRICES = {"deepseek-flash": {"input": 2.0, "cached": 0.5, "output": 8.0},
          "embedding-3": {"input": 0.5, "output": 0, "currency": "CNY"},
          "cogview-3-flash": {"image": 0.25, "currency": "CNY"}}


@pytest.fixture
def gw(state_backend, start_vendor, make_gateway):
    glm_url, _ = start_vendor(fake_glm)
    return make_gateway({
        "auth": {"keys": [{"key": ADMIN, "name": "ops", "role": "admin"},
                          {"key": ALICE, "name": "alice"}]},
        "providers": {"deepseek": {"api_keys": [GOOD]},
                      "glm": {"base_url": glm_url + "/api/paas/v4",
                              "api_keys": [fake_glm.GOOD]}},
        "state": state_backend, "prices": PRICES, "billing": {"currency": "USD", "rates": {"CNY": 0.125}}})


def expected(e: dict, p: dict) -> float:
    prompt, cached = e["prompt_tokens"] or 0, e["cached_tokens"] or 0
    return ((prompt - cached) * p["input"] + cached * p.get("cached", p["input"])
            + (e["completion_tokens"] or 0) * p["output"]) / 1e6


async def test_each_door_records_usage_times_price_with_cache_hits_as_cache_hits(gw):
    base, gateway = gw
    oa = openai.AsyncOpenAI(base_url=base + "/v1", api_key=ALICE, max_retries=0)
    await oa.chat.completions.create(model="deepseek-chat",
                                     messages=[{"role": "user", "content": "hi"}])
    stream = await oa.chat.completions.create(
        model="deepseek-chat", messages=[{"role": "user", "content": "hi"}], stream=True)
    async for _ in stream:
        pass
    ant = anthropic.AsyncAnthropic(base_url=base, api_key=ALICE, max_retries=0)
    await ant.messages.create(model="deepseek-chat", max_tokens=100,
                              messages=[{"role": "user", "content": "hi"}])
    await oa.responses.create(model="deepseek-chat", input="hi")
    await oa.embeddings.create(model="embedding-3", input="hi")
    await oa.images.generate(model="cogview-3-flash", prompt="a cat")
    rows = await ledger(gateway, 6)
    assert [e["endpoint"] for e in rows] == ["chat", "chat", "messages", "responses",
                                             "embeddings", "images"]
    for e in rows[:4]:
        # The vendor's own usage, cache hits included, priced as cache hits.
        assert (e["prompt_tokens"], e["cached_tokens"], e["completion_tokens"]) == (
            USAGE["prompt_tokens"], 8, USAGE["completion_tokens"]), e["endpoint"]
        assert e["currency"] == "USD" and e["unpriced"] is False
        assert e["cost"] == pytest.approx((3 * 2.0 + 8 * 0.5 + 7 * 8.0) / 1e6), e["endpoint"]
        assert e["cost"] == pytest.approx(expected(e, PRICES["deepseek-flash"]))
        assert e["key_id"] == "config:alice"
    emb, img = rows[4], rows[5]
    assert emb["currency"] == "CNY" and emb["cost"] == pytest.approx(6 * 0.5 / 1e6)
    assert img["currency"] == "CNY" and img["cost"] == pytest.approx(0.25)
    # The day rollup holds the same sums, and GET /admin/keys converts them to USD.
    day = R.merge(await gateway.store.rollup_read("d", "key", R.last("d", 1, rows[0]["ts"])))
    usd = sum(e["cost"] for e in rows if e["currency"] == "USD")
    cny = sum(e["cost"] for e in rows if e["currency"] == "CNY")
    assert R.costs(day["config:alice"]) == pytest.approx({"USD": usd, "CNY": cny})
    resp = await request(base + "/admin/keys", key=ADMIN)
    assert resp.code == 200, resp.body
    import json
    [alice] = [k for k in json.loads(resp.body)["data"] if k["id"] == "config:alice"]
    today = alice["usage"]["today"]
    assert today["requests"] == 6
    assert today["spend"]["total"] == {"amount": pytest.approx(usd + cny * 0.125),
                                       "currency": "USD", "unconverted": {}}
    assert alice["usage"]["month"]["requests"] == 6


async def test_a_cache_hit_larger_than_the_prompt_never_makes_input_negative():
    from freeapi.pricing import cost_of
    rates = {"input": 2.0, "cached": 0.5, "output": 8.0}
    # A vendor reporting more cache hits than prompt tokens: the hits are capped at the
    # prompt, so no input is ever charged negative.
    got = cost_of(rates, {"prompt_tokens": 10, "cached_tokens": 50, "completion_tokens": 0})
    assert got == pytest.approx(10 * 0.5 / 1e6) and got >= 0


# -- money budgets (freeapi/budgets.py) on every door and modality ------------------------

BROKE, RICH = "gw-broke-spend-0003", "gw-rich-spend-0004"
BUDGET_PRICES = dict(PRICES, **{
    "glm-tts": {"character": 0.001, "currency": "CNY"},
    "glm-asr-2512": {"second": 0.002, "currency": "CNY"},
    "moonshot-v1-8k": {"input": 1.0, "output": 3.0}})


@pytest.fixture
def budget_gw(state_backend, start_vendor, make_gateway):
    from tests.fakes import kimi as fake_kimi
    glm_url, _ = start_vendor(fake_glm)
    kimi_url, kimi = start_vendor(fake_kimi)
    return make_gateway({
        "auth": {"keys": [{"key": ADMIN, "name": "ops", "role": "admin"},
                          {"key": BROKE, "name": "broke", "budget": {"daily": 0}},
                          {"key": RICH, "name": "rich", "budget": {"monthly": 100}}]},
        "providers": {"deepseek": {"api_keys": [GOOD]},
                      "glm": {"base_url": glm_url + "/api/paas/v4",
                              "api_keys": [fake_glm.GOOD]},
                      "kimi": {"base_url": kimi_url + "/v1", "api_keys": [fake_kimi.GOOD],
                               "discover": False}},
        "state": state_backend, "prices": BUDGET_PRICES,
        "billing": {"currency": "USD", "rates": {"CNY": 0.125}}}), kimi


async def every_door(base: str, key: str) -> list:
    """One request through each door and modality (each SDK's own client); what each
    raised, None for an answer."""
    oa = openai.AsyncOpenAI(base_url=base + "/v1", api_key=key, max_retries=0)
    ant = anthropic.AsyncAnthropic(base_url=base, api_key=key, max_retries=0)
    hi = [{"role": "user", "content": "hi"}]

    async def chat_stream():
        async for _ in await oa.chat.completions.create(model="deepseek-chat", messages=hi,
                                                        stream=True):
            pass

    calls = [
        lambda: oa.chat.completions.create(model="deepseek-chat", messages=hi),
        chat_stream,
        # /v1/messages: DeepSeek's own Anthropic endpoint (native pass-through)
        lambda: ant.messages.create(model="deepseek-chat", max_tokens=100, messages=hi),
        lambda: oa.responses.create(model="deepseek-chat", input="hi"),
        lambda: oa.embeddings.create(model="embedding-3", input="hi"),
        lambda: oa.images.generate(model="cogview-3-flash", prompt="a cat"),
        lambda: oa.audio.speech.create(model="glm-tts", voice="alloy", input="hello there"),
        lambda: oa.audio.transcriptions.create(model="glm-asr-2512",
                                               file=("a.wav", b"RIFF" + b"\0" * 8000)),
        # Kimi's $web_search round trip, completed by the gateway
        lambda: oa.chat.completions.create(model="moonshot-v1-8k-search", messages=hi),
    ]
    out = []
    try:
        for call in calls:
            try:
                await call()
                out.append(None)
            except (openai.APIStatusError, anthropic.APIStatusError) as e:
                out.append(e)
    finally:
        await oa.close()
        await ant.close()
    return out


async def test_each_door_and_modality_refuses_a_spent_budget_in_its_own_shape(budget_gw):
    (base, gateway), _ = budget_gw
    errors = await every_door(base, BROKE)
    assert all(e is not None and e.status_code == 429 for e in errors), errors
    for e in errors:
        assert e.response.headers.get("retry-after"), e  # the day's end
    anthropic_error = errors[2].body
    assert anthropic_error["type"] == "error"
    assert anthropic_error["error"]["type"] == "rate_limit_error"
    assert "daily money budget" in anthropic_error["error"]["message"]
    for e in errors[:2] + errors[3:]:  # OpenAI's shape, on every other door
        assert e.body["code"] == "budget_exceeded" and "'broke'" in e.body["message"], e
    await gateway.store.flush()
    assert [r for r in await gateway.store.ledger() if r["key"] == "broke"] == []


async def test_a_budgets_spend_is_the_ledgers_usage_times_price_on_every_door(
        budget_gw, upstream_state):
    (base, gateway), _ = budget_gw
    assert await every_door(base, RICH) == [None] * 9
    assert any(r["path"].endswith("/anthropic/v1/messages")  # natively passed through
               for r in upstream_state.requests)
    await gateway.store.flush()
    await gateway.store.settle()
    rows = [r for r in await gateway.store.ledger() if r["key"] == "rich"]
    assert [r["endpoint"] for r in rows] == ["chat", "chat", "messages", "responses",
                                             "embeddings", "images", "speech",
                                             "transcriptions", "chat"]
    speech = rows[6]
    assert speech["currency"] == "CNY" and speech["cost"] == pytest.approx(11 * 0.001)
    search = rows[8]  # both rounds of the search, at Kimi's price
    assert search["cost"] == pytest.approx(expected(search, BUDGET_PRICES["moonshot-v1-8k"]))
    assert search["cost"] > 0
    for e in rows[:4]:
        assert e["cost"] == pytest.approx(expected(e, PRICES["deepseek-flash"]))
    rate = {"USD": 1.0, "CNY": 0.125}
    # The fake transcribes an mp3 and reports no seconds: nothing to price it by.
    assert [r["endpoint"] for r in rows if r["unpriced"]] == ["transcriptions"]
    spend = sum(r["cost"] * rate[r["currency"]] for r in rows if not r["unpriced"])
    from freeapi.budgets import key_counter_id
    [used] = await gateway.steps.budgets.used([key_counter_id("config:rich",
                                                              gateway.config.gateway_keys)])
    assert used["monthly"] == pytest.approx(spend, abs=1e-9)
