"""POST /v1/images/generations on StepFun (OpenAI-compatible, `b64_json` from the vendor
itself, step-image-edit-2's sizes written height x width) and MiniMax (its own
/v1/image_generation: sizes become `aspect_ratio` or width/height, `data.image_urls` /
`image_base64` become OpenAI's `data`, base_resp errors their statuses), driven by the
official openai SDK against fakes that follow the vendors' documented shapes."""

import base64

import openai
import pytest

from tests.fakes import minimax as fake_mm
from tests.fakes import step as fake_step
from tests.helpers import request
from tests.test_usage import ledger

ALICE = "gw-alice-images-sm-01"


@pytest.fixture
def gw(start_vendor, make_gateway):
    """A gateway whose StepFun and MiniMax pools hold a dead key before a good one."""
    step_url, step_state = start_vendor(fake_step)
    mm_url, mm_state = start_vendor(fake_mm)
    base, gateway = make_gateway({
        "auth": {"keys": [{"key": ALICE, "name": "alice"}]},
        "providers": {
            "step": {"base_url": step_url + "/v1", "discover": False,
                     "api_keys": [fake_step.DEAD, fake_step.GOOD]},
            "minimax": {"base_url": mm_url + "/v1", "discover": False,
                        "api_keys": [fake_mm.DEAD, fake_mm.GOOD]}}})
    return base, gateway, step_state, mm_state


def client(base):
    return openai.AsyncOpenAI(base_url=base + "/v1", api_key=ALICE, max_retries=0)


def sent(state, path):
    return [q for q in state.requests if q["path"] == path]


# -- StepFun ----------------------------------------------------------------------------------

async def test_step_image_url_with_its_extra_fields_and_height_by_width_size(gw):
    base, _, step, _ = gw
    r = await client(base).images.generate(
        model="step-image-edit-2", prompt="采菊东篱下", size="1360x768", quality="hd",
        extra_body={"steps": 8, "cfg_scale": 1.0, "seed": 1, "text_mode": True,
                    "negative_prompt": "blur"})
    assert r.data[0].url.endswith("/files/step.png") and r.data[0].b64_json is None
    body = sent(step, "/v1/images/generations")[-1]["body"]
    # OpenAI's 1360x768 is landscape; StepFun writes that as 768x1360 (height x width).
    assert body == {"model": "step-image-edit-2", "prompt": "采菊东篱下",
                    "response_format": "url", "size": "768x1360", "seed": 1, "steps": 8,
                    "cfg_scale": 1.0, "negative_prompt": "blur", "text_mode": True}


async def test_step_b64_json_comes_from_the_vendor_without_a_download(gw):
    base, _, step, _ = gw
    c = client(base)
    r = await c.images.generate(model="step-image-edit-2", prompt="a cat",
                                response_format="b64_json")
    assert base64.b64decode(r.data[0].b64_json) == fake_step.IMAGE and r.data[0].url is None
    assert sent(step, "/v1/images/generations")[-1]["body"]["response_format"] == "b64_json"
    # step-1x-medium's documented base64 field is `image`: it is OpenAI's b64_json too.
    r = await c.images.generate(model="step-1x-medium", prompt="a cat", size="1280x800",
                                response_format="b64_json")
    assert base64.b64decode(r.data[0].b64_json) == fake_step.IMAGE
    assert sent(step, "/v1/images/generations")[-1]["body"]["size"] == "1280x800"
    assert not sent(step, "/files/step.png")


@pytest.mark.parametrize("model,kw,param,words", [
    ("step-image-edit-2", {"size": "1024x768"}, "size", "768x1360"),
    ("step-1x-medium", {"size": "1360x768"}, "size", "1280x800"),
    ("step-image-edit-2", {"n": 2}, "n", "one image"),
    ("step-image-edit-2", {"prompt": "x" * 513}, "prompt", "512"),
    ("step-image-edit-2", {"extra_body": {"steps": 51}}, "steps", "1 to 50"),
    ("step-image-edit-2", {"extra_body": {"cfg_scale": 0.5}}, "cfg_scale", "1 to 10"),
    ("step-3.7-flash", {}, "model", "step-image-edit-2"),
])
async def test_step_input_it_refuses_is_a_400_before_anything_is_sent(gw, model, kw,
                                                                       param, words):
    base, _, step, _ = gw
    kw = {"prompt": "a cat", **kw}
    with pytest.raises(openai.BadRequestError) as e:
        await client(base).images.generate(model=model, **kw)
    assert e.value.body["param"] == param and words in e.value.body["message"], e.value.body
    assert not sent(step, "/v1/images/generations")


async def test_step_content_filter_is_a_400(gw):
    base, _, _, _ = gw
    with pytest.raises(openai.BadRequestError) as e:
        await client(base).images.generate(model="step-image-edit-2", prompt="!filtered x")
    assert e.value.body["code"] == "content_filter"


async def test_step_images_fail_over_to_the_second_key_and_are_in_the_ledger(gw):
    base, gateway, step, _ = gw
    for _ in range(2):
        await client(base).images.generate(model="step-image-edit-2", prompt="a cat")
    auths = [q["headers"]["Authorization"] for q in sent(step, "/v1/images/generations")]
    # The dead key was tried once (then set aside); both requests were served by the good.
    assert auths.count(f"Bearer {fake_step.DEAD}") <= 1
    assert auths.count(f"Bearer {fake_step.GOOD}") == 2
    rows = await ledger(gateway, 2)
    assert [(e["endpoint"], e["provider"], e["model"], e["status"], e["key"])
            for e in rows] == [("images", "step", "step-image-edit-2", 200, "alice")] * 2


# -- MiniMax ----------------------------------------------------------------------------------

async def test_minimax_sizes_become_aspect_ratio_or_width_and_height(gw):
    base, _, _, mm = gw
    c = client(base)
    r = await c.images.generate(model="image-01", prompt="a cat", size="1280x720", n=3)
    assert [d.url.split("/files/")[1] for d in r.data] == [
        f"image-01.jpeg?i={i}" for i in range(3)]
    assert r.created > 0
    body = sent(mm, "/v1/image_generation")[-1]["body"]
    assert body == {"model": "image-01", "prompt": "a cat", "n": 3,
                    "response_format": "url", "aspect_ratio": "16:9"}
    await c.images.generate(model="image-01", prompt="a cat", size="1000x600",
                            extra_body={"seed": 7, "prompt_optimizer": True})
    body = sent(mm, "/v1/image_generation")[-1]["body"]
    assert (body["width"], body["height"], body["seed"], body["prompt_optimizer"]) == (
        1000, 600, 7, True) and "aspect_ratio" not in body
    # image-01-live takes presets only: DALL-E's 1792x1024 is the 16:9 preset.
    await c.images.generate(model="image-01-live", prompt="a cat", size="1792x1024")
    body = sent(mm, "/v1/image_generation")[-1]["body"]
    assert body["aspect_ratio"] == "16:9" and "width" not in body


async def test_minimax_b64_json_is_asked_as_base64(gw):
    base, _, _, mm = gw
    r = await client(base).images.generate(model="image-01", prompt="a cat", n=2,
                                           response_format="b64_json")
    assert [base64.b64decode(d.b64_json) for d in r.data] == [fake_mm.IMAGE] * 2
    assert sent(mm, "/v1/image_generation")[-1]["body"]["response_format"] == "base64"
    assert not sent(mm, "/files/image-01.jpeg")


@pytest.mark.parametrize("model,kw,param,words", [
    ("image-01", {"size": "1000x601"}, "size", "multiples of 8"),
    ("image-01", {"size": "4096x4096"}, "size", "1344x576"),
    ("image-01-live", {"size": "1000x600"}, "size", "image-01 only"),
    ("image-01", {"n": 10}, "n", "1 to 9"),
    ("image-01", {"prompt": "x" * 1501}, "prompt", "1,500"),
    ("image-01", {"extra_body": {"aspect_ratio": "5:4"}}, "aspect_ratio", "21:9"),
])
async def test_minimax_input_it_refuses_is_a_400_before_anything_is_sent(gw, model, kw,
                                                                          param, words):
    base, _, _, mm = gw
    kw = {"prompt": "a cat", **kw}
    with pytest.raises(openai.BadRequestError) as e:
        await client(base).images.generate(model=model, **kw)
    assert e.value.body["param"] == param and words in e.value.body["message"], e.value.body
    assert not sent(mm, "/v1/image_generation")


async def test_minimax_base_resp_errors_are_statuses_and_a_bad_key_fails_over(gw):
    base, gateway, _, mm = gw
    c = client(base)
    for _ in range(2):
        r = await c.images.generate(model="image-01", prompt="a cat")
        assert len(r.data) == 1
    auths = [q["headers"]["Authorization"] for q in sent(mm, "/v1/image_generation")]
    # 1004 (HTTP 200) is a dead key: the next key serves, the dead one is set aside.
    assert auths.count(f"Bearer {fake_mm.DEAD}") == 1
    assert auths.count(f"Bearer {fake_mm.GOOD}") == 2
    with pytest.raises(openai.BadRequestError) as e:  # 1026: the prompt, on any key
        await c.images.generate(model="image-01", prompt="!code 1026")
    assert e.value.body["code"] == "content_filter" and "1026" in e.value.body["message"]
    with pytest.raises(openai.InternalServerError) as e:
        await c.images.generate(model="image-01", prompt="!fail")
    assert "none of the images" in e.value.body["message"]
    with pytest.raises(openai.RateLimitError):  # 1002, HTTP 200 all the same
        await c.images.generate(model="image-01", prompt="!code 1002")
    rows = await ledger(gateway, 5)
    assert {e["endpoint"] for e in rows} == {"images"}
    assert sorted((e["status"], e["error"]) for e in rows) == [
        (200, None), (200, None), (400, "content_filter"), (429, "rate_limit_exceeded"),
        (502, "upstream_502")]


async def test_image_models_are_listed_and_minimax_offers_no_embeddings(gw):
    base, _, _, mm = gw
    listed = {m.id: m.model_extra.get("capabilities")
              for m in (await client(base).models.list()).data}
    for model in ("step-image-edit-2", "step-2x-large", "step-1x-medium", "image-01",
                  "image-01-live"):
        assert listed[model] == (["images", "image_edits"] if model == "step-image-edit-2"
                                 else ["images"]), model
    # MiniMax's current docs document no embeddings API, so none is offered.
    resp = await request(base + "/v1/embeddings", "POST",
                         {"model": "MiniMax-M2.7", "input": "hi"}, key=ALICE)
    assert resp.code == 400 and b"offers no embeddings" in resp.body
    assert not any(q["path"].endswith("embeddings") for q in mm.requests)
