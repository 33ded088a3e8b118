"""Documents at the edges of a request: a `-search` model behind a
door whose vendor has a native endpoint still has its document read (the search is sent
as chat, so the native endpoint never carries the file); a fallback without the door's
native endpoint is skipped for a request whose documents only the native one carries; the
gateway's own failures while preparing a document (its state store) are not a vendor
key's fault, while a vendor's refusal of an upload is; a shutdown during a document's
parsing does not move the parse on to the next key."""

import asyncio
import base64
import json

from freeapi.modalities import documents
from freeapi.store import StoreError
from tests.fakes import glm as fake_glm
from tests.fakes import kimi as fake_kimi
from tests.fakes import qwen as fake_qwen
from tests.fakes import deepseek as fake_deepseek
from tests.helpers import client, collect, error_of, request

SECRET = "ledger 7c41aa: two entries reversed"
B64 = base64.b64encode(SECRET.encode()).decode()
GW_KEY = "gw-edges-docs-00000001"


def anthropic_doc(model: str) -> dict:
    return {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": [
        {"type": "document", "title": "ledger.txt",
         "source": {"type": "base64", "media_type": "text/plain", "data": B64}},
        {"type": "text", "text": "What was reversed?"}]}]}


def glm_chats(state):
    return [q["body"] for q in state.requests if q["path"] == "/api/paas/v4/chat/completions"]


def glm_creates(state):
    return [q for q in state.requests if q["path"] == "/api/paas/v4/files/parser/create"]


async def test_a_search_model_at_the_anthropic_door_has_its_document_parsed(
        start_vendor, make_gateway):
    # GLM has an Anthropic endpoint, but `-search` goes out as chat with the web_search
    # tool: the document must be read by GLM's file parser, not sent as a raw `file` part.
    url, state = start_vendor(fake_glm)
    base, _ = make_gateway({"auth": {"keys": [GW_KEY]}, "providers": {
        "glm": {"base_url": url + "/api/paas/v4", "api_keys": [fake_glm.GOOD]}}})
    resp = await request(base + "/v1/messages", "POST", anthropic_doc("glm-4.7-flash-search"),
                         key=GW_KEY)
    assert resp.code == 200, resp.body
    assert len(glm_creates(state)) == 1
    (sent,) = glm_chats(state)
    assert sent["tools"][-1]["type"] == "web_search"
    system, user = sent["messages"]
    assert system == {"role": "system", "content": f"PARSED: {SECRET}"}
    assert user == {"role": "user", "content": "What was reversed?"}


async def test_a_fallback_without_the_native_endpoint_never_gets_a_raw_file_part(
        start_vendor, make_gateway, upstream_state):
    # DeepSeek's Anthropic endpoint carries the document as it is; Kimi (no Anthropic
    # endpoint here) would get the chat body, whose `file` part was never read.
    kimi_url, kimi = start_vendor(fake_kimi)
    base, _ = make_gateway({"auth": {"keys": [GW_KEY]},
                            "fallbacks": {"deepseek-v4-flash": ["moonshot-v1-8k"]},
                            "providers": {
                                "deepseek": {"api_keys": [fake_deepseek.DEAD]},
                                "kimi": {"base_url": kimi_url + "/v1",
                                         "api_keys": [fake_kimi.GOOD], "discover": False}}})
    resp = await request(base + "/v1/messages", "POST", anthropic_doc("deepseek-v4-flash"),
                         key=GW_KEY)
    for q in kimi.requests:
        if q["path"] == "/v1/chat/completions":
            for m in q["body"]["messages"]:
                assert not isinstance(m.get("content"), list), m  # no unread file part
    body = json.loads(resp.body)
    assert resp.code == 503 and body["type"] == "error", resp.body
    assert body["error"]["type"] != "invalid_request_error"


async def test_a_state_store_outage_while_binding_a_document_spares_the_vendor_keys(
        start_vendor, make_gateway):
    url, state = start_vendor(fake_qwen)
    base, gateway = make_gateway({"auth": {"keys": [GW_KEY]}, "providers": {
        "qwen": {"base_url": url + "/compatible-mode/v1",
                 "api_keys": [fake_qwen.GOOD, fake_qwen.GOOD2], "discover": False}}})
    cid = json.loads((await request(base + "/v1/conversations", "POST", key=GW_KEY)).body)["id"]
    first = await request(base + "/v1/chat/completions", "POST", {
        "model": "qwen-long", "conversation_id": cid, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What was reversed?"},
            {"type": "file", "file": {"filename": "ledger.txt",
                                      "file_data": f"data:text/plain;base64,{B64}"}}]}]},
        key=GW_KEY)
    assert first.code == 200, first.body
    store, kv_get = gateway.store, gateway.store.kv_get

    async def failing(ns, names):
        if ns == documents.KEPT:
            raise StoreError("the store is down")
        return await kv_get(ns, names)

    store.kv_get = failing
    try:
        resp = await request(base + "/v1/chat/completions", "POST", {
            "model": "qwen-long", "conversation_id": cid,
            "messages": [{"role": "user", "content": "And then?"}]}, key=GW_KEY)
    finally:
        store.kv_get = kv_get
    assert error_of(resp, 503)["code"] == "state_unavailable"
    health = gateway.pools["qwen"].store
    for key in (fake_qwen.GOOD, fake_qwen.GOOD2):
        h = health.get("qwen", key)
        assert h.last_error is None and all(ok for _, ok in h.outcomes), (key, h)


async def test_a_vendor_refusing_a_documents_upload_is_that_keys_verdict(start_vendor,
                                                                          make_gateway):
    # The converse of the store outage: the vendor refused the key (401) or throttled it
    # (429, Retry-After 600) at the upload, so the key's health says so.
    throttled = "sk-qwen-throttled-00000000000000001"
    url, state = start_vendor(fake_qwen)
    state.keys[throttled] = "uploads-throttled"
    base, gateway = make_gateway({"auth": {"keys": [GW_KEY]}, "providers": {
        "qwen": {"base_url": url + "/compatible-mode/v1",
                 "api_keys": [fake_qwen.DEAD, throttled], "discover": False}}})
    resp = await request(base + "/v1/chat/completions", "POST", {
        "model": "qwen-long", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What was reversed?"},
            {"type": "file", "file": {"filename": "ledger.txt",
                                      "file_data": f"data:text/plain;base64,{B64}"}}]}]},
        key=GW_KEY)
    assert resp.code in (429, 503), resp.body  # whichever key was tried last
    dead, busy = gateway.pools["qwen"].status([fake_qwen.DEAD, throttled])
    assert dead["state"] == "invalid" and dead["last_error"] == "HTTP 401"
    assert busy["state"] == "cooldown" and busy["last_error"] == "HTTP 429"
    assert busy["cooldown_remaining"] > 500  # the vendor's Retry-After, not a backoff


async def test_a_shutdown_during_parsing_does_not_parse_again_with_the_next_key(
        start_vendor, make_gateway):
    url, state = start_vendor(fake_glm)
    state.parse_pending = 1000
    base, gateway = make_gateway({"auth": {"keys": [GW_KEY]}, "providers": {
        "glm": {"base_url": url + "/api/paas/v4",
                "api_keys": [fake_glm.GOOD, fake_glm.GOOD2]}}})
    data = base64.b64encode(b"a slow document").decode()
    pending = asyncio.ensure_future(request(base + "/v1/chat/completions", "POST", {
        "model": "glm-4.7-flash", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "Summarise."},
            {"type": "file", "file": {"filename": "slow.txt",
                                      "file_data": f"data:text/plain;base64,{data}"}}]}]},
        key=GW_KEY))
    while not glm_creates(state):
        await asyncio.sleep(0.01)
    await asyncio.wait_for(gateway.drain(0.1), 5)
    assert error_of(await pending, 503)["code"] == "shutting_down"
    await asyncio.sleep(0.3)
    assert len(glm_creates(state)) == 1  # not uploaded again with GOOD2
    for key in (fake_glm.GOOD, fake_glm.GOOD2):
        assert gateway.pools["glm"].store.get("glm", key).last_error is None


async def test_a_slow_parse_does_not_eat_the_streams_first_byte_timeout(
        start_vendor, make_gateway):
    # Model Studio takes 1.5 s (two status polls) to parse the file; the vendor's first
    # event then comes 0.3 s after its headers. The first-byte timeout (1 s) is the vendor's time to
    # answer the chat, not the upload's and parse's before it.
    url, state = start_vendor(fake_qwen)
    base, _ = make_gateway({"auth": {"keys": [GW_KEY]}, "providers": {
        "qwen": {"base_url": url + "/compatible-mode/v1", "api_keys": [fake_qwen.GOOD],
                 "discover": False, "timeouts": {"first_byte": 1.0}}}})
    data = base64.b64encode(b"slow-parse of a quarterly report").decode()
    c = client(base, GW_KEY)
    stream = await c.chat.completions.create(model="qwen-long", stream=True, messages=[
        {"role": "user", "content": [
            {"type": "text", "text": "!think 0.3"},
            {"type": "file", "file": {"filename": "q.txt",
                                      "file_data": f"data:text/plain;base64,{data}"}}]}])
    got = await collect(stream)
    assert "slow-parse of a quarterly report" in got["content"]
    uploads = [q for q in state.requests
               if q["path"] == "/compatible-mode/v1/files" and q["method"] == "POST"]
    assert len(uploads) == 1  # not uploaded again after a spurious timeout
    await c.close()
