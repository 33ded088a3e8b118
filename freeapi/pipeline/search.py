"""A vendor's builtin web search the caller must complete (Kimi's `$web_search`; the
`-search` suffix, freeapi/modalities/search.py).

Kimi answers a `$web_search` call with the search's arguments, which the caller hands
back as the tool's result (https://platform.moonshot.ai/docs/guide/use-web-search); the
gateway does that until the answer is final. The rounds are non-stream; a stream client
gets keep-alives meanwhile, then the final answer as a stream."""

from __future__ import annotations

import json
from typing import Any

from freeapi import sse
from freeapi.errors import APIError, vendor_error
from freeapi.modalities.search import MAX_ROUNDS, add_usage, search_calls
from freeapi.pipeline.exchange import Exchange
from freeapi.relay import StreamRelay, complete


class SearchRounds:
    """Needs the failover's attempts, the response writer's `parsed` and `watch`, and the
    budgets (each round served is held before the next: Budgets.round_served)."""

    def __init__(self, keepalive_interval: float, failover, response, budgets):
        self.interval, self.failover, self.response = keepalive_interval, failover, response
        self.budgets = budgets

    async def run(self, ex: Exchange, route, model: str, body: dict, token, stream: bool,
                  include_usage: bool):
        """The final answer: an Answer (non-stream), or None once it has been streamed."""
        h = ex.door
        writer = None
        if stream:
            ex.writer = writer = sse.SSEWriter(h, self.interval, h.keepalive)
        try:
            data, served = await self._searched(ex, route, model, body, token)
        except APIError as e:
            if writer is None or not writer.committed:
                if writer is not None:
                    writer.stop()
                raise
            ex.error = e.code
            await writer.send(h.stream_error(e))
            writer.stop()
            return None
        if writer is None:  # not a stream
            return self.response.parsed(ex, complete(data, served, model))
        relay = StreamRelay(served, model, include_usage=include_usage,
                            keys=[ex.lease.key] if ex.lease else ())
        self.response.watch(ex, relay)
        encoder = h.chat_encoder(relay)
        out = [encoder.feed(json.dumps(c, ensure_ascii=False)) for c in _as_chunks(data)]
        try:
            await writer.send(b"".join(out) + encoder.finish())
        finally:
            writer.stop()
        h.finish()
        return None

    async def _searched(self, ex: Exchange, route, model: str, body: dict, token):
        body = {k: v for k, v in body.items() if k != "stream_options"}
        body["stream"] = False
        messages, usage = list(body["messages"]), None
        for _ in range(MAX_ROUNDS):
            raw, route = await self.failover.attempt(ex, route, model,
                                                     dict(body, messages=messages), token,
                                                     stream=False)
            try:
                data = json.loads(raw)
                if not isinstance(data, dict):
                    raise ValueError
            except (ValueError, UnicodeDecodeError, RecursionError):
                raise vendor_error(route.provider.name, 502, "the answer was not a JSON "
                                   "object") from None
            usage = add_usage(usage, data.get("usage"))
            found = search_calls(data)
            if found is None:
                if usage is not None:
                    data["usage"] = usage
                return data, route
            # Billed whatever comes next: a later round that fails leaves this in the
            # ledger, and a money budget holds it under the next round's estimate.
            ex.usage = usage
            self.budgets.round_served(ex, route, data.get("usage"))
            message, calls = found
            messages.append(message)
            for call in calls:
                messages.append({"role": "tool", "tool_call_id": call.get("id"),
                                 "name": "$web_search",
                                 "content": call["function"].get("arguments") or "{}"})
        raise vendor_error(route.provider.name, 502, f"still searching after {MAX_ROUNDS} "
                           "rounds")


def _as_chunks(data: dict) -> list[dict]:
    """A chat.completion as the chunks a stream of it would have had."""
    base = {k: data[k] for k in ("id", "created", "model") if k in data}
    base["object"] = "chat.completion.chunk"
    chunks = []
    for choice in data.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        message = dict(choice.get("message") or {})
        delta: dict[str, Any] = {"role": "assistant"}
        for k in ("reasoning_content", "content", "tool_calls"):
            if message.get(k):
                delta[k] = message[k]
        if "tool_calls" in delta:
            delta["tool_calls"] = [dict(c, index=i) for i, c in enumerate(delta["tool_calls"])]
        index = choice.get("index", 0)
        chunks.append(dict(base, choices=[{"index": index, "delta": delta,
                                           "finish_reason": None}]))
        chunks.append(dict(base, choices=[{"index": index, "delta": {},
                                           "finish_reason": choice.get("finish_reason")}]))
    if data.get("usage"):
        chunks.append(dict(base, choices=[], usage=data["usage"]))
    return chunks
