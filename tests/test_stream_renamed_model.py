"""A model the client names otherwise than the vendor does (an alias here; a retired name
or `free` alike): every streamed chunk carries the client's name, and the rest of each
chunk is what the vendor sent, whether the gateway replaces the name in the vendor's text
or parses the chunk and writes it again."""

from __future__ import annotations

import json

import pytest

from tests.fakes.deepseek import GOOD
from tests.fakes.raw_vendor import RawVendor, head
from tests.helpers import chat_body, sse_events, stream_raw

GW_KEY = "fa-renamed-model-0001"
SSE_CHUNKED = {"Content-Type": "text/event-stream", "Transfer-Encoding": "chunked"}
VENDOR_MODEL = "vendor-model-1"


def chunk(content=None, finish=None, model=VENDOR_MODEL, **extra) -> dict:
    return {"id": "chatcmpl-ren", "object": "chat.completion.chunk", "created": 1,
            "model": model, **extra,
            "choices": [{"index": 0, "delta": {} if content is None else {"content": content},
                         "finish_reason": finish}]}


def compact(c: dict) -> str:
    return json.dumps(c, ensure_ascii=False, separators=(",", ":"))


def framed(*events: str) -> list:
    body = b"".join(b"data: " + e.encode() + b"\n\n" for e in events)
    return [head(200, SSE_CHUNKED) + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)]


@pytest.fixture
def vendor_with(make_gateway, io_loop):
    started = []

    async def start(*events: str):
        vendor = await RawVendor(lambda req: framed(*events)).start()
        started.append(vendor)
        base, gw = make_gateway({
            "auth": {"keys": [GW_KEY]},
            "providers": {"deepseek": {"enabled": False},
                          "local": {"type": "openai", "base_url": vendor.url + "/v1",
                                    "api_keys": [GOOD], "models": [VENDOR_MODEL],
                                    "discover": False}},
            "models": {"my-alias": f"local/{VENDOR_MODEL}"}})
        return base, gw

    yield start
    for vendor in started:
        io_loop.run_sync(vendor.stop)


async def streamed(base) -> list[str]:
    resp, raw = await stream_raw(base, chat_body(model="my-alias", stream=True), key=GW_KEY)
    assert resp.code == 200
    return sse_events(raw)


async def test_each_chunk_carries_the_clients_name_and_otherwise_the_vendors_text(
        vendor_with):
    escaped = json.dumps(chunk("世界"), separators=(",", ":"))  # \u escapes, as some send
    sent = [escaped, compact(chunk("a", system_fingerprint="fp_1")), compact(chunk("", "stop"))]
    base, _ = await vendor_with(*sent, "[DONE]")
    got = await streamed(base)
    assert got[-1] == "[DONE]"
    assert got[:-1] == [s.replace(f'"model":"{VENDOR_MODEL}"', '"model":"my-alias"')
                        for s in sent]
    assert "\\u4e16" in got[0]


async def test_a_spaced_chunk_is_read_and_written_again_with_the_clients_name(vendor_with):
    spaced = json.dumps(chunk("x"), ensure_ascii=False)  # `"model": "..."`: not replaced
    base, _ = await vendor_with(spaced, "[DONE]")
    got = await streamed(base)
    assert got == [compact(dict(json.loads(spaced), model="my-alias")), "[DONE]"]


async def test_the_vendors_name_inside_text_or_a_nested_object_is_left_alone(vendor_with):
    text = f'He said "model":"{VENDOR_MODEL}"'
    nested = chunk("b", meta={"model": VENDOR_MODEL})
    base, _ = await vendor_with(compact(chunk(text)), compact(nested), "[DONE]")
    got = [json.loads(e) for e in (await streamed(base))[:-1]]
    assert got[0]["choices"][0]["delta"]["content"] == text
    assert got[0]["model"] == got[1]["model"] == "my-alias"
    assert got[1]["meta"] == {"model": VENDOR_MODEL}


async def test_a_nested_vendor_name_under_another_top_level_name_is_left_alone(vendor_with):
    dated = chunk("c", model=VENDOR_MODEL + "-0613", meta={"model": VENDOR_MODEL})
    base, _ = await vendor_with(compact(dated), "[DONE]")
    got = json.loads((await streamed(base))[0])
    assert got["model"] == "my-alias" and got["meta"] == {"model": VENDOR_MODEL}


async def test_a_chunk_with_usage_is_read_and_renamed_too(vendor_with):
    usage = {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3}
    base, gw = await vendor_with(compact(chunk("x")), compact(chunk("", "stop", usage=usage)),
                                 "[DONE]")
    got = [json.loads(e) for e in (await streamed(base))[:-1]]
    assert [c["model"] for c in got] == ["my-alias", "my-alias"]
    assert got[1]["usage"] == usage
    await gw.store.flush()
    rows = await gw.store.ledger()
    assert rows[0]["total_tokens"] == 3 and not rows[0]["estimated"]  # the vendor's usage
