"""GET /healthz tells orchestrators the truth: 200 while serving, 503 with the reason while
draining for shutdown or while the state store does not answer."""

import asyncio
import json
import socket

from tests.fakes.deepseek import GOOD
from tests.helpers import chat_body, request


async def test_healthy_gateway_answers_200(make_gateway):
    base, _ = make_gateway()
    resp = await request(base + "/healthz", key=None)
    assert resp.code == 200
    data = json.loads(resp.body)
    assert data["status"] == "ok" and "reason" not in data


async def test_draining_gateway_answers_503_while_requests_finish(make_gateway):
    base, gw = make_gateway()
    slow = asyncio.ensure_future(request(base + "/v1/chat/completions", "POST",
                                         chat_body("!slow 0.5"), key=GOOD))
    while not gw.active:
        await asyncio.sleep(0.01)
    drain = asyncio.ensure_future(gw.drain(5))
    await asyncio.sleep(0.05)
    resp = await request(base + "/healthz", key=None)
    assert resp.code == 503
    data = json.loads(resp.body)
    assert data["status"] == "draining" and "shutting down" in data["reason"]
    assert (await slow).code == 200  # the request in flight still finished
    await drain


async def test_unreachable_state_store_answers_503_with_the_reason(make_gateway):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base, _ = make_gateway({"state": {"redis_url": f"redis://:secret-pw@127.0.0.1:{port}/0",
                                      "timeout": 1}})
    resp = await request(base + "/healthz", key=None)
    assert resp.code == 503
    data = json.loads(resp.body)
    assert data["status"] == "unavailable" and "state store" in data["reason"]
    assert str(port) in data["reason"] and "secret-pw" not in data["reason"]
