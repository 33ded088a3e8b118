"""POST /v1/images/edits and /v1/images/variations through the shared pipeline, driven by
the official openai SDK against fake Qwen (DashScope's multimodal-generation API), GLM and
OpenAI-compatible servers that follow their documented shapes and refusals."""

import base64
import json
import secrets

import openai
import pytest

from tests.fakes import glm as fake_glm
from tests.fakes import openai_compat as fake_local
from tests.fakes import qwen as fake_qwen
from tests.helpers import error_of, request
from tests.test_usage import ledger

ALICE = "gw-alice-image-edits-01"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"png-pixels" * 20
JPEG = b"\xff\xd8\xff\xe0" + b"jpeg-pixels" * 20
EDIT = "/api/v1/services/aigc/multimodal-generation/generation"


@pytest.fixture
def gw(start_vendor, make_gateway):
    """A gateway with GLM, and Qwen holding a dead key before a good one."""
    glm_url, glm_state = start_vendor(fake_glm)
    qwen_url, qwen_state = start_vendor(fake_qwen)

    def start(**extra):
        return make_gateway({
            "auth": {"keys": [{"key": ALICE, "name": "alice", **extra}]},
            "providers": {
                "glm": {"base_url": glm_url + "/api/paas/v4", "api_keys": [fake_glm.GOOD]},
                "qwen": {"base_url": qwen_url + "/compatible-mode/v1", "discover": False,
                         "api_keys": [fake_qwen.DEAD, fake_qwen.GOOD]}}})

    start.glm, start.qwen = glm_state, qwen_state
    return start


def client(base, key=ALICE):
    return openai.AsyncOpenAI(base_url=base + "/v1", api_key=key, max_retries=0)


def edits_sent(state):
    return [q for q in state.requests if q["path"] == EDIT]


def form(fields: dict, files: list) -> tuple[bytes, str]:
    """A multipart/form-data body of `fields` and `files` ((name, filename, type, bytes))."""
    boundary = "test-" + secrets.token_hex(8)
    out = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
           .encode() for k, v in fields.items()]
    for name, filename, media_type, data in files:
        out.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                   f'filename="{filename}"\r\nContent-Type: {media_type}\r\n\r\n'.encode()
                   + data + b"\r\n")
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out), f"multipart/form-data; boundary={boundary}"


async def post_form(base, path, fields, files):
    body, ctype = form(fields, files)
    return await request(base + path, "POST", body, key=ALICE, headers={"Content-Type": ctype})


# -- Qwen-Image-Edit ---------------------------------------------------------------------

async def test_qwen_edit_sends_the_images_as_data_urls_and_answers_openais_shape(gw):
    base, gateway = gw()
    c = client(base)
    # Several images: the SDK sends them as `image[]`.
    r = await c.images.edit(model="qwen-image-edit-plus", prompt="put the cat in the hat",
                            image=[("cat.png", PNG, "image/png"),
                                   ("hat.jpg", JPEG, "application/octet-stream")],
                            n=2, size="1024x1536", extra_body={"negative_prompt": "blur",
                                                               "watermark": "false"})
    assert [d.url.rsplit("/", 1)[1] for d in r.data] == ["qwen-edit-0.png?Expires=1",
                                                         "qwen-edit-1.png?Expires=1"]
    sent = edits_sent(gw.qwen)[-1]
    assert sent["headers"]["Authorization"] == f"Bearer {fake_qwen.GOOD}"
    [message] = sent["body"]["input"]["messages"]
    # The media type is the bytes', not the one the client claimed.
    assert message == {"role": "user", "content": [
        {"image": "data:image/png;base64," + base64.b64encode(PNG).decode()},
        {"image": "data:image/jpeg;base64," + base64.b64encode(JPEG).decode()},
        {"text": "put the cat in the hat"}]}
    assert sent["body"]["model"] == "qwen-image-edit-plus"
    assert sent["body"]["parameters"] == {"n": 2, "size": "1024*1536",
                                          "negative_prompt": "blur", "watermark": False}
    # One image as `image`; b64_json is made by downloading the vendor's URL.
    r = await c.images.edit(model="qwen-image-edit", prompt="sepia", image=("a.png", PNG),
                            response_format="b64_json")
    assert base64.b64decode(r.data[0].b64_json) == fake_qwen.PNG and r.data[0].url is None
    assert "response_format" not in edits_sent(gw.qwen)[-1]["body"]["parameters"]
    rows = await ledger(gateway, 2)
    assert [(e["endpoint"], e["provider"], e["model"], e["status"]) for e in rows] == [
        ("images", "qwen", "qwen-image-edit-plus", 200),
        ("images", "qwen", "qwen-image-edit", 200)]


async def test_edits_fail_over_to_the_next_key_and_count_against_the_callers_limits(gw):
    base, gateway = gw(rpm=2)
    c = client(base)
    for _ in range(2):
        await c.images.edit(model="qwen-image-edit-max", prompt="x", image=("a.png", PNG))
    auths = [q["headers"]["Authorization"] for q in edits_sent(gw.qwen)]
    assert auths.count(f"Bearer {fake_qwen.DEAD}") == 1  # tried once, then set aside
    assert auths.count(f"Bearer {fake_qwen.GOOD}") == 2
    with pytest.raises(openai.RateLimitError) as e:
        await c.images.edit(model="qwen-image-edit-max", prompt="x", image=("a.png", PNG))
    assert e.value.body["code"] == "rpm_exceeded"
    assert len(edits_sent(gw.qwen)) == 3
    assert [e["key"] for e in await ledger(gateway, 2)] == ["alice", "alice"]


async def test_a_refusal_of_the_vendor_reaches_the_client_as_its_400(gw):
    base, _ = gw()
    # A dated name the gateway does not list is routed to Qwen; the vendor refuses it.
    with pytest.raises(openai.BadRequestError) as e:
        await client(base).images.edit(model="qwen-image-edit-plus-2099-01-01", prompt="x",
                                       image=("a.png", PNG))
    assert e.value.body["code"] == "InvalidParameter"
    assert "Model not exist" in e.value.body["message"]


BIG = PNG + b"\x00" * (10 << 20)


@pytest.mark.parametrize("model,kw,param,words", [
    ("qwen-image-edit-plus", {"image": ("a.png", b"hello, not a picture")}, "image",
     "is not an image"),
    ("qwen-image-edit-plus", {"image": ("a.png", BIG)}, "image", "at most 10 MB"),
    ("qwen-image-edit-plus", {"image": [("a.png", PNG)] * 4}, "image", "1 to 3 images"),
    ("qwen-image-edit-plus", {"image": ("a.png", PNG), "mask": ("m.png", PNG)}, "mask",
     "takes no mask"),
    ("qwen-image-edit-plus", {"image": ("a.png", PNG), "size": "4096x4096"}, "size",
     "512-2048"),
    ("qwen-image-edit", {"image": ("a.png", PNG), "size": "1024x1024"}, "size",
     "qwen-image-edit-plus takes one"),
    ("qwen-image-edit", {"image": ("a.png", PNG), "n": 2}, "n", "send n=1"),
    ("qwen-image-edit-max", {"image": ("a.png", PNG), "n": 7}, "n", "1 to 6"),
    ("qwen-image-edit-max", {"image": ("a.png", PNG), "output_format": "jpeg"},
     "output_format", "PNG only"),
    # Models that only generate name the models that edit.
    ("qwen-image-plus", {"image": ("a.png", PNG)}, "model",
     "qwen makes them with: qwen-image-edit-max"),
    ("cogview-3-flash", {"image": ("a.png", PNG)}, "model",
     "glm makes none (ask for qwen-image-edit-max"),
])
async def test_input_the_vendor_refuses_is_a_clear_400_before_anything_is_sent(
        gw, model, kw, param, words):
    base, gateway = gw()
    with pytest.raises(openai.BadRequestError) as e:
        await client(base).images.edit(model=model, prompt="a hat", **kw)
    assert e.value.body["param"] == param and words in e.value.body["message"], e.value.body
    assert gw.qwen.requests == [] and gw.glm.requests == []
    assert await ledger(gateway) == []  # refused before it was counted


@pytest.mark.parametrize("fields,files,param,words", [
    ({"model": "qwen-image-edit-plus", "prompt": "x"}, [], "image", "`image` is required"),
    ({"model": "qwen-image-edit-plus"}, [("image", "a.png", "image/png", PNG)], "prompt",
     "`prompt` is required"),
    ({"model": "qwen-image-edit-plus", "prompt": "x"},
     [("image", "a.png", "image/png", b"")], "image", "empty file"),
    ({"model": "qwen-image-edit-plus", "prompt": "x", "n": "two"},
     [("image", "a.png", "image/png", PNG)], "n", "integer"),
    # "²" is a digit to str.isdigit(), not to int().
    ({"model": "qwen-image-edit-plus", "prompt": "x", "n": "\u00b2"},
     [("image", "a.png", "image/png", PNG)], "n", "integer"),
    ({"model": "qwen-image-edit-plus", "prompt": "x", "seed": "\u00b2"},
     [("image", "a.png", "image/png", PNG)], "seed", "whole number"),
    ({"model": "qwen-image-edit-plus", "prompt": "x", "response_format": "png"},
     [("image", "a.png", "image/png", PNG)], "response_format", "b64_json"),
    ({"prompt": "x"}, [("image", "a.png", "image/png", PNG)], "model", "model"),
])
async def test_a_malformed_form_is_a_clear_400(gw, fields, files, param, words):
    base, _ = gw()
    err = error_of(await post_form(base, "/v1/images/edits", fields, files), 400)
    assert err["param"] == param and words in err["message"], err
    assert gw.qwen.requests == []


async def test_json_instead_of_a_form_is_a_400_that_says_how_to_send_it(gw):
    base, _ = gw()
    resp = await request(base + "/v1/images/edits", "POST", {
        "model": "qwen-image-edit-plus", "prompt": "x", "image": "https://x/a.png"}, key=ALICE)
    err = error_of(resp, 400)
    assert err["code"] == "invalid_content_type" and "multipart/form-data" in err["message"]


async def test_variations_of_a_vendor_that_makes_none_are_refused(gw):
    base, _ = gw()
    with pytest.raises(openai.BadRequestError) as e:
        await client(base).images.create_variation(model="qwen-image-edit-plus",
                                                   image=("a.png", PNG))
    assert e.value.body["param"] == "model"
    assert "does not make variations of images" in e.value.body["message"]
    assert gw.qwen.requests == []


async def test_the_models_list_says_which_models_edit(gw):
    base, _ = gw()
    listed = {m.id: m.model_extra["capabilities"] async for m in client(base).models.list()}
    assert listed["qwen-image-edit-plus"] == ["image_edits"]
    assert listed["qwen-image-plus"] == ["images"]
    assert "image_edits" not in listed["cogview-3-flash"]


# -- a `type: openai` server: the form relayed -------------------------------------------

@pytest.fixture
def local(start_vendor, make_gateway):
    url, state = start_vendor(fake_local)
    base, gateway = make_gateway({"auth": {"keys": [ALICE]}, "providers": {
        "local": {"type": "openai", "base_url": url + "/v1", "discover": False}}})
    return base, gateway, state


async def test_edits_and_variations_are_relayed_to_an_openai_server(local):
    base, gateway, state = local
    c = client(base)
    r = await c.images.edit(model=f"local/{fake_local.EDIT_MODEL}", prompt="a red hat",
                            image=[("a.png", PNG), ("b.jpg", JPEG)], mask=("m.png", PNG),
                            n=2, size="1024x1024", quality="high",
                            response_format="b64_json")
    assert [base64.b64decode(d.b64_json) for d in r.data] == [fake_local.PNG] * 2
    [sent] = [q for q in state.requests if q["path"] == "/v1/images/edits"]
    assert sent["body"] == {"model": fake_local.EDIT_MODEL, "prompt": "a red hat",
                            "n": "2", "size": "1024x1024", "quality": "high",
                            "response_format": "b64_json"}
    assert sent["files"] == {"image[]": [("a.png", "image/png", PNG),
                                         ("b.jpg", "image/jpeg", JPEG)],
                             "mask": [("m.png", "image/png", PNG)]}
    # The server needs no key: nothing of the caller's Authorization goes to it.
    assert "Authorization" not in sent["headers"]
    assert ALICE not in json.dumps(sent["headers"])
    r = await c.images.create_variation(model=f"local/{fake_local.EDIT_MODEL}",
                                        image=("a.png", PNG), n=1)
    assert r.data[0].url == "http://127.0.0.1:1/never-fetched.png"
    [sent] = [q for q in state.requests if q["path"] == "/v1/images/variations"]
    assert sent["files"] == {"image": [("a.png", "image/png", PNG)]}
    assert "prompt" not in sent["body"]
    rows = await ledger(gateway, 2)
    assert [(e["endpoint"], e["provider"], e["status"]) for e in rows] == [
        ("images", "local", 200), ("images", "local", 200)]


async def test_the_servers_own_refusal_is_relayed(local):
    base, _, _ = local
    with pytest.raises(openai.NotFoundError):
        await client(base).images.edit(model="local/no-such-editor", prompt="x",
                                       image=("a.png", PNG))


async def test_a_chat_request_to_an_edit_model_names_the_edits_endpoint(gw):
    base, _ = gw()
    with pytest.raises(openai.BadRequestError) as e:
        await client(base).chat.completions.create(
            model="qwen-image-edit-plus", messages=[{"role": "user", "content": "hi"}])
    assert "POST /v1/images/edits" in e.value.body["message"], e.value.body
    assert gw.qwen.requests == []
