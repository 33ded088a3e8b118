"""A hostile or broken vendor on a raw socket: wrong lengths, bad chunk sizes, bytes past
the end, early closes, compressed or empty streams. Whatever it sends, each caller gets
their own answer or a clean 502/504, never someone else's, and the gateway never hangs."""

import json

import pytest

from tests.fakes.raw_vendor import (CLOSE, HOLD, SSE_HEAD, RawVendor, chunk_events, chunked,
                                    completion, head, json_answer)
from tests.fakes.deepseek import GOOD
from tests.helpers import chat_body, error_of, request, sse_events, stream_raw


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

# Each misbehaviour answers caller `tag` wrongly, with a whole second answer for the same
# caller hidden behind it: a gateway that misreads the framing and pools the connection
# hands that answer to the next caller.
MISBEHAVIOURS = {
    "negative_length": lambda tag: [head(200, {**JSON_HEAD, "Content-Length": "-1"})
                                    + own_answer(tag)],
    "signed_length": lambda tag: [head(200, {**JSON_HEAD, "Content-Length": "+0"})
                                  + own_answer(tag)],
    "bytes_after_the_body": lambda tag: [own_answer(tag) + own_answer(tag)],
    "bytes_after_the_last_chunk": lambda tag: [
        head(200, {**JSON_HEAD, "Transfer-Encoding": "chunked"})
        + chunked(completion(f"answer for {tag}")) + own_answer(tag)],
    "conflicting_lengths": lambda tag: [
        head(200, {**JSON_HEAD, "Content-Length": "0"})[:-2]
        + b"Content-Length: %d\r\n\r\n" % len(completion(tag)) + own_answer(tag)],
    "length_and_chunked": lambda tag: [
        head(200, {**JSON_HEAD, "Content-Length": "0", "Transfer-Encoding": "chunked"})
        + chunked(completion(f"answer for {tag}")) + own_answer(tag)],
    "truncated_body": lambda tag: [
        head(200, {**JSON_HEAD, "Content-Length": "5000"}) + completion(tag)[:20], CLOSE],
    "bad_chunk_size": lambda tag: [
        head(200, {**JSON_HEAD, "Transfer-Encoding": "chunked"}) + b"0x10\r\n"
        + b"x" * 16 + b"\r\n0\r\n\r\n" + own_answer(tag)],
    "negative_chunk_size": lambda tag: [
        head(200, {**JSON_HEAD, "Transfer-Encoding": "chunked"}) + b"-6\r\nabcdef\r\n0\r\n\r\n"
        + own_answer(tag)],
    "early_close": lambda tag: [head(200, {**JSON_HEAD, "Content-Length": "100"}), CLOSE],
}


@pytest.mark.parametrize("mode", list(MISBEHAVIOURS))
async def test_callers_sharing_a_pooled_connection_never_get_another_callers_answer(
        make_gateway, raw_vendor, mode):
    def script(req):
        tag = req.last_message
        if int(tag.rsplit("-", 1)[1]) % 2:
            return MISBEHAVIOURS[mode](tag)
        return [own_answer(tag)]

    vendor, base, gw = await raw_vendor(make_gateway, script)
    for n in range(8):
        tag = f"caller-{n}"
        resp = await request(base + "/v1/chat/completions", "POST", chat_body(tag), key=GOOD)
        if resp.code == 200:
            assert json.loads(resp.body)["choices"][0]["message"]["content"] == \
                f"answer for {tag}", f"{tag} got someone else's answer"
        else:
            error_of(resp, 502)
            assert n % 2 == 1, f"{tag}, answered correctly, got {resp.code}"
    # every misframed answer cost its connection (4 of 8); each clean one reused the last
    assert vendor.connections == 4


async def test_a_clean_vendor_keeps_one_connection(make_gateway, raw_vendor):
    vendor, base, gw = await raw_vendor(make_gateway, lambda req: [own_answer(req.last_message)])
    for n in range(4):
        resp = await request(base + "/v1/chat/completions", "POST", chat_body(f"c-{n}"),
                             key=GOOD)
        assert json.loads(resp.body)["choices"][0]["message"]["content"] == f"answer for c-{n}"
    assert vendor.connections == 1
