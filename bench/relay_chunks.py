#!/usr/bin/env python3
"""What relaying one stream chunk costs in the relay (freeapi/relay.py, StreamRelay.feed):
a chunk passed on as it came; a chunk of a model the client names differently from the
vendor (DeepSeek's retired names, `free`, aliases), where the name is replaced in the
vendor's text; and the same chunk written with spaces (`"model": "..."`), which is parsed
and written again. Beside them, what parsing and writing such a chunk costs with the
standard library alone (json.loads + json.dumps with the gateway's options), measured in
the same run.

  python bench/relay_chunks.py [--n 200000]
  PYTHONPATH=/tmp/before python bench/relay_chunks.py     # another checkout's freeapi
"""
from __future__ import annotations

import argparse
import json
import timeit

from freeapi.provider import Provider
from freeapi.relay import StreamRelay
from freeapi.routing import Route

# A DeepSeek-style chunk (https://api-docs.deepseek.com/api/create-chat-completion, the
# streamed chat.completion.chunk object)
CHUNK = ('{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,'
         '"model":"deepseek-v4-flash","system_fingerprint":"fp_bench","choices":[{"index":0,'
         '"delta":{"content":"tok1 "},"logprobs":null,"finish_reason":null}]}')


class Plain(Provider):
    """A provider with no chunk rewriting of its own."""
    name = "bench"
    usage_on_request = False
    rewrites_chunks = False


def relay(requested: str) -> StreamRelay:
    provider = Plain.__new__(Plain)  # no config needed: only its class attributes are read
    return StreamRelay(Route(provider, "deepseek-v4-flash"), requested, include_usage=False)


def per_call_us(fn, n: int) -> float:
    return min(timeit.repeat(fn, number=n, repeat=3)) / n * 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200000)
    args = ap.parse_args()
    as_is, renamed = relay("deepseek-v4-flash"), relay("deepseek-chat")
    assert not as_is.parse_all and renamed.parse_all
    floor = per_call_us(lambda: json.dumps(json.loads(CHUNK), ensure_ascii=False,
                                           separators=(",", ":")), args.n)
    spaced = CHUNK.replace('"model":', '"model": ')
    rows = [("chunk passed on as it came", per_call_us(lambda: as_is.feed(CHUNK), args.n)),
            ("chunk of a renamed model", per_call_us(lambda: renamed.feed(CHUNK), args.n)),
            ("the same, spaced: parsed and written again",
             per_call_us(lambda: renamed.feed(spaced), args.n)),
            ("(the standard library: json.loads + json.dumps of it)", floor)]
    print("| relay step | us a chunk | vs json.loads + json.dumps |")
    print("|---|---|---|")
    for name, us in rows:
        print(f"| {name} | {us:.2f} | {us / floor:.2f} |")


if __name__ == "__main__":
    main()
