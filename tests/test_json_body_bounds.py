"""A JSON body's cost is bounded by its bytes before anyone is authenticated: more values
than server.max_json_values is a 400 in the door's dialect before json.loads; nesting is
checked over the bytes, not by walking the parsed body; count_tokens bounds its walk and
costs the caller a request of its rpm."""

import json
import random

import anthropic
import pytest

from freeapi.dialects.anthropic_count import MAX_COUNTED_ITEMS
from freeapi.json_limits import deeper_than, value_bound
from tests.fakes.deepseek import GOOD
from tests.helpers import chat_body, error_of, request
from tests.test_messages import client, user

DEFAULT_CAP = 500_000  # server.max_json_values' default


def flood(n: int) -> bytes:
    """A chat body carrying `n` empty objects: 2n commas and brackets."""
    body = json.dumps(chat_body()).encode()
    return body[:-1] + b', "x": [' + b",".join([b"{}"] * n) + b"]}"


# -- the value cap -----------------------------------------------------------------------------

async def test_a_flood_of_empty_containers_is_a_400_without_credentials(gateway):
    # Pass-through: no gateway keys, so nothing authenticates the caller before the parse.
    raw = flood(DEFAULT_CAP // 2 + 1)
    err = error_of(await request(gateway + "/v1/chat/completions", "POST", raw, key=None),
                   400)
    assert err["code"] == "too_many_json_values"
    assert "server.max_json_values" in err["message"]


async def test_the_value_cap_answers_in_each_doors_dialect(make_gateway):
    base, _ = make_gateway({"server": {"max_json_values": 1000}})
    body = {"model": "deepseek-chat", "max_tokens": 8,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}] * 600}]}
    for path in ("/v1/messages", "/v1/messages/count_tokens"):
        resp = await request(base + path, "POST", body, key=None,
                             headers={"x-api-key": GOOD})
        assert resp.code == 400, resp.body
        data = json.loads(resp.body)
        assert data["type"] == "error"
        assert data["error"]["type"] == "invalid_request_error"
        assert "server.max_json_values" in data["error"]["message"]
    resp = await request(base + "/v1/responses", "POST",
                         {"model": "deepseek-chat", "input": [1] * 1200})
    assert error_of(resp, 400)["code"] == "too_many_json_values"  # OpenAI's shape


async def test_a_body_under_the_cap_goes_through(make_gateway):
    base, _ = make_gateway({"server": {"max_json_values": 1000}})
    body = chat_body("a, b, [c], {d}" * 20)  # 100 commas and brackets in text, counted
    assert (await request(base + "/v1/chat/completions", "POST", body)).code == 200


def test_the_bound_counts_every_value():
    for value in ([], {}, [1, [2, {"a": [3, {}]}]], {"a": "x", "b": [None, True]},
                  [[]] * 5, "s", 1):
        values = _values(value)
        assert values <= value_bound(json.dumps(value).encode()) <= 2 * values + 1


def _values(v) -> int:
    if isinstance(v, list):
        return 1 + sum(map(_values, v))
    if isinstance(v, dict):
        return 1 + sum(map(_values, v.values()))
    return 1


# -- nesting, over the bytes ----------------------------------------------------------------

def _depth(v) -> int:
    if isinstance(v, list):
        return 1 + max(map(_depth, v), default=0)
    if isinstance(v, dict):
        return 1 + max(map(_depth, v.values()), default=0)
    return 0


_TRICKY = ['[', ']', '{', '}', '"', '\\', '\\"', '"[', '\\]', '[[[', ']]]', '\\\\', 'a',
           '\u4e2d', '\U0001F600', ',', ':']


def _random_value(rng, depth):
    kind = rng.random()
    if depth <= 0 or kind < 0.3:
        return "".join(rng.choice(_TRICKY) for _ in range(rng.randrange(4)))
    if kind < 0.65:
        return [_random_value(rng, depth - 1) for _ in range(rng.randrange(4))]
    return {_random_value(rng, 0): _random_value(rng, depth - 1)
            for _ in range(rng.randrange(4))}


@pytest.mark.parametrize("ensure_ascii", [True, False])
def test_the_byte_scan_measures_nesting_as_the_parsed_body_has_it(ensure_ascii):
    # Brackets, quotes and backslashes inside strings (and keys) are text, not nesting.
    rng = random.Random(20)
    for _ in range(400):
        value = _random_value(rng, rng.randrange(1, 9))
        raw = json.dumps(value, ensure_ascii=ensure_ascii).encode()
        depth = _depth(value)
        for limit in (0, depth - 1, depth, depth + 1):
            if limit >= 0:
                assert deeper_than(raw, limit) == (depth > limit), (raw, limit)


def test_deep_chains_beside_wide_text_are_found():
    text = json.dumps("[" * 300 + '\\"{' * 100)  # brackets in a string: no nesting
    for inner, deeper in ((127, False), (128, True)):  # the outer object is one level
        raw = f'{{"a": {text}, "b": {"[" * inner + "]" * inner}, "c": {text}}}'.encode()
        assert deeper_than(raw, 128) is deeper


async def test_a_string_full_of_brackets_is_not_nesting(gateway):
    body = chat_body('[' * 500 + '\\" {{ [[' * 50 + ']' * 10)
    assert (await request(gateway + "/v1/chat/completions", "POST", body)).code == 200


# -- count_tokens --------------------------------------------------------------------------------

async def test_count_tokens_costs_a_request_of_the_callers_rpm(make_gateway):
    base, _ = make_gateway({"auth": {"keys": [{"key": "gw-counter-0001", "rpm": 2}]}})
    counter = client(base, key="gw-counter-0001")
    for _ in range(2):
        got = await counter.messages.count_tokens(model="deepseek-chat", messages=user("hi"))
        assert got.input_tokens > 0
    with pytest.raises(anthropic.RateLimitError) as info:
        await counter.messages.count_tokens(model="deepseek-chat", messages=user("hi"))
    assert info.value.body["error"]["type"] == "rate_limit_error"
    assert int(info.value.response.headers["retry-after"]) >= 1


async def test_count_tokens_walks_a_bounded_number_of_blocks(gateway):
    blocks = [{"type": "text", "text": "a"}] * (MAX_COUNTED_ITEMS + 1)
    resp = await request(gateway + "/v1/messages/count_tokens", "POST",
                         {"model": "deepseek-chat",
                          "messages": [{"role": "user", "content": blocks}]},
                         key=None, headers={"x-api-key": GOOD})
    assert resp.code == 400, resp.body[:300]
    err = json.loads(resp.body)["error"]
    assert err["type"] == "invalid_request_error" and str(MAX_COUNTED_ITEMS) in err["message"]


async def test_count_tokens_estimates_a_long_text_by_its_characters(gateway):
    text = "abcd" * 250_000 + "\u4e2d" * 1000  # 1M ASCII characters, 1000 CJK ones
    resp = await request(gateway + "/v1/messages/count_tokens", "POST",
                         {"model": "deepseek-chat", "messages": user(text)},
                         key=None, headers={"x-api-key": GOOD})
    assert resp.code == 200
    assert json.loads(resp.body)["input_tokens"] == 250_000 + 1000 + 4
