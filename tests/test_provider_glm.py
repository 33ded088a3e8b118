"""GLM (Zhipu) behind the gateway: business codes become the right status and error type,
in HTTP answers and inside streams."""


import openai
import pytest

from tests.fakes import glm as fake
from tests.fakes.common import ANSWER, REASONING
from tests.helpers import HI, assert_no_secret, client, collect, request, token_check


@pytest.fixture
def gw(start_vendor, make_gateway):
    url, state = start_vendor(fake)
    base, _ = make_gateway({"providers": {"glm": {"base_url": url + "/api/paas/v4"}}})
    state.url = url
    return base, state


def say(text):
    return [{"role": "user", "content": text}]


@pytest.mark.parametrize("code,cls,status,etype,ecode", [
    (1113, openai.APIStatusError, 402, "insufficient_quota", "insufficient_balance"),
    (1211, openai.NotFoundError, 404, "not_found_error", "model_not_found"),
    (1261, openai.BadRequestError, 400, "invalid_request_error", "context_length_exceeded"),
    (1301, openai.BadRequestError, 400, "invalid_request_error", "content_filter"),
    (1302, openai.RateLimitError, 429, "rate_limit_error", "rate_limit_exceeded"),
    (1304, openai.RateLimitError, 429, "insufficient_quota", "quota_exceeded"),
    (1002, openai.AuthenticationError, 401, "authentication_error", "invalid_api_key"),
    (1005, openai.AuthenticationError, 401, "authentication_error", "invalid_api_key"),
    (500, openai.InternalServerError, 502, "server_error", "glm_500"),
    # 1200 / 1234 are GLM's own failures: a 5xx, so another key or target is tried.
    (1200, openai.InternalServerError, 502, "server_error", "glm_1200"),
    (1234, openai.InternalServerError, 502, "server_error", "glm_1234"),
    (1309, openai.APIStatusError, 402, "insufficient_quota", "plan_expired"),
    (1311, openai.NotFoundError, 404, "not_found_error", "model_not_in_plan"),
    (1313, openai.RateLimitError, 429, "rate_limit_error", "rate_limit_exceeded"),
])
async def test_business_codes(gw, code, cls, status, etype, ecode):
    base, _ = gw
    with pytest.raises(cls) as e:
        await client(base, fake.GOOD).chat.completions.create(
            model="glm-4.7-flash", messages=say(f"!code {code}"))
    assert e.value.status_code == status
    assert e.value.body["type"] == etype and e.value.body["code"] == ecode
    assert f"GLM code {code}" in e.value.body["message"]
    assert e.value.body["message"].startswith("glm: ")


async def test_dead_key_rotates_to_a_live_one(gw):
    base, state = gw
    for keys in (f"{fake.POOR},{fake.GOOD}", f"{fake.DEAD}, {fake.GOOD}"):
        r = await client(base, keys).chat.completions.create(model="glm-4.7-flash",
                                                            messages=HI)
        assert r.choices[0].message.content == "".join(ANSWER)
    assert state.requests[-1]["headers"]["Authorization"] == f"Bearer {fake.GOOD}"


async def test_stream_with_thinking(gw):
    base, state = gw
    c = client(base, fake.GOOD)
    out = await collect(await c.chat.completions.create(model="glm-4.7", messages=HI,
                                                        stream=True))
    assert out["reasoning"] == "".join(REASONING) and out["content"] == "".join(ANSWER)
    assert out["usage"].total_tokens == fake.USAGE["total_tokens"]
    out = await collect(await c.chat.completions.create(
        model="glm-4.7", messages=HI, stream=True, extra_body={"thinking": {"type": "disabled"}}))
    assert out["reasoning"] == "" and out["content"] == "".join(ANSWER)
    assert state.requests[-1]["body"]["thinking"] == {"type": "disabled"}
    r = await c.chat.completions.create(model="glm-4.7-silent", messages=HI)
    assert r.choices[0].message.content == "".join(ANSWER)
    assert "reasoning_content" not in (r.choices[0].message.model_extra or {})


async def test_key_check_with_a_current_free_model(gw):
    base, state = gw
    assert await token_check(base, "glm", fake.GOOD) == (200, {"live": True})
    sent = state.requests[-1]["body"]
    assert sent["model"] == "glm-4.7-flash" and sent["max_tokens"] == 1
    assert "glm-4.7-flash" in fake.KNOWN
    assert await token_check(base, "glm", fake.DEAD) == (200, {"live": False})
    assert await token_check(base, "glm", fake.POOR) == (200, {"live": False})


async def test_error_message_has_no_key(gw):
    base, _ = gw
    with pytest.raises(openai.AuthenticationError) as e:
        await client(base, fake.DEAD).chat.completions.create(model="glm-4.7-flash",
                                                              messages=HI)
    assert_no_secret(e.value.message, fake.DEAD)


async def test_content_filter_as_first_stream_event_is_400_and_not_retried(gw):
    base, state = gw
    before = len(state.requests)
    with pytest.raises(openai.BadRequestError) as e:
        r = await client(base, f"{fake.GOOD},{fake.GOOD2}").chat.completions.create(
            model="glm-4.7", messages=say("!first-code 1301"), stream=True)
        [c async for c in r]
    assert e.value.body["code"] == "content_filter" and "GLM code 1301" in e.value.message
    assert len(state.requests) - before == 1  # not sent again with the other key


async def test_business_error_mid_stream_keeps_glm_meaning(gw):
    base, _ = gw
    stream = await client(base, fake.GOOD).chat.completions.create(
        model="glm-4-flash-250414", messages=say("!mid-code 1301"), stream=True)
    with pytest.raises(openai.APIError) as e:
        [c async for c in stream]
    assert e.value.body["type"] == "invalid_request_error"
    assert e.value.body["code"] == "content_filter"
    assert "GLM code 1301" in e.value.body["message"]


async def test_current_models_served_and_listed_retired_refused(gw):
    base, state = gw
    c = client(base, fake.GOOD)
    listed = {m.id for m in (await c.models.list()).data}
    assert {"glm-5", "glm-4.7", "glm-4.7-flash", "glm-4-flash-250414"} <= listed
    for model in ("glm-5", "glm-4.7", "glm-4.7-flash", "glm-4-flash-250414"):
        r = await c.chat.completions.create(model=model, messages=HI)
        assert r.model == model and state.requests[-1]["body"]["model"] == model
    vendor = openai.AsyncOpenAI(base_url=state.url + "/api/paas/v4", api_key=fake.GOOD,
                                max_retries=0)  # the fake itself, no gateway
    for retired in fake.RETIRED:  # follows today's rules: a retired name is a 1211
        assert retired not in listed
        with pytest.raises(openai.BadRequestError) as e:
            await vendor.chat.completions.create(model=retired, messages=HI)
        assert e.value.body["code"] == "1211"


async def test_arrears_key_stays_out_for_the_configured_pause(start_vendor, make_gateway,
                                                              gateway_clock):
    """GLM has no balance API and a 1-token chat cannot tell arrears from a glitch: a key in
    arrears (1113, sent as HTTP 429) is out of balance for `no_balance_recheck` seconds, is
    not re-checked meanwhile, and a request tries it again once they are over."""
    url, state = start_vendor(fake)
    base, gateway = make_gateway({"auth": {"allow_anonymous": True}, "providers": {"glm": {
        "base_url": url + "/api/paas/v4", "api_keys": [fake.POOR],
        "no_balance_recheck": 600, "key_pool": {"recheck_interval": 0.05}}}})
    c = client(base, "x")
    with pytest.raises(openai.APIStatusError) as e:
        await c.chat.completions.create(model="glm-4.7-flash", messages=HI)
    assert e.value.status_code == 402 and e.value.body["code"] == "insufficient_balance"
    pool = gateway.pools["glm"]
    row = pool.status([fake.POOR])[0]
    assert row["state"] == "no_balance" and row["cooldown_remaining"] == 600
    assert fake.POOR not in pool.probe_at  # no key-check chat scheduled while it waits
    sent = len(state.requests)
    gateway_clock.advance(599)
    with pytest.raises(openai.APIStatusError) as e:
        await c.chat.completions.create(model="glm-4.7-flash", messages=HI)
    assert e.value.status_code == 503 and len(state.requests) == sent  # still out
    state.keys[fake.POOR] = "ok"  # topped up
    gateway_clock.advance(1)
    r = await c.chat.completions.create(model="glm-4.7-flash", messages=HI)
    assert r.choices[0].message.content == "".join(ANSWER)
    assert pool.status([fake.POOR])[0]["state"] == "ok"
    assert len(state.requests) == sent + 1  # that request, and no key check ever


async def test_weekly_limit_cools_the_key_until_glm_says_it_resets(start_vendor,
                                                                     make_gateway):
    url, _ = start_vendor(fake)
    base, gateway = make_gateway({"auth": {"allow_anonymous": True}, "providers": {"glm": {
        "base_url": url + "/api/paas/v4", "api_keys": [fake.GOOD]}}})
    with pytest.raises(openai.RateLimitError) as e:
        await client(base, "x").chat.completions.create(model="glm-4.7-flash",
                                                        messages=say("!code 1310"))
    assert e.value.body["code"] == "quota_exceeded"
    assert abs(int(e.value.response.headers["retry-after"]) - fake.RESET_IN) <= 5
    row = gateway.pools["glm"].status([fake.GOOD])[0]
    assert row["state"] == "cooldown" and abs(row["cooldown_remaining"] - fake.RESET_IN) <= 5


async def test_retired_bare_glm_4_flash_reaches_its_dated_successor(gw):
    base, state = gw
    r = await client(base, fake.GOOD).chat.completions.create(model="glm-4-flash", messages=HI)
    assert r.model == "glm-4-flash"
    assert state.requests[-1]["body"]["model"] == "glm-4-flash-250414"
    with pytest.raises(openai.NotFoundError) as e:  # GLM's own answer for a gone name
        await client(base, fake.GOOD).chat.completions.create(model="glm-z1-flash",
                                                              messages=HI)
    assert state.requests[-1]["body"]["model"] == "glm-z1-flash"
    assert e.value.body["code"] == "model_not_found"


async def test_a_malformed_tools_or_thinking_field_is_the_vendors_400(gw):
    """GLM answers 1214 (invalid parameter, HTTP 400) to a field of the wrong type: the
    caller gets that 400, not a server error."""
    base, _ = gw
    for extra in ({"tools": 1}, {"thinking": "on"}):
        r = await request(base + "/v1/chat/completions", "POST",
                          dict(model="glm-4.7", messages=HI, **extra), key=fake.GOOD)
        assert r.code == 400, (extra, r.body)


@pytest.mark.parametrize("stream", [False, True])
async def test_offline_glm_4_5_flash_goes_to_glm_4_7_flash_unlisted(gw, stream):
    """GLM-4.5-Flash went offline on 2026-01-30 and GLM serves its requests with
    GLM-4.7-Flash (https://docs.bigmodel.cn/cn/guide/models/free/glm-4.5-flash.md): a
    retired name, sent as glm-4.7-flash, the answer keeping the client's name."""
    base, state = gw
    c = client(base, fake.GOOD)
    assert "glm-4.5-flash" not in {m.id for m in (await c.models.list()).data}
    r = await c.chat.completions.create(model="glm-4.5-flash", messages=HI, stream=stream)
    if stream:
        chunks = [ch async for ch in r]
        assert {ch.model for ch in chunks} == {"glm-4.5-flash"}
    else:
        assert r.model == "glm-4.5-flash"
    assert state.requests[-1]["body"]["model"] == "glm-4.7-flash"
    vendor = openai.AsyncOpenAI(base_url=state.url + "/api/paas/v4", api_key=fake.GOOD,
                                max_retries=0)  # the fake itself follows GLM's rule
    r = await vendor.chat.completions.create(model="glm-4.5-flash", messages=HI)
    assert r.model == "glm-4.7-flash"


PICTURE = [{"role": "user", "content": [
    {"type": "text", "text": "what is this?"},
    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]


async def test_glm_5_3_and_its_flash_are_listed_served_and_flash_takes_images(gw):
    # The flagship table of https://docs.bigmodel.cn/cn/guide/start/pricing.md (read
    # 2026-12-06): GLM-5.3 text in; GLM-5.3-Flash images, video, files and text in.
    base, state = gw
    c = client(base, fake.GOOD)
    listed = {m.id for m in (await c.models.list()).data}
    assert {"glm-5.3", "glm-5.3-flash", "glm-5.3-fold", "glm-5.3-flash-silent"} <= listed
    r = await c.chat.completions.create(model="glm-5.3-flash", messages=PICTURE)
    assert r.model == "glm-5.3-flash" and state.requests[-1]["body"]["messages"] == PICTURE
    sent = len(state.requests)
    with pytest.raises(openai.BadRequestError) as e:
        await c.chat.completions.create(model="glm-5.3", messages=PICTURE)
    assert e.value.body["code"] == "model_not_vision" and len(state.requests) == sent
    r = await c.chat.completions.create(model="glm-5.3", messages=HI)
    assert r.choices[0].message.model_extra["reasoning_content"] == "".join(REASONING)
