"""POST /v1/responses and GET / DELETE /v1/responses/{id}: the official `openai` SDK's
Responses client against freeapi in front of a chat-completions-only vendor
(tests/fakes/agent_vendor.py), which answers 400 to anything its documented rules forbid
(built-in tools, a tool turn without its reasoning, a tool result nobody asked for)."""

from __future__ import annotations

import asyncio
import json
import time as real_time

import openai
import pytest

from freeapi.store import sqlite as sqlite_store
from tests.fakes import agent_vendor as fake
from tests.helpers import error_of, request, sse_events

ALICE, BOB = "gw-key-alice-0001", "gw-key-bob-0000002"
MODEL = "agent/thinker"
WEATHER = {"type": "function", "name": "get_weather", "description": "Weather of a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"]}}


@pytest.fixture
def vendor(io_loop):
    state = fake.State()
    url, server = fake.start(state)
    state.url = url
    yield state
    server.stop()


@pytest.fixture
def gw(make_gateway, vendor):
    """(base URL, Gateway) with two gateway keys and the agent vendor as `agent`."""
    return make_gateway({
        "auth": {"keys": [ALICE, BOB]},
        "providers": {"agent": {"type": "openai", "base_url": vendor.url,
                                "api_keys": [fake.KEY], "models": [fake.MODEL],
                                "discover": False}}})


def sdk(base, key=ALICE) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base + "/v1", api_key=key, max_retries=0)


async def ledger(gateway, n):
    for _ in range(200):
        await gateway.store.flush()
        rows = await gateway.store.ledger()
        if len(rows) >= n:
            return rows
        await asyncio.sleep(0.01)
    return rows


# -- one response -------------------------------------------------------------------------

async def test_sdk_create_returns_reasoning_text_and_usage(gw, vendor):
    base, gateway = gw
    r = await sdk(base).responses.create(model=MODEL, input="hi", instructions="Be brief.")
    assert r.object == "response" and r.status == "completed" and r.model == MODEL
    assert r.id.startswith("resp_")
    assert r.output_text == fake.GREETING
    assert [item.type for item in r.output] == ["reasoning", "message"]
    assert r.output[0].content[0].text == fake.REASONING
    assert (r.usage.input_tokens, r.usage.output_tokens, r.usage.total_tokens) == (40, 12, 52)
    assert r.usage.input_tokens_details.cached_tokens == 32
    assert r.usage.output_tokens_details.reasoning_tokens == 8
    sent = vendor.requests[0]
    assert sent["model"] == fake.MODEL
    assert sent["messages"] == [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "hi"}]
    [entry] = await ledger(gateway, 1)
    assert entry["endpoint"] == "responses" and entry["status"] == 200
    assert (entry["prompt_tokens"], entry["completion_tokens"]) == (40, 12)


async def test_sdk_stream_sends_the_events_in_order(gw, vendor):
    base, gateway = gw
    stream = await sdk(base).responses.create(model=MODEL, input="hi", stream=True)
    events = [e async for e in stream]
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    reasoning = "".join(e.delta for e in events if e.type == "response.reasoning_text.delta")
    assert text == fake.GREETING and reasoning.strip() == fake.REASONING
    final = events[-1].response
    assert final.output_text == fake.GREETING and final.usage.total_tokens == 52
    # Every item is added before its deltas and done after them, one at a time.
    opened = [e.output_index for e in events if e.type == "response.output_item.added"]
    closed = [e.output_index for e in events if e.type == "response.output_item.done"]
    assert opened == closed == [0, 1]
    assert vendor.requests[0]["stream_options"] == {"include_usage": True}
    [entry] = await ledger(gateway, 1)
    assert entry["endpoint"] == "responses" and entry["stream"] is True
    assert entry["error"] is None and entry["total_tokens"] == 52


async def test_sdk_stream_helper_assembles_the_final_response(gw):
    base, _ = gw
    async with sdk(base).responses.stream(model=MODEL, input="hi") as stream:
        final = await stream.get_final_response()
    assert final.output_text == fake.GREETING and final.status == "completed"


async def test_stream_is_plain_sse_with_event_names_and_no_done_marker(gw):
    base, _ = gw
    resp = await request(base + "/v1/responses", "POST",
                         {"model": MODEL, "input": "hi", "stream": True}, key=ALICE)
    assert resp.code == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    blocks = resp.body.decode().split("\n\n")[:-1]
    for block in blocks:
        name, data = block.split("\n")
        assert name == "event: " + json.loads(data[6:])["type"]
    assert b"[DONE]" not in resp.body  # OpenAI's Responses streams have no terminator


# -- tool loops ---------------------------------------------------------------------------

async def test_tool_loop_by_sending_the_items_back(gw, vendor):
    base, _ = gw
    client = sdk(base)
    first = await client.responses.create(model=MODEL, input="weather in Paris?",
                                          tools=[WEATHER], store=False)
    call = first.output[-1]
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris"}
    assert first.output[0].type == "reasoning"
    items = [{"role": "user", "content": "weather in Paris?"}]
    items += [item.model_dump(exclude_none=True) for item in first.output]
    items.append({"type": "function_call_output", "call_id": call.call_id,
                  "output": "sunny, 21 C"})
    final = await client.responses.create(model=MODEL, input=items, tools=[WEATHER],
                                          store=False)
    assert final.output_text == fake.QUOTE + "sunny, 21 C"
    # The vendor got the tool turn back with its reasoning (it answers 400 without).
    turn = vendor.requests[1]["messages"][1]
    assert turn["reasoning_content"] == fake.REASONING
    assert turn["tool_calls"][0]["id"] == call.call_id
    assert vendor.rejected == []


async def test_tool_loop_streamed(gw, vendor):
    base, _ = gw
    client = sdk(base)
    stream = await client.responses.create(model=MODEL, input="weather?", tools=[WEATHER],
                                           stream=True, store=False)
    events = [e async for e in stream]
    args = "".join(e.delta for e in events
                   if e.type == "response.function_call_arguments.delta")
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert json.loads(args) == {"city": "Paris"} and done[0].arguments == args
    output = events[-1].response.output
    items = [{"role": "user", "content": "weather?"}]
    items += [item.model_dump(exclude_none=True) for item in output]
    items.append({"type": "function_call_output", "call_id": output[-1].call_id,
                  "output": "rain"})
    async with client.responses.stream(model=MODEL, input=items, tools=[WEATHER],
                                       store=False) as s:
        final = await s.get_final_response()
    assert final.output_text == fake.QUOTE + "rain"
    assert vendor.rejected == []


async def test_previous_response_id_continues_with_the_stored_reasoning(gw, vendor):
    base, _ = gw
    client = sdk(base)
    first = await client.responses.create(model=MODEL, input="weather?", tools=[WEATHER],
                                          instructions="Use tools.")
    call = first.output[-1]
    final = await client.responses.create(
        model=MODEL, previous_response_id=first.id, tools=[WEATHER],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "fog"}])
    assert final.output_text == fake.QUOTE + "fog"
    assert final.previous_response_id == first.id
    sent = vendor.requests[1]["messages"]
    # Instructions are not carried over (OpenAI's rule); the tool turn keeps its reasoning.
    assert sent[0] == {"role": "user", "content": "weather?"}
    assert sent[1]["reasoning_content"] == fake.REASONING
    assert sent[2] == {"role": "tool", "tool_call_id": call.call_id, "content": "fog"}
    # A chain: the answer can be continued in turn.
    again = await client.responses.create(model=MODEL, input="thanks",
                                          previous_response_id=final.id)
    assert [m["role"] for m in vendor.requests[2]["messages"]] == \
        ["user", "assistant", "tool", "assistant", "user"]
    assert again.output_text == fake.GREETING and vendor.rejected == []


async def test_a_streamed_response_is_stored_too(gw, vendor):
    base, gateway = gw
    client = sdk(base)
    stream = await client.responses.create(model=MODEL, input="hi", stream=True)
    final = [e async for e in stream][-1].response
    await gateway.store.settle()
    got = await client.responses.retrieve(final.id)
    assert got.output_text == fake.GREETING and got.status == "completed"
    await client.responses.create(model=MODEL, input="more", previous_response_id=final.id)
    assert [m["role"] for m in vendor.requests[1]["messages"]] == \
        ["user", "assistant", "user"]


# -- stored responses ---------------------------------------------------------------------

async def test_get_then_delete_a_stored_response(gw):
    base, gateway = gw
    client = sdk(base)
    r = await client.responses.create(model=MODEL, input="hi")
    await gateway.store.settle()
    got = await client.responses.retrieve(r.id)
    assert got.model_dump() == r.model_dump()
    resp = await request(f"{base}/v1/responses/{r.id}", "DELETE", key=ALICE)
    assert resp.code == 200
    assert json.loads(resp.body) == {"id": r.id, "object": "response.deleted", "deleted": True}
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(r.id)
    err = error_of(await request(f"{base}/v1/responses/{r.id}", "DELETE", key=ALICE), 404)
    assert err["code"] == "response_not_found"


async def test_another_caller_gets_404(gw, vendor):
    base, gateway = gw
    r = await sdk(base, ALICE).responses.create(model=MODEL, input="hi")
    await gateway.store.settle()
    bob = sdk(base, BOB)
    with pytest.raises(openai.NotFoundError):
        await bob.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError) as e:
        await bob.responses.create(model=MODEL, input="x", previous_response_id=r.id)
    assert e.value.body["param"] == "previous_response_id"
    err = error_of(await request(f"{base}/v1/responses/{r.id}", "DELETE", key=BOB), 404)
    assert err["code"] == "response_not_found"
    assert (await sdk(base, ALICE).responses.retrieve(r.id)).id == r.id  # still there
    assert len(vendor.requests) == 1  # Bob's continuation never reached the vendor


async def test_store_false_keeps_nothing(gw):
    base, gateway = gw
    r = await sdk(base).responses.create(model=MODEL, input="hi", store=False)
    assert r.store is False
    await gateway.store.settle()
    with pytest.raises(openai.NotFoundError):
        await sdk(base).responses.retrieve(r.id)


class ShiftedClock:
    """The store's `time` module with a wall clock the test moves forward."""

    def __init__(self):
        self.offset = 0.0

    def time(self):
        return real_time.time() + self.offset

    def __getattr__(self, name):
        return getattr(real_time, name)


async def test_stored_responses_live_for_the_ttl_then_expire(make_gateway, vendor,
                                                            monkeypatch):
    clock = ShiftedClock()
    monkeypatch.setattr(sqlite_store, "time", clock)
    base, gateway = make_gateway({
        "auth": {"keys": [ALICE]}, "responses": {"ttl": 1000},
        "providers": {"agent": {"type": "openai", "base_url": vendor.url,
                                "api_keys": [fake.KEY], "models": [fake.MODEL],
                                "discover": False}}})
    r = await sdk(base).responses.create(model=MODEL, input="hi")
    await gateway.store.settle()
    clock.offset = 990  # just before the end of its life: still there, still continuable
    assert (await sdk(base).responses.retrieve(r.id)).output_text == fake.GREETING
    again = await sdk(base).responses.create(model=MODEL, input="more",
                                             previous_response_id=r.id, store=False)
    assert again.output_text == fake.GREETING
    clock.offset = 1010
    with pytest.raises(openai.NotFoundError):
        await sdk(base).responses.retrieve(r.id)


async def test_a_response_larger_than_max_bytes_cannot_be_continued(make_gateway, vendor):
    base, gateway = make_gateway({
        "auth": {"keys": [ALICE]}, "responses": {"max_bytes": 3000},
        "providers": {"agent": {"type": "openai", "base_url": vendor.url,
                                "api_keys": [fake.KEY], "models": [fake.MODEL],
                                "discover": False}}})
    r = await sdk(base).responses.create(model=MODEL, input="x" * 4000)
    await gateway.store.settle()
    assert (await sdk(base).responses.retrieve(r.id)).output_text == fake.GREETING
    with pytest.raises(openai.BadRequestError) as e:
        await sdk(base).responses.create(model=MODEL, input="y", previous_response_id=r.id)
    assert e.value.code == "previous_response_too_large"


# -- errors and what a vendor cannot do ---------------------------------------------------

async def test_builtin_tools_are_left_out_and_named_in_a_header(gw, vendor):
    base, _ = gw
    raw = await sdk(base).responses.with_raw_response.create(
        model=MODEL, input="weather?",
        tools=[{"type": "web_search"}, WEATHER,
               {"type": "file_search", "vector_store_ids": ["vs_1"]}])
    assert raw.headers["x-freeapi-dropped-tools"] == "web_search,file_search"
    r = raw.parse()
    assert r.output[-1].type == "function_call"
    assert [t["function"]["name"] for t in vendor.requests[0]["tools"]] == ["get_weather"]
    assert vendor.rejected == []


async def test_bad_bodies_get_openai_shaped_400s(gw, vendor):
    base, _ = gw
    url = base + "/v1/responses"
    err = error_of(await request(url, "POST", b"{not json", key=ALICE), 400)
    assert err["code"] == "invalid_json"
    err = error_of(await request(url, "POST", {"model": MODEL}, key=ALICE), 400)
    assert err["param"] == "input"
    err = error_of(await request(url, "POST", {"model": MODEL, "input": [{"type": "x"}]},
                                 key=ALICE), 400)
    assert err["param"] == "input[0].type"
    with pytest.raises(openai.BadRequestError):
        await sdk(base).responses.create(model=MODEL, input="hi", max_output_tokens=0)
    assert vendor.requests == []


async def test_unknown_fields_are_ignored(gw):
    base, _ = gw
    body = {"model": MODEL, "include": ["reasoning.encrypted_content"],
            "input": [{"type": "web_search_call", "id": "ws_1", "status": "completed"},
                      {"type": "compaction", "encrypted_content": "x"},
                      {"role": "user", "content": "hi"}],
            "prompt_cache_key": "k", "client_metadata": {"a": "b"}, "service_tier": "auto",
            "text": {"verbosity": "low"}, "reasoning": {"summary": "auto"},
            "something_new_in_2027": {"x": [1, 2]}, "truncation": "auto"}
    resp = await request(base + "/v1/responses", "POST", body, key=ALICE)
    assert resp.code == 200, resp.body
    assert json.loads(resp.body)["status"] == "completed"
    assert resp.headers["x-freeapi-dropped-items"] == "web_search_call,compaction"


async def test_unknown_model_is_404_and_bad_key_401(gw):
    base, _ = gw
    with pytest.raises(openai.NotFoundError) as e:
        await sdk(base).responses.create(model="no-such-model", input="hi")
    assert e.value.code == "model_not_found"
    with pytest.raises(openai.AuthenticationError):
        await sdk(base, "gw-key-wrong-0009").responses.create(model=MODEL, input="hi")
    err = error_of(await request(base + "/v1/responses/resp_" + "0" * 32, key=ALICE), 404)
    assert err["code"] == "response_not_found"


async def test_a_vendor_error_keeps_its_status(gw, vendor):
    base, _ = gw
    # A tool result with no call before it: the vendor says 400, the client gets 400.
    with pytest.raises(openai.BadRequestError) as e:
        await sdk(base).responses.create(model=MODEL, input=[
            {"type": "function_call_output", "call_id": "call_x", "output": "?"}])
    assert "tool" in e.value.message and vendor.rejected


async def test_a_stream_cut_mid_way_ends_with_response_failed(gw):
    base, gateway = gw
    resp = await request(base + "/v1/responses", "POST",
                         {"model": MODEL, "input": "!cut", "stream": True}, key=ALICE)
    events = [json.loads(e) for e in sse_events(resp.body)]
    assert events[0]["type"] == "response.created"
    assert events[-1]["type"] == "response.failed"
    failed = events[-1]["response"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "server_error"
    assert "incomplete" in failed["error"]["message"]
    assert sum(e["type"] == "response.failed" for e in events) == 1
    await gateway.store.settle()
    resp = await request(f"{base}/v1/responses/{failed['id']}", key=ALICE)
    assert resp.code == 404  # a failed response is not kept to be continued
    [entry] = await ledger(gateway, 1)
    assert entry["endpoint"] == "responses" and entry["error"] is not None


# -- the same pipeline as chat completions -------------------------------------------------

async def test_pass_through_vendor_key_and_its_own_stored_responses(make_gateway, vendor):
    base, gateway = make_gateway({"providers": {"agent": {
        "type": "openai", "base_url": vendor.url, "models": [fake.MODEL], "discover": False}}})
    r = await sdk(base, fake.KEY).responses.create(model=MODEL, input="hi")
    assert r.output_text == fake.GREETING
    await gateway.store.settle()
    assert (await sdk(base, fake.KEY).responses.retrieve(r.id)).id == r.id
    with pytest.raises(openai.NotFoundError):  # another vendor key is another caller
        await sdk(base, "sk-agent-vendor-0000000002").responses.retrieve(r.id)


async def test_gateway_key_model_allowlist_applies(make_gateway, vendor):
    base, _ = make_gateway({
        "auth": {"keys": [{"name": "carol", "key": ALICE, "models": ["deepseek/*"]}]},
        "providers": {"agent": {"type": "openai", "base_url": vendor.url,
                                "api_keys": [fake.KEY], "models": [fake.MODEL],
                                "discover": False}}})
    with pytest.raises(openai.PermissionDeniedError) as e:
        await sdk(base).responses.create(model=MODEL, input="hi")
    assert e.value.code == "model_not_allowed" and vendor.requests == []


async def test_a_draining_gateway_refuses_new_responses(gw, vendor):
    base, gateway = gw
    gateway.draining = True
    err = error_of(await request(base + "/v1/responses", "POST",
                                 {"model": MODEL, "input": "hi"}, key=ALICE), 503)
    assert err["code"] == "shutting_down" and vendor.requests == []


async def test_a_vendor_error_event_mid_stream_ends_with_response_failed_without_the_key(gw):
    base, _ = gw
    resp = await request(base + "/v1/responses", "POST",
                         {"model": MODEL, "input": "!error-event", "stream": True}, key=ALICE)
    assert fake.KEY not in resp.body.decode() and fake.KEY[-4:] in resp.body.decode()
    events = [json.loads(e) for e in sse_events(resp.body)]
    assert events[-1]["type"] == "response.failed"
    assert "overloaded" in events[-1]["response"]["error"]["message"]
    assert [e["type"] for e in events].count("response.completed") == 0


# -- a vendor's own Responses API ---------------------------------------------------------

@pytest.fixture
def native_gw(make_gateway, vendor):
    """The agent vendor with its own Responses API configured (a path on its host)."""
    return make_gateway({
        "auth": {"keys": [ALICE, BOB]},
        "providers": {"agent": {"type": "openai", "base_url": vendor.url,
                                "api_keys": [fake.KEY], "models": [fake.MODEL],
                                "discover": False, "responses_base_url": "/v1"}}})


def test_responses_base_url_is_a_url_or_a_path_on_the_vendors_host():
    from freeapi.config import ConfigError, parse_config
    from freeapi.plugins import make_plugin_manager, provider_types
    types = provider_types(make_plugin_manager())

    def native(value, base="http://10.0.0.1:8080/v1"):
        cfg = parse_config({"providers": {"x": {"type": "openai", "base_url": base,
                                                "responses_base_url": value}}}, types)
        return cfg.providers["x"].responses_base_url

    assert native("/api/v2/") == "http://10.0.0.1:8080/api/v2"
    assert native("https://other.example/v1") == "https://other.example/v1"
    assert native(False) is None
    for bad in (5, "ftp://x", "v1"):
        with pytest.raises(ConfigError) as e:
            native(bad)
        assert "providers.x.responses_base_url" in str(e.value)


async def test_native_responses_api_gets_the_request_as_it_came(native_gw, vendor):
    base, gateway = native_gw
    client = sdk(base)
    r = await client.responses.create(model=MODEL, input="hi", instructions="Be brief.",
                                      tools=[{"type": "web_search"}])
    assert r.output_text == fake.NATIVE_TEXT and r.model == MODEL
    assert r.id.startswith("resp_") and len(r.id) == 37  # the gateway's id, not the vendor's
    [sent] = vendor.native_requests
    assert sent["model"] == fake.MODEL and sent["instructions"] == "Be brief."
    assert sent["tools"] == [{"type": "web_search"}]  # the vendor decides what it runs
    assert "store" not in sent and vendor.requests == []  # no chat request was made
    [entry] = await ledger(gateway, 1)
    assert entry["endpoint"] == "responses"
    assert (entry["prompt_tokens"], entry["completion_tokens"]) == (30, 9)
    await gateway.store.settle()
    assert (await client.responses.retrieve(r.id)).output_text == fake.NATIVE_TEXT
    # A continuation is translated: the stored history is the native answer in chat form.
    again = await client.responses.create(model=MODEL, input="more",
                                          previous_response_id=r.id)
    assert again.output_text == fake.GREETING and len(vendor.native_requests) == 1
    assert vendor.requests[0]["messages"] == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": fake.NATIVE_TEXT,
         "reasoning_content": fake.REASONING},
        {"role": "user", "content": "more"}]


async def test_native_responses_stream_passes_through_with_the_gateways_id(native_gw, vendor):
    base, gateway = native_gw
    stream = await sdk(base).responses.create(model=MODEL, input="hi", stream=True)
    events = [e async for e in stream]
    assert [e.type for e in events] == [
        "response.created", "response.output_item.added", "response.output_text.delta",
        "response.output_item.done", "response.completed"]
    final = events[-1].response
    assert final.model == MODEL and final.id == events[0].response.id
    assert final.id.startswith("resp_") and not final.id.startswith("resp_vendor")
    assert vendor.native_requests[0]["stream"] is True
    [entry] = await ledger(gateway, 1)
    assert entry["stream"] is True and entry["total_tokens"] == 39 and entry["error"] is None
    await gateway.store.settle()
    assert (await sdk(base).responses.retrieve(final.id)).output_text == fake.NATIVE_TEXT


async def test_native_stream_cut_mid_way_ends_with_response_failed(native_gw):
    base, gateway = native_gw
    resp = await request(base + "/v1/responses", "POST",
                         {"model": MODEL, "input": "!cut", "stream": True}, key=ALICE)
    events = [json.loads(e) for e in sse_events(resp.body)]
    assert [e["type"] for e in events] == [
        "response.created", "response.output_item.added", "response.failed"]
    assert [e["sequence_number"] for e in events] == [0, 1, 2]
    assert events[-1]["response"]["status"] == "failed"
    [entry] = await ledger(gateway, 1)
    assert entry["error"] is not None


# -- the state store ----------------------------------------------------------------------

def _agent(vendor, **extra):
    return {"auth": {"keys": [ALICE]}, **extra,
            "providers": {"agent": {"type": "openai", "base_url": vendor.url,
                                    "api_keys": [fake.KEY], "models": [fake.MODEL],
                                    "discover": False}}}


async def test_the_store_down_is_503_for_stored_responses_only(make_gateway, vendor):
    from tests.conftest import free_port
    base, gateway = make_gateway(_agent(vendor, state={
        "redis_url": f"redis://127.0.0.1:{free_port()}", "timeout": 1}))
    r = await sdk(base).responses.create(model=MODEL, input="hi")  # stored in vain: logged
    assert r.output_text == fake.GREETING
    await gateway.store.settle()
    err = error_of(await request(f"{base}/v1/responses/{r.id}", key=ALICE), 503)
    assert err["code"] == "state_unavailable"
    err = error_of(await request(base + "/v1/responses", "POST", {
        "model": MODEL, "input": "more", "previous_response_id": r.id}, key=ALICE), 503)
    assert err["code"] == "state_unavailable" and len(vendor.requests) == 1


async def test_two_gateways_on_one_redis_continue_each_others_responses(make_gateway,
                                                                        vendor):
    import uuid

    from tests.test_store import REDIS_URL
    state = {"redis_url": REDIS_URL, "prefix": f"freeapi-test:{uuid.uuid4().hex}:"}
    keep = {"ttl": 60}  # the shared test Redis keeps nothing of this test for long
    base_a, gw_a = make_gateway(_agent(vendor, state=state, responses=keep))
    base_b, _ = make_gateway(_agent(vendor, state=state, responses=keep))
    first = await sdk(base_a).responses.create(model=MODEL, input="weather?",
                                               tools=[WEATHER])
    await gw_a.store.settle()
    final = await sdk(base_b).responses.create(
        model=MODEL, previous_response_id=first.id, tools=[WEATHER],
        input=[{"type": "function_call_output", "call_id": first.output[-1].call_id,
                "output": "hail"}])
    assert final.output_text == fake.QUOTE + "hail" and vendor.rejected == []


async def test_keep_alive_comments_while_the_vendor_is_silent(make_gateway, vendor):
    base, _ = make_gateway(_agent(vendor, server={"keepalive_interval": 0.05}))
    resp = await request(base + "/v1/responses", "POST",
                         {"model": MODEL, "input": "!slow", "stream": True}, key=ALICE)
    body = resp.body.decode()
    assert body.startswith(": keep-alive\n\n")
    assert body.index("event: response.created") > body.index(": keep-alive")
    events = [json.loads(e) for e in sse_events(resp.body)]
    assert events[-1]["type"] == "response.completed"
    assert events[-1]["response"]["output"][-1]["content"][0]["text"] == fake.GREETING


async def test_callers_without_credentials_get_nothing_stored(make_gateway, vendor):
    # A keyless server behind a gateway without keys: every such caller would be one owner.
    vendor.keyless = True
    base, gateway = make_gateway({"auth": {"allow_anonymous": True}, "providers": {"agent": {
        "type": "openai", "base_url": vendor.url, "models": [fake.MODEL], "discover": False}}})
    resp = await request(base + "/v1/responses", "POST", {"model": MODEL, "input": "hi"},
                         key=None)
    assert resp.code == 200, resp.body
    rid = json.loads(resp.body)["id"]
    await gateway.store.settle()
    assert error_of(await request(f"{base}/v1/responses/{rid}", key=None), 401)
    err = error_of(await request(base + "/v1/responses", "POST", {
        "model": MODEL, "input": "more", "previous_response_id": rid}, key=None), 401)
    assert err["code"] == "missing_api_key"
    assert await gateway.store.kv_get("rs", [rid]) == {}
