"""One ledger entry per chat request, from what the vendor really reported.

Token counts come from the vendor's `usage` object. When a stream was served but its
usage never came (the client hung up, the stream was cut, the vendor reports none), the
gateway estimates them (`estimate_usage`) and marks the entry `estimated`, so token limits
cannot be dodged by disconnecting before the last chunk; a request that failed before
anything was served has null counts.
"""

from __future__ import annotations

import json
import math
import time

_DECODER = json.JSONDecoder()


def _int(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 \
        else None


def _dig(usage: dict, outer: str, inner: str):
    part = usage.get(outer)
    return part.get(inner) if isinstance(part, dict) else None


_COUNTS = ("prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens",
           "total_tokens")


def token_counts(usage) -> dict:
    """prompt / completion / cached / reasoning / total tokens of a usage object, each an
    int or None. Cached: OpenAI's prompt_tokens_details.cached_tokens, else DeepSeek's
    prompt_cache_hit_tokens, else a top-level cached_tokens (Kimi)."""
    if not isinstance(usage, dict):
        return dict.fromkeys(_COUNTS)
    # A field the vendor did not send is None without a check (most send three of them).
    cached = None
    if "prompt_tokens_details" in usage:
        cached = _int(_dig(usage, "prompt_tokens_details", "cached_tokens"))
    if cached is None and "prompt_cache_hit_tokens" in usage:
        cached = _int(usage["prompt_cache_hit_tokens"])
    if cached is None and "cached_tokens" in usage:
        cached = _int(usage["cached_tokens"])
    return {"prompt_tokens": _int(usage.get("prompt_tokens")),
            "completion_tokens": _int(usage.get("completion_tokens")),
            "cached_tokens": cached,
            "reasoning_tokens": _int(_dig(usage, "completion_tokens_details",
                                          "reasoning_tokens"))
            if "completion_tokens_details" in usage else None,
            "total_tokens": _int(usage.get("total_tokens"))}


def tokens_spent(counts: dict) -> int:
    """What token limits are charged: the vendor's total, else prompt + completion."""
    if counts["total_tokens"] is not None:
        return counts["total_tokens"]
    return (counts["prompt_tokens"] or 0) + (counts["completion_tokens"] or 0)


CHARS_PER_TOKEN = 4  # a common rule of thumb for English text and JSON

# A budget's reservation must not be shrunk by the language of the prompt. DeepSeek's
# ratios (https://api-docs.deepseek.com/quick_start/token_usage, read 2026-12-06): 1 English
# character ~ 0.3 token, 1 Chinese character ~ 0.6 token; other vendors' tokenizers differ,
# so a character outside ASCII (CJK, emoji) is counted a whole token: an overestimate the
# settlement corrects, never an underestimate four chars a token gave Chinese (0.25 of 0.6).
ASCII_TOKEN = 0.3
OTHER_TOKEN = 1.0


def reserve_tokens(text: str) -> float:
    """Tokens a text is reserved as before a vendor counted it (see ASCII_TOKEN)."""
    ascii_chars = len(text.encode("ascii", "ignore"))
    return ascii_chars * ASCII_TOKEN + (len(text) - ascii_chars) * OTHER_TOKEN


class StreamSizes:
    """Sizes of a stream's data events, counted as they pass (cheaply: no parsing)."""

    __slots__ = ("events", "size", "smallest")

    def __init__(self):
        self.events = self.size = 0
        self.smallest = None

    def __call__(self, events: list[str]) -> None:
        for ev in events:
            if ev == "[DONE]":
                continue
            n = len(ev)
            self.events += 1
            self.size += n
            if self.smallest is None or n < self.smallest:
                self.smallest = n

    def add(self, lengths: list[int]) -> None:
        """Data events of these lengths (none of them `[DONE]`), counted as __call__ would."""
        if not lengths:
            return
        self.events += len(lengths)
        self.size += sum(lengths)
        least = min(lengths)
        if self.smallest is None or least < self.smallest:
            self.smallest = least


def estimate_usage(prompt_chars: int, sizes: StreamSizes) -> dict:
    """A usage object in OpenAI's shape from what the gateway saw: prompt tokens are the
    sent messages' JSON characters / 4; completion tokens are the streamed text / 4, where
    each event's text is its size beyond the smallest event's (every event is the same JSON
    frame around a piece of text), and at least one token per event (vendors stream about
    one token per event)."""
    prompt = math.ceil(prompt_chars / CHARS_PER_TOKEN)
    text = sizes.size - sizes.events * (sizes.smallest or 0)
    completion = max(sizes.events, math.ceil(text / CHARS_PER_TOKEN))
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def usage_from_body(body) -> dict | None:
    """The top-level `usage` object of a chat.completion body as sent to the client (bytes
    or str), without parsing the whole answer: the last `"usage":{` is decoded on its own.
    A `"usage"` inside message text is escaped (\\"usage\\") and cannot match."""
    if isinstance(body, (bytes, bytearray)):
        end = len(body)
        while True:
            i = body.rfind(b'"usage"', 0, end)
            if i < 0:
                return None
            j = i + 7
            while j < len(body) and body[j:j + 1] in b" \t\r\n:":
                j += 1
            if body[i + 7:j].strip() == b":" and body[j:j + 1] == b"{":
                try:
                    return _decode(body[j:].decode("utf-8", "replace"))
                except ValueError:
                    return None
            end = i
    if isinstance(body, str):
        return usage_from_body(body.encode())
    return None


def _decode(text: str) -> dict | None:
    value, _ = _DECODER.raw_decode(text)
    return value if isinstance(value, dict) else None


def entry(*, caller, vendor_key, provider, model, upstream_model, status, error, stream,
          latency_ms, ttfb_ms, usage, endpoint="chat", request_id=None,
          estimated=False) -> dict:
    """One ledger row. `endpoint` names the front door ("chat", "messages", ...);
    `estimated` is true when the token counts are the gateway's estimate, not the
    vendor's."""
    return {"ts": round(time.time(), 3), "key": caller, "vendor_key": vendor_key,
            "provider": provider, "model": model, "upstream_model": upstream_model,
            "status": status, "error": error, "stream": stream,
            "latency_ms": latency_ms, "ttfb_ms": ttfb_ms, **token_counts(usage),
            "endpoint": endpoint, "request_id": request_id, "estimated": estimated}
