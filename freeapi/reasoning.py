"""Reasoning that must survive a tool loop.

DeepSeek (https://api-docs.deepseek.com/guides/thinking_mode, "Tool Calls") and Kimi's
thinking models (https://platform.kimi.com/docs/guide/use-kimi-k2-thinking-model) answer
400 when an assistant turn that made tool calls comes back without its
`reasoning_content`; GLM and MiniMax ask for it to be kept. Clients that were shown the
reasoning differently (or not at all) cannot send it back as it was, so:

- `-fold` clients got it as a `<think>` block at the start of `content`: `unfold` moves
  that block back into the turn's `reasoning_content`;
- `-silent` clients never saw it: `remember` keeps the reasoning of answers that ended in
  tool calls, keyed by tool call (id, name, arguments) and caller, in the state store
  (`kv_put`, so every worker and instance sharing the store sees it), and `restore` puts it back into the
  turns that return without it.

The Anthropic and Responses doors call the same functions for the thinking blocks their
clients drop (`owner` is `freeapi.conversations.owner_of(caller, token)`, as the pipeline's
`_owner()` gives it; `cfg` is `gateway.config.reasoning`):

    await remember(store, completion_or_assistant_message, owner=owner, ttl=cfg.ttl,
                   max_chars=cfg.max_chars)          # before the answer's last bytes
    messages = await restore(store, messages, owner=owner)   # before the request goes

How each vendor wants reasoning in its history is the provider's `reasoning_for_history`,
applied when the request is built (Provider.chat_request).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging

from freeapi.store import StoreError

log = logging.getLogger("freeapi.reasoning")

NS = "rz"  # the store namespace of remembered reasoning
OPEN, CLOSE = "<think>", "</think>"


def _turns_with_calls(messages):
    for i, m in enumerate(messages):
        if isinstance(m, dict) and m.get("role") == "assistant" and m.get("tool_calls") \
                and isinstance(m["tool_calls"], list):
            yield i, m


def _call_key(call) -> str | None:
    """What a remembered reasoning is filed under: the call's id, name and arguments.
    The id alone is unique only within one answer: Kimi numbers calls per answer
    (`get_weather:0`, reused by later turns and other conversations: a user report at
    https://forum.moonshot.ai/t/bug-anthropic-compatible-messages-api-reuses-the-same-tool-use-id-across-separate-kimi-k3-tool-calls/549),
    so two sessions of one caller (a team's shared key) would get each other's reasoning.
    Arguments are compared as JSON values: clients that parse and re-serialize them
    change the spacing. A summary that has only the ids (the messages door's stream) is
    filed under the id alone, which `restore` reads when nothing better matches."""
    if not isinstance(call, dict) or not isinstance(call.get("id"), str) or not call["id"]:
        return None
    if not isinstance(call.get("function"), dict):
        return call["id"]
    fn = call["function"]
    args = fn.get("arguments")
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except (ValueError, RecursionError):
            pass  # not JSON: compared as the text it is
    try:
        args = json.dumps(args, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        args = repr(args)
    return f"{call['id']}\0{fn.get('name')}\0{args}"


def _first_call_key(message: dict) -> str | None:
    for call in message.get("tool_calls") or ():
        key = _call_key(call)
        if key is not None:
            return key
    return None


def _name(owner: str, call_key: str) -> str:
    # One caller's tool calls never reach another caller's reasoning.
    return hashlib.sha256(f"{owner}\0{call_key}".encode()).hexdigest()[:40]


def split_folded(content) -> tuple[str, str] | None:
    """(reasoning, rest) of a `content` that starts with a folded `<think>` block."""
    if not isinstance(content, str) or not content.startswith(OPEN):
        return None
    end = content.find(CLOSE)
    if end < 0:
        return None
    return content[len(OPEN):end].strip("\n"), content[end + len(CLOSE):].lstrip("\n")


def unfold(messages: list) -> list:
    """History from a `-fold` client: each assistant turn's `<think>` block becomes its
    `reasoning_content` again (a field the client did send wins)."""
    out = []
    for m in messages:
        if isinstance(m, dict) and m.get("role") == "assistant":
            content = m.get("content")
            first = content[0] if isinstance(content, list) and content else None
            if isinstance(first, dict) and first.get("type") == "text":
                # The same block as the first text part of a content array.
                parts = split_folded(first.get("text"))
                if parts is not None:
                    content = [dict(first, text=parts[1])] + content[1:]
            else:
                parts = split_folded(content)
                if parts is not None:
                    content = parts[1]
            if parts is not None:
                m = dict(m, content=content)
                if parts[0] and not m.get("reasoning_content"):
                    m["reasoning_content"] = parts[0]
        out.append(m)
    return out


def records(result, max_chars: int) -> dict[str, dict]:
    """{tool call's key: record} for what `remember` keeps of `result`: a chat.completion (its
    choices' messages) or one assistant message. Only answers that ended in tool calls and
    carried reasoning count; the reasoning is cut to `max_chars`."""
    if not isinstance(result, dict):
        return {}
    if isinstance(result.get("choices"), list):
        messages = [c.get("message") for c in result["choices"] if isinstance(c, dict)]
    else:
        messages = [result]
    out = {}
    for m in messages:
        if not isinstance(m, dict):
            continue
        reasoning = m.get("reasoning_content")
        if not isinstance(reasoning, str) or not reasoning or not m.get("tool_calls"):
            continue
        record = {"r": reasoning[:max_chars]}
        for call in m["tool_calls"]:
            key = _call_key(call)
            if key is not None:
                out[key] = record
    return out


async def remember(store, result, *, owner: str, ttl: float, max_chars: int = 65536) -> None:
    """Keep `result`'s reasoning for its tool calls. Awaited before the answer's last bytes
    go out, so the client's next turn (the tool results) finds it on any gateway sharing
    the store; a store failure is logged, never the answer's failure."""
    kept = records(result, max_chars)
    if not kept:
        return
    try:
        await asyncio.gather(*(store.kv_put(NS, _name(owner, key), record, ttl)
                               for key, record in kept.items()))
    except StoreError as e:
        log.warning("the reasoning of a tool call was not remembered: %s", e)


def missing(messages: list) -> dict[int, str]:
    """{index: first tool call's key} of the assistant tool-call turns without reasoning."""
    return {i: key for i, m in _turns_with_calls(messages)
            if not m.get("reasoning_content") and (key := _first_call_key(m))}


async def restore(store, messages: list, *, owner: str) -> list:
    """`messages` with the remembered reasoning put back into the tool-call turns that
    returned without it (one store read for all of them). When the store cannot answer,
    the messages go on as they are: the vendor then says what is missing."""
    wanted = missing(messages)
    if not wanted:
        return messages
    # Each turn's full key first, then its id alone (what an id-only summary wrote).
    names = {i: (_name(owner, key), _name(owner, key.split("\0", 1)[0]))
             for i, key in wanted.items()}
    try:
        found = await store.kv_get(NS, sorted({n for pair in names.values() for n in pair}))
    except StoreError as e:
        log.warning("remembered reasoning could not be read: %s", e)
        return messages
    out = list(messages)
    for i, pair in names.items():
        record = next((found[n] for n in pair if isinstance(found.get(n), dict)
                       and isinstance(found[n].get("r"), str)), None)
        if record is not None:
            out[i] = dict(out[i], reasoning_content=record["r"])
    return out


async def for_vendor(store, display: str | None, messages: list, *, owner: str) -> list:
    """The history a request sends on, with the reasoning its display mode took from the
    client put back: unfolded for `-fold`, restored for `-silent`, untouched otherwise."""
    if display == "fold":
        return unfold(messages)
    if display == "silent":
        return await restore(store, messages, owner=owner)
    return messages
