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
