"""A vendor's read of whole one-line events (freeapi.sse.Run) goes to the client in one
piece when nothing in it must change, and is read event by event otherwise: what the
client and the ledger get is the same either way. The vendor here writes its whole stream
in one write, as a fast vendor's answer reaches the gateway."""

from __future__ import annotations

import json
import math

import pytest

from freeapi.handlers.door import ChatEvents
from freeapi.ledger import StreamSizes, estimate_usage
from freeapi.provider import Provider
from freeapi.relay import StreamRelay
from freeapi.routing import Route
from freeapi.sse import Run, SSEParser
from tests.fakes.deepseek import GOOD
from tests.fakes.raw_vendor import RawVendor, head
from tests.helpers import chat_body, sse_events, stream_raw

GW_KEY = "fa-stream-runs-0001"
SSE_CHUNKED = {"Content-Type": "text/event-stream", "Transfer-Encoding": "chunked"}


def chunk(content=None, finish=None, usage=None, choices=True) -> str:
    c = {"id": "chatcmpl-run", "object": "chat.completion.chunk", "created": 1,
         "model": "deepseek-chat"}
    if choices:
        c["choices"] = [{"index": 0, "delta": {} if content is None else {"content": content},
                         "finish_reason": finish}]
    else:
        c["choices"] = []
    if usage is not None:
        c["usage"] = usage
    return json.dumps(c, ensure_ascii=False)


USAGE = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}


def data(*events: str) -> bytes:
    return b"".join(b"data: " + e.encode() + b"\n\n" for e in events)


def in_one_write(body: bytes) -> list:
    """The whole answer, one HTTP chunk per event as vendors send them, in one write."""
    parts = [p + b"\n\n" for p in body.split(b"\n\n") if p]
    framed = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
    return [head(200, SSE_CHUNKED) + framed]


@pytest.fixture
def vendor_with(make_gateway, io_loop):
    started = []

    async def start(body: bytes):
        vendor = await RawVendor(lambda req: in_one_write(body)).start()
        started.append(vendor)
        # A generic OpenAI-compatible server, as the model is named there: nothing to
        # rewrite in its chunks (a vendor plugin may rewrite every one).
        base, gw = make_gateway({
            "auth": {"keys": [GW_KEY]},
            "providers": {"deepseek": {"enabled": False},
                          "local": {"type": "openai", "base_url": vendor.url + "/v1",
                                    "api_keys": [GOOD], "models": ["deepseek-chat"],
                                    "discover": False}}})
        return base, gw

    yield start
    for vendor in started:
        io_loop.run_sync(vendor.stop)


async def ledger(gw) -> list:
    await gw.store.flush()
    return await gw.store.ledger()


async def test_a_stream_read_whole_reaches_the_client_as_the_vendor_sent_it(vendor_with):
    events = [chunk("Hel"), chunk("lo, 世界"), chunk("", "stop"),
              chunk(usage=USAGE, choices=False)]
    base, gw = await vendor_with(data(*events, "[DONE]"))
    resp, raw = await stream_raw(base, chat_body(stream=True), key=GW_KEY)
    assert resp.code == 200 and raw == data(*events, "[DONE]")
    rows = await ledger(gw)
    assert not rows[0]["estimated"] and rows[0]["total_tokens"] == 8


async def test_the_usage_chunk_of_a_read_is_read_for_the_client_that_asked(vendor_with):
    events = [chunk("Hi"), chunk("", "stop"), chunk(usage=USAGE, choices=False)]
    base, gw = await vendor_with(data(*events, "[DONE]"))
    body = dict(chat_body(stream=True), stream_options={"include_usage": True})
    resp, raw = await stream_raw(base, body, key=GW_KEY)
    assert resp.code == 200
    assert raw.startswith(data(*events[:2]))  # as they came, up to the usage
    got = sse_events(raw)
    assert got[-1] == "[DONE]" and [json.loads(e) for e in got[:-1]] == \
        [json.loads(e) for e in events]
    assert (await ledger(gw))[0]["total_tokens"] == 8


async def test_comments_and_other_fields_in_a_read_are_not_relayed(vendor_with):
    body = (b": keep-alive\n\n" + data(chunk("a")) + b"event: message\ndata: "
            + chunk("b").encode() + b"\n\n" + data(chunk("", "stop"), "[DONE]"))
    base, _ = await vendor_with(body)
    resp, raw = await stream_raw(base, chat_body(stream=True), key=GW_KEY)
    assert resp.code == 200
    assert raw == data(chunk("a"), chunk("b"), chunk("", "stop"), "[DONE]")


async def test_bytes_that_are_not_utf8_in_a_read_reach_the_client_replaced(vendor_with):
    bad = chunk("ok").encode().replace(b'"ok"', b'"o\xffk"')
    base, _ = await vendor_with(b"data: " + bad + b"\n\n" + data(chunk("", "stop"), "[DONE]"))
    resp, raw = await stream_raw(base, chat_body(stream=True), key=GW_KEY)
    assert resp.code == 200
    assert sse_events(raw)[0] == chunk("o\ufffdk")
    assert b"\xff" not in raw


async def test_a_vendor_error_event_inside_a_read_is_relayed_without_the_key(vendor_with):
    error = json.dumps({"error": {"message": f"key {GOOD} overloaded", "type": "server_error"}})
    base, _ = await vendor_with(data(chunk("a"), error, "[DONE]"))
    resp, raw = await stream_raw(base, chat_body(stream=True), key=GW_KEY)
    assert resp.code == 200
    assert GOOD.encode() not in raw
    assert raw.startswith(data(chunk("a"))) and raw.endswith(b"data: [DONE]\n\n")
    assert json.loads(sse_events(raw)[1])["error"]["type"] == "server_error"


async def test_a_stream_without_usage_is_estimated_from_the_events_of_the_read(vendor_with):
    events = [chunk("a" * 40), chunk("字" * 40), chunk("", "stop")]
    base, gw = await vendor_with(data(*events, "[DONE]"))
    resp, raw = await stream_raw(base, chat_body(stream=True), key=GW_KEY)
    assert resp.code == 200 and raw == data(*events, "[DONE]")
    rows = await ledger(gw)
    # as estimate_usage counts them: characters, not bytes ("字" is 3 bytes of UTF-8)
    text = sum(map(len, events)) - 3 * min(map(len, events))
    assert rows[0]["estimated"]
    assert rows[0]["completion_tokens"] == max(3, math.ceil(text / 4))


# -- StreamRelay.block: how much of a run passes as it came ---------------------------------

class Plain(Provider):
    name = "plain"


def relay(requested: str = "deepseek-chat") -> StreamRelay:
    return StreamRelay(Route(Plain.__new__(Plain), "deepseek-chat"), requested,
                       include_usage=False)


def test_block_passes_a_plain_run_whole_and_stops_at_the_event_to_read():
    plain = data(chunk("a"), chunk("b"))
    r = relay()
    assert r.block(plain) == len(plain)
    for mark in (chunk(usage=USAGE, choices=False), '{"error":{"message":"x"}}', "[DONE]"):
        assert r.block(plain + data(mark, chunk("c"))) == len(plain)
        assert r.block(data(mark, chunk("c"))) == 0  # the first event is the one to read


def test_a_relay_that_changes_every_chunk_takes_no_runs():
    renamed = relay("an-alias")
    assert renamed.block(data(chunk("a"))) == 0
    assert ChatEvents(renamed).block is None and ChatEvents(relay()).block is not None


# -- Run.of: which reads are whole one-line events ------------------------------------------

@pytest.mark.parametrize("raw", [
    b"data: {}\n\n",
    b"data: {\"a\":1}\n\ndata: [DONE]\n\n",
    "data: {\"t\":\"世界\"}\n\n".encode(),
    b"data: \n\n",
])
def test_reads_of_whole_one_line_events_are_runs_with_the_parsers_events(raw):
    run = Run.of(raw)
    assert run is not None and run.raw is raw
    assert run.events() == SSEParser().feed(raw)
    sizes, by_run = StreamSizes(), StreamSizes()
    sizes([e for e in run.events() if e != "[DONE]"])
    by_run.add([n for n, e in zip(run.lengths(len(run.parts)), run.events()) if e != "[DONE]"])
    assert (by_run.events, by_run.size, by_run.smallest) == \
        (sizes.events, sizes.size, sizes.smallest)
    assert estimate_usage(0, by_run) == estimate_usage(0, sizes)


@pytest.mark.parametrize("raw", [
    b"",
    b"data: {}\n",                      # the event is not over
    b"data: {}\n\ndata: {",             # the second one is not
    b"data: {}\r\n\r\n",                # CR line ends
    b": keep-alive\n\ndata: {}\n\n",    # a comment first
    b"data: {}\n\n: keep-alive\n\n",    # or later
    b"data: {}\n\n\n\ndata: {}\n\n",    # a blank event
    b"data: a\ndata: b\n\n",            # one event of two lines
    b"event: x\ndata: {}\n\n",          # another field
    b"data:{}\n\n",                     # no space after the colon
    b"data: \xff\n\n",                  # not UTF-8
])
def test_reads_that_need_the_parser_are_not_runs(raw):
    assert Run.of(raw) is None
