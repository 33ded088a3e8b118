"""POST /v1/embeddings and /v1/images/generations through the shared pipeline, driven by
the official openai SDK against fake GLM, Qwen and OpenAI-compatible servers that follow
the vendors' documented shapes (incl. Qwen-Image's asynchronous tasks)."""

import asyncio
import base64
import struct

import openai
import pytest

from tests.fakes import glm as fake_glm
from tests.fakes import qwen as fake_qwen
from tests.helpers import error_of, request
from tests.test_usage import ledger

ALICE = "gw-alice-modalities-01"


@pytest.fixture
def gw(start_vendor, make_gateway):
    """A gateway with server-side GLM and Qwen keys and one limited gateway key."""
    glm_url, glm_state = start_vendor(fake_glm)
    qwen_url, qwen_state = start_vendor(fake_qwen)

    def start(**extra):
        cfg = {"auth": {"keys": [{"key": ALICE, "name": "alice", **extra}]},
               "providers": {
                   "glm": {"base_url": glm_url + "/api/paas/v4",
                           "api_keys": [fake_glm.DEAD, fake_glm.GOOD]},
                   "qwen": {"base_url": qwen_url + "/compatible-mode/v1",
                            "api_keys": [fake_qwen.GOOD], "discover": False}}}
        base, gateway = make_gateway(cfg)
        return base, gateway

    start.glm, start.qwen = glm_state, qwen_state
    return start


def client(base):
    return openai.AsyncOpenAI(base_url=base + "/v1", api_key=ALICE, max_retries=0)


def floats(b64: str) -> list:
    raw = base64.b64decode(b64)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


# -- embeddings -----------------------------------------------------------------------------

async def test_glm_embeddings_with_the_sdk_float_and_base64(gw):
    base, _ = gw()
    c = client(base)
    # The SDK asks for base64 by default and decodes it itself.
    r = await c.embeddings.create(model="embedding-3", input=["你好", "hello"], dimensions=256)
    assert [len(d.embedding) for d in r.data] == [256, 256]
    assert r.data[0].embedding == pytest.approx(fake_glm.vector("你好", 256), abs=1e-6)
    assert r.usage.prompt_tokens == 6 and r.model == "embedding-3"
    r = await c.embeddings.create(model="embedding-3", input="hi", encoding_format="float")
    assert r.data[0].embedding == fake_glm.vector("hi", 2048)
    # The vendor got floats asked for and only its documented fields.
    sent = [q["body"] for q in gw.glm.requests if q["path"].endswith("/embeddings")]
    assert all(set(b) <= {"model", "input", "dimensions"} for b in sent)


async def test_base64_is_openais_little_endian_float32(gw):
    base, _ = gw()
    resp = await request(base + "/v1/embeddings", "POST", {
        "model": "embedding-3", "input": "hi", "encoding_format": "base64",
        "dimensions": 256}, key=ALICE)
    assert resp.code == 200
    import json
    item = json.loads(resp.body)["data"][0]
    assert isinstance(item["embedding"], str)
    assert floats(item["embedding"]) == pytest.approx(fake_glm.vector("hi", 256), abs=1e-6)


async def test_qwen_embeddings_through_the_compatible_mode(gw):
    base, _ = gw()
    r = await client(base).embeddings.create(model="text-embedding-v4", input=["a", "bb"],
                                             dimensions=64, encoding_format="float")
    assert [len(d.embedding) for d in r.data] == [64, 64] and r.usage.total_tokens == 5
    assert gw.qwen.requests[-1]["path"] == "/compatible-mode/v1/embeddings"


@pytest.mark.parametrize("model,body,param,words", [
    ("embedding-3", {"input": [[1, 2, 3]]}, "input", "not token ids"),
    ("embedding-3", {"input": ["x"] * 65}, "input", "at most 64"),
    ("embedding-3", {"input": "x", "dimensions": 300}, "dimensions", "256, 512, 1024, 2048"),
    ("text-embedding-v4", {"input": ["x"] * 11}, "input", "at most 10"),
    ("embedding-3", {"input": ""}, "input", "non-empty"),
    ("embedding-3", {"input": "x", "encoding_format": "int8"}, "encoding_format", "base64"),
    ("glm-4.7-flash", {"input": "x"}, "model", "embedding-3"),
    ("deepseek-flash", {"input": "x"}, "model", "offers no embeddings"),
])
async def test_input_a_vendor_refuses_is_a_clear_400_before_anything_is_sent(
        gw, model, body, param, words):
    base, _ = gw()
    before = len(gw.glm.requests) + len(gw.qwen.requests)
    resp = await request(base + "/v1/embeddings", "POST", {"model": model, **body}, key=ALICE)
    err = error_of(resp, 400)
    assert err["param"] == param and words in err["message"], err
    assert len(gw.glm.requests) + len(gw.qwen.requests) == before


async def test_embeddings_fail_over_to_the_next_key_and_are_in_the_ledger(gw):
    base, gateway = gw(tpm=1000)
    for _ in range(2):
        await client(base).embeddings.create(model="embedding-3", input="hi")
    auths = [q["headers"]["Authorization"] for q in gw.glm.requests]
    # The dead key was tried once (then set aside); every request was answered by the good.
    assert auths.count(f"Bearer {fake_glm.DEAD}") == 1
    assert auths.count(f"Bearer {fake_glm.GOOD}") == 2
    e = (await ledger(gateway, 2))[0]
    assert e["endpoint"] == "embeddings" and e["provider"] == "glm" and e["key"] == "alice"
    assert e["model"] == "embedding-3" and e["status"] == 200 and e["stream"] is False
    assert e["prompt_tokens"] == 6 and e["total_tokens"] == 6


async def test_limits_count_non_chat_requests(gw):
    base, gateway = gw(rpm=2, models=["embedding-3", "cogview-*"])
    c = client(base)
    with pytest.raises(openai.PermissionDeniedError) as e:
        await c.embeddings.create(model="text-embedding-v4", input="hi")
    assert e.value.body["code"] == "model_not_allowed"
    await c.embeddings.create(model="embedding-3", input="hi")
    await c.images.generate(model="cogview-3-flash", prompt="a cat")
    with pytest.raises(openai.RateLimitError) as e:
        await c.embeddings.create(model="embedding-3", input="hi")
    assert e.value.body["code"] == "rpm_exceeded"


# -- images: GLM CogView ------------------------------------------------------------------

async def test_cogview_url_and_b64_json(gw):
    base, gateway = gw()
    c = client(base)
    r = await c.images.generate(model="cogview-3-flash", prompt="a cat", size="1024x1024")
    assert r.data[0].url.endswith("/files/cogview.png") and r.data[0].b64_json is None
    r = await c.images.generate(model="cogview-3-flash", prompt="a cat", size="1792x1024",
                                response_format="b64_json")
    assert base64.b64decode(r.data[0].b64_json) == fake_glm.PNG and r.data[0].url is None
    sent = [q for q in gw.glm.requests if q["path"].endswith("/images/generations")]
    assert sent[-1]["body"] == {"model": "cogview-3-flash", "prompt": "a cat",
                                "size": "1792x1024"}
    # The download of the image carried no key.
    [dl] = [q for q in gw.glm.requests if q["path"] == "/files/cogview.png"]
    assert "Authorization" not in dl["headers"]
    rows = await ledger(gateway, 2)
    assert [e["endpoint"] for e in rows] == ["images", "images"]


@pytest.mark.parametrize("model,size,words", [
    ("cogview-3-flash", "256x256", "512-2048"),
    ("cogview-3-flash", "2048x2048", "2097152"),
    ("qwen-image-plus", "512x512", "1664x928"),
    ("cogview-3-flash", "huge", "WIDTHxHEIGHT"),
])
async def test_a_size_the_vendor_refuses_is_a_clear_400(gw, model, size, words):
    base, _ = gw()
    with pytest.raises(openai.BadRequestError) as e:
        await client(base).images.generate(model=model, prompt="a cat", size=size)
    assert e.value.body["param"] == "size" and words in e.value.body["message"]


async def test_an_oversize_request_is_a_413_and_a_long_prompt_a_400(make_gateway):
    base, _ = make_gateway({"auth": {"keys": [ALICE]},
                            "server": {"max_body_size": 1 << 20}})
    resp = await request(base + "/v1/images/generations", "POST",
                         b'{"model": "cogview-3-flash", "prompt": "' + b"x" * (2 << 20)
                         + b'"}', key=ALICE, timeout=30)
    assert error_of(resp, 413)["code"] == "request_too_large"
    resp = await request(base + "/v1/images/generations", "POST", {
        "model": "cogview-3-flash", "prompt": "x" * 40000}, key=ALICE)
    assert error_of(resp, 400)["param"] == "prompt"


# -- images: Qwen-Image's asynchronous tasks -----------------------------------------------

async def test_qwen_image_task_is_submitted_polled_and_answered(gw):
    base, gateway = gw()
    r = await client(base).images.generate(model="qwen-image-plus", prompt="a poster",
                                           size="1024x1024")
    assert r.data[0].url.endswith("/files/qwen-image.png?Expires=1")
    assert r.data[0].revised_prompt == "a poster, detailed"
    [submit] = [q for q in gw.qwen.requests if "image-synthesis" in q["path"]]
    assert submit["headers"]["X-Dashscope-Async"] == "enable"
    assert submit["body"] == {"model": "qwen-image-plus", "input": {"prompt": "a poster"},
                              "parameters": {"n": 1, "size": "1328*1328"}}
    polls = [q for q in gw.qwen.requests if q["path"].startswith("/api/v1/tasks/")]
    assert len(polls) == fake_qwen.POLLS_TO_FINISH
    assert all(q["headers"]["Authorization"] == f"Bearer {fake_qwen.GOOD}" for q in polls)
    r = await client(base).images.generate(model="qwen-image", prompt="b",
                                           response_format="b64_json")
    assert base64.b64decode(r.data[0].b64_json) == fake_qwen.PNG
    e = (await ledger(gateway, 2))[0]
    assert e["endpoint"] == "images" and e["provider"] == "qwen" and e["status"] == 200


async def test_a_failed_qwen_task_is_a_clear_error(gw):
    base, _ = gw()
    with pytest.raises(openai.BadRequestError) as e:
        await client(base).images.generate(model="qwen-image-plus", prompt="!fail this")
    assert e.value.body["code"] == "DataInspectionFailed"
    assert "image task failed" in e.value.body["message"]


async def test_a_qwen_task_that_outlives_the_timeout_is_a_504(start_vendor, make_gateway):
    url, state = start_vendor(fake_qwen)
    base, gateway = make_gateway({"auth": {"keys": [ALICE]}, "providers": {"qwen": {
        "base_url": url + "/compatible-mode/v1", "api_keys": [fake_qwen.GOOD],
        "discover": False, "timeouts": {"total": 2}}}})
    with pytest.raises(openai.APIStatusError) as e:
        await client(base).images.generate(model="qwen-image", prompt="!slow one")
    assert e.value.status_code == 504 and e.value.body["code"] == "upstream_timeout"
    assert "the image task did not finish within 2s" in e.value.body["message"]
    assert any(q["path"].startswith("/api/v1/tasks/") for q in state.requests)
    [entry] = await ledger(gateway, 1)
    assert entry["status"] == 504 and entry["endpoint"] == "images"


async def test_a_client_that_leaves_stops_the_polling(gw):
    base, gateway = gw()
    task = asyncio.ensure_future(client(base).images.generate(model="qwen-image",
                                                              prompt="!slow forever"))
    for _ in range(100):
        if any(q["path"].startswith("/api/v1/tasks/") for q in gw.qwen.requests):
            break
        await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.sleep(0.1)
    polls = len(gw.qwen.requests)
    await asyncio.sleep(2.5)
    assert len(gw.qwen.requests) == polls  # nobody asks for a result nobody reads
    [entry] = await ledger(gateway, 1)
    assert entry["status"] == 499


async def test_shutdown_ends_a_polling_image_request_with_503(gw):
    base, gateway = gw()
    task = asyncio.ensure_future(client(base).images.generate(model="qwen-image",
                                                              prompt="!slow forever"))
    for _ in range(100):
        if any(q["path"].startswith("/api/v1/tasks/") for q in gw.qwen.requests):
            break
        await asyncio.sleep(0.05)
    await asyncio.wait_for(gateway.drain(0.2), 5)
    with pytest.raises(openai.APIStatusError) as e:
        await task
    assert e.value.status_code == 503 and e.value.body["code"] == "shutting_down"
