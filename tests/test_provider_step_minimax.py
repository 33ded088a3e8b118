"""StepFun (`reasoning` renamed) and MiniMax (HTTP 200 errors, inline <think>) behind the
gateway."""

import openai
import pytest

from tests.fakes import minimax as fake_mm
from tests.fakes import step as fake_step
from freeapi.keys import mask
from tests.fakes.common import ANSWER, REASONING
from tests.helpers import HI, assert_no_secret, chat_body, client, collect, stream_raw, \
    token_check


@pytest.fixture
def step(start_vendor, make_gateway):
    url, state = start_vendor(fake_step)
    base, _ = make_gateway({"providers": {"step": {"base_url": url + "/v1"}}})
    state.url = url
    return base, state


@pytest.fixture
def mm(start_vendor, make_gateway):
    url, state = start_vendor(fake_mm)
    base, _ = make_gateway({"providers": {"minimax": {"base_url": url + "/v1"}}})
    return base, state


async def test_step_reasoning_renamed(step):
    base, _ = step
    c = client(base, fake_step.GOOD)
    out = await collect(await c.chat.completions.create(model="step-3.5-flash", messages=HI,
                                                        stream=True))
    assert out["reasoning"] == "".join(REASONING) and out["content"] == "".join(ANSWER)
    assert not any("reasoning" in (ch.choices[0].delta.model_extra or {})
                   for ch in out["chunks"] if ch.choices)
    r = await c.chat.completions.create(model="step-3.5-flash", messages=HI)
    extra = r.choices[0].message.model_extra
    assert extra["reasoning_content"] == "".join(REASONING) and "reasoning" not in extra
    out = await collect(await c.chat.completions.create(model="step-3.5-flash-silent",
                                                        messages=HI, stream=True))
    assert out["reasoning"] == "" and out["content"] == "".join(ANSWER)
    r = await c.chat.completions.create(model="step-1o-turbo-vision", messages=HI)
    assert r.choices[0].message.content == "".join(ANSWER)


async def test_step_errors_and_key_check(step):
    base, state = step
    with pytest.raises(openai.AuthenticationError):
        await client(base, fake_step.DEAD).chat.completions.create(model="step-3.7-flash",
                                                                   messages=HI)
    assert await token_check(base, "step", fake_step.GOOD) == (200, {"live": True})
    assert state.requests[-1]["path"] == "/v1/models"
    assert await token_check(base, "step", fake_step.DEAD) == (200, {"live": False})


async def test_minimax_think_tags_split_in_stream(mm):
    base, _ = mm
    out = await collect(await client(base, fake_mm.GOOD).chat.completions.create(
        model="MiniMax-M2.7", messages=HI, stream=True))
    assert out["reasoning"] == fake_mm.THINK
    assert out["content"] == "".join(ANSWER)  # the repeated full reply is not sent twice
    assert out["finish"] == "stop" and out["usage"].total_tokens == fake_mm.USAGE["total_tokens"]


async def test_minimax_fold_and_silent(mm):
    base, _ = mm
    c = client(base, fake_mm.GOOD)
    folded = f"<think>\n{fake_mm.THINK}\n</think>\n\n{''.join(ANSWER)}"
    out = await collect(await c.chat.completions.create(model="MiniMax-M2.7-fold",
                                                        messages=HI, stream=True))
    assert out["content"] == folded
    r = await c.chat.completions.create(model="MiniMax-M2.7-fold", messages=HI)
    assert r.choices[0].message.content == folded
    r = await c.chat.completions.create(model="MiniMax-M2.7-silent", messages=HI)
    assert r.choices[0].message.content == "".join(ANSWER)


async def test_minimax_non_stream_split(mm):
    base, _ = mm
    c = client(base, fake_mm.GOOD)
    r = await c.chat.completions.create(model="MiniMax-M2.7", messages=HI)
    assert r.choices[0].message.content == "".join(ANSWER)
    assert r.choices[0].message.model_extra["reasoning_content"] == fake_mm.THINK
    r = await c.chat.completions.create(model="MiniMax-M2.7", messages=HI,
                                        extra_body={"reasoning_split": True})
    assert r.choices[0].message.model_extra["reasoning_content"] == fake_mm.THINK
    assert "reasoning_details" not in r.choices[0].message.model_extra


@pytest.mark.parametrize("key,cls,status", [
    (fake_mm.DEAD, openai.AuthenticationError, 401),
    (fake_mm.POOR, openai.APIStatusError, 402),
    (fake_mm.BUSY, openai.RateLimitError, 429),
])
async def test_minimax_http_200_errors(mm, key, cls, status):
    base, _ = mm
    for stream in (False, True):
        with pytest.raises(cls) as e:
            r = await client(base, key).chat.completions.create(
                model="MiniMax-M2.7", messages=HI, stream=stream)
            [c async for c in r]
        assert e.value.status_code == status
        if status == 429 and stream:  # the first 429 cooled the key down
            assert e.value.body["code"] == "keys_cooling_down"
        else:
            assert f"MiniMax code {fake_mm.KEYS[key]}" in e.value.body["message"]
        assert_no_secret(e.value.message, key)


async def test_minimax_content_filter_and_rotation(mm):
    base, _ = mm
    with pytest.raises(openai.BadRequestError) as e:
        await client(base, fake_mm.GOOD).chat.completions.create(
            model="MiniMax-M2.7", messages=[{"role": "user", "content": "!code 1026"}])
    assert e.value.body["code"] == "content_filter"
    r = await client(base, f"{fake_mm.POOR},{fake_mm.GOOD}").chat.completions.create(
        model="MiniMax-M2.7", messages=HI)
    assert r.choices[0].message.content == "".join(ANSWER)


async def test_minimax_refusal_as_a_streams_first_event_fails_over(mm):
    # No `"error"` in that event: only MiniMax's own reading of base_resp finds it.
    base, state = mm
    state.keys[fake_mm.STREAM_POOR] = "stream 1008"
    keys = f"{fake_mm.STREAM_POOR},{fake_mm.GOOD}"
    for _ in range(3):  # rotation reaches STREAM_POOR within three requests
        resp, raw = await stream_raw(base, chat_body(model="MiniMax-M2.7", stream=True),
                                     key=keys)
        assert resp.code == 200 and b"1008" not in raw and ANSWER[-1].encode() in raw
        assert resp.headers["x-freeapi-key"] == mask(fake_mm.GOOD)
    assert len(state.requests) == 4  # one refused stream, three answers


async def test_minimax_key_check(mm):
    base, _ = mm
    assert await token_check(base, "minimax", fake_mm.GOOD) == (200, {"live": True})
    assert await token_check(base, "minimax", fake_mm.DEAD) == (200, {"live": False})
    assert await token_check(base, "minimax", fake_mm.POOR) == (200, {"live": False})
    code, body = await token_check(base, "minimax", fake_mm.BUSY)  # says nothing of the key
    assert code == 502 and "error" in body


async def test_step_current_models_listed_and_served(step):
    base, state = step
    c = client(base, fake_step.GOOD)
    listed = {m.id for m in (await c.models.list()).data}
    assert {"step-3.7-flash", "step-3.7-flash-fold", "step-3.5-flash",
            "step-1o-turbo-vision"} <= listed
    assert not listed & set(fake_step.RETIRED)
    r = await c.chat.completions.create(model="step-3.7-flash", messages=HI)
    assert r.model == "step-3.7-flash"
    assert r.choices[0].message.model_extra["reasoning_content"] == "".join(REASONING)
    with pytest.raises(openai.NotFoundError):  # the fake refuses retired names itself
        await openai.AsyncOpenAI(base_url=state.url + "/v1", api_key=fake_step.GOOD,
                                 max_retries=0).chat.completions.create(
            model=fake_step.RETIRED[0], messages=HI)


async def test_minimax_current_models_listed_and_served(mm):
    base, state = mm
    c = client(base, fake_mm.GOOD)
    listed = {m.id for m in (await c.models.list()).data}
    assert {"MiniMax-M3", "MiniMax-M2.7", "MiniMax-M2.7-highspeed", "MiniMax-M3-silent"} <= listed
    assert not listed & set(fake_mm.RETIRED)
    r = await c.chat.completions.create(model="MiniMax-M3", messages=HI)
    assert r.model == "MiniMax-M3" and state.requests[-1]["body"]["model"] == "MiniMax-M3"
    assert r.choices[0].message.content == "".join(ANSWER)
