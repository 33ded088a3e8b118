"""OpenAI's Responses API <-> chat completions. Pure: no Tornado, no I/O.

`to_chat(body, history)` turns a `POST /v1/responses` body into a chat-completions body
(this module); `from_chat(completion, req, ...)` turns a chat completion into a Response
object (responses_output.py); the stream translation is in responses_stream.py, the
pass-through to a vendor's own Responses API in responses_native.py.

Wire format: https://platform.openai.com/docs/api-reference/responses/create and the
`openai` SDK's types (openai/types/responses/). What the translation does with what a
chat-completions vendor cannot do:
- Built-in tools (web_search, file_search, computer, code_interpreter, image_generation,
  mcp, local_shell, shell, apply_patch, custom, namespace, ...) are dropped and listed in
  `Translation.dropped`, so the handler can say so in a header instead of the vendor
  answering 400 to a tool it has never heard of (Codex always sends web_search and a
  namespace).
- Input items a chat vendor has no equivalent for (web_search_call, compaction, ...) are
  dropped and listed in `Translation.skipped`; `item_reference` and files are refused
  with a 400.
- `reasoning` items become `reasoning_content` on the next assistant turn: DeepSeek, Kimi
  and GLM require a tool-call turn's reasoning back (https://api-docs.deepseek.com/guides/
  thinking_mode), and Codex returns every reasoning item it got.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from freeapi.errors import invalid_request
from freeapi.routing import require_model

# Fields of a Response that echo the request (the rest describe the answer).
_ECHO = ("instructions", "max_output_tokens", "metadata", "parallel_tool_calls",
         "previous_response_id", "temperature", "top_p", "truncation", "user")
_ROLES = {"user": "user", "assistant": "assistant", "system": "system",
          "developer": "system"}  # chat vendors other than OpenAI reject "developer"
_TEXT_PARTS = ("input_text", "output_text", "text", "summary_text", "reasoning_text")
# Input items with no chat equivalent: kept out of the vendor's request, reported.
_SKIPPED_ITEMS = frozenset({
    "web_search_call", "file_search_call", "computer_call", "computer_call_output",
    "code_interpreter_call", "image_generation_call", "local_shell_call",
    "local_shell_call_output", "shell_call", "shell_call_output", "apply_patch_call",
    "apply_patch_call_output", "mcp_list_tools", "mcp_approval_request",
    "mcp_approval_response", "mcp_call", "compaction", "tool_search_call",
    "tool_search_output", "custom_tool_call", "custom_tool_call_output"})


@dataclass
class Translation:
    chat: dict  # the chat-completions body (model as the client named it)
    messages: list  # the conversation so far in chat form, without `instructions`
    echo: dict  # the request's fields a Response object repeats
    stream: bool = False
    store: bool = True
    dropped: list = field(default_factory=list)  # tool types left out
    skipped: list = field(default_factory=list)  # input item types left out


def _file_part(p: dict, where: str) -> dict:
    """An `input_file` -> chat's `file` part (the pipeline reads it: file_data as a data:
    URL, or a file_id of the gateway's POST /v1/files)."""
    f = {k: p[k] for k in ("file_id", "file_data", "filename") if isinstance(p.get(k), str)}
    if "file_id" not in f and "file_data" not in f:
        raise invalid_request(f"`{where}`: only files given as `file_data` (a base64 data: "
                              "URL) or a `file_id` from this gateway's POST /v1/files are "
                              "supported; the gateway does not fetch `file_url`.",
                              param=where)
    return {"type": "file", "file": f}


def _text(parts, path: str, allow_images: bool, allow_files: bool = False):
    """A content array -> a string, or chat parts when it holds images or files."""
    if isinstance(parts, str):
        return parts
    if not isinstance(parts, list):
        raise invalid_request(f"`{path}` must be a string or an array of content parts.",
                              param=path)
    out, images = [], False
    for i, p in enumerate(parts):
        kind = p.get("type") if isinstance(p, dict) else None
        if kind in _TEXT_PARTS and isinstance(p.get("text"), str):
            out.append({"type": "text", "text": p["text"]})
        elif kind == "refusal" and isinstance(p.get("refusal"), str):
            out.append({"type": "text", "text": p["refusal"]})
        elif kind == "input_image" and allow_images:
            url = p.get("image_url")
            if not isinstance(url, str) or not url:
                raise invalid_request(f"`{path}[{i}]`: only images given as `image_url` (a "
                                      "URL or data: URL) are supported; file_id needs "
                                      "OpenAI's file store.", param=f"{path}[{i}]")
            image = {"url": url}
            if p.get("detail") in ("low", "high", "auto"):
                image["detail"] = p["detail"]
            out.append({"type": "image_url", "image_url": image})
            images = True
        elif kind == "input_file" and allow_files:
            out.append(_file_part(p, f"{path}[{i}]"))
            images = True
        else:
            what = kind if isinstance(kind, str) else "a part without a string `type`"
            raise invalid_request(f"`{path}[{i}]` is {what!r}, which this gateway cannot "
                                  "send to a chat-completions vendor (text"
                                  + (", input_image" if allow_images else "")
                                  + (", input_file" if allow_files else "")
                                  + " parts are supported).", param=f"{path}[{i}]")
    if images:
        return out
    return "\n".join(p["text"] for p in out)


def reasoning_text(item: dict) -> str:
    """A reasoning item's text: its raw `content`, else its `summary`."""
    for key in ("content", "summary"):
        parts = item.get(key)
        if isinstance(parts, list):
            text = "".join(p["text"] for p in parts
                           if isinstance(p, dict) and isinstance(p.get("text"), str))
            if text:
                return text
    return ""


def input_messages(items, skipped: list) -> list:
    """Responses input items -> chat messages. Consecutive assistant output (reasoning,
    text, function calls) folds into one assistant message, as chat vendors expect."""
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    if not isinstance(items, list):
        raise invalid_request("`input` must be a string or an array of input items.",
                              param="input")
    out: list = []
    pending = [""]  # reasoning text waiting for the assistant turn it belongs to
    # Images a tool returned (Codex's view_image): chat vendors take images only from the
    # user, so they follow as a user message once the run of tool results has ended.
    deferred: list = []

    def flush():
        out.extend(deferred)
        deferred.clear()

    def assistant(new_turn: bool = False) -> dict:
        last = out[-1] if out else None
        if new_turn or last is None or last.get("role") != "assistant":
            flush()
            last = {"role": "assistant", "content": None}
            out.append(last)
        if pending[0]:
            last["reasoning_content"] = (last.get("reasoning_content") or "") + pending[0]
            pending[0] = ""
        return last

    def other(message: dict):
        pending[0] = ""  # reasoning with no assistant turn after it has nothing to go with
        if message["role"] != "tool":
            flush()
        out.append(message)

    for i, item in enumerate(items):
        path = f"input[{i}]"
        if not isinstance(item, dict):
            raise invalid_request(f"`{path}` must be an object.", param=path)
        kind = item.get("type", "message" if "role" in item else None)
        if not isinstance(kind, str):
            raise invalid_request(f"`{path}.type` must be a string.", param=f"{path}.type")
        if kind == "message":
            role = item.get("role")
            role = _ROLES.get(role) if isinstance(role, str) else None
            if role is None:
                raise invalid_request(f"`{path}.role` must be one of user, assistant, system "
                                      "or developer.", param=f"{path}.role")
            content = _text(item.get("content"), f"{path}.content", role == "user",
                            role == "user")
            if role == "assistant":
                last = out[-1] if out else {}
                turn = assistant(new_turn=bool(last.get("tool_calls")))
                turn["content"] = content if not turn["content"] else \
                    turn["content"] + "\n" + content
            else:
                other({"role": role, "content": content})
        elif kind == "function_call":
            call_id, name = item.get("call_id"), item.get("name")
            args = item.get("arguments", "")
            if not isinstance(call_id, str) or not isinstance(name, str) \
                    or not isinstance(args, str):
                raise invalid_request(f"`{path}` needs string `call_id`, `name` and "
                                      "`arguments`.", param=path)
            assistant().setdefault("tool_calls", []).append(
                {"id": call_id, "type": "function",
                 "function": {"name": name, "arguments": args}})
        elif kind == "function_call_output":
            call_id = item.get("call_id")
            if not isinstance(call_id, str):
                raise invalid_request(f"`{path}.call_id` must be a string.",
                                      param=f"{path}.call_id")
            output = item.get("output")
            if isinstance(output, list):
                output = _text(output, f"{path}.output", True)
                if isinstance(output, list):  # text and images
                    images = [p for p in output if p["type"] == "image_url"]
                    deferred.append({"role": "user", "content": [
                        {"type": "text", "text": f"The image(s) tool call {call_id} returned:"},
                        *images]})
                    output = "\n".join(p["text"] for p in output if p["type"] == "text") \
                        or "(image output: it follows the tool results)"
            if not isinstance(output, str):
                raise invalid_request(f"`{path}.output` must be a string or an array of "
                                      "content parts.", param=f"{path}.output")
            other({"role": "tool", "tool_call_id": call_id, "content": output})
        elif kind == "reasoning":
            pending[0] += reasoning_text(item)
        elif kind == "item_reference":
            raise invalid_request(f"`{path}`: item references are not supported; send the "
                                  "item itself, or continue with `previous_response_id`.",
                                  param=path)
        elif kind in _SKIPPED_ITEMS:
            skipped.append(kind)
        else:
            raise invalid_request(f"`{path}.type` {kind!r} is not an input item type this "
                                  "gateway knows.", param=f"{path}.type")
    flush()
    return out


def _tools(tools, dropped: list) -> list:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise invalid_request("`tools` must be an array.", param="tools")
    out = []
    for i, t in enumerate(tools):
        if not isinstance(t, dict) or not isinstance(t.get("type"), str):
            raise invalid_request(f"`tools[{i}]` must be an object with a string `type`.",
                                  param=f"tools[{i}]")
        if t["type"] != "function":
            dropped.append(t["type"])
            continue
        name = t.get("name")
        if not isinstance(name, str) or not name:
            raise invalid_request(f"`tools[{i}].name` is required for a function tool.",
                                  param=f"tools[{i}].name")
        fn = {"name": name, "parameters": t.get("parameters") or
              {"type": "object", "properties": {}}}
        if isinstance(t.get("description"), str):
            fn["description"] = t["description"]
        out.append({"type": "function", "function": fn})
    return out


def _tool_choice(choice, tools: list) -> tuple:
    """(chat tool_choice or None, the tools left after an allowed_tools filter)."""
    if choice is None or choice in ("auto", "none", "required"):
        return choice, tools
    if isinstance(choice, dict):
        kind = choice.get("type")
        if kind == "function" and isinstance(choice.get("name"), str):
            return {"type": "function", "function": {"name": choice["name"]}}, tools
        if kind == "allowed_tools" and isinstance(choice.get("tools"), list):
            names = {t["name"] for t in choice["tools"]
                     if isinstance(t, dict) and isinstance(t.get("name"), str)}
            mode = choice.get("mode") if choice.get("mode") in ("auto", "required") else "auto"
            return mode, [t for t in tools if t["function"]["name"] in names]
        return "auto", tools  # a built-in tool (dropped): let the model choose
    raise invalid_request("`tool_choice` must be auto, none, required or a tool object.",
                          param="tool_choice")


def _format(text) -> dict | None:
    fmt = text.get("format") if isinstance(text, dict) else None
    if not isinstance(fmt, dict) or fmt.get("type") in (None, "text"):
        return None
    if fmt["type"] == "json_object":
        return {"type": "json_object"}
    if fmt["type"] == "json_schema":
        if not isinstance(fmt.get("schema"), dict):
            raise invalid_request("`text.format.schema` must be a JSON Schema object.",
                                  param="text.format.schema")
        spec = {"name": fmt.get("name") or "response", "schema": fmt["schema"]}
        for key in ("description", "strict"):
            if fmt.get(key) is not None:
                spec[key] = fmt[key]
        return {"type": "json_schema", "json_schema": spec}
    raise invalid_request("`text.format.type` must be text, json_object or json_schema.",
                          param="text.format.type")


def _merge_system(messages: list) -> list:
    """Consecutive system messages (instructions, then Codex's developer items) as one:
    several vendors take a single system message, and only as the first."""
    out: list = []
    for m in messages:
        if m["role"] == "system" and out and out[-1]["role"] == "system":
            out[-1] = {"role": "system", "content": out[-1]["content"] + "\n\n" + m["content"]}
        else:
            out.append(m)
    return out


def _check(body: dict) -> tuple[str, bool]:
    model = require_model(body)
    for key in ("stream", "store", "parallel_tool_calls", "background"):
        if body.get(key) is not None and not isinstance(body[key], bool):
            raise invalid_request(f"`{key}` must be true or false.", param=key)
    if body.get("background"):
        raise invalid_request("`background: true` is not supported by this gateway; make "
                              "the request without it (streaming if it is long).",
                              param="background")
    if body.get("prompt") is not None:
        raise invalid_request("`prompt` (a prompt template stored at OpenAI) is not supported "
                              "by this gateway; send its text as `instructions` / `input`.",
                              param="prompt")
    if body.get("conversation") is not None:
        raise invalid_request("`conversation` is not supported by this gateway; continue "
                              "with `previous_response_id`.", param="conversation")
    if body.get("instructions") is not None and not isinstance(body["instructions"], str):
        raise invalid_request("`instructions` must be a string.", param="instructions")
    mot = body.get("max_output_tokens")
    if mot is not None and (isinstance(mot, bool) or not isinstance(mot, int) or mot < 1):
        raise invalid_request("`max_output_tokens` must be a positive integer.",
                              param="max_output_tokens")
    for key in ("temperature", "top_p"):
        v = body.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise invalid_request(f"`{key}` must be a number.", param=key)
    for key in ("reasoning", "text", "metadata"):
        if body.get(key) is not None and not isinstance(body[key], dict):
            raise invalid_request(f"`{key}` must be an object.", param=key)
    return model, bool(body.get("stream"))


def to_chat(body: dict, history: list | None = None) -> Translation:
    """A Responses request (+ the stored conversation of `previous_response_id`) -> a
    chat-completions request. Raises a 400 APIError for what cannot be translated."""
    model, stream = _check(body)
    dropped: list = []
    skipped: list = []
    if body.get("input") is None and not history:
        raise invalid_request("`input` is required.", param="input")
    new = input_messages(body["input"], skipped) if body.get("input") is not None else []
    messages = list(history or ()) + new
    chat: dict = {"model": model}
    # Instructions are not carried over from a previous response (OpenAI's rule), so they
    # stay out of `messages`, which is what a continuation builds on.
    system = [{"role": "system", "content": body["instructions"]}] \
        if body.get("instructions") else []
    chat["messages"] = _merge_system(system + messages)
    if not chat["messages"]:
        raise invalid_request("`input` has nothing to send to the model.", param="input")
    tools = _tools(body.get("tools"), dropped)
    choice, tools = _tool_choice(body.get("tool_choice"), tools)
    if tools:
        chat["tools"] = tools
        if choice is not None:
            chat["tool_choice"] = choice
        # Only a `false` is worth sending: true is the default, and Codex always sends it
        # to vendors that may not know the field.
        if body.get("parallel_tool_calls") is False:
            chat["parallel_tool_calls"] = False
    if body.get("max_output_tokens") is not None:
        chat["max_tokens"] = body["max_output_tokens"]
    for key in ("temperature", "top_p"):
        if body.get(key) is not None:
            chat[key] = body[key]
    if isinstance(body.get("user"), str):
        chat["user"] = body["user"]
    effort = (body.get("reasoning") or {}).get("effort")
    if isinstance(effort, str) and effort != "none":
        chat["reasoning_effort"] = effort
    fmt = _format(body.get("text"))
    if fmt is not None:
        chat["response_format"] = fmt
    if stream:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}  # response.completed has usage
    echo = {k: body.get(k) for k in _ECHO}
    echo["tools"] = [dict({"type": "function", "strict": False}, **t["function"])
                     for t in tools]
    echo["tool_choice"] = body.get("tool_choice") or "auto"
    echo["parallel_tool_calls"] = body.get("parallel_tool_calls", True)
    echo["reasoning"] = body.get("reasoning") or {"effort": None, "summary": None}
    echo["text"] = body.get("text") or {"format": {"type": "text"}}
    echo["truncation"] = body.get("truncation") or "disabled"
    echo["metadata"] = body.get("metadata") or {}
    return Translation(chat=chat, messages=messages, echo=echo, stream=stream,
                       store=body.get("store", True) is not False, dropped=dropped,
                       skipped=skipped)
