"""count_tokens without a vendor, for the /v1/messages/count_tokens door. Pure.

- `estimate_tokens(body)` is count_tokens' fallback when no vendor can count;
  `check_countable(body)` bounds the items it walks.
"""

from __future__ import annotations

from freeapi.dialects.anthropic import text_of
from freeapi.errors import invalid_request
from freeapi.json_text import compact

# The most messages, content blocks and tools one count_tokens estimate walks (a gateway
# bound, not Anthropic's: the walk is Python work per item, done for callers a vendor never
# sees; ~5 us each). Claude Code compacts long before a conversation has this many.
MAX_COUNTED_ITEMS = 20_000


def _count_text(text: str) -> int:
    # About 4 characters a token for ASCII (English, code, JSON), one a token for anything
    # else (CJK is about 1-1.5 per token). Rounded up: a count that is too low makes
    # clients overflow the context (LiteLLM#37102), one that is a little high only makes
    # them compact a little early. Counted by the codec, in C: a 48 MiB text was 3 s of
    # Python a character at a time.
    ascii_chars = len(text) if text.isascii() else len(text.encode("ascii", "ignore"))
    return -(-ascii_chars // 4) + (len(text) - ascii_chars)


def check_countable(body: dict) -> None:
    """A 400 for a count_tokens body with more items than one estimate walks
    (MAX_COUNTED_ITEMS), checked before anything walks them: list lengths, one step a
    message. Anything not a list is left to validate()."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return
    items = len(messages) + sum(len(body[k]) for k in ("tools", "system")
                                if isinstance(body.get(k), list))
    for m in messages:
        if items > MAX_COUNTED_ITEMS:
            break
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, list):
            items += len(content)
    if items > MAX_COUNTED_ITEMS:
        raise invalid_request(f"count_tokens counts at most {MAX_COUNTED_ITEMS} messages, "
                              "content blocks, system blocks and tools in one request.",
                              param="messages")


def estimate_tokens(body: dict) -> int:
    """count_tokens without a vendor: the text of the system prompt, every block and the
    tool definitions, plus a few tokens per message and per image (1600, Anthropic's
    estimate for a ~1.15 MP image: https://docs.anthropic.com/en/docs/build-with-claude/vision).
    The body has passed check_countable()."""
    total = _count_text(text_of(body.get("system")))
    for m in body.get("messages") or ():
        if not isinstance(m, dict):
            continue
        total += 4
        content = m.get("content")
        if isinstance(content, str):
            total += _count_text(content)
            continue
        for block in content if isinstance(content, list) else ():
            if not isinstance(block, dict):
                continue
            if block.get("type") == "image":
                total += 1600
            elif block.get("type") == "text":
                total += _count_text(str(block.get("text") or ""))
            elif block.get("type") == "thinking":
                total += _count_text(str(block.get("thinking") or ""))
            else:
                total += _count_text(compact({k: v for k, v in block.items()
                                             if k not in ("type", "cache_control")}))
    for tool in body.get("tools") or ():
        total += _count_text(compact(tool)) + 8
    return max(total, 1)
