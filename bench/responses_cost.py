#!/usr/bin/env python3
"""What the Responses door's translation costs per request, in-process (no HTTP): the CPU
the dialect adds on top of a chat-completions request, which is what issue 11's budget
(0.3 ms per request at c=1) is about. Stdlib + freeapi only:

    .venv/bin/python bench/responses_cost.py [-n 2000]

Rows: a plain request (string input), a Codex-shaped request (developer instructions,
9 tools of which 2 are dropped, a reasoning item, a tool call and its output), each
translated to chat and its answer back (non-stream), and a 20-chunk stream turned into
Responses events (the bench's fake upstream sends 20 chunks).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from freeapi.dialects.responses import to_chat  # noqa: E402
from freeapi.dialects.responses_output import from_chat  # noqa: E402
from freeapi.dialects.responses_stream import EventStream  # noqa: E402

PLAIN = {"model": "deepseek-chat", "input": "hi"}
CODEX = json.load(open(os.path.join(ROOT, "tests", "golden", "responses",
                                    "request_codex_recorded.json")))["request"]
ANSWER = {"id": "c", "object": "chat.completion", "created": 1, "model": "deepseek-chat",
          "choices": [{"index": 0, "finish_reason": "stop", "message": {
              "role": "assistant", "content": "Hello! How can I help?",
              "reasoning_content": "Let me think."}}],
          "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}}
CHUNKS = [{"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
           "choices": [{"index": 0, "delta": {"content": f"tok{i} "}, "finish_reason": None}]}
          for i in range(19)]
CHUNKS.append({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
               "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 11, "completion_tokens": 19, "total_tokens": 30}})


def non_stream(body):
    req = to_chat(body)
    json.dumps(req.chat)
    obj, _ = from_chat(ANSWER, req, "resp_x", body["model"], 0)
    json.dumps(obj)


def stream(body):
    req = to_chat(dict(body, stream=True))
    es = EventStream(req, "resp_x", body["model"], 0)
    es.start()
    for c in CHUNKS:
        es.feed(c)
    es.end()


def timed(fn, arg, n):
    for _ in range(min(200, n)):
        fn(arg)
    runs = []
    for _ in range(n):
        t = time.perf_counter()
        fn(arg)
        runs.append(time.perf_counter() - t)
    runs.sort()
    return statistics.median(runs) * 1e6, runs[int(len(runs) * 0.99)] * 1e6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=2000)
    n = ap.parse_args().n
    print("| translation | p50 | p99 |\n|---|---|---|")
    for name, fn, body in (("plain request + answer", non_stream, PLAIN),
                           ("Codex request + answer", non_stream, CODEX),
                           ("plain request + 20-chunk stream", stream, PLAIN),
                           ("Codex request + 20-chunk stream", stream, CODEX)):
        p50, p99 = timed(fn, body, n)
        print(f"| {name} | {p50:.0f} µs | {p99:.0f} µs |")


if __name__ == "__main__":
    main()
