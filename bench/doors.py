"""CPU cost of each front door's own work per request, without the network: what the
/v1/messages and /v1/responses doors add over /v1/chat/completions (translation both
ways, the stream re-encoded event by event) or, with a native Anthropic endpoint, its
relay.

    .venv/bin/python bench/doors.py

The same 20-chunk answer as bench/upstream.js sends. Prints microseconds per request,
best of 15 runs (the least disturbed by other load on the machine). Timing figures
belong here and in bench/run.sh's doors cells, not in unit tests.
"""

from __future__ import annotations

import json
import timeit

from freeapi.config import ProviderConfig
from freeapi.dialects import anthropic as dialect
from freeapi.dialects import responses as responses_dialect
from freeapi.dialects.anthropic_stream import ChatToMessages, NativeEvents
from freeapi.dialects.responses_stream import EventStream
from freeapi.relay import StreamRelay
from freeapi.routing import Route
from providers.openai_compat import OpenAICompatible

PROVIDER = OpenAICompatible(ProviderConfig(name="bench", type="openai",
                                           base_url="http://127.0.0.1:9/v1",
                                           options={"models": ["deepseek-chat"]}))
ROUTE = Route(PROVIDER, "deepseek-chat")


def _chunk(i, content, finish=None):
    delta = {"role": "assistant", "content": content} if i == 0 else {"content": content}
    return json.dumps({"id": "chatcmpl-bench", "object": "chat.completion.chunk",
                       "created": 1, "model": "deepseek-chat", "choices": [{
                           "index": 0, "delta": {} if finish else delta, "logprobs": None,
                           "finish_reason": finish}]})


CHUNKS = [_chunk(i, f"tok{i} ") for i in range(19)] + [_chunk(19, "", "stop")]
NATIVE = ([json.dumps({"type": "message_start", "message": {
              "id": "msg_bench", "type": "message", "role": "assistant",
              "model": "deepseek-chat", "content": [], "stop_reason": None,
              "usage": {"input_tokens": 9, "output_tokens": 1}}}),
           json.dumps({"type": "content_block_start", "index": 0,
                       "content_block": {"type": "text", "text": ""}})]
          + [json.dumps({"type": "content_block_delta", "index": 0,
                         "delta": {"type": "text_delta", "text": f"tok{i} "}})
             for i in range(19)]
          + [json.dumps({"type": "content_block_stop", "index": 0}),
             json.dumps({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                         "usage": {"output_tokens": 10}}),
             json.dumps({"type": "message_stop"})])
REQUEST = {"model": "claude-sonnet-x", "max_tokens": 64,
           "messages": [{"role": "user", "content": "Say hello."}]}
COMPLETION = json.dumps({"id": "chatcmpl-bench", "object": "chat.completion", "created": 1,
                         "model": "deepseek-chat", "choices": [{
                             "index": 0, "message": {"role": "assistant",
                                                     "content": "Hello! This is the benchmark "
                                                                "upstream answering."},
                             "finish_reason": "stop"}],
                         "usage": {"prompt_tokens": 9, "completion_tokens": 10,
                                   "total_tokens": 19}})


def chat_stream():  # the chat door relays the vendor's events as they are
    relay = StreamRelay(ROUTE, "deepseek-chat", include_usage=False)
    for data in CHUNKS:
        relay.feed(data)
    relay.finish()


def translated_stream():
    dialect.validate(REQUEST)
    dialect.to_chat(REQUEST)
    encoder = ChatToMessages(StreamRelay(ROUTE, "claude-sonnet-x", include_usage=True),
                             "claude-sonnet-x")
    for data in CHUNKS:
        encoder.feed(data)
    encoder.finish()


RESPONSES_REQUEST = {"model": "deepseek-chat", "input": "Say hello.", "store": False,
                     "stream": True}


def responses_stream():  # as handlers/responses.py's ResponseEvents drives it
    req = responses_dialect.to_chat(RESPONSES_REQUEST)
    events = EventStream(req, "resp_bench", "deepseek-chat", 0)
    relay = StreamRelay(ROUTE, "deepseek-chat", include_usage=True)
    events.start()
    for data in CHUNKS:
        chunk = relay.chunk(data)
        if isinstance(chunk, dict):
            events.feed(chunk)
    relay.finish()
    events.end()
    events.answer()


def native_stream():
    dialect.validate(REQUEST)
    events = NativeEvents("claude-sonnet-x")
    for data in NATIVE:
        events.feed(data)


def translated_non_stream():
    dialect.validate(REQUEST)
    dialect.to_chat(REQUEST)
    dialect.from_chat(json.loads(COMPLETION), "claude-sonnet-x")


def main():
    print(f"{'door work per request':40} us")
    for name, fn in (("chat completions, 20-chunk stream relay", chat_stream),
                     ("messages native, 20-chunk stream relay", native_stream),
                     ("messages translated, 20-chunk stream", translated_stream),
                     ("messages translated, non-stream", translated_non_stream),
                     ("responses translated, 20-chunk stream", responses_stream)):
        best = min(timeit.repeat(fn, number=200, repeat=15)) / 200
        print(f"{name:40} {best * 1e6:8.1f}")


if __name__ == "__main__":
    main()
