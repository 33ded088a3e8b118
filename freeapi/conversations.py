"""Conversations kept by the gateway: the client sends `conversation_id` and only its new
messages; the stored history goes in front of them.

A conversation is a list of turns; a turn is the messages one request added (as the client
sent them) followed by the answer's assistant message. Rules:

- Scope: a conversation belongs to the caller that created it: the gateway key, or a
  hash of the vendor key list in pass-through mode; any other caller gets 404.
- Reasoning goes back where the vendor needs it: an assistant turn that made tool calls
  keeps its `reasoning_content` (a `-fold` client's `<think>` block becomes that field
  again) and the vendor's own reasoning fields (MiniMax `reasoning_details`), because
  DeepSeek, Kimi, GLM and MiniMax want them back in a tool loop; the provider then puts
  it in the vendor's form. Other turns store no reasoning (the vendors ignore it there).
  Vendor flags on an assistant message (DeepSeek `prefix`, Kimi `partial`) are kept.
- System prompt: a request's own system messages go first and replace the stored ones;
  otherwise the system messages of the latest turn that had any are kept first.
- Length: when the history plus the new messages exceed `max_history_chars` characters of
  JSON (about 4 per token), the oldest whole turns are left out, so a tool call never
  loses its result; storage keeps at most `max_turns` turns / `max_bytes` of JSON.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets

from freeapi.errors import APIError, invalid_request
from freeapi.keys import split_keys
from freeapi.reasoning import split_folded

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$")
_KEEP = ("role", "content", "name", "tool_calls", "tool_call_id", "prefix", "partial")
# Kept only on assistant turns that made tool calls.
_REASONING = ("reasoning_content", "reasoning_details")
ANONYMOUS = "anonymous"


def new_id() -> str:
    return "conv-" + secrets.token_hex(16)


def check_id(value) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise invalid_request("`conversation_id` must be a string of up to 128 letters, "
                              "digits, '-', '_', '.' or ':' (one the gateway returned).",
                              param="conversation_id", code="invalid_conversation_id")
    return value


def not_found(cid: str) -> APIError:
    return APIError(404, f"No conversation {cid!r} for this caller: it does not exist, has "
                         "expired, or belongs to someone else.", param="conversation_id",
                    code="conversation_not_found")


def owner_of(caller, token: str | None) -> str:
    """Who a conversation belongs to, as stored (never a key itself)."""
    if caller is not None:
        return "g:" + hashlib.sha256(caller.key.encode()).hexdigest()[:32]
    if token:
        try:
            keys = split_keys(token)
        except APIError:
            keys = [token]
        return "v:" + hashlib.sha256(",".join(sorted(keys)).encode()).hexdigest()[:32]
    return ANONYMOUS  # no credentials at all: no conversations (see pipeline/history.py)


def size(messages) -> int:
    return len(json.dumps(messages, ensure_ascii=False, separators=(",", ":")))


def _is_system(m) -> bool:
    return isinstance(m, dict) and m.get("role") in ("system", "developer")


def with_history(turns: list, new: list, max_chars: int) -> list:
    """The messages to send: system prompt, as many recent turns as fit, the new ones."""
    new_system = [m for m in new if _is_system(m)]
    new_rest = [m for m in new if not _is_system(m)]
    system = new_system
    if not system:
        for turn in reversed(turns):
            system = [m for m in turn if _is_system(m)]
            if system:
                break
    budget = max_chars - size(new) - (0 if new_system else size(system))
    kept: list[list] = []
    for turn in reversed(turns):
        rest = [_replayed(m) for m in turn if not _is_system(m)]
        cost = size(rest)
        if cost > budget:
            break
        budget -= cost
        kept.append(rest)
    return system + [m for turn in reversed(kept) for m in turn] + new_rest


# Flags that describe the last message of the request that carried them (DeepSeek's prefix
# completion, https://api-docs.deepseek.com/guides/chat_prefix_completion: "the last
# message must be an assistant message with prefix true"; Kimi's partial mode): kept on a
# request's own messages, dropped when a stored turn is replayed in the middle of history.
_LAST_MESSAGE_FLAGS = ("prefix", "partial")


def _replayed(message):
    if isinstance(message, dict) and any(k in message for k in _LAST_MESSAGE_FLAGS):
        return {k: v for k, v in message.items() if k not in _LAST_MESSAGE_FLAGS}
    return message


def clean(message: dict) -> dict:
    """A message as it is stored and fed back: reasoning only on tool-call turns (a folded
    <think> block moved back into `reasoning_content` there, cut elsewhere)."""
    out = {k: message[k] for k in _KEEP if k in message}
    if out.get("role") != "assistant":
        return out
    calls = bool(out.get("tool_calls"))
    if calls:
        out.update((k, message[k]) for k in _REASONING if message.get(k))
    parts = split_folded(out.get("content"))
    if parts is not None:
        out["content"] = parts[1]
        if calls and parts[0] and not out.get("reasoning_content"):
            out["reasoning_content"] = parts[0]
    return out


def answer_message(completion) -> dict | None:
    """The assistant message of a chat.completion's first choice, cleaned."""
    if not isinstance(completion, dict):
        return None
    choices = completion.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    message = choices[0].get("message")
    if not isinstance(message, dict):
        return None
    return clean(dict(message, role="assistant"))


def flatten(turns: list) -> list:
    return [m for turn in turns for m in turn]
