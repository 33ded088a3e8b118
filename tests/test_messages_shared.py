"""POST /v1/messages/count_tokens, and the shared pipeline's behaviour (draining,
shutdown, client disconnect, ledger, conversations) through the Messages door, with the
official `anthropic` SDK against the fake DeepSeek."""

from __future__ import annotations

import json

import anthropic
import pytest
from tornado import web
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

from tests.fakes import anthropic_native as native_fake
from tests.fakes.deepseek import GOOD
from tests.helpers import request
from tests.test_messages import TEXT, TRANSLATED, WEATHER, client, raw_stream, user

# -- count_tokens ----------------------------------------------------------------------------

async def test_count_tokens_estimates_and_says_so(make_gateway):
    base, _ = make_gateway()
    body = {"model": "deepseek-chat", "messages": user("hello " * 40),
            "system": "You are terse.", "tools": [WEATHER]}
    resp = await request(base + "/v1/messages/count_tokens", "POST", body,
                         headers={"x-api-key": GOOD})
    assert resp.code == 200 and resp.headers["x-freeapi-estimated"] == "true"
    count = json.loads(resp.body)["input_tokens"]
    assert 60 < count < 200  # 240 characters of text, a system prompt and a tool schema
    got = await client(base).messages.count_tokens(model="deepseek-chat",
                                                   messages=user("hello " * 40))
    assert 60 <= got.input_tokens < count


class _Counting(web.RequestHandler):
    """A local Anthropic-compatible server's count_tokens."""
    def post(self):
        self.finish({"input_tokens": 1234})


@pytest.fixture
def counting_server(io_loop, upstream_state):
    sock, port = bind_unused_port()
    app = web.Application([
        (r"/v1/messages/count_tokens", _Counting),
        (r"/v1/messages", native_fake.AnthropicMessages, {"state": upstream_state})])
    server = HTTPServer(app)
    server.add_sockets([sock])
    yield f"http://127.0.0.1:{port}"
    server.stop()


async def test_count_tokens_asks_a_vendor_that_counts(make_gateway, counting_server):
    base, _ = make_gateway({"providers": {"local": {
        "type": "openai", "base_url": counting_server + "/v1", "models": ["deepseek-chat"],
        "discover": False, "anthropic_base_url": counting_server,
        "anthropic_count_tokens": True}}, "models": {"m": "local/deepseek-chat"}})
    got = await client(base).messages.count_tokens(model="m", messages=user("hi"))
    assert got.input_tokens == 1234


async def test_count_tokens_errors(make_gateway):
    base, _ = make_gateway()
    with pytest.raises(anthropic.NotFoundError):
        await client(base).messages.count_tokens(model="nope", messages=user("hi"))
    with pytest.raises(anthropic.BadRequestError):
        await client(base).messages.count_tokens(model="deepseek-chat", messages=[])



async def test_count_tokens_follows_gateway_auth_and_model_limits(make_gateway):
    base, _ = make_gateway({"auth": {"keys": [
        {"key": "gw-alice-0001", "models": ["deepseek-flash"]}]}})
    with pytest.raises(anthropic.AuthenticationError):
        await client(base, key="gw-nobody").messages.count_tokens(
            model="deepseek-flash", messages=user("hi"))
    alice = client(base, key="gw-alice-0001")
    assert (await alice.messages.count_tokens(model="deepseek-flash",
                                              messages=user("hi"))).input_tokens > 0
    with pytest.raises(anthropic.PermissionDeniedError) as info:
        await alice.messages.count_tokens(model="deepseek-v4-pro", messages=user("hi"))
    assert info.value.body["error"]["type"] == "permission_error"


# -- the shared pipeline: the same behaviour through this door -------------------------------

async def test_draining_refuses_new_messages_in_anthropic_shape(make_gateway):
    base, gw = make_gateway(TRANSLATED)
    gw.draining = True
    with pytest.raises(anthropic.InternalServerError) as info:
        await client(base).messages.create(model="deepseek-chat", max_tokens=8,
                                           messages=user("hi"))
    assert info.value.status_code == 503
    assert info.value.body["error"]["type"] == "overloaded_error"


async def test_shutdown_ends_a_stream_with_an_error_event(make_gateway, upstream_state):
    import asyncio
    base, gw = make_gateway(TRANSLATED)
    task = asyncio.ensure_future(raw_stream(base, {"model": "deepseek-chat", "max_tokens": 8,
                                                   "messages": user("!stall 30")}))
    while not gw.active:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)  # the first events are out
    await asyncio.wait_for(gw.drain(0.1), 3)
    status, events = await task
    assert status == 200 and events[-1][0] == "error"
    assert "shutting down" in events[-1][1]["error"]["message"]
    assert events[0][0] == "message_start"
    assert upstream_state.cancelled.is_set()


async def test_client_disconnect_cancels_the_vendor_request(make_gateway, upstream_state):
    import asyncio
    from tornado.tcpclient import TCPClient
    base, _ = make_gateway(TRANSLATED)
    data = json.dumps({"model": "deepseek-chat", "max_tokens": 8, "stream": True,
                       "messages": user("!stall 30")}).encode()
    stream = await TCPClient().connect("127.0.0.1", int(base.rsplit(":", 1)[1]))
    await stream.write(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: " + GOOD.encode()
                       + b"\r\nContent-Type: application/json\r\nContent-Length: "
                       + str(len(data)).encode() + b"\r\n\r\n" + data)
    got = b""
    while got.count(b"text_delta") < 2:
        got += await asyncio.wait_for(stream.read_bytes(4096, partial=True), 2)
    assert not upstream_state.cancelled.is_set()
    stream.close()
    await asyncio.wait_for(upstream_state.cancelled.wait(), 1.0)


async def test_ledger_records_the_messages_endpoint(make_gateway):
    base, gw = make_gateway(TRANSLATED)
    await client(base).messages.create(model="deepseek-chat", max_tokens=8, messages=user("hi"))
    await raw_stream(base, {"model": "deepseek-chat", "max_tokens": 8, "messages": user("hi")})
    await request(base + "/v1/chat/completions", "POST",
                  {"model": "deepseek-chat", "messages": user("hi")})
    await gw.store.flush()
    rows = await gw.store.ledger()
    assert [(r["endpoint"], r["stream"], r["prompt_tokens"], r["error"]) for r in rows] == [
        ("messages", False, 11, None), ("messages", True, 11, None), ("chat", False, 11, None)]


async def test_stored_conversations_work_through_this_door(make_gateway, upstream_state):
    base, _ = make_gateway({**TRANSLATED, "conversations": {"store": True}})
    raw = await client(base).messages.with_raw_response.create(
        model="deepseek-chat", max_tokens=8, messages=user("first"))
    cid = raw.headers["x-freeapi-conversation-id"]
    assert (await raw.parse()).content[0].text == TEXT
    resp = await request(base + "/v1/messages", "POST", {
        "model": "deepseek-chat", "max_tokens": 8, "messages": user("second"),
        "conversation_id": cid})
    assert resp.code == 200
    sent = upstream_state.requests[-1]["body"]["messages"]
    assert [m["content"] for m in sent] == ["first", TEXT, "second"]
