"""Vendor keys: pass-through lists with retry, server-side pools, gateway keys, masking."""

import json

import openai
import pytest

from freeapi.config import ConfigError, GatewayKey, parse_config
from freeapi.keys import GatewayAuth, mask, redact, split_keys
from freeapi.plugins import make_plugin_manager, provider_types
from tests.fakes.deepseek import ANSWER, BUSY, DEAD, GOOD, GOOD2, POOR
from tests.helpers import HI, chat_body, error_of, request, sdk

TEXT = "".join(ANSWER)
UNKNOWN = "sk-unknown-00000000000000401"


def used_keys(state) -> list[str]:
    return [r["headers"]["Authorization"].removeprefix("Bearer ") for r in state.requests]


# -- pass-through ---------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [DEAD, POOR, BUSY])
@pytest.mark.parametrize("sep", [",", " , ", ",  "])
async def test_pass_through_retries_the_next_key(gateway, upstream_state, bad, sep):
    c = sdk(gateway, key=f"{bad}{sep}{GOOD}")
    for i in range(10):  # the first key tried is random
        stream = i % 2 == 1
        r = await c.chat.completions.with_raw_response.create(
            model="deepseek-chat", messages=HI, stream=stream)
        assert r.headers["x-freeapi-key"] == "sk-...0001"
        body = r.parse()
        text = ("".join([ch.choices[0].delta.content or "" async for ch in body if ch.choices])
                if stream else body.choices[0].message.content)
        assert text == TEXT
    used = used_keys(upstream_state)
    assert set(used) <= {bad, GOOD}
    assert used.count(GOOD) == 10  # a bad key is tried at most once per request
    assert bad in used  # 10 random starts: (1/2)^10 odds of never starting on it


async def test_pass_through_spreads_over_good_keys(gateway, upstream_state):
    c = sdk(gateway, key=f"{GOOD},{GOOD2}")
    for _ in range(16):
        await c.chat.completions.create(model="deepseek-chat", messages=HI)
    used = used_keys(upstream_state)
    assert len(used) == 16 and set(used) == {GOOD, GOOD2}


async def test_pass_through_does_not_retry_request_errors(gateway, upstream_state):
    """A 400 is about the request, not the key: no second key is spent. A 5xx may be the
    vendor's trouble with this key or this moment: the other key gets one try."""
    for status, calls in ((400, 1), (500, 3)):
        with pytest.raises(openai.APIStatusError) as info:
            await sdk(gateway, key=f"{GOOD},{GOOD2}").chat.completions.create(
                model="deepseek-chat", messages=[{"role": "user", "content": f"!status {status}"}])
        assert info.value.status_code == status
        assert len(upstream_state.requests) == calls


@pytest.mark.parametrize("keys,status", [
    ([DEAD, UNKNOWN], 401),
    ([POOR], 402),
    ([BUSY], 429),
    ([DEAD, POOR, BUSY], None),  # the last key tried decides
])
async def test_all_keys_fail(gateway, upstream_state, keys, status):
    resp = await request(gateway + "/v1/chat/completions", "POST", chat_body(),
                         key=" , ".join(keys))
    expected = status or {DEAD: 401, POOR: 402, BUSY: 429}[used_keys(upstream_state)[-1]]
    err = error_of(resp, expected)
    assert err["message"].startswith("deepseek: ")
    assert sorted(used_keys(upstream_state)) == sorted(keys)  # each tried exactly once


# -- server-side pool -----------------------------------------------------------------------

POOL = {"auth": {"keys": ["gw-secret-key-1", {"key": "gw-secret-key-2", "name": "bob"}]},
        "providers": {"deepseek": {"api_keys": [GOOD, GOOD2]}}}


async def test_server_pool_needs_a_gateway_key(make_gateway, upstream_state):
    base, _ = make_gateway(POOL)
    for key in (None, GOOD, "gw-secret-key-3", "gw-secret-key-1x", "gw-secret-key-"):
        err = error_of(await request(base + "/v1/chat/completions", "POST", chat_body(),
                                     key=key), 401)
        assert "auth.keys" in err["message"]
    with pytest.raises(openai.AuthenticationError):
        await sdk(base, key=GOOD).chat.completions.create(model="deepseek-chat", messages=HI)
    for path in ("/v1/models", "/v1/models/deepseek-chat"):
        error_of(await request(base + path, key=None), 401)
    assert upstream_state.requests == []


async def test_server_pool_rotates_and_never_forwards_the_gateway_key(make_gateway,
                                                                      upstream_state):
    base, _ = make_gateway(POOL)
    for key in ("gw-secret-key-1", "gw-secret-key-2"):
        c = sdk(base, key=key)
        for i in range(4):
            r = await c.chat.completions.create(model="deepseek-chat", messages=HI,
                                                stream=i % 2 == 1)
            if i % 2:
                assert "".join([ch.choices[0].delta.content or ""
                                async for ch in r if ch.choices]) == TEXT
            else:
                assert r.choices[0].message.content == TEXT
    used = used_keys(upstream_state)
    assert len(used) == 8
    assert used.count(GOOD) == used.count(GOOD2) == 4  # spread evenly over the pool
    for r in upstream_state.requests:
        assert "gw-secret" not in str(r)


async def test_server_pool_skips_a_dead_key(make_gateway, upstream_state):
    base, _ = make_gateway({"auth": {"keys": ["gw-secret-key-1"]},
                            "providers": {"deepseek": {"api_keys": [DEAD, GOOD]}}})
    c = sdk(base, key="gw-secret-key-1")
    for _ in range(4):
        r = await c.chat.completions.with_raw_response.create(model="deepseek-chat",
                                                              messages=HI)
        assert r.headers["x-freeapi-key"] == "sk-...0001"
        assert r.parse().choices[0].message.content == TEXT


async def test_anonymous_server_pool_when_allowed(make_gateway, upstream_state):
    base, _ = make_gateway({"auth": {"allow_anonymous": True},
                            "providers": {"deepseek": {"api_keys": [GOOD]}}})
    resp = await request(base + "/v1/chat/completions", "POST", chat_body(), key=None)
    assert resp.code == 200
    # A client's own key does not override the operator's pool.
    resp = await request(base + "/v1/chat/completions", "POST", chat_body(), key=DEAD)
    assert resp.code == 200
    assert used_keys(upstream_state) == [GOOD, GOOD]


async def test_gateway_keys_without_server_keys_is_a_503_naming_the_config_key(
        make_gateway, upstream_state):
    """auth.keys on, no vendor keys configured: the caller's bearer is its gateway key, so
    there is no vendor key to use, and the operator is told which setting is missing. Not
    a 401, which SDKs raise as "your key is wrong": the caller's key is fine."""
    base, _ = make_gateway({"auth": {"keys": ["gw-secret-key-1"]}})
    err = error_of(await request(base + "/v1/chat/completions", "POST", chat_body(),
                                 key="gw-secret-key-1"), 503)
    assert err["code"] == "no_provider_key"
    assert "providers.deepseek.api_keys" in err["message"]
    assert upstream_state.requests == []


def config(raw):
    return parse_config(raw, provider_types(make_plugin_manager()))


def test_server_keys_without_gateway_keys_refuse_to_start():
    with pytest.raises(ConfigError) as info:
        config({"providers": {"deepseek": {"api_keys": [GOOD]}}})
    msg = str(info.value)
    assert "providers.deepseek.api_keys" in msg and "auth.keys" in msg
    assert "allow_anonymous" in msg and GOOD not in msg
    assert config({"auth": {"allow_anonymous": True},
                   "providers": {"deepseek": {"api_keys": [GOOD]}}}).allow_anonymous
    # A disabled provider's keys are never spent, so they do not count.
    config({"providers": {"deepseek": {"enabled": False, "api_keys": [GOOD]}}})


def test_env_interpolation_of_api_keys(monkeypatch):
    monkeypatch.setenv("FREEAPI_TEST_KEY", GOOD)
    monkeypatch.setenv("FREEAPI_TEST_KEYS", f"{GOOD}, {GOOD2}")
    monkeypatch.delenv("FREEAPI_TEST_UNSET", raising=False)
    auth = {"keys": ["gw-secret-key-1"]}
    c = config({"auth": auth, "providers": {"deepseek": {
        "api_keys": ["${FREEAPI_TEST_KEY}", "${FREEAPI_TEST_UNSET:-}"]}}})
    assert c.providers["deepseek"].api_keys == [GOOD]
    c = config({"auth": auth, "providers": {"deepseek": {"api_keys": "${FREEAPI_TEST_KEYS}"}}})
    assert c.providers["deepseek"].api_keys == [GOOD, GOOD2]
    c = config({"providers": {"deepseek": {"api_keys": "${FREEAPI_TEST_UNSET:-}"}}})
    assert c.providers["deepseek"].api_keys == []  # optional and unset: pass-through
    with pytest.raises(ConfigError) as info:
        config({"auth": auth, "providers": {"deepseek": {"api_keys": ["${FREEAPI_TEST_UNSET}"]}}})
    assert "providers.deepseek.api_keys[0]" in str(info.value)
    assert "FREEAPI_TEST_UNSET" in str(info.value)


async def test_env_keys_serve_requests(make_gateway, upstream_state, monkeypatch):
    monkeypatch.setenv("FREEAPI_TEST_KEY", GOOD2)
    base, _ = make_gateway({"auth": {"keys": ["${FREEAPI_TEST_KEY}x"]},
                            "providers": {"deepseek": {"api_keys": ["${FREEAPI_TEST_KEY}"]}}})
    r = await sdk(base, key=GOOD2 + "x").chat.completions.create(model="deepseek-chat",
                                                                 messages=HI)
    assert r.choices[0].message.content == TEXT
    assert used_keys(upstream_state) == [GOOD2]


# -- masking --------------------------------------------------------------------------------

def test_mask():
    assert mask(GOOD) == "sk-...0001"
    assert mask("sk-" + "a" * 28 + "wxyz") == "sk-...wxyz"
    assert mask("0123456789abcdef0123456789abcdef") == "...cdef"
    assert mask("sk-short") == "sk-..."  # too short to show a tail safely
    assert mask("sk-123456789") == "sk-...6789"  # 12 characters: the shortest with a tail
    assert mask("sk-12345678") == "sk-..."
    assert mask("") == mask(None) == "-"
    for key in (GOOD, "0123456789abcdef0123456789abcdef", "sk-short"):
        assert key not in mask(key)


def test_redact():
    text = f"bad key {DEAD}; also {POOR}."
    assert redact(text, [DEAD]) == "bad key sk-...0401; also sk-...0402."
    glm = "0123456789abcdef0123456789abcdef.SecretPartOfKey1"
    assert "SecretPart" not in redact(f"key {glm} rejected")
    # A request's own key is removed whatever it looks like.
    assert redact("odd key x:y:z@42 here", ["x:y:z@42"]) == "odd key ... here"
    assert redact("sk-...0401 is masked already") == "sk-...0401 is masked already"
    assert redact("Server Overloaded") == "Server Overloaded"
    assert redact("") == ""


def test_an_empty_key_in_the_list_does_not_stop_redaction_of_the_next():
    assert redact("odd key x:y:z@42 here", ["", "x:y:z@42"]) == "odd key ... here"


@pytest.mark.parametrize("key", ["team/pass", "pass\\"])
def test_a_key_spelled_in_upper_case_unicode_escapes_is_removed_whole(key):
    # JSON encoders may write `\u002F` as well as `\u002f`; a key ending in a backslash must
    # lose its escaped last character too, not leave `u005C` behind.
    spelled = "".join(f"\\u{ord(c):04X}" for c in key)
    assert redact(f"bad key {spelled} here", [key]) == "bad key ... here"


@pytest.mark.parametrize("key", ["team-pass-1234\\", 'team-pass-12"4\\', "sk-ab\\1cdef\\"])
def test_a_key_ending_in_a_backslash_leaves_the_json_around_it_intact(key):
    """The key's place in a JSON string (and in JSON quoted inside JSON) is taken by its
    mask without a backslash or quote that would escape or end what follows."""
    text = json.dumps({"error": f"bad key {key}", "inner": json.dumps({"m": key})})
    shown = mask(key).replace("\\", "").replace('"', "")
    out = json.loads(redact(text, [key]))
    assert out["error"] == "bad key " + shown
    assert json.loads(out["inner"])["m"] == shown
    assert redact(f"raw {key} end", [key]) == f"raw {shown} end"


def test_split_keys():
    assert split_keys(f" {GOOD} ,{GOOD2},, ") == [GOOD, GOOD2]
    assert split_keys(",") == []
    with pytest.raises(Exception) as info:
        split_keys(f"{GOOD} {GOOD2}")
    assert getattr(info.value, "status", None) == 401
    assert str(info.value) == "Malformed API key in the Authorization header."
    assert info.value.code == "invalid_api_key"
    assert GOOD not in str(info.value)


def test_roles_restrict_only_once_an_admin_key_is_configured():
    users = [GatewayKey("a", "gw-key-a"), GatewayKey("b", "gw-key-b")]
    assert GatewayAuth(users).has_roles is False
    assert GatewayAuth(users + [GatewayKey("c", "gw-key-c", role="admin")]).has_roles


async def test_response_header_key_is_masked(gateway):
    resp = await request(gateway + "/v1/chat/completions", "POST", chat_body())
    assert resp.code == 200 and resp.headers["x-freeapi-key"] == "sk-...0001"
    resp = await request(gateway + "/v1/chat/completions", "POST", chat_body(stream=True),
                         key=f"{DEAD},{GOOD2}")
    assert resp.code == 200 and resp.headers["x-freeapi-key"] == "sk-...0002"
    assert resp.headers["x-freeapi-provider"] == "deepseek"
    # The retired name the client used is translated; the header says what served it.
    assert resp.headers["x-freeapi-upstream-model"] == "deepseek-flash"
    for key in (GOOD, GOOD2, DEAD):
        assert key not in str(resp.headers) and key.encode() not in resp.body
