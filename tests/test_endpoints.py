"""/v1/models, /token/check, /ping, /healthz, and the un-prefixed chat route."""

import json

import openai
import pytest

from freeapi import __version__
from tests.conftest import free_port
from tests.fakes.deepseek import ANSWER, DEAD, GOOD, POOR
from tests.helpers import HI, chat_body, error_of, request, sdk

# Today's ids (https://api-docs.deepseek.com/); every V4 model reasons.
DEEPSEEK_NAMES = {f"{m}{s}" for m in ("deepseek-flash", "deepseek-v4-pro", "deepseek-v4-flash")
                  for s in ("", "-fold", "-silent")}
RETIRED = {"deepseek-chat", "deepseek-reasoner", "deepseek-r1", "deepseek-think",
           "deepseek-coder"}


# -- models ---------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/v1/models", "/models"])
async def test_models_list(gateway, path):
    resp = await request(gateway + path)
    assert resp.code == 200 and resp.headers["Content-Type"].startswith("application/json")
    data = json.loads(resp.body)
    assert data["object"] == "list"
    for m in data["data"]:
        assert set(m) == {"id", "object", "created", "owned_by", "capabilities"}
        assert "chat" in m["capabilities"] or m["capabilities"][0] in (
            "embeddings", "images", "image_edits", "speech", "transcription")
        assert m["object"] == "model" and isinstance(m["created"], int) and m["created"] > 0
    ids = [m["id"] for m in data["data"]]
    assert len(ids) == len(set(ids))
    assert DEEPSEEK_NAMES <= set(ids)
    # Retired names still work (translated) but are no longer offered.
    assert not RETIRED & set(ids) and "deepseek-chat-fold" not in ids
    assert all(m["owned_by"] == "deepseek" for m in data["data"] if m["id"] in DEEPSEEK_NAMES)


async def test_models_through_sdk(gateway):
    c = sdk(gateway)
    ids = [m.id async for m in c.models.list()]
    assert DEEPSEEK_NAMES <= set(ids)
    m = await c.models.retrieve("deepseek-r1-fold")
    assert m.id == "deepseek-r1-fold" and m.owned_by == "deepseek" and m.object == "model"
    with pytest.raises(openai.NotFoundError):
        await c.models.retrieve("gpt-4o")


async def test_model_by_id(gateway):
    resp = await request(gateway + "/v1/models/deepseek-reasoner")
    assert resp.code == 200
    assert json.loads(resp.body)["id"] == "deepseek-reasoner"
    resp = await request(gateway + "/models/deepseek/deepseek-some-new-model")
    assert json.loads(resp.body)["id"] == "deepseek/deepseek-some-new-model"
    err = error_of(await request(gateway + "/v1/models/nope"), 404)
    assert err["code"] == "model_not_found" and "deepseek-flash" in err["message"]


async def test_models_map_in_config(make_gateway, upstream_state):
    base, _ = make_gateway({"models": {"gpt-4o": "deepseek/deepseek-chat",
                                       "thinker": "deepseek-r1"}})
    ids = [m["id"] for m in json.loads((await request(base + "/v1/models")).body)["data"]]
    assert {"gpt-4o", "thinker", "thinker-fold"} <= set(ids)
    r = await sdk(base).chat.completions.create(model="gpt-4o", messages=HI)
    assert r.model == "gpt-4o"
    sent = upstream_state.requests[-1]["body"]
    assert (sent["model"], sent["thinking"]) == ("deepseek-flash", {"type": "disabled"})
    await sdk(base).chat.completions.create(model="thinker-fold", messages=HI)
    sent = upstream_state.requests[-1]["body"]
    assert (sent["model"], sent["thinking"]) == ("deepseek-flash", {"type": "enabled"})


async def test_disabled_provider_lists_nothing(make_gateway):
    base, _ = make_gateway({"providers": {"deepseek": {"enabled": False}}})
    ids = [m["id"] for m in json.loads((await request(base + "/v1/models")).body)["data"]]
    assert not DEEPSEEK_NAMES & set(ids)
    error_of(await request(base + "/v1/chat/completions", "POST", chat_body()), 404)


# -- /token/check ---------------------------------------------------------------------------

async def check(base, token, key=None, **extra):
    return await request(base + "/token/check", "POST", {"token": token, **extra}, key=key)


@pytest.mark.parametrize("token,live", [(GOOD, True), (DEAD, False), (POOR, False),
                                        ("sk-unknown-000000000000000001", False)])
async def test_token_check(gateway, upstream_state, token, live):
    resp = await check(gateway, token)
    assert resp.code == 200, resp.body
    assert json.loads(resp.body) == {"live": live}
    assert token.encode() not in resp.body
    assert upstream_state.requests == []  # /user/balance, never a paid chat call


async def test_token_check_outage_is_an_error_not_false(gateway, upstream_state):
    upstream_state.keys[GOOD] = "outage"
    err = error_of(await check(gateway, GOOD), 502)
    assert err["message"].startswith("deepseek: ") and "HTTP 503" in err["message"]


async def test_token_check_unreachable(make_gateway):
    base, _ = make_gateway({"providers": {"deepseek": {
        "base_url": f"http://127.0.0.1:{free_port()}"}}})
    err = error_of(await check(base, GOOD), 502)
    assert err["code"] == "upstream_unreachable"


async def test_token_check_timeout(make_gateway, upstream_state):
    base, _ = make_gateway({"providers": {"deepseek": {"timeouts": {"first_byte": 0.2}}}})
    upstream_state.balance_delay = 2
    err = error_of(await check(base, GOOD), 504)
    assert err["code"] == "upstream_timeout"


@pytest.mark.parametrize("body", [{}, {"token": ""}, {"token": "  "}, {"token": 5},
                                  {"token": f"{GOOD},{DEAD}"}, {"token": "sk-a b"},
                                  {"token": "sk-\u00e9t\u00e9"}, ["x"]])
async def test_token_check_bad_input(gateway, body):
    resp = await request(gateway + "/token/check", "POST", body)
    err = error_of(resp, 400)
    if isinstance(body, dict) and body:
        assert err["param"] == "token"


async def test_token_check_unknown_provider(gateway):
    err = error_of(await check(gateway, GOOD, provider="nosuch"), 400)
    assert err["param"] == "provider" and "deepseek" in err["message"]


async def test_token_check_needs_gateway_key_when_configured(make_gateway):
    base, _ = make_gateway({"auth": {"keys": ["gw-secret-key-1"]}})
    error_of(await check(base, GOOD), 401)
    error_of(await check(base, GOOD, key=GOOD), 401)
    resp = await check(base, GOOD, key="gw-secret-key-1")
    assert resp.code == 200 and json.loads(resp.body) == {"live": True}


# -- ping, health, routes -------------------------------------------------------------------

async def test_ping(gateway):
    resp = await request(gateway + "/ping", key=None)
    assert resp.code == 200 and resp.body == b"pong"
    assert resp.headers["Content-Type"].startswith("text/plain")


async def test_healthz(make_gateway):
    base, _ = make_gateway({"auth": {"keys": ["gw-secret-key-1"]},
                            "providers": {"deepseek": {"api_keys": [GOOD]}}})
    resp = await request(base + "/healthz", key=None)  # for load balancers: no key needed
    assert resp.code == 200
    data = json.loads(resp.body)
    assert data["status"] == "ok" and data["version"] == __version__
    ds = data["providers"]["deepseek"]
    assert ds["type"] == "deepseek" and ds["keys"] == "server"
    assert ds["models"] == ["deepseek-flash", "deepseek-v4-pro", "deepseek-v4-flash"]
    assert GOOD.encode() not in resp.body and b"gw-secret" not in resp.body


async def test_chat_without_v1_prefix(gateway):
    c = openai.AsyncOpenAI(base_url=gateway, api_key=GOOD, max_retries=0)
    r = await c.chat.completions.create(model="deepseek-chat", messages=HI)
    assert r.choices[0].message.content == "".join(ANSWER)
    s = await c.chat.completions.create(model="deepseek-chat", messages=HI, stream=True)
    assert "".join([ch.choices[0].delta.content or "" async for ch in s if ch.choices]) == \
        "".join(ANSWER)
