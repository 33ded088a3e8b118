"""server.max_buffered_bytes: the request-body bytes the gateway holds at once, across all
requests. A body that does not fit is answered 503 with Retry-After in the door's dialect,
before it is read; every request gives its share back when it ends, however it ends."""

import asyncio
import json

from tests.fakes.deepseek import GOOD
from tests.fakes.raw_client import RawClient
from tests.helpers import chat_body, request

LIMITS = {"server": {"max_body_size": 600_000, "max_buffered_bytes": 1_000_000}}


def post_head(length: int, path="/v1/chat/completions", extra="") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {GOOD}\r\n{extra}Content-Length: {length}\r\n\r\n").encode()


def padded_chat(size: int) -> bytes:
    body = json.dumps(chat_body()).encode()
    return body[:-1] + b" " * (size - len(body)) + b"}"


async def until(check, tries=100):
    for _ in range(tries):
        if check():
            return True
        await asyncio.sleep(0.02)
    return check()


async def test_a_body_beyond_the_budget_gets_a_503_with_retry_after(make_gateway):
    base, gw = make_gateway(LIMITS)
    first = await RawClient.connect(base)  # holds 500 kB of the budget, sending slowly
    await first.send(post_head(500_000) + b'{"model": "deepseek-chat", ')
    assert await until(lambda: gw.body_budget.used == 500_000)
    for path in ("/v1/chat/completions", "/v1/messages"):
        c = await RawClient.connect(base)
        await c.send(post_head(600_000, path) + b"{")
        status, headers, body = await c.response(timeout=5)
        assert status == 503 and headers["retry-after"] == "1"
        err = json.loads(body)
        if path == "/v1/messages":  # Anthropic's shape
            assert err["error"]["type"] == "overloaded_error"
            assert "server.max_buffered_bytes" in err["error"]["message"]
        else:
            assert err["error"]["code"] == "body_buffer_full"
        assert await c.closed_within(3)
        c.close()
    # A body that fits beside it is served.
    resp = await request(base + "/v1/chat/completions", "POST", padded_chat(400_000))
    assert resp.code == 200, resp.body
    first.close()
    assert await until(lambda: gw.body_budget.used == 0), "the share was not given back"
    resp = await request(base + "/v1/chat/completions", "POST", padded_chat(600_000))
    assert resp.code == 200, resp.body


async def test_a_chunked_body_that_outgrows_the_budget_gets_a_503(make_gateway):
    base, gw = make_gateway(LIMITS)
    first = await RawClient.connect(base)
    await first.send(post_head(590_000) + b'{"model": "deepseek-chat", ')
    assert await until(lambda: gw.body_budget.used == 590_000)
    c = await RawClient.connect(base)
    head = post_head(0).replace(b"Content-Length: 0", b"Transfer-Encoding: chunked")
    piece = b" " * 100_000
    await c.send(head + b"%x\r\n{\r\n" % 1 + (b"%x\r\n%s\r\n" % (len(piece), piece)) * 5
                 + b"0\r\n\r\n")
    status, headers, body = await c.response(timeout=5)
    assert status == 503 and headers["retry-after"] == "1"
    assert json.loads(body)["error"]["code"] == "body_buffer_full"
    c.close()
    first.close()
    assert await until(lambda: gw.body_budget.used == 0)


async def test_every_request_gives_its_share_back(make_gateway):
    base, gw = make_gateway(LIMITS)
    for body in (chat_body(), chat_body("!status 400"), b"{not json", chat_body(model="nope")):
        await request(base + "/v1/chat/completions", "POST", body)
    await request(base + "/v1/messages/count_tokens", "POST",
                  {"model": "deepseek-chat", "messages": [{"role": "user", "content": "hi"}]})
    form = (b"--b\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nuser_data\r\n"
            b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n"
            b"Content-Type: text/plain\r\n\r\n" + b"x" * 200_000 + b"\r\n--b--\r\n")
    resp = await request(base + "/v1/files", "POST", form,
                         headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert resp.code == 200, resp.body
    # A client that leaves halfway through its body.
    c = await RawClient.connect(base)
    await c.send(post_head(300_000) + b'{"model": ')
    assert await until(lambda: gw.body_budget.used == 300_000)
    c.close()
    assert await until(lambda: gw.body_budget.used == 0)
    assert gw.body_budget.refused == 0


def test_the_budget_never_refuses_one_body_of_the_largest_size(make_gateway):
    _, gw = make_gateway({"server": {"max_body_size": 5_000_000,
                                     "max_buffered_bytes": 1_000_000}})
    assert gw.body_budget.limit == 5_000_000


async def test_a_client_that_sends_its_whole_body_first_still_reads_the_503(make_gateway):
    # As the SDKs do (they read the answer once the body is sent): the refused body is
    # read and dropped, not reset midway.
    base, gw = make_gateway({"server": {"max_body_size": 10_000_000,
                                        "max_buffered_bytes": 12_000_000}})
    first = await RawClient.connect(base)
    await first.send(post_head(6_000_000) + b'{"model": "deepseek-chat", ')
    assert await until(lambda: gw.body_budget.used == 6_000_000)
    c = await RawClient.connect(base)
    await c.send(post_head(8_000_000) + padded_chat(8_000_000))
    status, headers, body = await c.response(timeout=10)
    assert status == 503 and headers["retry-after"] == "1"
    assert json.loads(body)["error"]["code"] == "body_buffer_full"
    c.close()
    first.close()
