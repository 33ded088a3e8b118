"""A finished request leaves nothing to the cyclic garbage collector, answered or failed: its
handler, pipeline and exchange, and the request's whole graph behind them, are freed by
reference counting when it ends (freeapi/handlers/door.py and responses.py on_finish; a
failure raised out of freeapi/pipeline/failover.py holds no frame that holds it). Left in a cycle, each
request's objects lived on until a collection, and with dozens of requests in flight the
collections walked them again and again (bench/gc_cost.py: 12-41 us of a request's CPU)."""

import gc
import json
import weakref

import pytest

from freeapi.handlers.door import DoorHandler
from tests.helpers import chat_body, eventually, request

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


async def freed_without_the_collector(make_gateway, monkeypatch, path, body, status):
    """One request to `path`, answered with `status`, with the collector off: its handler
    must be gone once the answer is in (reference counting alone frees it)."""
    base, _ = make_gateway()
    handlers = []
    prepare = DoorHandler.prepare

    def noted(self):
        handlers.append(weakref.ref(self))
        return prepare(self)

    monkeypatch.setattr(DoorHandler, "prepare", noted)
    await request(base + path, "POST", json.dumps(body))  # warm: caches, pools, imports
    gc.collect()
    gc.disable()  # from here, only reference counting frees anything
    try:
        resp = await request(base + path, "POST", json.dumps(body))
        assert resp.code == status, resp.body
        await eventually(lambda: handlers[-1]() is None,
                         "the request's handler is still alive", seconds=2)
    finally:
        gc.enable()
    assert len(handlers) == 2


@pytest.mark.parametrize("path,body", DOORS)
async def test_a_finished_request_is_freed_without_the_collector(make_gateway, monkeypatch,
                                                                 path, body):
    await freed_without_the_collector(make_gateway, monkeypatch, path, body, 200)


ERRORS = [  # answers and errors of the fake vendor (tests/fakes/deepseek.py)
    ("/v1/chat/completions", chat_body("!status 400"), 400),
    ("/v1/chat/completions", chat_body("!status 429"), 429),
    ("/v1/chat/completions", chat_body("!status 500"), 500),
    ("/v1/chat/completions", {**chat_body("!cut"), "stream": True}, 200),
    ("/v1/chat/completions", {"model": "deepseek-chat", "messages": []}, 400),
    ("/v1/messages", {**chat_body("!status 500"), "max_tokens": 64}, 500),
]


@pytest.mark.parametrize("path,body,status", ERRORS)
async def test_a_failed_request_is_freed_without_the_collector(make_gateway, monkeypatch,
                                                               path, body, status):
    await freed_without_the_collector(make_gateway, monkeypatch, path, body, status)
