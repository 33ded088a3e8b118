"""A hostile or broken vendor on a raw socket: wrong lengths, bad chunk sizes, bytes past
the end, early closes, compressed or empty streams. Whatever it sends, each caller gets
their own answer or a clean 502/504, never someone else's, and the gateway never hangs."""

import asyncio
import json

import pytest

from tests.fakes.raw_vendor import (CLOSE, HOLD, SSE_HEAD, RawVendor, chunk_events, chunked,
                                    completion, head, json_answer)
from tests.fakes.deepseek import GOOD
from tests.helpers import check_stream, chat_body, error_of, request, sse_events, stream_raw


@pytest.fixture
def raw_vendor(io_loop):
    """Start a RawVendor with a script; returns (vendor, gateway base URL)."""
    started = []

    async def start(make_gateway, script, **deepseek):
        vendor = await RawVendor(script).start()
        started.append(vendor)
        base, gw = make_gateway({"providers": {"deepseek": {"base_url": vendor.url,
                                                            **deepseek}}})
        return vendor, base, gw

    yield start
    for vendor in started:
        io_loop.run_sync(vendor.stop)


def own_answer(tag: str) -> bytes:
    return json_answer(completion(f"answer for {tag}"))


JSON_HEAD = {"Content-Type": "application/json"}


class Wire:
    """A caller's answer as JSON or as an event stream."""

    def __init__(self, stream: bool):
        self.stream = stream
        self.head = SSE_HEAD if stream else JSON_HEAD

    def body(self, tag: str) -> bytes:
        text = f"answer for {tag}"
        return chunk_events([text[:7], text[7:]]) if self.stream else completion(text)

    def answer(self, tag: str) -> bytes:
        body = self.body(tag)
        return head(200, {**self.head, "Content-Length": len(body)}) + body


# Each misbehaviour answers caller `tag` wrongly, with a whole second answer for the same
# caller hidden behind it: a gateway that misreads the framing and pools the connection
# hands that answer to the next caller.
MISBEHAVIOURS = {
    "negative_length": lambda tag, w: [head(200, {**w.head, "Content-Length": "-1"})
                                       + w.answer(tag)],
    "signed_length": lambda tag, w: [head(200, {**w.head, "Content-Length": "+0"})
                                     + w.answer(tag)],
    "bytes_after_the_body": lambda tag, w: [w.answer(tag) + w.answer(tag)],
    "bytes_after_the_last_chunk": lambda tag, w: [
        head(200, {**w.head, "Transfer-Encoding": "chunked"}) + chunked(w.body(tag))
        + w.answer(tag)],
    "conflicting_lengths": lambda tag, w: [
        head(200, {**w.head, "Content-Length": "0"})[:-2]
        + b"Content-Length: %d\r\n\r\n" % len(w.body(tag)) + w.answer(tag)],
    "length_and_chunked": lambda tag, w: [
        head(200, {**w.head, "Content-Length": "0", "Transfer-Encoding": "chunked"})
        + chunked(w.body(tag)) + w.answer(tag)],
    "truncated_body": lambda tag, w: [
        head(200, {**w.head, "Content-Length": "5000"}) + w.body(tag)[:-30], CLOSE],
    "bad_chunk_size": lambda tag, w: [
        head(200, {**w.head, "Transfer-Encoding": "chunked"}) + b"0x10\r\n"
        + w.body(tag)[:16] + b"\r\n0\r\n\r\n" + w.answer(tag)],
    "negative_chunk_size": lambda tag, w: [
        head(200, {**w.head, "Transfer-Encoding": "chunked"})
        + b"%x\r\n%s\r\n-6\r\nabcdef\r\n0\r\n\r\n" % (len(w.body(tag)), w.body(tag))
        + w.answer(tag)],
    "early_close": lambda tag, w: [head(200, {**w.head, "Content-Length": "100"}), CLOSE],
}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("mode", list(MISBEHAVIOURS))
async def test_callers_sharing_a_pooled_connection_never_get_another_callers_answer(
        make_gateway, raw_vendor, mode, stream):
    wire = Wire(stream)

    def script(req):
        tag = req.last_message
        if int(tag.rsplit("-", 1)[1]) % 2:
            return MISBEHAVIOURS[mode](tag, wire)
        return [wire.answer(tag)]

    vendor, base, gw = await raw_vendor(make_gateway, script)
    for n in range(8):
        tag = f"caller-{n}"
        if stream:
            resp, raw = await stream_raw(base, chat_body(tag, stream=True), key=GOOD)
            if resp.code == 200:
                # their own answer, or a prefix of it ended by an error event
                text, err = check_stream(raw, f"answer for {tag}")
                assert err is None or n % 2, f"{tag}, answered correctly, got {err}"
                continue
        else:
            resp = await request(base + "/v1/chat/completions", "POST", chat_body(tag),
                                 key=GOOD)
            if resp.code == 200:
                assert json.loads(resp.body)["choices"][0]["message"]["content"] == \
                    f"answer for {tag}", f"{tag} got someone else's answer"
                continue
        error_of(resp, 502)
        assert n % 2 == 1, f"{tag}, answered correctly, got {resp.code}"
    # every misframed answer cost its connection (4 of 8); each clean one reused the last
    assert vendor.connections == 4


async def test_bytes_a_vendor_sends_on_an_idle_pooled_connection_are_never_an_answer(
        make_gateway, raw_vendor):
    """An answer, then, a moment later while the connection idles in the pool, a whole
    second answer: the next caller must not be handed it."""
    def script(req):
        tag = req.last_message
        return [own_answer(tag), 0.05, own_answer(tag)]

    vendor, base, gw = await raw_vendor(make_gateway, script)
    for n in range(3):
        tag = f"caller-{n}"
        resp = await request(base + "/v1/chat/completions", "POST", chat_body(tag), key=GOOD)
        assert json.loads(resp.body)["choices"][0]["message"]["content"] == f"answer for {tag}"
        await asyncio.sleep(0.2)  # the stray answer arrives while the connection idles
    assert vendor.connections == 3


async def test_a_clean_vendor_keeps_one_connection(make_gateway, raw_vendor):
    vendor, base, gw = await raw_vendor(make_gateway, lambda req: [own_answer(req.last_message)])
    for n in range(4):
        resp = await request(base + "/v1/chat/completions", "POST", chat_body(f"c-{n}"),
                             key=GOOD)
        assert json.loads(resp.body)["choices"][0]["message"]["content"] == f"answer for c-{n}"
    assert vendor.connections == 1


async def test_the_sweep_closes_connections_idle_past_their_ttl(make_gateway, raw_vendor):
    """Idle connections are not checked per request any more: the gateway's periodic sweep
    closes those idle longer than idle_ttl, so the vendor's side is not left to time out."""
    vendor, base, gw = await raw_vendor(make_gateway, lambda req: [own_answer(req.last_message)])
    resp = await request(base + "/v1/chat/completions", "POST", chat_body("c-0"), key=GOOD)
    assert resp.code == 200 and gw.http.idle_count() == 1
    gw.sweeper.sweep()
    assert gw.http.idle_count() == 1  # fresh: kept for the next caller
    gw.http.idle_ttl = 0.0
    gw.sweeper.sweep()
    assert gw.http.idle_count() == 0
    for _ in range(200):
        if vendor.closed_by_peer:
            break
        await asyncio.sleep(0.01)
    assert vendor.closed_by_peer == 1


async def test_a_vendor_closing_an_idle_connection_is_noticed_before_reuse(make_gateway,
                                                                           raw_vendor):
    """The vendor hangs up on a pooled connection (its keep-alive timeout): the next
    caller gets a fresh connection and their answer, with no failed attempt."""
    vendor, base, gw = await raw_vendor(
        make_gateway, lambda req: [own_answer(req.last_message), 0.05, CLOSE])
    for n in range(2):
        resp = await request(base + "/v1/chat/completions", "POST", chat_body(f"c-{n}"),
                             key=GOOD)
        assert json.loads(resp.body)["choices"][0]["message"]["content"] == f"answer for c-{n}"
        assert "x-freeapi-attempts" not in resp.headers
        await asyncio.sleep(0.2)  # the vendor closes meanwhile
        assert gw.http.idle_count() == 0
    assert vendor.connections == 2


# -- close-delimited bodies ------------------------------------------------------------------

CLOSE_DELIMITED_SSE = {**SSE_HEAD, "Connection": "close"}


async def ledger_rows(gw, n):
    for _ in range(200):
        await gw.store.flush()
        rows = await gw.store.ledger()
        if len(rows) >= n:
            return rows
        await asyncio.sleep(0.01)
    raise AssertionError("ledger entry not written")


async def test_a_close_delimited_stream_cut_by_our_idle_timeout_is_an_error_not_an_end(
        make_gateway, raw_vendor):
    """Without a length or chunking, only the vendor's EOF ends the body: the gateway's own
    timeout closing the socket must not pass for it (no [DONE] as if complete, no stored
    turn, no clean ledger entry)."""
    script = lambda req: [head(200, CLOSE_DELIMITED_SSE),
                          chunk_events(["Hel", "lo"], done=False).split(b"\n\n")[0] + b"\n\n",
                          HOLD]
    vendor, base, gw = await raw_vendor(make_gateway, script, timeouts={"idle": 0.3})
    resp = await request(base + "/v1/conversations", "POST", key=GOOD)
    cid = json.loads(resp.body)["id"]
    body = dict(chat_body("hi", stream=True), conversation_id=cid)
    resp, raw = await stream_raw(base, body, key=GOOD)
    assert resp.code == 200
    evs = sse_events(raw)
    assert evs[-1] == "[DONE]"
    err = json.loads(evs[-2])["error"]
    assert err["code"] == "upstream_timeout" and "incomplete" in err["message"]
    rows = await ledger_rows(gw, 1)
    assert rows[-1]["error"] is not None
    await gw.store.settle()
    resp = await request(base + f"/v1/conversations/{cid}", key=GOOD)
    assert json.loads(resp.body)["messages"] == [], "a cut answer was stored as a turn"


async def test_a_close_delimited_answer_cut_by_our_idle_timeout_is_a_504(make_gateway,
                                                                         raw_vendor):
    script = lambda req: [head(200, {**JSON_HEAD, "Connection": "close"}),
                          completion("looks whole but the vendor never finished"), HOLD]
    vendor, base, gw = await raw_vendor(make_gateway, script, timeouts={"idle": 0.3})
    resp = await request(base + "/v1/chat/completions", "POST", chat_body("hi"), key=GOOD)
    assert error_of(resp, 504)["code"] == "upstream_timeout"


async def test_a_close_delimited_answer_ended_by_the_vendor_is_whole(make_gateway, raw_vendor):
    script = lambda req: [head(200, {**JSON_HEAD, "Connection": "close"}),
                          completion("all of it"), CLOSE]
    vendor, base, gw = await raw_vendor(make_gateway, script)
    resp = await request(base + "/v1/chat/completions", "POST", chat_body("hi"), key=GOOD)
    assert json.loads(resp.body)["choices"][0]["message"]["content"] == "all of it"


# -- endless lines, empty and compressed streams ------------------------------------------

LIMIT = {"server": {"max_event_size": 64 * 1024}}


@pytest.fixture
def hostile(io_loop, make_gateway):
    """Start a RawVendor with `script` and a gateway (extra `config`) in front of it."""
    vendors = []

    async def start(script, config=None, **deepseek):
        vendor = await RawVendor(script).start()
        vendors.append(vendor)
        cfg = {**(config or {}), "providers": {"deepseek": {"base_url": vendor.url,
                                                            **deepseek}}}
        base, gw = make_gateway(cfg)
        return vendor, base, gw

    yield start
    for vendor in vendors:
        io_loop.run_sync(vendor.stop)


def endless_line(first_events: bytes):
    def script(req):
        steps = [head(200, {**SSE_HEAD, "Transfer-Encoding": "chunked"})]
        if first_events:
            steps.append(b"%x\r\n%s\r\n" % (len(first_events), first_events))
        piece = b"x" * 8192
        steps.append(b"%x\r\ndata: %s\r\n" % (len(piece) + 6, piece))
        steps += [b"%x\r\n%s\r\n" % (len(piece), piece)] * 40  # 320 KB, no newline
        steps.append(HOLD)
        return steps
    return script


async def test_an_endless_line_before_the_first_event_is_a_502(hostile):
    vendor, base, gw = await hostile(endless_line(b""), LIMIT)
    resp, raw = await stream_raw(base, chat_body("hi", stream=True), key=GOOD)
    err = error_of(resp, 502)
    assert "max_event_size" in err["message"]
    assert vendor.closed_by_peer == 1  # the gateway hung up on the vendor


async def test_an_endless_line_mid_stream_ends_with_an_error_event(hostile):
    first = chunk_events(["Hel"], done=False)
    vendor, base, gw = await hostile(endless_line(first), LIMIT)
    resp, raw = await stream_raw(base, chat_body("hi", stream=True), key=GOOD)
    assert resp.code == 200
    evs = sse_events(raw)
    assert evs[-1] == "[DONE]" and "max_event_size" in json.loads(evs[-2])["error"]["message"]
    assert json.loads(evs[0])["choices"][0]["delta"]["content"] == "Hel"


@pytest.mark.parametrize("body", [b"", b": keep-alive\n\n"], ids=["empty", "comments_only"])
async def test_an_event_stream_without_events_is_a_502_not_a_bare_done(hostile, body):
    vendor, base, gw = await hostile(lambda req: [
        head(200, {**SSE_HEAD, "Content-Length": len(body)}) + body])
    resp, raw = await stream_raw(base, chat_body("hi", stream=True), key=GOOD)
    assert b"[DONE]" not in raw
    error_of(resp, 502)



def relayed_text(events: list[str]) -> str:
    """The text of a stream's chunk events (its `[DONE]` left out)."""
    return "".join(json.loads(e)["choices"][0]["delta"].get("content") or ""
                   for e in events if e != "[DONE]")

@pytest.mark.parametrize("texts", [["Hello"], ["Hel", "lo"]], ids=["only", "last"])
async def test_a_last_event_without_its_blank_line_is_still_relayed(hostile, texts):
    """The body ends right after the last event's data line: that event counts, whether
    it is the stream's first (read while failover is still possible) or a later one."""
    body = chunk_events(texts, done=False).rstrip(b"\n")
    vendor, base, gw = await hostile(lambda req: [
        head(200, {**SSE_HEAD, "Content-Length": len(body)}) + body])
    resp, raw = await stream_raw(base, chat_body("hi", stream=True), key=GOOD)
    assert resp.code == 200
    assert relayed_text(sse_events(raw)) == "Hello"


@pytest.mark.parametrize("stream", [True, False])
async def test_a_compressed_answer_we_did_not_ask_for_is_a_502(hostile, stream):
    import gzip
    plain = chunk_events(["Hel", "lo"]) if stream else completion("hello")
    body = gzip.compress(plain)
    kind = SSE_HEAD if stream else JSON_HEAD
    vendor, base, gw = await hostile(lambda req: [
        head(200, {**kind, "Content-Encoding": "gzip", "Content-Length": len(body)}) + body])
    resp, raw = await stream_raw(base, chat_body("hi", stream=stream), key=GOOD)
    assert b"[DONE]" not in raw
    assert "Content-Encoding" in error_of(resp, 502)["message"]


# -- keys echoed JSON-escaped --------------------------------------------------------------

SERVER_KEY = "sk-live/Ab+c9Zq8Yx7Wv6Ut5Sr4"  # a `/` JSON may spell as `\/`
GATEWAY_KEY = "gw-hostile-vendor-key-01"


def spellings(key: str) -> list[str]:
    """The ways a JSON string may carry `key`: escaped slashes, \\u escapes, both, and JSON
    quoted inside JSON."""
    slashed = key.replace("/", "\\/")
    unicode_ = "".join(f"\\u{ord(c):04x}" if c in "sk/A" else c for c in key)
    return [slashed, unicode_, unicode_.replace("\\u002f", "\\/"), slashed.replace("\\", "\\\\")]


def assert_key_absent(raw: bytes, key: str = SERVER_KEY):
    text = raw.decode("utf-8", "replace")
    assert key not in text
    for form in spellings(key):
        assert form not in text, f"the key leaked as {form}"
    for ev in sse_events(raw) if text.startswith("data:") else [text]:
        if ev.startswith("{"):
            assert key not in json.dumps(json.loads(ev), ensure_ascii=False)


@pytest.mark.parametrize("form", range(4))
async def test_a_key_the_vendor_echoes_json_escaped_mid_stream_is_redacted(hostile, form):
    echoed = spellings(SERVER_KEY)[form]
    error = '{"error": {"message": "Incorrect API key provided: %s", "type": "auth"}}' % echoed
    vendor, base, gw = await hostile(
        lambda req: [head(200, {**SSE_HEAD, "Connection": "close"}),
                     chunk_events(["Hel"], done=False) + f"data: {error}\n\n".encode(), CLOSE],
        {"auth": {"keys": [GATEWAY_KEY]}}, api_keys=[SERVER_KEY])
    resp, raw = await stream_raw(base, chat_body("hi", stream=True), key=GATEWAY_KEY)
    assert resp.code == 200 and b"Incorrect API key" in raw
    assert_key_absent(raw)


@pytest.mark.parametrize("form", range(4))
async def test_a_key_the_vendor_echoes_json_escaped_in_an_error_body_is_redacted(hostile, form):
    echoed = spellings(SERVER_KEY)[form]
    body = ("upstream said: {\"message\": \"bad key %s\"}" % echoed).encode()
    vendor, base, gw = await hostile(
        lambda req: [head(500, {"Content-Type": "text/plain", "Content-Length": len(body)},
                          "Internal Server Error") + body],
        {"auth": {"keys": [GATEWAY_KEY]}}, api_keys=[SERVER_KEY])
    resp = await request(base + "/v1/chat/completions", "POST", chat_body("hi"),
                         key=GATEWAY_KEY)
    assert resp.code >= 500
    assert_key_absent(resp.body)


def test_redact_removes_every_json_spelling_of_a_key():
    from freeapi.keys import mask, redact
    key = 'sk-a/b"c\\d-0123456789'
    for text in (json.dumps(key), json.dumps(key).replace("/", "\\/"),
                 json.dumps(json.dumps(key).replace("/", "\\/")),
                 json.dumps(key, ensure_ascii=True).replace("a", "\\u0061").replace("d", "\\u0064"),
                 "\\U0073k-a\\/b\\\"c\\\\d-0123456789".replace("U", "u")):
        assert mask(key) in redact(text, [key]), text
        assert "012345" not in redact(text, [key]), text


# -- answers that are not what they seem ---------------------------------------------------

@pytest.mark.parametrize("depth", [129, 500, 940, 947, 948, 960, 990])
async def test_a_request_nested_deeper_than_the_limit_is_a_400(gateway, depth):
    raw = ('{"model": "deepseek-chat", "messages": [{"role": "user", "content": "hi", '
           '"x": ' + "[" * depth + "]" * depth + "}]}").encode()
    err = error_of(await request(gateway + "/v1/chat/completions", "POST", raw), 400)
    assert err["code"] == "invalid_json" and "nested" in err["message"]


async def test_a_request_nested_within_the_limit_goes_through(gateway):
    raw = ('{"model": "deepseek-chat", "messages": [{"role": "user", "content": "hi", '
           '"x": ' + "[" * 120 + "]" * 120 + "}]}").encode()
    assert (await request(gateway + "/v1/chat/completions", "POST", raw)).code == 200


LONE = '"content": "ok \\ud800 then \\ud83d\\ude00"'


@pytest.mark.parametrize("model", ["deepseek-chat", "deepseek/deepseek-chat"],
                         ids=["as_is", "rewritten"])
async def test_a_lone_surrogate_in_a_vendor_answer_is_relayed_cleanly(hostile, model):
    body = completion("X").replace(b'"content": "X"', LONE.encode())
    vendor, base, gw = await hostile(lambda req: [json_answer(body)])
    resp = await request(base + "/v1/chat/completions", "POST", chat_body("hi", model=model),
                         key=GOOD)
    assert resp.code == 200, resp.body
    resp.body.decode("utf-8")  # valid UTF-8
    text = json.loads(resp.body)["choices"][0]["message"]["content"]
    assert text == "ok \ud800 then \U0001F600"


@pytest.mark.parametrize("model", ["deepseek-chat", "deepseek/deepseek-chat"],
                         ids=["as_is", "rewritten"])
async def test_a_lone_surrogate_in_a_vendor_stream_is_relayed_cleanly(hostile, model):
    events = chunk_events(["X"]).replace(b'"content": "X"', LONE.encode())
    vendor, base, gw = await hostile(lambda req: [
        head(200, {**SSE_HEAD, "Content-Length": len(events)}) + events])
    resp, raw = await stream_raw(base, chat_body("hi", model=model, stream=True), key=GOOD)
    assert resp.code == 200
    raw.decode("utf-8")
    evs = sse_events(raw)
    assert evs[-1] == "[DONE]"
    text = json.loads(evs[0])["choices"][0]["delta"]["content"]
    assert text.startswith("ok ") and text.endswith(" then \U0001F600")


async def test_a_status_of_superscript_digits_is_a_502_malformed_head(hostile):
    # "²00": three digits to str.isdigit() (latin-1 0xB2), none to int().
    vendor, base, gw = await hostile(lambda req: [b"HTTP/1.1 \xb200 OK\r\n"
                                                  b"Content-Length: 0\r\n\r\n"])
    resp = await request(base + "/v1/chat/completions", "POST", chat_body("hi"), key=GOOD)
    assert "malformed response head" in error_of(resp, 502)["message"]


@pytest.mark.parametrize("body", [b"{not json}", b'{"a": 1} {"b": 2}', b"[1, {}]",
                                  b"{" + b'"a":' * 3 + b"}"])
async def test_a_non_json_200_answer_is_a_502(hostile, body):
    vendor, base, gw = await hostile(lambda req: [json_answer(body)])
    resp = await request(base + "/v1/chat/completions", "POST", chat_body("hi"), key=GOOD)
    assert "not a JSON object" in error_of(resp, 502)["message"]


async def test_a_vendor_stream_event_nested_too_deeply_ends_with_an_error_event(hostile):
    deep = '{"choices": [], "x": ' + "[" * 990 + "]" * 990 + "}"
    events = chunk_events(["Hel"], done=False) + f"data: {deep}\n\n".encode()
    vendor, base, gw = await hostile(lambda req: [
        head(200, {**SSE_HEAD, "Content-Length": len(events)}) + events])
    resp, raw = await stream_raw(
        base, chat_body("hi", model="deepseek/deepseek-chat", stream=True), key=GOOD)
    evs = sse_events(raw)
    assert evs[-1] == "[DONE]" and "nested too deeply" in json.loads(evs[-2])["error"]["message"]


@pytest.mark.parametrize("first", [b'"an error"', b'["error"]'], ids=["string", "list"])
async def test_a_first_event_of_json_that_is_no_object_is_no_crash(hostile, first):
    # JSON, and saying "error", but no object: no vendor's error form reads it.
    events = b"data: " + first + b"\n\n" + chunk_events(["Hel", "lo"])
    vendor, base, gw = await hostile(lambda req: [
        head(200, {**SSE_HEAD, "Content-Length": len(events)}) + events])
    resp, raw = await stream_raw(base, chat_body("hi", stream=True), key=GOOD)
    assert resp.code == 200
    assert relayed_text(sse_events(raw)[1:]) == "Hello"


def stream_then(end):
    """An answer's events and [DONE] in one chunk, then `end` (steps of a script)."""
    events = chunk_events(["Hel", "lo"])
    return lambda req: [head(200, {**SSE_HEAD, "Transfer-Encoding": "chunked"})
                        + b"%x\r\n%s\r\n" % (len(events), events)] + end


async def test_a_body_ending_just_after_done_keeps_the_connection(make_gateway, raw_vendor):
    """The body's last chunk comes a moment after [DONE]: the gateway reads it (within its
    2 s), so the connection goes back to the pool for the next caller."""
    vendor, base, gw = await raw_vendor(make_gateway, stream_then([0.1, b"0\r\n\r\n"]))
    for _ in range(2):
        resp, raw = await stream_raw(base, chat_body("hi", stream=True), key=GOOD)
        assert resp.code == 200 and raw.endswith(b"data: [DONE]\n\n")
        for _ in range(100):  # the drain finishes after the client's answer
            if gw.http.idle_count() == 1:
                break
            await asyncio.sleep(0.01)
    assert vendor.connections == 1


async def test_a_body_never_ending_after_done_is_hung_up_on_within_seconds(make_gateway,
                                                                          raw_vendor):
    """A vendor that never ends the body after [DONE] has the gateway hang up after 2 s,
    not after the idle timeout (30 s here)."""
    vendor, base, gw = await raw_vendor(make_gateway, stream_then([HOLD]),
                                        timeouts={"idle": 30})
    resp, raw = await stream_raw(base, chat_body("hi", stream=True), key=GOOD)
    assert resp.code == 200 and raw.endswith(b"data: [DONE]\n\n")
    for _ in range(600):
        if vendor.closed_by_peer:
            break
        await asyncio.sleep(0.01)
    assert vendor.closed_by_peer == 1


async def test_a_stream_answered_without_a_content_type_is_a_502(hostile):
    events = chunk_events(["Hel", "lo"])
    vendor, base, gw = await hostile(lambda req: [
        head(200, {"Content-Length": len(events)}) + events])
    resp, raw = await stream_raw(base, chat_body("hi", stream=True), key=GOOD)
    assert "expected an event stream, got no type" in error_of(resp, 502)["message"]
