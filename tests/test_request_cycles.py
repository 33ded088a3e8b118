"""A finished request leaves nothing to the cyclic garbage collector, answered, failed,
refused by the gateway or left by its client: its handler, pipeline and exchange, and the
request's whole graph behind them, are freed by reference counting when it ends
(freeapi/handlers/door.py and responses.py on_finish and ended_unanswered; a failure
raised out of freeapi/pipeline/failover.py holds no frame that holds it; nothing logged
holds an error). Left in a cycle, each request's objects lived on until a collection, and
with dozens of requests in flight the collections walked them again and again
(bench/gc_cost.py: 12-41 us of a request's CPU). The routes beyond the chat doors:
tests/test_request_cycles_routes.py."""

import asyncio
import gc
import json
import weakref

import pytest
from tornado.tcpclient import TCPClient

from freeapi.handlers.base import APIHandler
from freeapi.handlers.gate import GatewayApplication
from tests.conftest import free_port
from tests.fakes.deepseek import GOOD
from tests.helpers import chat_body, eventually, request


async def freed_without_the_collector(monkeypatch, send, status):
    """`send()` makes one request, answered with `status` (None: not checked, as for a
    client that leaves); it is made twice, the second time with the collector off: every
    handler and HTTPServerRequest the gateway made for it must then be gone once it ends
    (reference counting alone frees them)."""
    made = []  # weak references to the handlers and requests the gateway makes
    initialize, delegate = APIHandler.initialize, GatewayApplication.get_handler_delegate

    def noted_handler(self, *args, **kwargs):
        made.append(weakref.ref(self))
        return initialize(self, *args, **kwargs)

    def noted_request(self, request, *args, **kwargs):
        made.append(weakref.ref(request))
        return delegate(self, request, *args, **kwargs)

    monkeypatch.setattr(APIHandler, "initialize", noted_handler)
    monkeypatch.setattr(GatewayApplication, "get_handler_delegate", noted_request)
    await send()  # warm: caches, pools, imports
    gc.collect()
    gc.disable()  # from here, only reference counting frees anything
    try:
        mark = len(made)
        resp = await send()
        if status is not None:
            assert resp.code == status, resp.body
        assert len(made) > mark, "the gateway made no request object"
        await eventually(lambda: all(ref() is None for ref in made[mark:]),
                         "the request's handler or request is still alive", seconds=2)
    finally:
        gc.enable()


def post(base, path, body, key=GOOD):
    return lambda: request(base + path, "POST", body, key=key)


CHAT = chat_body()
DOORS = [
    ("/v1/chat/completions", CHAT),
    ("/v1/chat/completions", {**CHAT, "stream": True}),
    ("/v1/messages", {**CHAT, "max_tokens": 64}),
    ("/v1/messages", {**CHAT, "max_tokens": 64, "stream": True}),
    ("/v1/responses", {"model": "deepseek-chat", "input": "hi", "store": False}),
    ("/v1/responses", {"model": "deepseek-chat", "input": "hi", "store": False,
                       "stream": True}),
]


@pytest.mark.parametrize("path,body", DOORS)
async def test_a_finished_request_is_freed_without_the_collector(make_gateway, monkeypatch,
                                                                 path, body):
    base, _ = make_gateway()
    await freed_without_the_collector(monkeypatch, post(base, path, body), 200)


ERRORS = [  # answers and errors of the fake vendor (tests/fakes/deepseek.py)
    ("/v1/chat/completions", chat_body("!status 400"), 400),
    ("/v1/chat/completions", chat_body("!status 429"), 429),
    ("/v1/chat/completions", chat_body("!status 500"), 500),
    ("/v1/chat/completions", {**chat_body("!cut"), "stream": True}, 200),
    ("/v1/chat/completions", {**chat_body("!error-event"), "stream": True}, 200),
    ("/v1/chat/completions", {"model": "deepseek-chat", "messages": []}, 400),
    ("/v1/messages", {**chat_body("!status 500"), "max_tokens": 64}, 500),
    ("/v1/messages", {**chat_body("!cut"), "max_tokens": 64, "stream": True}, 200),
    ("/v1/responses", {"model": "deepseek-chat", "input": "!cut", "store": False,
                       "stream": True}, 200),
]


@pytest.mark.parametrize("path,body,status", ERRORS)
async def test_a_failed_request_is_freed_without_the_collector(make_gateway, monkeypatch,
                                                               path, body, status):
    base, _ = make_gateway()
    await freed_without_the_collector(monkeypatch, post(base, path, body), status)


# A vendor that does not answer in time, one that cannot be reached, one that stops
# mid-stream: the failure's warning is logged by its text (a handler that keeps records,
# as pytest's does, held the request through the error's traceback).
UNREACHED = [
    ({"timeouts": {"first_byte": 0.2}}, chat_body("!slow 5"), 504),
    ({"timeouts": {"first_byte": 0.2}}, chat_body("!slow 5", stream=True), 504),
    ({"timeouts": {"idle": 0.2}}, chat_body("!stall 5", stream=True), 200),
    ({"base_url": "refused"}, chat_body(), 502),
    ({"base_url": "refused"}, chat_body(stream=True), 502),
]


@pytest.mark.parametrize("vendor,body,status", UNREACHED)
async def test_a_vendor_that_is_not_reached_leaves_no_cycle(make_gateway, monkeypatch,
                                                            vendor, body, status):
    if vendor.get("base_url") == "refused":
        vendor = {"base_url": f"http://127.0.0.1:{free_port()}"}  # nobody listens there
    base, _ = make_gateway({"providers": {"deepseek": vendor}})
    await freed_without_the_collector(monkeypatch, post(base, "/v1/chat/completions", body),
                                      status)


ADMIN, ALICE, RPM1, BROKE = ("gw-admin-cycles-000001", "gw-alice-cycles-000002",
                             "gw-rpm1-cycles-0000003", "gw-broke-cycles-000004")
KEYS = {"auth": {"keys": [{"key": ADMIN, "name": "ops", "role": "admin"},
                          {"key": ALICE, "name": "alice"},
                          {"key": RPM1, "name": "hurried", "rpm": 1},
                          {"key": BROKE, "name": "broke", "budget": {"daily": 0.000001}}]},
        "providers": {"deepseek": {"api_keys": [GOOD]}},
        "prices": {"deepseek-chat": {"input": 1000, "cached": 0, "output": 1000}},
        "server": {"max_body_size": 100_000}}

# What the gateway refuses itself: before the body (the gate answers a request with a body
# unread; one without a body is answered by its handler, raising the gate's refusal),
# or once the body is read.
REFUSALS = [
    ("GET", "/v1/models", None, "gw-wrong-key-000000000", 401),
    ("POST", "/v1/chat/completions", CHAT, "gw-wrong-key-000000000", 401),
    ("POST", "/v1/chat/completions", CHAT, None, 401),
    ("POST", "/v1/chat/completions", {**CHAT, "pad": "x" * 200_000}, ALICE, 413),
    ("POST", "/v1/chat/completions", b"{not json", ALICE, 400),
    ("POST", "/v1/chat/completions", {"messages": CHAT["messages"]}, ALICE, 400),
    ("POST", "/v1/chat/completions", chat_body(model="no-such-model"), ALICE, 404),
    ("POST", "/v1/messages", {**chat_body(model="no-such-model"), "max_tokens": 9}, ALICE,
     404),
    ("GET", "/v1/no-such-route", None, ALICE, 404),
    ("POST", "/v1/no-such-route", {"a": 1}, ALICE, 404),
    ("POST", "/v1/chat/completions", CHAT, RPM1, 429),
    ("POST", "/v1/chat/completions", chat_body(max_tokens=7), BROKE, 429),
]


@pytest.mark.parametrize("method,path,body,key,status", REFUSALS)
async def test_a_request_the_gateway_refuses_leaves_no_cycle(make_gateway, monkeypatch,
                                                            method, path, body, key, status):
    base, _ = make_gateway(KEYS)
    await request(base + path, method, body, key=key)  # RPM1's one request, BROKE's budget

    def send():
        return request(base + path, method, body, key=key)
    await freed_without_the_collector(monkeypatch, send, status)


async def leave(base, path, body, after: bytes | None, key=GOOD):
    """POST `body` on a connection of its own, and return it once `after` has arrived
    (None: at once), for the caller to close."""
    stream = await TCPClient().connect("127.0.0.1", int(base.rsplit(":", 1)[1]))
    data = json.dumps(body).encode()
    await stream.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
                       f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                       "\r\n".encode() + data)
    got = b""
    while after is not None and after not in got:
        got += await asyncio.wait_for(stream.read_bytes(4096, partial=True), 2)
    return stream


LEAVING = [  # (the fake vendor stalls: the client leaves while the request is under way)
    ("/v1/chat/completions", chat_body("!stall 30", stream=True), b"data: "),
    ("/v1/chat/completions", chat_body("!slow 30", stream=True), None),
    ("/v1/chat/completions", chat_body("!slow 30"), None),
    ("/v1/messages", {**chat_body("!slow 30"), "max_tokens": 9}, None),
    ("/v1/responses", {"model": "deepseek-chat", "input": "!slow 30", "store": False}, None),
]


@pytest.mark.parametrize("path,body,after", LEAVING)
async def test_a_request_its_client_leaves_leaves_no_cycle(make_gateway, upstream_state,
                                                           monkeypatch, path, body, after):
    """The request ends unanswered (ClientGone): no on_finish, so the door lets go of its
    pipeline when it ends, and of Tornado's `ui` namespace, which finish() would drop."""
    base, _ = make_gateway()

    async def send():
        served = upstream_state.served
        stream = await leave(base, path, body, after)
        await eventually(lambda: upstream_state.served > served, "the vendor got nothing")
        stream.close()
    await freed_without_the_collector(monkeypatch, send, None)
