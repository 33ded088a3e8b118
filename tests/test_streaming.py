"""Streaming: SSE headers, the incremental parser, keep-alives, mid-stream failures,
cancellation on disconnect, and upstream connection reuse."""

import asyncio
import json
import time

import openai
import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.httpserver import HTTPServer
from tornado.tcpclient import TCPClient
from tornado.testing import bind_unused_port

from freeapi.sse import SSEParser
from tests.fakes import deepseek as fake_deepseek
from tests.fakes.deepseek import ANSWER, GOOD
from tests.helpers import HI, assert_no_keys, chat_body, sdk

TEXT = "".join(ANSWER)


async def raw_stream(url, body, key=GOOD, timeout=10):
    """POST and collect the streamed body as (seconds since start, bytes) pieces."""
    pieces, start = [], time.monotonic()
    req = HTTPRequest(url + "/v1/chat/completions", method="POST", body=json.dumps(body),
                      headers={"Authorization": f"Bearer {key}",
                               "Content-Type": "application/json"},
                      streaming_callback=lambda b: pieces.append((time.monotonic() - start, b)),
                      request_timeout=timeout)
    resp = await AsyncHTTPClient().fetch(req, raise_error=False)
    return resp, pieces


def events(raw: bytes) -> list[str]:
    p = SSEParser()
    return p.feed(raw) + p.close()


def content_of(evs: list[str]) -> str:
    text = ""
    for ev in evs:
        if ev == "[DONE]":
            continue
        chunk = json.loads(ev)
        for choice in chunk.get("choices") or ():
            text += choice["delta"].get("content") or ""
    return text


# -- the response -----------------------------------------------------------------------

async def test_sse_headers_and_framing(gateway):
    resp, pieces = await raw_stream(gateway, chat_body(stream=True))
    assert resp.code == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    assert resp.headers["Cache-Control"] == "no-cache"
    assert resp.headers["X-Accel-Buffering"] == "no"
    raw = b"".join(b for _, b in pieces)
    assert raw.startswith(b"data: {") and raw.endswith(b"data: [DONE]\n\n")
    evs = events(raw)
    assert evs[-1] == "[DONE]" and evs.count("[DONE]") == 1
    assert content_of(evs) == TEXT
    assert all(json.loads(e)["object"] == "chat.completion.chunk" for e in evs[:-1])


async def test_crlf_upstream(gateway):
    s = await sdk(gateway).chat.completions.create(
        model="deepseek-chat", messages=[{"role": "user", "content": "!crlf"}], stream=True)
    assert "".join([c.choices[0].delta.content or "" async for c in s if c.choices]) == TEXT


async def test_upstream_keepalive_comments_while_queued(gateway):
    s = await sdk(gateway).chat.completions.create(
        model="deepseek-chat", messages=[{"role": "user", "content": "!queued 3"}], stream=True)
    chunks = [c async for c in s]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == TEXT
    assert chunks[-1].choices[0].finish_reason == "stop"
    # The vendor's own comments are not relayed (the gateway paces its keep-alives itself).
    resp, pieces = await raw_stream(gateway, chat_body("!queued 3", stream=True))
    raw = b"".join(b for _, b in pieces)
    assert b": keep-alive" not in raw and raw.startswith(b"data: ")
    assert content_of(events(raw)) == TEXT


async def test_non_stream_queued_blank_lines(gateway):
    r = await sdk(gateway).chat.completions.create(
        model="deepseek-chat", messages=[{"role": "user", "content": "!queued 2"}])
    assert r.choices[0].message.content == TEXT


KEEPALIVE = {"server": {"keepalive_interval": 0.2}}


async def test_gateway_keepalive_while_upstream_is_silent(make_gateway):
    """A silent vendor, before its first byte and mid-stream: the client gets `: keep-alive`
    comments, then the whole answer."""
    base, _ = make_gateway(KEEPALIVE)
    resp, pieces = await raw_stream(base, chat_body("!slow 0.7", stream=True))
    assert resp.code == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
    raw = b"".join(b for _, b in pieces)
    head = raw.split(b"data: ", 1)[0]
    assert head.count(b": keep-alive\n\n") >= 2 and head.replace(b": keep-alive\n\n", b"") == b""
    first_comment = next(t for t, b in pieces if b.startswith(b": keep-alive"))
    assert first_comment < 0.5  # flushed as it is written, not held back until data comes
    assert content_of(events(raw)) == TEXT

    resp, pieces = await raw_stream(base, chat_body("!stall 0.7", stream=True))
    raw = b"".join(b for _, b in pieces)
    before, _, after = raw.partition(b": keep-alive\n\n")
    assert b"data: " in before and b"data: [DONE]" in after  # the comment came mid-stream
    assert content_of(events(raw)) == TEXT


async def test_no_gateway_keepalive_when_upstream_is_fast(gateway):
    resp, pieces = await raw_stream(gateway, chat_body(stream=True))
    assert b": keep-alive" not in b"".join(b for _, b in pieces)


# -- failures mid-stream --------------------------------------------------------------------

def final_error(raw: bytes) -> dict:
    evs = events(raw)
    assert evs[-1] == "[DONE]" and raw.endswith(b"data: [DONE]\n\n")
    data = json.loads(evs[-2])
    assert list(data) == ["error"]
    assert set(data["error"]) == {"message", "type", "param", "code"}
    assert_no_keys(raw)
    return data["error"]


async def test_cut_mid_stream(gateway):
    resp, pieces = await raw_stream(gateway, chat_body("!cut", stream=True))
    assert resp.code == 200
    raw = b"".join(b for _, b in pieces)
    err = final_error(raw)
    assert err["message"].startswith("deepseek: ") and "incomplete" in err["message"]
    assert err["code"] == "upstream_unreachable"
    assert content_of(events(raw)[:-2]) == "".join(ANSWER[:3])

    s = await sdk(gateway).chat.completions.create(
        model="deepseek-chat", messages=[{"role": "user", "content": "!cut"}], stream=True)
    got = ""
    with pytest.raises(openai.APIError) as info:
        async for c in s:
            got += (c.choices[0].delta.content or "") if c.choices else ""
    assert got == "".join(ANSWER[:3])
    assert "incomplete" in info.value.message


async def test_stall_mid_stream_hits_idle_timeout(make_gateway):
    base, _ = make_gateway({"providers": {"deepseek": {"timeouts": {"idle": 0.5}}}})
    start = time.monotonic()
    resp, pieces = await raw_stream(base, chat_body("!stall 30", stream=True))
    assert time.monotonic() - start < 1.5
    err = final_error(b"".join(b for _, b in pieces))
    assert err["type"] == "timeout_error" and err["code"] == "upstream_timeout"
    assert "0.5s" in err["message"]


async def test_total_timeout_mid_stream(make_gateway):
    base, _ = make_gateway({"providers": {"deepseek": {"timeouts": {"total": 0.4}}}})
    start = time.monotonic()
    resp, pieces = await raw_stream(base, chat_body("!stall 30", stream=True))
    assert time.monotonic() - start < 1.2
    assert final_error(b"".join(b for _, b in pieces))["code"] == "upstream_timeout"


async def test_first_byte_timeout_after_keepalives_is_an_error_event(make_gateway):
    """Once keep-alives have committed the 200, a late failure can only be an event."""
    base, _ = make_gateway({"server": {"keepalive_interval": 0.1},
                            "providers": {"deepseek": {"timeouts": {"first_byte": 0.4}}}})
    resp, pieces = await raw_stream(base, chat_body("!slow 5", stream=True))
    assert resp.code == 200
    raw = b"".join(b for _, b in pieces)
    assert raw.startswith(b": keep-alive\n\n")
    assert final_error(raw)["code"] == "upstream_timeout"


# -- cancellation ---------------------------------------------------------------------------

async def open_raw(base, body):
    port = int(base.rsplit(":", 1)[1])
    stream = await TCPClient().connect("127.0.0.1", port)
    data = json.dumps(body).encode()
    await stream.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                       b"Authorization: Bearer " + GOOD.encode() + b"\r\n"
                       b"Content-Type: application/json\r\n"
                       b"Content-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data)
    return stream


async def test_disconnect_mid_stream_cancels_upstream(gateway, upstream_state):
    stream = await open_raw(gateway, chat_body("!stall 30", stream=True))
    got = b""
    while got.count(b"data: ") < 3:
        got += await asyncio.wait_for(stream.read_bytes(4096, partial=True), 2)
    assert not upstream_state.cancelled.is_set()
    stream.close()
    await asyncio.wait_for(upstream_state.cancelled.wait(), 1.0)


async def test_disconnect_before_first_byte_cancels_upstream(gateway, upstream_state):
    stream = await open_raw(gateway, chat_body("!slow 30", stream=True))
    while not upstream_state.requests:
        await asyncio.sleep(0.01)
    stream.close()
    await asyncio.wait_for(upstream_state.cancelled.wait(), 1.0)


async def test_disconnect_non_stream_cancels_upstream(gateway, upstream_state):
    stream = await open_raw(gateway, chat_body("!slow 30"))
    while not upstream_state.requests:
        await asyncio.sleep(0.01)
    stream.close()
    await asyncio.wait_for(upstream_state.cancelled.wait(), 1.0)


async def test_sdk_closing_the_stream_cancels_upstream(gateway, upstream_state):
    s = await sdk(gateway).chat.completions.create(
        model="deepseek-chat", messages=[{"role": "user", "content": "!stall 30"}], stream=True)
    async for _ in s:
        break
    await s.close()
    await asyncio.wait_for(upstream_state.cancelled.wait(), 1.0)


async def test_finished_stream_is_not_cancelled(gateway, upstream_state):
    s = await sdk(gateway).chat.completions.create(model="deepseek-chat", messages=HI,
                                                   stream=True)
    assert [c async for c in s]
    await asyncio.sleep(0.2)
    assert not upstream_state.cancelled.is_set()


# -- connection reuse -----------------------------------------------------------------------

async def test_upstream_connection_is_reused(make_gateway):
    base, gw = make_gateway()
    c = sdk(base)
    for i in range(3):
        r = await c.chat.completions.create(model="deepseek-chat", messages=HI)
        assert r.choices[0].message.content == TEXT
        s = await c.chat.completions.create(model="deepseek-reasoner", messages=HI,
                                            stream=True, stream_options={"include_usage": True})
        assert [ch async for ch in s][-1].usage is not None
        with pytest.raises(openai.BadRequestError):  # a vendor error body is read to its end
            await c.chat.completions.create(
                model="deepseek-chat", messages=[{"role": "user", "content": "!status 400"}])
        r = await c.chat.completions.create(
            model="deepseek-chat", messages=[{"role": "user", "content": "!queued 1"}])
    assert gw.http.opened == 1


async def test_cut_connection_is_not_reused(make_gateway):
    base, gw = make_gateway()
    resp, _ = await raw_stream(base, chat_body("!cut", stream=True))
    r = await sdk(base).chat.completions.create(model="deepseek-chat", messages=HI)
    assert r.choices[0].message.content == TEXT
    assert gw.http.opened == 2


@pytest.mark.parametrize("stream", [False, True])
async def test_pooled_connection_closed_by_the_vendor_is_replaced(make_gateway, stream):
    """Vendors close idle keep-alive connections; the next request must not fail on one."""
    state = fake_deepseek.State()
    sock, port = bind_unused_port()
    server = HTTPServer(fake_deepseek.make_app(state), idle_connection_timeout=0.05)
    server.add_sockets([sock])
    try:
        base, gw = make_gateway({"providers": {"deepseek": {
            "base_url": f"http://127.0.0.1:{port}"}}})
        for _ in range(2):
            resp, pieces = await raw_stream(base, chat_body(stream=stream))
            assert resp.code == 200
            await asyncio.sleep(0.15)  # the vendor drops the idle connection meanwhile
        assert gw.http.opened == 2 and len(state.requests) == 2
    finally:
        server.stop()


# -- the parser -----------------------------------------------------------------------------

STREAM_EVENTS = ['{"a": 1}', '{"b": "\u4f60\u597d"}', "line one\nline two", "[DONE]"]


def encode(evs, eol: bytes) -> bytes:
    out = b": keep-alive" + eol + eol
    for ev in evs:
        for line in ev.split("\n"):
            out += b"data: " + line.encode() + eol
        out += eol
    return out


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_parser_split_at_every_offset(eol):
    raw = encode(STREAM_EVENTS, eol)
    for i in range(len(raw) + 1):
        p = SSEParser()
        got = p.feed(raw[:i]) + p.feed(raw[i:]) + p.close()
        assert got == STREAM_EVENTS, (i, got)


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_parser_byte_by_byte(eol):
    raw = encode(STREAM_EVENTS, eol)
    p = SSEParser()
    got = [ev for i in range(len(raw)) for ev in p.feed(raw[i:i + 1])] + p.close()
    assert got == STREAM_EVENTS


def test_parser_events_complete_as_soon_as_their_blank_line_arrives():
    p = SSEParser()
    assert p.feed(b"data: 1\n\ndata: 2\n\ndata: 3") == ["1", "2"]
    assert p.feed(b"\n") == []
    assert p.feed(b"\n") == ["3"]
    p = SSEParser()
    assert p.feed(b"data: 1\r\n\r\n") == ["1"]  # CRLF: no need to wait for the next read


def test_parser_crlf_split_between_reads():
    p = SSEParser()
    assert p.feed(b"data: x\r") == []
    # One event: each CRLF counted once, not as two endings (a CR ends a line at once; the
    # LF after it, in the next read, is not a second line end).
    assert p.feed(b"\n\r") + p.feed(b"\n") == ["x"]
    assert p.feed(b"data: y\r\n\r\n") == ["y"]
    assert p.close() == []


def test_parser_fields_and_comments():
    p = SSEParser()
    raw = (b": comment\n:\n"
           b"event: message\nid: 7\nretry: 100\ndata:no-space\n\n"
           b"data:  two spaces\n\n"
           b"event: ping\n\n"          # no data: no event
           b"data: a\n: between\ndata: b\n\n"
           b"data:\n\n")                # empty data is still an event
    assert p.feed(raw) == ["no-space", " two spaces", "a\nb", ""]


def test_parser_close_flushes_an_unterminated_event():
    p = SSEParser()
    assert p.feed(b"data: last") == []
    assert p.close() == ["last"]
    assert p.close() == []


def test_parser_refuses_an_event_larger_than_its_limit():
    """A line without a newline (or an event without its blank line) is kept only up to
    `max_event` bytes; it used to grow without bound, rescanned on every read."""
    from freeapi.errors import UpstreamError
    p = SSEParser(max_event=64 * 1024)
    p.feed(b"data: ")
    with pytest.raises(UpstreamError, match="max_event_size"):
        for _ in range(100):
            p.feed(b"x" * 4096)
    p = SSEParser(max_event=64 * 1024)
    with pytest.raises(UpstreamError):  # many data lines, no blank line to end the event
        for _ in range(100):
            p.feed(b"data: " + b"y" * 4096 + b"\n")


def test_parser_limit_is_per_event_not_per_stream():
    p = SSEParser(max_event=8 * 1024)
    got = []
    for i in range(200):
        got += p.feed(b"data: " + b"z" * 4000 + b"\n\n")
    assert len(got) == 200 and got[0] == "z" * 4000


def test_parser_keeps_a_long_line_split_over_many_reads_whole():
    p = SSEParser()
    line = b"data: " + b"q" * 300_000
    out = []
    for i in range(0, len(line), 1000):
        out += p.feed(line[i:i + 1000])
    out += p.feed(b"\r\n\r\n")
    assert out == ["q" * 300_000]
