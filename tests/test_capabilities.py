"""What a model can do: GET /v1/models lists `capabilities`; a chat request with images to
a model that takes none, or a chat request to an embeddings / image / speech model, is a
clear 400 naming what would work, and reaches no vendor."""

import json

import pytest

from tests.fakes import glm as fake_glm
from tests.helpers import error_of, request

PICTURE = [{"role": "user", "content": [
    {"type": "text", "text": "what is this?"},
    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]


@pytest.fixture
def gw(start_vendor, make_gateway):
    url, state = start_vendor(fake_glm)
    base, _ = make_gateway({"providers": {"glm": {"base_url": url + "/api/paas/v4",
                                                  "api_keys": [fake_glm.GOOD]}},
                            "auth": {"allow_anonymous": True}})
    return base, state


async def test_models_list_their_capabilities(gw):
    base, _ = gw
    resp = await request(base + "/v1/models", key=None)
    caps = {m["id"]: m["capabilities"] for m in json.loads(resp.body)["data"]}
    assert caps["glm-4.6v"] == ["chat", "vision", "search", "documents"]
    assert caps["glm-4.7-flash"] == ["chat", "search", "documents"]
    assert caps["embedding-3"] == ["embeddings"]
    assert caps["cogview-3-flash"] == ["images"]
    assert caps["deepseek-flash"] == ["chat", "vision"]
    one = json.loads((await request(base + "/v1/models/cogview-3-flash", key=None)).body)
    assert one["capabilities"] == ["images"]


async def test_images_to_a_text_model_are_a_400_naming_a_vision_model(gw):
    base, state = gw
    resp = await request(base + "/v1/chat/completions", "POST",
                         {"model": "glm-4.7-flash", "messages": PICTURE}, key=None)
    err = error_of(resp, 400)
    assert err["code"] == "model_not_vision" and "glm-4.6v" in err["message"]
    assert state.requests == []  # the vendor never saw it


async def test_images_to_a_vision_model_or_an_unlisted_model_pass(gw):
    base, state = gw
    resp = await request(base + "/v1/chat/completions", "POST",
                         {"model": "glm-4.7", "messages": [{"role": "user", "content": "hi"}]},
                         key=None)
    assert resp.code == 200  # text to a text model: untouched
    for model in ("glm-4.6v", "glm/glm-5v-turbo"):
        await request(base + "/v1/chat/completions", "POST",
                      {"model": model, "messages": PICTURE}, key=None)
    sent = [q["body"]["model"] for q in state.requests]
    assert sent == ["glm-4.7", "glm-4.6v", "glm-5v-turbo"]
    assert state.requests[-1]["body"]["messages"] == PICTURE  # the image went as it was


async def test_a_chat_request_to_an_embeddings_model_points_to_its_endpoint(gw):
    base, state = gw
    resp = await request(base + "/v1/chat/completions", "POST",
                         {"model": "embedding-3", "messages": [{"role": "user",
                                                                "content": "hi"}]}, key=None)
    err = error_of(resp, 400)
    assert "POST /v1/embeddings" in err["message"] and err["param"] == "model"
    assert state.requests == []
