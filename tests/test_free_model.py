"""`model: "free"`: the best free model the gateway can call, the next one when a free
quota is used up (remembered through the state store until its reset, by every gateway on
it), never a paid model unless `free.paid_fallback` names one; through every door.

The fakes answer each vendor's documented free-tier refusals: Qwen's 403
`AllocationQuota.FreeTierOnly`, GLM's rate limit 1302 and daily caps 1304 / 1310 (with
its reset time), Spark's 11201 daily limit."""

from __future__ import annotations

import json
import os
import time
import uuid

import anthropic
import openai
import pytest

from freeapi.free_tier import next_midnight
from tests.fakes import deepseek as fake_deepseek
from tests.fakes import glm as fake_glm
from tests.fakes import qwen as fake_qwen
from tests.fakes import spark as fake_spark
from tests.fakes.common import ANSWER
from tests.helpers import HI, collect, request
from tests.localserver import LlamaCpp

REDIS_URL = os.environ.get("FREEAPI_TEST_REDIS", "redis://127.0.0.1:6379/0")
GW_KEY = "gw-key-for-the-free-model-tests"
FREE_ONLY = "gw-key-allowed-the-free-model-only"
SPENT = "AllocationQuota.FreeTierOnly"


@pytest.fixture
def vendors(start_vendor, io_loop):
    glm_url, glm = start_vendor(fake_glm)
    qwen_url, qwen = start_vendor(fake_qwen)
    spark_url, spark = start_vendor(fake_spark)
    local = LlamaCpp(models=["qwen3"])
    local.start()
    yield {"glm": (glm_url, glm), "qwen": (qwen_url, qwen), "spark": (spark_url, spark),
           "local": local}
    local.stop()


def free_config(vendors, tmp_path=None, **free) -> dict:
    """GLM and Qwen (Free Quota Only declared for qwen3.7-plus), Spark Lite and a local
    model added by the operator; the vendors' Anthropic endpoints off (the fakes have none,
    so /v1/messages is translated)."""
    cfg = {
        "auth": {"keys": [{"key": GW_KEY, "name": "caller"},
                          {"key": FREE_ONLY, "name": "narrow", "models": ["free*"]}]},
        "providers": {
            "deepseek": {"api_keys": [fake_deepseek.GOOD]},
            "glm": {"base_url": vendors["glm"][0] + "/api/paas/v4",
                    "api_keys": [fake_glm.GOOD], "anthropic_base_url": False},
            "qwen": {"base_url": vendors["qwen"][0] + "/compatible-mode/v1",
                     "api_keys": [fake_qwen.GOOD], "free_quota_only": ["qwen3.7-plus"],
                     "anthropic_base_url": False},
            "spark": {"base_url": vendors["spark"][0] + "/v1", "api_keys": [fake_spark.GOOD]},
            "local": {"type": "openai", "base_url": vendors["local"].url, "models": ["qwen3"],
                      "discover": False},
        },
        # (free.models is the whole list: it takes no `add`)
        "free": {**({} if "models" in free else {"add": ["spark/lite", "local/qwen3"]}),
                 **free},
    }
    if tmp_path is not None:
        cfg["state"] = {"path": str(tmp_path / "shared.db"), "sync_interval": 0.05}
    return cfg


def sdk(base: str, key: str = GW_KEY) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base + "/v1", api_key=key, max_retries=0)


async def ask(base: str, model: str = "free", key: str = GW_KEY, **kw):
    return await sdk(base, key).chat.completions.with_raw_response.create(
        model=model, messages=HI, **kw)


def chat_calls(state, model: str | None = None) -> int:
    return sum(1 for r in state.requests if r["path"].endswith("/chat/completions")
               and (model is None or (r["body"] or {}).get("model") == model))


async def ledger(gw) -> list:
    await gw.store.flush()
    return await gw.store.ledger()


async def test_free_is_served_by_the_first_free_model(vendors, make_gateway):
    base, gw = make_gateway(free_config(vendors))
    raw = await ask(base)
    answer = raw.parse()
    assert answer.choices[0].message.content == "".join(ANSWER)
    # the answer, the header and the ledger say which free model served
    assert answer.model == "qwen3.7-plus"
    assert raw.headers["x-freeapi-upstream-model"] == "qwen3.7-plus"
    assert raw.headers["x-freeapi-provider"] == "qwen"
    row = (await ledger(gw))[-1]
    assert (row["model"], row["provider"], row["upstream_model"]) == \
        ("free", "qwen", "qwen3.7-plus")


async def test_a_used_up_quota_passes_to_the_next_and_is_skipped_until_its_reset(
        vendors, make_gateway):
    qwen = vendors["qwen"][1]
    qwen.spent[(fake_qwen.GOOD, "qwen3.7-plus")] = SPENT
    base, gw = make_gateway(free_config(vendors))
    raw = await ask(base)
    assert raw.parse().model == "glm-4.7-flash"
    assert chat_calls(qwen) == 1  # refused once (403 FreeTierOnly, before the first byte)
    for _ in range(3):
        assert (await ask(base)).parse().model == "glm-4.7-flash"
    assert chat_calls(qwen) == 1  # remembered: not asked again
    # the quota is the model's, not the key's: the key still serves Qwen's other models
    assert gw.pools["qwen"].status([fake_qwen.GOOD])[0]["state"] == "ok"
    r = await sdk(base).chat.completions.create(model="qwen3.6-flash", messages=HI)
    assert r.choices[0].message.content == "".join(ANSWER)


async def test_a_glm_daily_cap_is_skipped_until_midnight_beijing(vendors, make_gateway):
    glm = vendors["glm"][1]
    vendors["qwen"][1].spent[(fake_qwen.GOOD, "qwen3.7-plus")] = SPENT
    glm.spent[(fake_glm.GOOD, "glm-4.7-flash")] = 1304  # its daily cap
    base, gw = make_gateway(free_config(vendors))
    # 1304 cools the GLM key down briefly (a 429): Spark Lite serves this one
    assert (await ask(base)).parse().model == "lite"
    entry = (await sdk(base).models.retrieve("free")).model_extra["free"]["models"]
    glm47 = next(m for m in entry if m["id"] == "glm/glm-4.7-flash")
    assert glm47["available"] is False and "quota_exceeded" in glm47["reason"]
    want = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(next_midnight(time.time())))
    assert glm47["until"] == want  # midnight Beijing time
    # once the key's short cooldown is over, glm-4-flash-250414 serves; 4.7 stays skipped
    for _, h in gw.health.items("glm"):
        h.until = 0
    before = chat_calls(glm, "glm-4.7-flash")
    assert (await ask(base)).parse().model == "glm-4-flash-250414"
    assert chat_calls(glm, "glm-4.7-flash") == before


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
async def test_two_gateways_on_one_store_agree(vendors, make_gateway, tmp_path, kind):
    qwen = vendors["qwen"][1]
    qwen.spent[(fake_qwen.GOOD, "qwen3.7-plus")] = SPENT
    cfg = free_config(vendors, tmp_path)
    if kind == "redis":  # a prefix of its own: tests running at once never share state
        cfg["state"] = {"redis_url": REDIS_URL, "prefix": f"freeapi-test-{uuid.uuid4().hex}:"}
    a, gw_a = make_gateway(cfg)
    b, _ = make_gateway(cfg)
    assert (await ask(a)).parse().model == "glm-4.7-flash"
    await gw_a.store.settle()  # the memory is written in the background
    assert chat_calls(qwen) == 1
    assert (await ask(b)).parse().model == "glm-4.7-flash"
    assert chat_calls(qwen) == 1  # the other gateway never asked Qwen
    if kind == "redis":
        await gw_a.store.delete_all()


async def all_used_up(vendors):
    vendors["qwen"][1].spent[(fake_qwen.GOOD, "qwen3.7-plus")] = SPENT
    glm = vendors["glm"][1]
    for model in ("glm-4.7-flash", "glm-4-flash-250414"):
        glm.spent[(fake_glm.GOOD, model)] = 1310  # "将在 <2 hours from now> 重置"
    vendors["spark"][1].spent[(fake_spark.GOOD, "lite")] = 11201


async def test_all_used_up_is_a_429_naming_the_earliest_reset_never_a_paid_model(
        vendors, make_gateway, upstream_state):
    await all_used_up(vendors)
    base, gw = make_gateway(free_config(vendors, add=["spark/lite"]))  # no local model
    with pytest.raises(openai.RateLimitError) as first:  # finds out, vendor by vendor
        await ask(base)
    asked = [len(vendors[v][1].requests) for v in ("qwen", "glm", "spark")]
    assert all(asked)
    with pytest.raises(openai.RateLimitError) as e:  # knows: asks nobody
        await ask(base)
    assert [len(vendors[v][1].requests) for v in ("qwen", "glm", "spark")] == asked
    assert first.value.body["code"] == e.value.body["code"]
    body = e.value.body
    assert body["code"] == "free_quota_exhausted"
    assert "earliest reset" in body["message"] and "paid_fallback" in body["message"]
    # GLM's 1310 names a reset 2 hours ahead; Spark's daily cap resets at Beijing's
    # midnight (16:00 UTC), which is the earlier one from 14:00 to 16:00 UTC.
    earliest = min(fake_glm.RESET_IN, next_midnight(time.time()) - time.time())
    wait = int(e.value.response.headers["retry-after"])
    assert earliest - 120 <= wait <= earliest + 1
    assert upstream_state.requests == []  # DeepSeek (paid) never asked


async def test_paid_fallback_serves_a_caller_with_a_money_budget_within_it_only(
        vendors, make_gateway, upstream_state):
    await all_used_up(vendors)
    cfg = free_config(vendors, add=["spark/lite"], paid_fallback="deepseek/deepseek-flash")
    # 11 output tokens (reasoning included) at 1000 per million: 0.011 a request,
    # estimated exactly (max_tokens 11, input free), so a budget of 0.022 is worth two
    # answers of the paid fallback.
    cfg["prices"] = {"deepseek-flash": {"input": 0, "cached": 0, "output": 1000}}
    cfg["auth"]["keys"].append({"key": "gw-key-with-a-money-budget", "name": "payer",
                                "budget": {"daily": 0.022}})
    base, gw = make_gateway(cfg)
    for _ in range(2):  # finding out, then knowing: never the paid model without a budget
        with pytest.raises(openai.RateLimitError) as e:
            await ask(base, max_tokens=11)
        assert e.value.body["code"] == "free_quota_exhausted"
        assert "earliest reset" in e.value.body["message"]
        assert "only for a caller with a money budget" in e.value.body["message"]
    assert upstream_state.requests == []  # DeepSeek (paid) never asked
    for _ in range(2):
        raw = await ask(base, key="gw-key-with-a-money-budget", max_tokens=11)
        assert raw.parse().model == "deepseek-flash"
        assert raw.headers["x-freeapi-provider"] == "deepseek"
    with pytest.raises(openai.RateLimitError) as e:  # beyond its budget
        await ask(base, key="gw-key-with-a-money-budget", max_tokens=11)
    assert e.value.body["code"] == "budget_exceeded"
    assert "'payer'" in e.value.body["message"] and "daily" in e.value.body["message"]
    assert len(upstream_state.requests) == 2
    rows = await ledger(gw)
    assert [(r["model"], r["upstream_model"], r["cost"]) for r in rows][-2:] == \
        [("free", "deepseek-flash", 0.011)] * 2


@pytest.mark.parametrize("prices", [
    {},  # deepseek-v4-flash-vision-exp has no built-in row: unpriced
    {"deepseek-v4-flash-vision-exp": {"input": 0, "output": 1000, "currency": "EUR"}},
])
async def test_a_paid_fallback_no_budget_can_count_serves_nobody(
        vendors, make_gateway, upstream_state, prices):
    # Unpriced, or priced in a currency billing.rates cannot convert: it would reserve and
    # count nothing, so "within the budget" would be no bound at all (a budget of 0 too).
    await all_used_up(vendors)
    cfg = free_config(vendors, add=["spark/lite"],
                      paid_fallback="deepseek/deepseek-v4-flash-vision-exp")
    cfg["prices"] = prices
    cfg["auth"]["keys"].append({"key": "gw-key-with-a-money-budget", "name": "payer",
                                "budget": {"daily": 0}})
    base, _ = make_gateway(cfg)
    with pytest.raises(openai.RateLimitError) as e:
        await ask(base, key="gw-key-with-a-money-budget", max_tokens=11)
    assert e.value.body["code"] == "free_quota_exhausted"
    assert upstream_state.requests == []  # DeepSeek (paid) never asked


async def test_qwen_is_free_only_where_free_quota_only_is_declared(vendors, make_gateway):
    cfg = free_config(vendors)
    del cfg["providers"]["qwen"]["free_quota_only"]
    base, _ = make_gateway(cfg)
    assert (await ask(base)).parse().model == "glm-4.7-flash"
    assert chat_calls(vendors["qwen"][1]) == 0
    listed = {m.id: m for m in (await sdk(base).models.list()).data}
    ids = [m["id"] for m in listed["free"].model_extra["free"]["models"]]
    assert not any(i.startswith("qwen/") for i in ids)
    assert "free-embedding" not in listed and "free-vision" not in listed


async def test_the_config_sets_the_order_and_declares_a_local_model_free(vendors,
                                                                         make_gateway):
    local = vendors["local"]
    base, _ = make_gateway(free_config(vendors, models=["local/qwen3", "glm/glm-4.7-flash"]))
    assert (await ask(base)).parse().model == "qwen3"
    assert local.calls == 1
    server = local.server
    local.stop()  # its server down: the next serves, before the first byte
    await server.close_all_connections()
    assert (await ask(base)).parse().model == "glm-4.7-flash"


async def test_models_lists_free_with_its_models_in_order_and_their_state(vendors,
                                                                          make_gateway):
    vendors["qwen"][1].spent[(fake_qwen.GOOD, "qwen3.7-plus")] = SPENT
    base, _ = make_gateway(free_config(vendors))
    await ask(base)
    listed = {m.id: m for m in (await sdk(base).models.list()).data}
    assert {"free", "free-fold", "free-silent", "free-vision"} <= set(listed)
    # Free Quota Only was declared for one chat model only: no free embedding or image
    assert "free-embedding" not in listed and "free-image" not in listed
    models = listed["free"].model_extra["free"]["models"]
    assert [m["id"] for m in models] == ["qwen/qwen3.7-plus", "glm/glm-4.7-flash",
                                         "glm/glm-4-flash-250414", "spark/lite",
                                         "local/qwen3"]
    assert [m["available"] for m in models] == [False, True, True, True, True]
    assert models[0]["source"].startswith("https://www.alibabacloud.com/")
    assert models[1]["source"] == "https://docs.bigmodel.cn/cn/guide/start/model-overview"
    assert listed["free"].model_extra["free"]["paid_fallback"] is None
    vision = listed["free-vision"].model_extra["free"]["models"]
    assert [m["id"] for m in vision] == ["qwen/qwen3.7-plus"]


async def test_a_key_allowed_free_may_use_every_free_target(vendors, make_gateway):
    vendors["qwen"][1].spent[(fake_qwen.GOOD, "qwen3.7-plus")] = SPENT
    base, _ = make_gateway(free_config(vendors))
    assert (await ask(base, key=FREE_ONLY)).parse().model == "glm-4.7-flash"
    with pytest.raises(openai.PermissionDeniedError):
        await ask(base, model="glm-4.7-flash", key=FREE_ONLY)


async def test_free_streams_with_tools_and_fails_over_before_the_first_byte(
        vendors, make_gateway):
    base, _ = make_gateway(free_config(vendors))
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}]
    stream = await sdk(base).chat.completions.create(
        model="free", stream=True, tools=tools,
        messages=[{"role": "user", "content": "!tools"}])
    got = await collect(stream)
    assert got["finish"] == "tool_calls"
    calls = [tc for c in got["chunks"] for ch in c.choices for tc in ch.delta.tool_calls or ()]
    assert calls[0].function.name == "get_weather"
    assert {c.model for c in got["chunks"]} == {"qwen3.7-plus"}
    vendors["qwen"][1].spent[(fake_qwen.GOOD, "qwen3.7-plus")] = SPENT
    got = await collect(await sdk(base).chat.completions.create(
        model="free", stream=True, messages=HI))
    assert got["content"] == "".join(ANSWER)
    assert {c.model for c in got["chunks"]} == {"glm-4.7-flash"}


async def test_free_through_the_anthropic_and_responses_doors(vendors, make_gateway):
    vendors["qwen"][1].spent[(fake_qwen.GOOD, "qwen3.7-plus")] = SPENT
    base, _ = make_gateway(free_config(vendors))
    c = anthropic.AsyncAnthropic(base_url=base, api_key=GW_KEY, max_retries=0)
    raw = await c.messages.with_raw_response.create(
        model="free", max_tokens=64, messages=[{"role": "user", "content": "hi"}])
    assert raw.headers["x-freeapi-upstream-model"] == "glm-4.7-flash"
    message = await raw.parse()
    assert "".join(b.text for b in message.content if b.type == "text") == "".join(ANSWER)
    assert message.model == "glm-4.7-flash"  # the model that served, in every door
    async with c.messages.stream(model="free", max_tokens=64,
                                 messages=[{"role": "user", "content": "hi"}]) as s:
        final = await s.get_final_message()
    assert final.model == "glm-4.7-flash"
    assert "".join(b.text for b in final.content if b.type == "text") == "".join(ANSWER)
    r = await sdk(base).responses.with_raw_response.create(model="free", input="hi")
    assert r.headers["x-freeapi-upstream-model"] == "glm-4.7-flash"
    assert r.parse().output_text == "".join(ANSWER) and r.parse().model == "glm-4.7-flash"
    events = [e async for e in await sdk(base).responses.create(model="free", input="hi",
                                                                 stream=True)]
    done = next(e for e in events if e.type == "response.completed").response
    assert done.model == "glm-4.7-flash" and done.output_text == "".join(ANSWER)


async def test_without_the_gateways_keys_plain_free_never_sends_a_callers_key(
        vendors, make_gateway):
    # Pass-through mode: the caller's key is for one vendor, which `free` cannot know.
    glm_url, glm = vendors["glm"]
    base, _ = make_gateway({"providers": {"glm": {"base_url": glm_url + "/api/paas/v4",
                                                  "anthropic_base_url": False}}})
    resp = await request(base + "/v1/chat/completions", "POST",
                         {"model": "free", "messages": HI}, key=fake_glm.GOOD)
    err = json.loads(resp.body)["error"]
    assert resp.code == 404 and "glm/free" in err["message"]
    assert chat_calls(glm) == 0
    # naming the vendor, the caller's own key serves its free models
    r = await sdk(base, fake_glm.GOOD).chat.completions.create(model="glm/free",
                                                               messages=HI)
    assert r.model == "glm-4.7-flash"


async def test_free_embedding_and_image_where_such_free_models_exist(vendors, make_gateway):
    cfg = free_config(vendors)
    cfg["providers"]["qwen"]["free_quota_only"] = True  # every built-in Qwen offer
    base, _ = make_gateway(cfg)
    listed = {m.id: m for m in (await sdk(base).models.list()).data}
    assert {"free-embedding", "free-image"} <= set(listed)
    raw = await sdk(base).embeddings.with_raw_response.create(model="free-embedding",
                                                              input=["a", "b"])
    assert raw.headers["x-freeapi-upstream-model"] == "text-embedding-v4"
    assert len(raw.parse().data) == 2
    # `free` starts with Qwen's best quota model now; one this account's region does not
    # serve (the fake knows no qwen3.7-max: 404) passes to the next before the first byte
    raw = await ask(base)
    assert raw.parse().model == "qwen3.7-plus"
    assert raw.headers["x-freeapi-attempts"] == "2"


async def test_a_key_that_used_up_its_quota_is_skipped_while_another_key_serves(
        vendors, make_gateway):
    qwen = vendors["qwen"][1]
    qwen.spent[(fake_qwen.GOOD, "qwen3.7-plus")] = SPENT  # one account's quota only
    cfg = free_config(vendors)
    cfg["providers"]["qwen"]["api_keys"] = [fake_qwen.GOOD, fake_qwen.GOOD2]
    base, _ = make_gateway(cfg)

    def refused() -> int:
        return sum(1 for r in qwen.requests if (r["body"] or {}).get("model") == "qwen3.7-plus"
                   and r["headers"].get("Authorization") == f"Bearer {fake_qwen.GOOD}")

    for _ in range(6):  # the pool rotates keys: each would get its turn
        assert (await ask(base)).parse().model == "qwen3.7-plus"
    assert refused() <= 1  # asked at most once, then skipped for this model


@pytest.mark.parametrize("code", [1302, 1305])
async def test_a_glm_rate_limit_passes_to_the_next_and_is_not_a_used_up_quota(
        vendors, make_gateway, code):
    vendors["qwen"][1].spent[(fake_qwen.GOOD, "qwen3.7-plus")] = SPENT
    vendors["glm"][1].spent[(fake_glm.GOOD, "glm-4.7-flash")] = code  # 429 with that code
    base, gw = make_gateway(free_config(vendors))
    assert (await ask(base)).parse().model == "lite"  # the GLM key cools down: Spark serves
    for _, h in gw.health.items("glm"):  # its ~1 s backoff must outlast a loaded machine
        h.until = time.monotonic() + 600  # (a key that was never cooled stays usable)
    entry = (await sdk(base).models.retrieve("free")).model_extra["free"]["models"]
    glm47 = next(m for m in entry if m["id"] == "glm/glm-4.7-flash")
    assert glm47["available"] is False and glm47["reason"].startswith("rate-limited")
    # once the cooldown is over GLM is asked again: nothing was remembered as used up
    for _, h in gw.health.items("glm"):
        h.until = 0
    del vendors["glm"][1].spent[(fake_glm.GOOD, "glm-4.7-flash")]
    assert (await ask(base)).parse().model == "glm-4.7-flash"


async def test_images_sent_to_free_are_pointed_at_free_vision_not_a_paid_model(
        vendors, make_gateway):
    vendors["qwen"][1].spent[(fake_qwen.GOOD, "qwen3.7-plus")] = SPENT
    base, _ = make_gateway(free_config(vendors))  # glm-4.7-flash, text only, comes first
    image = [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]
    with pytest.raises(openai.BadRequestError) as e:
        await sdk(base).chat.completions.create(model="free", messages=image)
    assert e.value.body["code"] == "model_not_vision"
    assert "'free-vision'" in e.value.body["message"]
    assert "glm-4.6v" not in e.value.body["message"]  # no paid model suggested
    # free-vision: only models that take images, so the same request is served
    vendors["qwen"][1].spent.clear()
    r = await sdk(base).chat.completions.create(model="free-vision", messages=image)
    assert r.model == "qwen3.7-plus"
