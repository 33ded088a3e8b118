"""Anthropic Messages <-> OpenAI chat completions, for the /v1/messages door. Pure.

Wire format: https://docs.anthropic.com/en/api/messages (request, Message),
https://docs.anthropic.com/en/api/messages-streaming (event order and deltas),
https://docs.anthropic.com/en/api/errors (error shape and types).

- `validate(body)` checks what the door needs; `to_chat(body)` makes the chat body the
  pipeline sends to vendors without an Anthropic endpoint.
- `from_chat(completion, model)` turns a chat.completion into a Message; streams are in
  freeapi/dialects/anthropic_stream.py.
- count_tokens' own estimate, for when no vendor can count, is in
  freeapi/dialects/anthropic_count.py.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets

from freeapi.errors import APIError, invalid_request
from freeapi.json_text import compact
from freeapi.routing import MAX_MODEL_NAME
from freeapi.jsonvalues import obj_at

# Anthropic's error `type` per status (https://docs.anthropic.com/en/api/errors); the SDK
# picks its exception class from the status, clients switch on the type.
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error",
               402: "billing_error", 403: "permission_error", 404: "not_found_error",
               413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
               503: "overloaded_error", 529: "overloaded_error"}

# Keyed by the vendor's finish_reason as it came (None when absent).
STOP_REASONS: dict[str | None, str] = {
    "stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
    "function_call": "tool_use", "content_filter": "refusal"}


# One encoder, built once (freeapi/json_text.py): json.dumps with arguments builds one per
# call, which was most of count_tokens' estimate (~30 us a block).
_ENCODE = _dumps = compact


def error_body(err: APIError) -> dict:
    etype = ERROR_TYPES.get(err.status) or ("api_error" if err.status >= 500
                                            else "invalid_request_error")
    return {"type": "error", "error": {"type": etype, "message": err.message}}


def sse(name: str, data) -> bytes:
    return f"event: {name}\ndata: {data if isinstance(data, str) else _dumps(data)}\n\n".encode()


PING = sse("ping", {"type": "ping"})


def stream_error(err: APIError) -> bytes:
    """The `error` event that ends a stream which failed after its first byte."""
    return sse("error", error_body(err))


# -- requests ---------------------------------------------------------------------------------

def _bad(message: str, param: str | None = None) -> APIError:
    return invalid_request(message, param=param)


def validate(body: dict, count_only: bool = False) -> tuple[str, bool]:
    """(model, stream) of a Messages request, or the 400 that says what is wrong."""
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise _bad("model: Field required (a non-empty string).", "model")
    if len(model) > MAX_MODEL_NAME:
        raise _bad(f"model: longer than {MAX_MODEL_NAME} characters.", "model")
    if not count_only:
        mt = body.get("max_tokens")
        if not isinstance(mt, int) or isinstance(mt, bool) or mt < 1:
            raise _bad("max_tokens: Field required (an integer of at least 1).", "max_tokens")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages: Field required (a non-empty array).", "messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant", "system"):
            raise _bad(f"messages.{i}: an object whose role is user or assistant.",
                       f"messages.{i}")
        content = m.get("content")
        if isinstance(content, list):
            for j, block in enumerate(content):
                if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                    raise _bad(f"messages.{i}.content.{j}: a content block with a `type`.",
                               f"messages.{i}.content.{j}")
        elif not isinstance(content, str):
            raise _bad(f"messages.{i}.content: a string or an array of content blocks.",
                       f"messages.{i}.content")
    system = body.get("system")
    if system is not None and not isinstance(system, (str, list)):
        raise _bad("system: a string or an array of text blocks.", "system")
    tools = body.get("tools")
    if tools is not None and (not isinstance(tools, list)
                              or not all(isinstance(t, dict) for t in tools)):
        raise _bad("tools: an array of tool definitions.", "tools")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _bad("stream: true or false.", "stream")
    return model, stream


def text_of(content) -> str:
    """The text of a string or of the text blocks of a block list."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    return "\n".join(b.get("text", "") for b in content
                     if isinstance(b, dict) and b.get("type") == "text"
                     and isinstance(b.get("text"), str))


def _image_part(block: dict) -> dict | None:
    src = block.get("source")
    if not isinstance(src, dict):
        return None
    if src.get("type") == "base64" and isinstance(src.get("data"), str):
        url = f"data:{src.get('media_type') or 'image/png'};base64,{src['data']}"
    elif src.get("type") == "url" and isinstance(src.get("url"), str):
        url = src["url"]
    else:
        return None
    return {"type": "image_url", "image_url": {"url": url}}


def _document_part(block: dict) -> dict:
    """A `document` block -> a chat part: plain text as text; a base64 file (a PDF) as
    chat's `file` part, which the pipeline hands to a vendor that reads documents (and
    refuses with a 400 for one that does not, rather than drop it unseen)."""
    src = obj_at(block, "source")
    if src.get("type") == "text" and isinstance(src.get("data"), str):
        return {"type": "text", "text": src["data"]}
    if src.get("type") == "base64" and isinstance(src.get("data"), str):
        media = src.get("media_type") if isinstance(src.get("media_type"), str) else ""
        title = block.get("title") if isinstance(block.get("title"), str) else ""
        return {"type": "file", "file": {
            "filename": title or "document", "file_data":
                f"data:{media or 'application/pdf'};base64,{src['data']}"}}
    raise _bad("a document block: only `base64` and `text` sources are supported (the "
               "gateway does not fetch URLs or read Anthropic's file store).", "messages")


def _user_turn(content) -> list[dict]:
    """One Anthropic user turn -> chat messages: its tool results first (as `tool` turns,
    which must follow the assistant's tool calls directly), then what the user wrote."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    out: list[dict] = []
    parts: list[dict] = []
    for block in content:
        kind = block.get("type")
        if kind == "tool_result":
            result = block.get("content")
            text = text_of(result) if result is not None else ""
            if isinstance(result, list) and any(isinstance(b, dict) and b.get("type") == "image"
                                                for b in result):
                text += "\n[image omitted: tool results are text for this vendor]"
            out.append({"role": "tool", "tool_call_id": str(block.get("tool_use_id") or ""),
                        "content": text})
        elif kind == "text" and isinstance(block.get("text"), str):
            parts.append({"type": "text", "text": block["text"]})
        elif kind == "image":
            image = _image_part(block)
            if image is not None:
                parts.append(image)
        elif kind == "document":
            parts.append(_document_part(block))
        # Other blocks (search results, container uploads) have no chat equivalent.
    if parts:
        if all(p["type"] == "text" for p in parts):
            # Plain text as a string: every chat vendor takes that, not all take arrays.
            out.append({"role": "user", "content": "\n".join(p["text"] for p in parts)})
        else:
            out.append({"role": "user", "content": parts})
    return out


def _assistant_turn(content) -> dict:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts, reasoning, calls = [], [], []
    for block in content:
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "thinking" and isinstance(block.get("thinking"), str):
            reasoning.append(block["thinking"])
        elif kind == "tool_use":
            calls.append({"id": str(block.get("id") or ""), "type": "function",
                          "function": {"name": str(block.get("name") or ""),
                                       "arguments": _dumps(block.get("input") or {})}})
        # redacted_thinking is Anthropic's own ciphertext: nothing a chat vendor can use.
    out: dict = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if reasoning:
        out["reasoning_content"] = "".join(reasoning)
    if calls:
        out["tool_calls"] = calls
    return out


def _tool_choice(choice) -> tuple[object, bool | None]:
    """(chat tool_choice or None, parallel_tool_calls or None)."""
    if not isinstance(choice, dict):
        return None, None
    kind = choice.get("type")
    parallel = False if choice.get("disable_parallel_tool_use") is True else None
    if kind == "any":
        return "required", parallel
    if kind == "tool" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}, parallel
    if kind in ("auto", "none"):
        return kind, parallel
    return None, parallel


def to_chat(body: dict) -> tuple[dict, list[str]]:
    """A validated Messages request -> (chat-completions body, names of tools dropped).

    Tools that are Anthropic's own server tools (a `type` such as `web_search_20250305`,
    no `input_schema`) cannot run at a chat vendor and are dropped; the door says so in a
    header. Leading `system` messages join the top-level system prompt; later ones (Claude
    Code sends reminders that way) stay `system` messages where they are.
    """
    messages: list[dict] = []
    system = text_of(body.get("system"))
    leading = True
    for m in body["messages"]:
        role, content = m["role"], m["content"]
        if role == "system":
            text = text_of(content)
            if leading:
                system = f"{system}\n\n{text}" if system else text
            elif text:
                messages.append({"role": "system", "content": text})
            continue
        leading = False
        if role == "user":
            turn = _user_turn(content)
            results = [t for t in turn if t["role"] == "tool"]
            if results:
                # Tool results must directly follow the assistant's tool calls: a system
                # reminder the client put between them moves after the results.
                at = len(messages)
                while at and messages[at - 1]["role"] == "system":
                    at -= 1
                messages[at:at] = results
                turn = [t for t in turn if t["role"] != "tool"]
            messages.extend(turn)
        else:
            messages.append(_assistant_turn(content))
    if system:
        messages.insert(0, {"role": "system", "content": system})
    chat: dict = {"model": body["model"], "messages": messages}
    if body.get("max_tokens") is not None:
        chat["max_tokens"] = body["max_tokens"]
    for field in ("temperature", "top_p"):
        if isinstance(body.get(field), (int, float)) and not isinstance(body[field], bool):
            chat[field] = body[field]
    stops = body.get("stop_sequences")
    if isinstance(stops, list) and stops:
        chat["stop"] = [s for s in stops if isinstance(s, str)][:4]  # OpenAI takes up to 4
    dropped, tools = [], []
    for t in body.get("tools") or ():
        schema = t.get("input_schema")
        if t.get("type") not in (None, "custom") or not isinstance(schema, dict):
            dropped.append(str(t.get("name") or t.get("type")))
            continue
        fn = {"name": str(t.get("name") or ""), "parameters": schema}
        if isinstance(t.get("description"), str):
            fn["description"] = t["description"]
        tools.append({"type": "function", "function": fn})
    if tools:
        chat["tools"] = tools
        choice, parallel = _tool_choice(body.get("tool_choice"))
        if choice is not None:
            chat["tool_choice"] = choice
        if parallel is not None:
            chat["parallel_tool_calls"] = parallel
    if "conversation_id" in body:  # the gateway's stored conversations, as on chat
        chat["conversation_id"] = body["conversation_id"]
    if body.get("stream"):
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}  # the final message_delta's usage
    return chat, dropped


# -- answers ----------------------------------------------------------------------------------

def message_id(chat_id) -> str:
    return "msg_" + (re.sub(r"[^A-Za-z0-9_-]", "", str(chat_id))[:48] if chat_id
                     else secrets.token_hex(12))


def signature(thinking: str) -> str:
    """The `signature` a thinking block carries. Claude Code drops thinking blocks without
    one, and a vendor that wants its reasoning back then refuses the next turn; ours only
    lets the block come back (to_chat reads the thinking text, never the signature)."""
    return "freeapi." + hashlib.sha256(thinking.encode()).hexdigest()[:32]


def usage_of(usage) -> dict:
    """A chat `usage` as Anthropic's: input_tokens excludes what was read from cache."""
    usage = usage if isinstance(usage, dict) else {}
    prompt = usage.get("prompt_tokens") or 0
    details = usage.get("prompt_tokens_details")
    cached = (details.get("cached_tokens") if isinstance(details, dict) else None) \
        or usage.get("prompt_cache_hit_tokens") or usage.get("cached_tokens") or 0
    cached = min(cached, prompt) if isinstance(cached, int) else 0
    return {"input_tokens": prompt - cached, "output_tokens": usage.get("completion_tokens") or 0,
            "cache_read_input_tokens": cached, "cache_creation_input_tokens": 0}


def chat_usage(usage) -> dict | None:
    """An Anthropic `usage` as the ledger's chat-completions usage."""
    if not isinstance(usage, dict):
        return None
    ints = {k: v for k, v in usage.items() if isinstance(v, int) and not isinstance(v, bool)}
    cached = ints.get("cache_read_input_tokens", 0)
    prompt = ints.get("input_tokens", 0) + cached + ints.get("cache_creation_input_tokens", 0)
    out = ints.get("output_tokens", 0)
    return {"prompt_tokens": prompt, "completion_tokens": out, "total_tokens": prompt + out,
            "prompt_tokens_details": {"cached_tokens": cached}}


def _tool_input(arguments) -> dict:
    try:
        value = json.loads(arguments) if isinstance(arguments, str) and arguments else {}
    except ValueError:
        value = None
    return value if isinstance(value, dict) else {"arguments": arguments}


def from_chat(data: dict, model: str) -> dict:
    """A chat.completion -> an Anthropic Message (first choice)."""
    choices = data.get("choices") if isinstance(data.get("choices"), list) else []
    choice = choices[0] if choices and isinstance(choices[0], dict) else {}
    message = obj_at(choice, "message")
    content: list[dict] = []
    reasoning = message.get("reasoning_content")
    if isinstance(reasoning, str) and reasoning:
        content.append({"type": "thinking", "thinking": reasoning,
                        "signature": signature(reasoning)})
    text = message.get("content")
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    calls = [c for c in message.get("tool_calls") or () if isinstance(c, dict)]
    for call in calls:
        fn = obj_at(call, "function")
        content.append({"type": "tool_use", "id": call.get("id") or "toolu_" + secrets.token_hex(8),
                        "name": fn.get("name") or "", "input": _tool_input(fn.get("arguments"))})
    finish = choice.get("finish_reason")
    stop = STOP_REASONS.get(finish, "end_turn") if isinstance(finish, str) else "end_turn"
    if calls and stop == "end_turn":
        stop = "tool_use"
    elif stop == "tool_use" and not calls:
        stop = "end_turn"  # a vendor saying tool_calls with none: no tool to run
    return {"id": message_id(data.get("id")), "type": "message", "role": "assistant",
            "model": model, "content": content, "stop_reason": stop, "stop_sequence": None,
            "usage": usage_of(data.get("usage"))}
