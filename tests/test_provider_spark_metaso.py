"""Spark (code/message/sid, missing fields) and Metaso (search answers, errCode) behind the
gateway."""

import openai
import pytest

from tests.fakes import metaso as fake_ms
from tests.fakes import spark as fake_sp
from tests.fakes.common import ANSWER, REASONING
from tests.helpers import HI, client, collect, token_check


@pytest.fixture
def spark(start_vendor, make_gateway):
    url, state = start_vendor(fake_sp)
    base, _ = make_gateway({"providers": {"spark": {"base_url": url + "/v1"}}})
    return base, state


@pytest.fixture
def metaso(start_vendor, make_gateway):
    url, state = start_vendor(fake_ms)
    base, _ = make_gateway({"providers": {"metaso": {"base_url": url + "/api/v1"}}})
    return base, state


async def test_spark_non_stream_filled_in(spark):
    base, state = spark
    r = await client(base, fake_sp.GOOD).chat.completions.create(model="spark-lite",
                                                                 messages=HI)
    assert (r.object, r.id, r.model) == ("chat.completion", fake_sp.SID, "spark-lite")
    assert isinstance(r.created, int) and r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.content == "".join(ANSWER)
    assert r.usage.total_tokens == fake_sp.USAGE["total_tokens"]
    assert "code" not in r.model_extra and r.model_extra["sid"] == fake_sp.SID
    assert state.requests[-1]["body"]["model"] == "lite"
    assert state.requests[-1]["headers"]["Authorization"] == f"Bearer {fake_sp.GOOD}"


async def test_spark_stream_filled_in(spark):
    base, _ = spark
    out = await collect(await client(base, fake_sp.GOOD).chat.completions.create(
        model="generalv3.5", messages=HI, stream=True, stream_options={"include_usage": True}))
    assert out["content"] == "".join(ANSWER) and out["finish"] == "stop"
    assert all(c.model == "generalv3.5" and c.id for c in out["chunks"])
    assert out["chunks"][-1].choices == []  # OpenAI's include_usage chunk, made from Spark's
    assert out["usage"].total_tokens == fake_sp.USAGE["total_tokens"]


@pytest.mark.parametrize("key,text,cls,status,code", [
    (fake_sp.BUSY, "hi", openai.RateLimitError, 429, "rate_limit_exceeded"),
    (fake_sp.GOOD, "!code 10013", openai.BadRequestError, 400, "content_filter"),
    (fake_sp.GOOD, "!code 11200", openai.PermissionDeniedError, 403, "not_authorized"),
    (fake_sp.DEAD, "hi", openai.AuthenticationError, 401, "api_error"),
])
async def test_spark_errors(spark, key, text, cls, status, code):
    base, _ = spark
    for stream in (False, True):
        with pytest.raises(cls) as e:
            r = await client(base, key).chat.completions.create(
                model="lite", messages=[{"role": "user", "content": text}], stream=stream)
            [c async for c in r]
        assert e.value.status_code == status
        # After a 429 the key cools down, so the second call is refused by the gateway.
        cooled = status == 429 and stream
        assert e.value.body["code"] == ("keys_cooling_down" if cooled else code)


async def test_spark_key_check(spark):
    base, state = spark
    assert await token_check(base, "spark", fake_sp.GOOD) == (200, {"live": True})
    assert state.requests[-1]["body"]["model"] == "lite"
    assert await token_check(base, "spark", fake_sp.DEAD) == (200, {"live": False})


async def test_metaso_answer_with_citations(metaso):
    base, state = metaso
    c = client(base, fake_ms.GOOD)
    r = await c.chat.completions.create(model="metaso", messages=HI,
                                        extra_body={"scope": "webpage"})
    assert r.choices[0].message.content == "".join(ANSWER)
    assert r.model_extra["citations"] == fake_ms.CITATIONS
    sent = state.requests[-1]["body"]
    assert sent["model"] == "fast" and sent["scope"] == "webpage"
    out = await collect(await c.chat.completions.create(model="ds-r1", messages=HI,
                                                        stream=True))
    assert out["content"] == "".join(ANSWER) and out["reasoning"] == "".join(REASONING)
    assert out["usage"].total_tokens == fake_ms.USAGE["total_tokens"]
    assert any((ch.choices[0].delta.model_extra or {}).get("citations")
               for ch in out["chunks"] if ch.choices)
    out = await collect(await c.chat.completions.create(model="metaso-thinking-silent",
                                                        messages=HI, stream=True))
    assert out["reasoning"] == "" and out["content"] == "".join(ANSWER)


async def test_metaso_is_search_itself(metaso):
    base, state = metaso
    c = client(base, fake_ms.GOOD)
    listed = {m.id: m for m in (await c.models.list()).data}
    assert "search" in listed["fast"].capabilities
    r = await c.chat.completions.create(model="metaso-search", messages=HI)
    assert r.model == "metaso-search" and r.model_extra["citations"] == fake_ms.CITATIONS
    assert state.requests[-1]["body"]["model"] == "fast"


async def test_metaso_errors_and_key_check(metaso):
    base, _ = metaso
    with pytest.raises(openai.BadRequestError) as e:
        await client(base, fake_ms.GOOD).chat.completions.create(
            model="fast", messages=[{"role": "user", "content": "!code 1000"}])
    assert "errCode 1000" in e.value.body["message"]
    with pytest.raises(openai.AuthenticationError) as e:
        await client(base, fake_ms.DEAD).chat.completions.create(model="fast", messages=HI)
    assert "invalid api key" in e.value.body["message"]
    code, body = await token_check(base, "metaso", fake_ms.GOOD)
    assert code == 400 and body["error"]["code"] == "key_check_unsupported"


async def test_spark_x_models_go_to_v2_with_reasoning(spark):
    base, state = spark
    c = client(base, fake_sp.GOOD)
    r = await c.chat.completions.create(model="x1", messages=HI)  # X1 became X1.5
    assert r.model == "x1"
    assert state.requests[-1]["path"] == "/v2/chat/completions"
    assert state.requests[-1]["body"]["model"] == "spark-x"
    assert r.choices[0].message.content == "".join(ANSWER)
    assert r.choices[0].message.model_extra["reasoning_content"] == "".join(REASONING)
    out = await collect(await c.chat.completions.create(model="spark-x-fold", messages=HI,
                                                        stream=True))
    assert state.requests[-1]["path"] == "/v2/chat/completions"
    assert state.requests[-1]["body"]["model"] == "spark-x"
    assert out["content"].startswith("<think>")
    await c.chat.completions.create(model="lite", messages=HI)
    assert state.requests[-1]["path"] == "/v1/chat/completions"  # the others stay on /v1
    ids = {m.id for m in (await c.models.list()).data}
    assert {"lite", "spark-x", "spark-x-fold", "4.0Ultra"} <= ids and "x1" not in ids
