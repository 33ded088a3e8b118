"""Documents reach the vendor through every door: an Anthropic `document` block (a base64
file, e.g. a PDF) and a Responses `input_file` become chat's `file` part, read by the
vendor's document API (Kimi here) like one sent to /v1/chat/completions; a vendor that
reads none is a clear 400 in the door's own error shape, never a document dropped unseen.
A native pass-through carries the document in the vendor's own form."""

import base64
import json

import anthropic
import openai
import pytest

from tests.fakes import deepseek as fake_deepseek
from tests.fakes import kimi as fake_kimi
from tests.helpers import request

SECRET = "contract 5b8e1 clause 4: renewal"
B64 = base64.b64encode(SECRET.encode()).decode()
GW_KEY = "gw-doors-docs-000000001"


@pytest.fixture
def gw(start_vendor, make_gateway):
    kimi_url, kimi = start_vendor(fake_kimi)
    base, _ = make_gateway({"auth": {"keys": [GW_KEY]}, "providers": {
        "kimi": {"base_url": kimi_url + "/v1", "api_keys": [fake_kimi.GOOD],
                 "discover": False},
        "deepseek": {"api_keys": [fake_deepseek.GOOD]}}})
    return base, kimi


def kimi_chat(kimi) -> dict:
    return [q["body"] for q in kimi.requests if q["path"] == "/v1/chat/completions"][-1]


def anthropic_doc(source: dict) -> list:
    return [{"role": "user", "content": [
        {"type": "document", "title": "contract.pdf", "source": source},
        {"type": "text", "text": "Summarise clause 4."}]}]


async def test_an_anthropic_document_block_is_read_through_kimi(gw):
    base, kimi = gw
    c = anthropic.AsyncAnthropic(base_url=base, api_key=GW_KEY, max_retries=0)
    msg = await c.messages.create(model="moonshot-v1-8k", max_tokens=64, messages=anthropic_doc(
        {"type": "base64", "media_type": "application/pdf", "data": B64}))
    assert msg.content[0].text
    upload = [q for q in kimi.requests if q["path"] == "/v1/files"]
    assert len(upload) == 1
    system, user = kimi_chat(kimi)["messages"]
    assert json.loads(system["content"])["content"] == f"EXTRACTED: {SECRET}"
    assert user["content"] == "Summarise clause 4."


async def test_an_anthropic_document_by_url_is_an_anthropic_400(gw, upstream_state):
    base, _ = gw
    c = anthropic.AsyncAnthropic(base_url=base, api_key=GW_KEY, max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as e:
        await c.messages.create(model="moonshot-v1-8k", max_tokens=64,
                                messages=anthropic_doc({"type": "url",
                                                        "url": "https://example.com/c.pdf"}))
    assert e.value.body["type"] == "error"
    assert "does not fetch URLs" in e.value.body["error"]["message"]
    assert upstream_state.requests == []


async def test_a_native_pass_through_carries_the_document_as_it_is(gw, upstream_state):
    base, _ = gw
    c = anthropic.AsyncAnthropic(base_url=base, api_key=GW_KEY, max_retries=0)
    msg = await c.messages.create(model="deepseek-v4-flash", max_tokens=64,
                                  messages=anthropic_doc({"type": "base64", "data": B64,
                                                          "media_type": "application/pdf"}))
    assert msg.content[-1].text
    sent = upstream_state.requests[-1]
    assert sent["path"] == "/anthropic/v1/messages"
    assert sent["body"]["messages"][0]["content"][0]["source"]["data"] == B64


async def test_a_translated_vendor_without_documents_refuses_in_anthropic_shape(
        start_vendor, make_gateway, upstream_state):
    base, _ = make_gateway({"auth": {"keys": [GW_KEY]}, "providers": {"deepseek": {
        "api_keys": [fake_deepseek.GOOD], "anthropic_base_url": False}}})
    resp = await request(base + "/v1/messages", "POST", {
        "model": "deepseek-v4-flash", "max_tokens": 64, "messages": anthropic_doc(
            {"type": "base64", "media_type": "application/pdf", "data": B64})}, key=GW_KEY)
    assert resp.code == 400, resp.body
    body = json.loads(resp.body)
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "no document API" in body["error"]["message"]
    assert upstream_state.requests == []


async def test_a_responses_input_file_is_read_through_kimi(gw):
    base, kimi = gw
    c = openai.AsyncOpenAI(base_url=base + "/v1", api_key=GW_KEY, max_retries=0)
    r = await c.responses.create(model="moonshot-v1-8k", input=[{"role": "user", "content": [
        {"type": "input_file", "filename": "contract.txt",
         "file_data": f"data:text/plain;base64,{B64}"},
        {"type": "input_text", "text": "Summarise clause 4."}]}])
    assert r.output_text
    system = kimi_chat(kimi)["messages"][0]
    assert json.loads(system["content"])["content"] == f"EXTRACTED: {SECRET}"
    # A file from the gateway's own store works the same way.
    f = await c.files.create(file=("notes.txt", b"notes e40c", "text/plain"),
                             purpose="user_data")
    await c.responses.create(model="moonshot-v1-8k", input=[{"role": "user", "content": [
        {"type": "input_file", "file_id": f.id},
        {"type": "input_text", "text": "And these?"}]}])
    assert "notes e40c" in kimi_chat(kimi)["messages"][0]["content"]


async def test_a_responses_file_url_is_a_clear_400(gw):
    base, kimi = gw
    c = openai.AsyncOpenAI(base_url=base + "/v1", api_key=GW_KEY, max_retries=0)
    with pytest.raises(openai.BadRequestError) as e:
        await c.responses.create(model="moonshot-v1-8k", input=[{"role": "user", "content": [
            {"type": "input_file", "file_url": "https://example.com/c.pdf"},
            {"type": "input_text", "text": "Summarise."}]}])
    assert "file_url" in e.value.message
    assert not any(q["path"] == "/v1/chat/completions" for q in kimi.requests)


async def test_a_native_endpoint_without_documents_never_gets_one(start_vendor,
                                                                   make_gateway):
    # MiniMax's Anthropic endpoint reads no documents, and MiniMax has no document API:
    # a clear 400 in Anthropic's shape, not a document passed on to be ignored.
    from tests.fakes import minimax as fake_minimax
    url, state = start_vendor(fake_minimax)
    base, _ = make_gateway({"auth": {"keys": [GW_KEY]}, "providers": {"minimax": {
        "base_url": url + "/v1", "api_keys": [fake_minimax.GOOD]}}})
    resp = await request(base + "/v1/messages", "POST", {
        "model": "MiniMax-M2.7", "max_tokens": 64, "messages": anthropic_doc(
            {"type": "base64", "media_type": "application/pdf", "data": B64})}, key=GW_KEY)
    assert resp.code == 400, resp.body
    body = json.loads(resp.body)
    assert body["type"] == "error" and "no document API" in body["error"]["message"]
    assert state.requests == []
