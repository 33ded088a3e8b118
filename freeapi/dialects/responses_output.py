"""The answer side of the Responses dialect: output items, the Response object, usage, and
a chat completion turned into a Response. Pure: no Tornado. See responses.py."""

from __future__ import annotations

import secrets
import time

from freeapi.dialects.responses import Translation
from freeapi.jsonvalues import obj_at


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(16)}"


def usage(u) -> dict | None:
    """Chat usage -> Responses usage (cached input and reasoning output included)."""
    if not isinstance(u, dict):
        return None
    n = lambda v: v if isinstance(v, int) and not isinstance(v, bool) else 0  # noqa: E731
    pin = obj_at(u, "prompt_tokens_details")
    cout = obj_at(u, "completion_tokens_details")
    cached = n(pin.get("cached_tokens")) or n(u.get("prompt_cache_hit_tokens"))
    inp, out = n(u.get("prompt_tokens")), n(u.get("completion_tokens"))
    return {"input_tokens": inp,
            "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
            "output_tokens": out,
            "output_tokens_details": {"reasoning_tokens": n(cout.get("reasoning_tokens"))},
            "total_tokens": n(u.get("total_tokens")) or inp + out}


def reasoning_item(text: str, item_id: str | None = None, status="completed") -> dict:
    # The vendor's reasoning is the raw chain of thought, not a summary: OpenAI's
    # `reasoning_text` content (as for its open-weight models), which Codex returns.
    return {"id": item_id or new_id("rs"), "type": "reasoning", "summary": [],
            "content": [{"type": "reasoning_text", "text": text}], "status": status}


def message_item(text: str, item_id: str | None = None, status="completed") -> dict:
    return {"id": item_id or new_id("msg"), "type": "message", "role": "assistant",
            "status": status, "content": [output_text(text)]}


def output_text(text: str) -> dict:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def call_item(call_id: str, name: str, args: str, item_id: str | None = None,
              status="completed") -> dict:
    return {"id": item_id or new_id("fc"), "type": "function_call", "status": status,
            "call_id": call_id, "name": name, "arguments": args}


_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def response_object(rid: str, model: str, created: float, echo: dict, *, status: str,
                    output: list, usage_: dict | None = None, finish: str | None = None,
                    error: dict | None = None, store: bool = True) -> dict:
    obj = {"id": rid, "object": "response", "created_at": int(created), "status": status,
           "background": False, "error": error, "incomplete_details": None, "model": model,
           "output": output, "store": store, "usage": usage_, **echo}
    if status == "completed":
        obj["completed_at"] = int(time.time())
    if status == "incomplete":
        obj["incomplete_details"] = {"reason": _INCOMPLETE.get(finish, "max_output_tokens")
                                     if isinstance(finish, str) else "max_output_tokens"}
    return obj


def status_of(finish) -> str:
    return "incomplete" if isinstance(finish, str) and finish in _INCOMPLETE else "completed"


def from_chat(completion: dict, req: Translation, rid: str, model: str, created: float,
              show_reasoning: bool = True) -> tuple[dict, dict | None]:
    """A chat completion -> (Response object, the assistant message to store in chat
    form, reasoning included, or None when there is no answer)."""
    choices = completion.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices \
        and isinstance(choices[0], dict) else {}
    message = obj_at(choice, "message")
    finish = choice.get("finish_reason")
    status = status_of(finish)
    item_status = "incomplete" if status == "incomplete" else "completed"
    output = []
    reasoning = message.get("reasoning_content")
    if isinstance(reasoning, str) and reasoning and show_reasoning:
        output.append(reasoning_item(reasoning))
    content = message.get("content")
    if isinstance(content, str) and content:
        output.append(message_item(content, status=item_status))
    calls = []
    raw_calls = message.get("tool_calls")
    for tc in raw_calls if isinstance(raw_calls, list) else ():
        fn = tc.get("function") if isinstance(tc, dict) else None
        if not isinstance(fn, dict):
            continue
        call_id = tc["id"] if isinstance(tc.get("id"), str) and tc["id"] else new_id("call")
        name = fn["name"] if isinstance(fn.get("name"), str) else ""
        args = fn["arguments"] if isinstance(fn.get("arguments"), str) else ""
        calls.append({"id": call_id, "type": "function",
                      "function": {"name": name, "arguments": args}})
        output.append(call_item(call_id, name, args))
    if not output:  # an empty answer is still one (empty) message
        output.append(message_item("", status=item_status))
    obj = response_object(rid, model, created, req.echo, status=status, output=output,
                          usage_=usage(completion.get("usage")), finish=finish,
                          store=req.store)
    return obj, chat_message(content, reasoning, calls)


def chat_message(content, reasoning, calls: list) -> dict:
    """The answer as the assistant turn a continuation sends back to the vendor."""
    m: dict = {"role": "assistant", "content": content if isinstance(content, str) and
               content else None}
    if isinstance(reasoning, str) and reasoning:
        m["reasoning_content"] = reasoning
    if calls:
        m["tool_calls"] = calls
    elif m["content"] is None:
        m["content"] = ""
    return m
