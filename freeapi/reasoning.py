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

The Responses door also puts dropped reasoning back into its input items (`restore_items`),
so a pass-through to a vendor's own Responses API gets it too.

Callers with no credentials (`conversations.ANONYMOUS`) all share one owner, so nothing is
kept for them: `remember` and `restore` do nothing, and a `-silent` request of theirs that
would need the memory (tools, or tool-call turns in its history) is refused with a 401
that says why (`for_vendor`), before the vendor is paid for an answer whose tool loop
could not go on.

How each vendor wants reasoning in its history is the provider's `reasoning_for_history`,
applied when the request is built (Provider.chat_request).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging

from freeapi.errors import APIError
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
    change the spacing. Every answer, streamed or not, is filed under this full key (an id
    alone would let a session that reuses an id read another's reasoning)."""
    if not isinstance(call, dict) or not isinstance(call.get("id"), str) or not call["id"]:
        return None
    if not isinstance(call.get("function"), dict):
        return None  # nothing to tell one session's call from another's
    fn = call["function"]
    args = fn.get("arguments")
    if isinstance(args, str) and not args.strip():
        args = {}  # no arguments: the Anthropic door's client gets (and returns) `{}`
    elif isinstance(args, str):
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


def kept_for(owner) -> bool:
    """Whether the gateway keeps reasoning for this owner: not for callers with no
    credentials, who all share one owner (one would receive another's reasoning)."""
    from freeapi.conversations import ANONYMOUS  # conversations imports this module
    return isinstance(owner, str) and bool(owner) and owner != ANONYMOUS


def needs_credentials() -> APIError:
    return APIError(401, "A `-silent` model hides the reasoning of tool-call answers, and the "
                         "gateway keeps it only for callers it can tell apart: send "
                         "credentials as `Authorization: Bearer <key>`, or use the model "
                         "without `-silent` (or with `-fold`) so the client carries the "
                         "reasoning itself.", code="missing_api_key")


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
    carried reasoning count; the reasoning is cut to `max_chars`. A message may also carry
    `reasoning_items`: a vendor's own Responses reasoning items as they came (the
    Responses door's pass-through), kept verbatim when their JSON fits in `max_chars`, for
    `restore_items` to put back as they were."""
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
        reasoning = reasoning if isinstance(reasoning, str) else ""
        items = m.get("reasoning_items")
        if not (isinstance(items, list) and items and _fits(items, max_chars)):
            items = None
        if not (reasoning or items) or not m.get("tool_calls") \
                or not isinstance(m["tool_calls"], list):
            continue
        record = {"r": reasoning[:max_chars]}
        if items:
            record["i"] = items
        for call in m["tool_calls"]:
            key = _call_key(call)
            if key is not None:
                out[key] = record
    return out


def _fits(items: list, max_chars: int) -> bool:
    try:
        return len(json.dumps(items, ensure_ascii=False, separators=(",", ":"))) <= max_chars
    except (TypeError, ValueError, RecursionError):
        return False


async def remember(store, result, *, owner: str, ttl: float, max_chars: int = 65536) -> None:
    """Keep `result`'s reasoning for its tool calls. Awaited before the answer's last bytes
    go out, so the client's next turn (the tool results) finds it on any gateway sharing
    the store; a store failure is logged, never the answer's failure. Nothing is kept for
    callers with no credentials (`kept_for`)."""
    if not kept_for(owner):
        return
    kept = records(result, max_chars)
    if not kept:
        return
    try:
        await asyncio.gather(*(store.kv_put(NS, _name(owner, key), record, ttl)
                               for key, record in kept.items()))
    except StoreError as e:
        log.warning("the reasoning of a tool call was not remembered: %s", str(e))


def missing(messages: list) -> dict[int, str]:
    """{index: first tool call's key} of the assistant tool-call turns without reasoning."""
    return {i: key for i, m in _turns_with_calls(messages)
            if not m.get("reasoning_content") and (key := _first_call_key(m))}


async def restore(store, messages: list, *, owner: str) -> list:
    """`messages` with the remembered reasoning put back into the tool-call turns that
    returned without it (one store read for all of them). When the store cannot answer,
    the messages go on as they are: the vendor then says what is missing."""
    wanted = missing(messages) if kept_for(owner) else None
    if not wanted:
        return messages
    found = await _read(store, {i: _name(owner, key) for i, key in wanted.items()})
    out = list(messages)
    for i, record in found.items():
        if isinstance(record.get("r"), str) and record["r"]:
            out[i] = dict(out[i], reasoning_content=record["r"])
    return out


async def _read(store, names: dict) -> dict:
    """{position: record} of the names found (one store read); {} when the store fails."""
    try:
        found = await store.kv_get(NS, sorted(set(names.values())))
    except StoreError as e:
        log.warning("remembered reasoning could not be read: %s", str(e))
        return {}
    return {i: found[n] for i, n in names.items() if isinstance(found.get(n), dict)}


def _kind(item) -> str | None:
    if not isinstance(item, dict):
        return None
    kind = item.get("type", "message" if "role" in item else None)
    if kind == "message":
        return "answer" if item.get("role") == "assistant" else None
    return kind if kind in ("reasoning", "function_call") else None


def _item_call_key(item: dict) -> str | None:
    return _call_key({"id": item.get("call_id"), "function": {
        "name": item.get("name"), "arguments": item.get("arguments")}})


def missing_items(items: list) -> dict[int, str]:
    """{where the run starts: first call's key} of each run of a Responses input's assistant
    output items (what the dialect folds into one assistant turn: reasoning, assistant
    messages, function calls) that has function calls and no reasoning item."""
    out, start, call, reasoned = {}, None, None, False
    for i, item in enumerate([*items, None]):
        kind = _kind(item)
        if kind is None:
            # A key only for runs that lack reasoning: clients that keep it pay nothing.
            if start is not None and call is not None and not reasoned \
                    and (key := _item_call_key(call)) is not None:
                out[start] = key
            start = None
            continue
        if start is None:
            start, call, reasoned = i, None, False
        if kind == "reasoning":
            reasoned = True
        elif kind == "function_call" and call is None:
            call = item
    return out


async def restore_items(store, items, *, owner: str, make_item) -> list:
    """Responses input items with the remembered reasoning put back before each run of
    function calls that returned without its reasoning item: the vendor's own items as they
    came when the answer was a pass-through, else `make_item(text)` (the reasoning item
    the door shows). Anything that is not a list of items is returned as it is (the
    dialect says what is wrong with it)."""
    if not isinstance(items, list) or not kept_for(owner):
        return items
    wanted = missing_items(items)
    if not wanted:
        return items
    found = await _read(store, {i: _name(owner, key) for i, key in wanted.items()})
    out = []
    for i, item in enumerate(items):
        record = found.get(i)
        if record is not None:
            kept = record.get("i")
            if isinstance(kept, list) and kept:
                out.extend(kept)
            elif isinstance(record.get("r"), str) and record["r"]:
                out.append(make_item(record["r"]))
        out.append(item)
    return out


async def for_vendor(store, display: str | None, messages: list, *, owner: str,
                     tools=None) -> list:
    """The history a request sends on, with the reasoning its display mode took from the
    client put back: unfolded for `-fold`, restored for `-silent`, untouched otherwise.
    A `-silent` request from a caller without credentials that would need the memory
    (`tools`, or tool-call turns in `messages`) is refused: nothing is kept for it."""
    if display == "fold":
        return unfold(messages)
    if display == "silent":
        if not kept_for(owner):
            if tools or any(True for _ in _turns_with_calls(messages)):
                raise needs_credentials()
            return messages
        return await restore(store, messages, owner=owner)
    return messages
