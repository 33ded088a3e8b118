"""Conversations: history in front of the new messages, scoped to the caller, reasoning
never fed back, TTL, trimming, bad ids; the endpoints; SQLite and Redis alike."""

import json
import uuid

import pytest

from freeapi.store.redis import RedisStore
from tests.fakes.deepseek import GOOD, GOOD2
from tests.helpers import chat_body, error_of, eventually, request, sse_events, stream_raw
from tests.helpers import REDIS_URL

TEXT = "Hello! How can I help?"
ALICE, BOB = "gw-alice-0000000001", "gw-bob-00000000002"
ANSWER = {"role": "assistant", "content": TEXT}


def user(text):
    return {"role": "user", "content": text}


async def new_conversation(base, key=GOOD) -> str:
    resp = await request(base + "/v1/conversations", "POST", key=key)
    assert resp.code == 200, resp.body
    data = json.loads(resp.body)
    assert data["object"] == "conversation" and data["messages"] == []
    return data["id"]


async def say(base, cid, text, key=GOOD, **kw):
    body = chat_body(text, **kw)
    if cid is not None:
        body["conversation_id"] = cid
    return await request(base + "/v1/chat/completions", "POST", body, key=key)


async def history(base, cid, key=GOOD):
    resp = await request(base + f"/v1/conversations/{cid}", key=key)
    assert resp.code == 200, resp.body
    return json.loads(resp.body)["messages"]


async def settle(gw):
    await gw.store.settle()


def sent(upstream_state, i=-1):
    """The messages the vendor got in request i."""
    return upstream_state.requests[i]["body"]["messages"]


async def test_a_conversation_sends_the_history_and_stores_each_turn(make_gateway,
                                                                     upstream_state):
    base, gw = make_gateway()
    cid = await new_conversation(base)
    resp = await say(base, cid, "first")
    assert resp.code == 200 and resp.headers["x-freeapi-conversation-id"] == cid
    data = json.loads(resp.body)
    assert data["conversation_id"] == cid and data["choices"][0]["message"]["content"] == TEXT
    assert "conversation_id" not in upstream_state.requests[-1]["body"]  # the vendor's not
    await settle(gw)
    resp = await say(base, cid, "second")
    assert resp.code == 200
    assert sent(upstream_state) == [user("first"), ANSWER, user("second")]
    await settle(gw)
    assert await history(base, cid) == [user("first"), ANSWER, user("second"), ANSWER]


async def test_without_a_conversation_nothing_is_stored_or_changed(make_gateway,
                                                                   upstream_state):
    base, gw = make_gateway()
    resp = await say(base, None, "hi")
    assert "conversation_id" not in json.loads(resp.body)
    assert "x-freeapi-conversation-id" not in resp.headers


async def test_store_all_starts_a_conversation_for_every_request(make_gateway,
                                                                 upstream_state):
    base, gw = make_gateway({"conversations": {"store": True}})
    resp = await say(base, None, "first")
    cid = json.loads(resp.body)["conversation_id"]
    assert cid.startswith("conv-") and resp.headers["x-freeapi-conversation-id"] == cid
    await settle(gw)
    await say(base, cid, "second")
    assert sent(upstream_state) == [user("first"), ANSWER, user("second")]


async def test_streams_carry_the_id_and_store_the_assembled_answer(make_gateway,
                                                                   upstream_state):
    base, gw = make_gateway()
    cid = await new_conversation(base)
    resp, raw = await stream_raw(base, dict(chat_body("first", stream=True),
                                            conversation_id=cid))
    assert resp.headers["x-freeapi-conversation-id"] == cid
    chunks = [json.loads(e) for e in sse_events(raw)[:-1]]
    assert chunks and all(c["conversation_id"] == cid for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == TEXT
    await settle(gw)
    assert await history(base, cid) == [user("first"), ANSWER]


@pytest.mark.parametrize("model", ["deepseek-reasoner", "deepseek-reasoner-fold"])
@pytest.mark.parametrize("stream", [False, True])
async def test_reasoning_is_never_fed_back(make_gateway, upstream_state, model, stream):
    base, gw = make_gateway()
    cid = await new_conversation(base)
    body = dict(chat_body("first", model=model, stream=stream), conversation_id=cid)
    if stream:
        resp, raw = await stream_raw(base, body)
        assert b" think" in raw  # as reasoning_content, or inside <think> for -fold
    else:
        resp = await request(base + "/v1/chat/completions", "POST", body)
        assert b"think" in resp.body
    assert resp.code == 200
    await settle(gw)
    assert await history(base, cid) == [user("first"), ANSWER]
    await say(base, cid, "second", model=model)
    assert sent(upstream_state) == [user("first"), ANSWER, user("second")]


async def test_conversations_belong_to_their_caller(make_gateway, upstream_state):
    base, gw = make_gateway({"auth": {"keys": [ALICE, BOB]},
                             "providers": {"deepseek": {"api_keys": [GOOD]}}})
    cid = await new_conversation(base, ALICE)
    assert (await say(base, cid, "secret plan", key=ALICE)).code == 200
    await settle(gw)
    n = len(upstream_state.requests)
    for resp in (await say(base, cid, "tell me", key=BOB),
                 await request(base + f"/v1/conversations/{cid}", key=BOB),
                 await request(base + f"/v1/conversations/{cid}", "DELETE", key=BOB)):
        err = error_of(resp, 404)
        assert err["code"] == "conversation_not_found" and "secret" not in resp.body.decode()
    assert len(upstream_state.requests) == n  # nothing reached the vendor for bob
    assert len(await history(base, cid, ALICE)) == 2  # and bob changed nothing
    assert error_of(await request(base + f"/v1/conversations/{cid}", key="nope"), 401)


async def test_pass_through_callers_are_told_apart_by_their_vendor_keys(make_gateway):
    base, gw = make_gateway()
    cid = await new_conversation(base, f"{GOOD}, {GOOD2}")
    assert (await say(base, cid, "hi", key=f"{GOOD2},{GOOD}")).code == 200  # same keys
    assert error_of(await say(base, cid, "hi", key=GOOD), 404)["code"] \
        == "conversation_not_found"


@pytest.mark.parametrize("cid", [123, "", "bad id!", "x" * 129, "../etc", None])
async def test_malformed_ids_are_400(make_gateway, cid):
    base, _ = make_gateway()
    body = dict(chat_body("hi"), conversation_id=cid)
    resp = await request(base + "/v1/chat/completions", "POST", body)
    if cid is None:  # null: no conversation
        assert resp.code == 200
        return
    err = error_of(resp, 400)
    assert err["code"] == "invalid_conversation_id" and err["param"] == "conversation_id"


async def test_unknown_deleted_and_expired_ids_are_404(make_gateway):
    base, gw = make_gateway({"conversations": {"ttl": 0.3}})
    assert error_of(await say(base, "conv-nope", "hi"), 404)["code"] == \
        "conversation_not_found"
    assert error_of(await request(base + "/v1/conversations/conv-nope"), 404)
    cid = await new_conversation(base)
    resp = await request(base + f"/v1/conversations/{cid}", "DELETE")
    assert json.loads(resp.body) == {"id": cid, "object": "conversation.deleted",
                                     "deleted": True}
    assert error_of(await say(base, cid, "hi"), 404)
    cid = await new_conversation(base)

    async def expired():  # a GET reads it without renewing it (a new turn would)
        return (await request(base + f"/v1/conversations/{cid}")).code == 404
    await eventually(expired, "the conversation expired")
    assert error_of(await say(base, cid, "hi"), 404)


async def test_history_is_trimmed_by_whole_oldest_turns(make_gateway, upstream_state):
    turn_chars = len(json.dumps([user("turn 0"), ANSWER], separators=(",", ":")))
    base, gw = make_gateway({"conversations": {
        "max_history_chars": 2 * turn_chars + 60, "max_turns": 3}})
    cid = await new_conversation(base)
    for i in range(5):
        assert (await say(base, cid, f"turn {i}")).code == 200
        await settle(gw)
    # What was sent with turn 4: the two newest turns that fit, then the new message.
    assert sent(upstream_state) == [user("turn 2"), ANSWER, user("turn 3"), ANSWER,
                                    user("turn 4")]
    stored = await history(base, cid)  # storage keeps max_turns
    assert [m["content"] for m in stored[::2]] == ["turn 2", "turn 3", "turn 4"]


async def test_a_system_prompt_stays_first_until_the_client_sends_another(make_gateway,
                                                                          upstream_state):
    base, gw = make_gateway()
    cid = await new_conversation(base)
    s1, s2 = {"role": "system", "content": "be brief"}, {"role": "system", "content": "be kind"}
    body = {"model": "deepseek-chat", "messages": [s1, user("a")], "conversation_id": cid}
    await request(base + "/v1/chat/completions", "POST", body)
    await settle(gw)
    await say(base, cid, "b")
    assert sent(upstream_state) == [s1, user("a"), ANSWER, user("b")]
    await settle(gw)
    body = {"model": "deepseek-chat", "messages": [user("c"), s2], "conversation_id": cid}
    await request(base + "/v1/chat/completions", "POST", body)
    assert sent(upstream_state) == [s2, user("a"), ANSWER, user("b"), ANSWER, user("c")]


async def test_failed_answers_store_no_turn(make_gateway, upstream_state):
    base, gw = make_gateway()
    cid = await new_conversation(base)
    assert (await say(base, cid, "!status 400")).code == 400
    resp, raw = await stream_raw(base, dict(chat_body("!cut", stream=True),
                                            conversation_id=cid))
    assert b'"error"' in raw
    await settle(gw)
    assert await history(base, cid) == []


async def test_messages_larger_than_a_conversation_may_be_are_413(make_gateway):
    base, _ = make_gateway({"conversations": {"max_bytes": 1000}})
    cid = await new_conversation(base)
    err = error_of(await say(base, cid, "x" * 2000), 413)
    assert err["code"] == "conversation_too_large" and "max_bytes" in err["message"]


async def test_the_store_down_is_503(make_gateway):
    from tests.conftest import free_port
    base, _ = make_gateway({"state": {"redis_url": f"redis://127.0.0.1:{free_port()}",
                                      "timeout": 1}})
    assert error_of(await say(base, "conv-x", "hi"), 503)["code"] == "state_unavailable"
    assert error_of(await request(base + "/v1/conversations", "POST"), 503)
    assert (await say(base, None, "hi")).code == 200  # plain requests need no store


async def test_two_gateways_on_one_redis_share_conversations(make_gateway, upstream_state,
                                                             io_loop):
    state = {"redis_url": REDIS_URL, "prefix": f"freeapi-test:{uuid.uuid4().hex}:"}
    try:
        (a, gw_a), (b, gw_b) = make_gateway({"state": state}), make_gateway({"state": state})
        cid = await new_conversation(a)
        assert (await say(a, cid, "first")).code == 200
        await settle(gw_a)
        assert (await say(b, cid, "second")).code == 200
        assert sent(upstream_state) == [user("first"), ANSWER, user("second")]
        await settle(gw_b)
        assert len(await history(a, cid)) == 4
        assert error_of(await say(b, cid, "x", key=GOOD2), 404)
    finally:
        store = RedisStore(REDIS_URL, prefix=state["prefix"])
        await store.delete_all()
        store.close()
