"""The Anthropic dialect (freeapi/dialects/anthropic*.py) against golden fixtures in
tests/golden/anthropic/: request -> chat body, chat.completion -> Message, and chunk
streams -> events. A fixture is a reviewed expectation: change one only on purpose."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from freeapi.dialects import anthropic as d
from freeapi.dialects.anthropic_count import estimate_tokens
from freeapi.dialects.anthropic_stream import NativeEvents, StreamTranslator
from freeapi.errors import APIError

GOLDEN = Path(__file__).parent / "golden" / "anthropic"


def load(name: str) -> dict:
    return json.loads((GOLDEN / name).read_text())


def events_of(raw: bytes) -> list[list]:
    out = []
    for block in raw.decode().split("\n\n"):
        if block:
            lines = dict(line.split(": ", 1) for line in block.splitlines())
            out.append([lines["event"], json.loads(lines["data"])])
    return out


@pytest.mark.parametrize("name", sorted(p.name for p in GOLDEN.glob("request_*.json")))
def test_request_translation_matches_golden(name):
    case = load(name)
    chat, dropped = d.to_chat(case["anthropic"])
    assert chat == case["chat"]
    assert dropped == case["dropped_tools"]


@pytest.mark.parametrize("name", sorted(p.name for p in GOLDEN.glob("response_*.json")))
def test_response_translation_matches_golden(name):
    case = load(name)
    assert d.from_chat(case["chat"], case["model"]) == case["anthropic"]


@pytest.mark.parametrize("name", sorted(p.name for p in GOLDEN.glob("stream_*.json")))
def test_stream_translation_matches_golden(name):
    case = load(name)
    t = StreamTranslator(case["model"])
    got = events_of(b"".join(t.feed(c) for c in case["chunks"]) + t.finish())
    want = case["events"]
    if not case["chunks"]:  # no vendor id to derive the message id from: a random one
        assert got[0][1]["message"].pop("id").startswith("msg_")
        want[0][1]["message"].pop("id")
    assert got == want


def chunk(delta, finish=None):
    return {"id": "c1", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def test_a_tool_name_repeated_across_chunks_does_not_restart_the_call():
    # Kimi K2.5 repeats the tool's name (and id) in every chunk of one call (NA#4203).
    t = StreamTranslator("m")
    raw = t.feed(chunk({"tool_calls": [{"index": 0, "id": "c", "function": {
        "name": "Bash", "arguments": '{"a"'}}]}))
    raw += t.feed(chunk({"tool_calls": [{"index": 0, "id": "c", "function": {
        "name": "Bash", "arguments": ': 1}'}}]}, "tool_calls"))
    events = events_of(raw + t.finish())
    starts = [e for n, e in events if n == "content_block_start"]
    assert len(starts) == 1
    partial = "".join(e["delta"]["partial_json"] for n, e in events
                      if n == "content_block_delta")
    assert json.loads(partial) == {"a": 1}


def test_text_after_a_tool_call_still_ends_with_tool_use():
    t = StreamTranslator("m")
    t.feed(chunk({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "x"}}]}))
    t.feed(chunk({"content": "done"}, "stop"))
    events = events_of(t.finish())
    assert [e for n, e in events if n == "message_delta"][0]["delta"]["stop_reason"] == \
        "tool_use"


def test_native_events_put_the_model_back_and_read_usage():
    ev = NativeEvents("my-alias", keys=["sk-secret-0001"])
    start = ev.feed(json.dumps({"type": "message_start", "message": {
        "id": "m", "model": "deepseek-chat", "usage": {"input_tokens": 5,
                                                        "cache_read_input_tokens": 3}}}))
    assert start.startswith(b"event: message_start\n") and b'"my-alias"' in start
    assert ev.feed('{"type":"ping"}') == b'event: ping\ndata: {"type":"ping"}\n\n'
    err = ev.feed('{"type":"error","error":{"type":"api_error","message":"key sk-secret-0001"}}')
    assert b"sk-secret-0001" not in err and err.startswith(b"event: error\n")
    ev.feed(json.dumps({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                        "usage": {"output_tokens": 9}}))
    assert not ev.finished
    ev.feed('{"type":"message_stop"}')
    assert ev.finished
    assert ev.usage == {"prompt_tokens": 8, "completion_tokens": 9, "total_tokens": 17,
                        "prompt_tokens_details": {"cached_tokens": 3}}


@pytest.mark.parametrize("body, param", [
    ({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}, "model"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
    ({"model": "m", "max_tokens": 5, "messages": []}, "messages"),
    ({"model": "m", "max_tokens": 5, "messages": [{"role": "tool", "content": "x"}]},
     "messages.0"),
    ({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": 3}]},
     "messages.0.content"),
    ({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [1]}]},
     "messages.0.content.0"),
    ({"model": "m", "max_tokens": 5, "stream": "yes",
      "messages": [{"role": "user", "content": "x"}]}, "stream"),
])
def test_validate_names_the_bad_field(body, param):
    with pytest.raises(APIError) as info:
        d.validate(body)
    assert info.value.status == 400 and info.value.param == param


def test_error_types_follow_anthropics_table():
    assert d.error_body(APIError(404, "x")) == {"type": "error", "error": {
        "type": "not_found_error", "message": "x"}}
    assert d.error_body(APIError(529, "x"))["error"]["type"] == "overloaded_error"
    assert d.error_body(APIError(504, "x"))["error"]["type"] == "api_error"
    assert d.error_body(APIError(422, "x"))["error"]["type"] == "invalid_request_error"


def test_token_estimate_never_undercounts_cjk_and_grows_with_text():
    small = estimate_tokens({"messages": [{"role": "user", "content": "hello"}]})
    big = estimate_tokens({"messages": [{"role": "user", "content": "hello " * 100}]})
    cjk = estimate_tokens({"messages": [{"role": "user", "content": "你好世界" * 10}]})
    assert small < big and 150 <= big <= 160
    assert cjk >= 40  # one token a character at least


# -- which providers pass /v1/messages through (freeapi/provider.py) -------------------------

def gateway_providers(providers: dict):
    from freeapi.app import Gateway
    from freeapi.config import parse_config
    from freeapi.plugins import make_plugin_manager, provider_types
    types = provider_types(make_plugin_manager())
    return Gateway(parse_config({"providers": providers}, types), make_plugin_manager(), types)


def test_native_endpoints_follow_base_url_and_config():
    gw = gateway_providers({
        "qwen": {"base_url": "https://dashscope-intl.aliyuncs.com/compatible-mode/v1"},
        "glm": {"anthropic_base_url": False},
        "local": {"type": "openai", "base_url": "http://127.0.0.1:9/v1", "discover": False,
                  "anthropic_base_url": "http://127.0.0.1:9"}})
    try:
        p = gw.providers
        assert p["deepseek"].anthropic_url == "https://api.deepseek.com/anthropic"
        assert p["minimax"].anthropic_url == "https://api.minimaxi.com/anthropic"
        # A region's base_url takes its own Anthropic endpoint along.
        assert p["qwen"].anthropic_url == "https://dashscope-intl.aliyuncs.com/apps/anthropic"
        assert p["glm"].anthropic_url is None and p["kimi"].anthropic_url is None
        req = p["local"].messages_request({"model": "x", "stream": True}, "sk-k")
        assert req.url == "http://127.0.0.1:9/v1/messages"
        assert req.headers["x-api-key"] == "sk-k" and req.headers["Accept"] == \
            "text/event-stream"
        assert p["local"].messages_request({"model": "x"}, "k", "/v1/messages/count_tokens") \
            is None  # counting was not switched on
        # Qwen's endpoint serves Qwen models only: others are translated.
        assert p["qwen"].messages_request({"model": "qwen-plus"}, "k") is not None
        assert p["qwen"].messages_request({"model": "deepseek-v3"}, "k") is None
    finally:
        gw.close()


def test_a_bad_anthropic_base_url_is_a_config_error():
    from freeapi.config import ConfigError
    with pytest.raises(ConfigError) as info:
        gateway_providers({"deepseek": {"anthropic_base_url": "ftp://x"}})
    assert "anthropic_base_url" in str(info.value)


def test_any_chunk_sequence_gives_well_formed_events():
    """Random vendor streams (reasoning, text and tool-call pieces in any order, repeated
    names, empty deltas): the events always follow Anthropic's grammar, no text is lost
    or duplicated, and stop_reason is tool_use exactly when a tool was called (unless the
    vendor hit max_tokens)."""
    import random
    rng = random.Random(1117)
    for _ in range(300):
        t, raw = StreamTranslator("m"), b""
        texts = {"thinking": "", "text": ""}
        args: dict[int, str] = {}
        finish = None
        for _ in range(rng.randint(0, 12)):
            kind = rng.choice(["reasoning", "content", "tool", "tool", "empty", "usage"])
            delta: dict = {}
            if kind == "reasoning":
                piece = rng.choice(["a", "b ", "思"])
                delta["reasoning_content"] = piece
                texts["thinking"] += piece
            elif kind == "content":
                piece = rng.choice(["x", "y\n", '"q"'])
                delta["content"] = piece
                texts["text"] += piece
            elif kind == "tool":
                # A new call, or more of the latest (calls arrive one after another).
                i = len(args) if not args or rng.random() < 0.4 else len(args) - 1
                part = rng.choice(['{"a"', ":1", "}", ""])
                tc = {"index": i, "function": {"name": "f", "arguments": part}}
                if i not in args:
                    tc["id"] = f"c{i}"
                args[i] = args.get(i, "") + part
                delta["tool_calls"] = [tc]
            chunk = {"id": "r", "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            if kind == "usage":
                chunk = {"id": "r", "choices": [], "usage": {"prompt_tokens": 5,
                                                             "completion_tokens": 2}}
            raw += t.feed(chunk)
        if rng.random() < 0.8:
            finish = rng.choice(["stop", "length", "tool_calls"])
            raw += t.feed({"id": "r", "choices": [{"index": 0, "delta": {},
                                                   "finish_reason": finish}]})
        events = events_of(raw + t.finish())
        names = [n for n, _ in events]
        assert names[0] == "message_start" and names.count("message_start") == 1
        assert names[-2:] == ["message_delta", "message_stop"]
        got = {"thinking": "", "text": ""}
        calls: dict[str, str] = {}
        open_block = None
        for name, data in events:
            if name == "content_block_start":
                assert open_block is None
                open_block = data["content_block"]
                if open_block["type"] == "tool_use":
                    calls[open_block["id"]] = ""
            elif name == "content_block_delta":
                d = data["delta"]
                if d["type"] == "thinking_delta":
                    got["thinking"] += d["thinking"]
                elif d["type"] == "text_delta":
                    got["text"] += d["text"]
                elif d["type"] == "input_json_delta":
                    calls[open_block["id"]] += d["partial_json"]
            elif name == "content_block_stop":
                assert open_block is not None
                open_block = None
        assert open_block is None and got == texts
        assert calls == {f"c{i}": a for i, a in args.items()}
        stop = events[-2][1]["delta"]["stop_reason"]
        if finish == "length":
            assert stop == "max_tokens"
        else:
            assert stop == ("tool_use" if args else "end_turn")


def test_text_during_a_tool_call_waits_for_the_call_to_finish():
    t = StreamTranslator("m")
    raw = t.feed(chunk({"tool_calls": [{"index": 0, "id": "c", "function": {
        "name": "f", "arguments": '{"a"'}}]}))
    raw += t.feed(chunk({"content": "note"}))
    raw += t.feed(chunk({"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]},
                        "tool_calls"))
    events = events_of(raw + t.finish())
    blocks = [e["content_block"]["type"] for n, e in events if n == "content_block_start"]
    assert blocks == ["tool_use", "text"]
    partial = "".join(e["delta"].get("partial_json", "") for n, e in events
                      if n == "content_block_delta")
    assert partial == '{"a":1}'


@pytest.mark.parametrize("finish", [[], {"a": 1}, 7, True])
def test_a_vendors_finish_reason_of_another_type_ends_the_turn_plainly(finish):
    # A hostile or broken vendor's finish_reason is no dict key: end_turn, never a crash.
    answer = {"id": "x", "choices": [{"index": 0, "finish_reason": finish,
                                      "message": {"role": "assistant", "content": "hi"}}]}
    assert d.from_chat(answer, "m")["stop_reason"] == "end_turn"
    t = StreamTranslator("m")
    t.feed(chunk({"content": "hi"}, finish))
    events = events_of(t.finish())
    assert [e["delta"]["stop_reason"] for n, e in events if n == "message_delta"] == \
        ["end_turn"]
