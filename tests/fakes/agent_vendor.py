"""A chat-completions-only vendor that drives a tool loop, on 127.0.0.1: what a coding agent
(Codex CLI, the openai SDK's Responses client) meets behind freeapi's /v1/responses.

It speaks OpenAI chat completions (stream and not, `stream_options.include_usage`) and
holds requests to the documented rules, answering 400 in OpenAI's error shape otherwise:
- tools must be `{"type": "function", "function": {"name": ...}}`: a chat-completions
  vendor knows no built-in tools (https://platform.openai.com/docs/api-reference/chat/create);
- roles are system, user, assistant and tool; a `tool` message answers a `tool_calls` id
  of the assistant turn before it, and every call gets its answer;
- a thinking model's assistant turn that made tool calls must carry its
  `reasoning_content` back, "otherwise the API will return a 400 error"
  (https://api-docs.deepseek.com/guides/thinking_mode, "Tool Calls").

Behaviour: a request whose last message is a tool result gets a final answer quoting that
result; a request with tools gets a call of its first tool (arguments from
`State.arguments`, by tool name); anything else gets a plain greeting. Every answer
carries reasoning first, as a thinking model's does. A last user message "!cut" gets a
stream that breaks off mid-answer (the connection closes, no terminator); "!error-event"
one that reports an error mid-way as OpenAI-compatible servers do (an `{"error": ...}`
event, quoting the key it was called with), then `[DONE]`; "!slow" a stream whose first
event comes after half a second (headers first, as DeepSeek does while it queues).
"""

from __future__ import annotations

import asyncio
import json

from tornado import web

from tests.fakes.common import serve

KEY = "sk-agent-vendor-0000000001"
MODEL = "thinker"
REASONING = "The user wants this; a tool will tell."
GREETING = "Hello from the agent vendor."
QUOTE = "The command printed: "
USAGE = {"prompt_tokens": 40, "completion_tokens": 12, "total_tokens": 52,
         "prompt_tokens_details": {"cached_tokens": 32},
         "completion_tokens_details": {"reasoning_tokens": 8}}


class State:
    def __init__(self):
        self.requests: list[dict] = []
        self.rejected: list[str] = []  # the 400s' messages, for a test to show
        self.native_requests: list[dict] = []  # bodies sent to /v1/responses
        self.keyless = False  # True: a local server that takes requests without a key
        self.arguments = {"exec_command": {"cmd": "echo freeapi-e2e-$((6*7))"},  # Codex
                          "bash": {"command": "echo freeapi-e2e-$((6*7))",  # opencode
                                   "description": "Print a marker"},
                          "get_weather": {"city": "Paris"}}
        self.served = 0


def _problem(body: dict) -> str | None:
    """Why this request breaks the documented rules, or None."""
    if not isinstance(body.get("model"), str) or body["model"] != MODEL:
        return f"Model Not Exist: {body.get('model')!r}"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: must be a non-empty array"
    for i, t in enumerate(body.get("tools") or ()):
        if not isinstance(t, dict) or t.get("type") != "function" \
                or not isinstance((t.get("function") or {}).get("name"), str):
            return f"tools[{i}]: invalid tool type {t.get('type') if isinstance(t, dict) else t!r}"
    pending: set = set()
    for i, m in enumerate(messages):
        role = m.get("role") if isinstance(m, dict) else None
        if role not in ("system", "user", "assistant", "tool"):
            return f"messages[{i}]: unknown role {role!r}"
        if role == "tool":
            if m.get("tool_call_id") not in pending:
                return (f"messages[{i}]: a message with role 'tool' must be a response to a "
                        "preceding message with 'tool_calls'")
            pending.discard(m["tool_call_id"])
            continue
        if pending:
            return f"messages[{i}]: tool_calls {sorted(pending)} got no tool message"
        if role == "assistant" and m.get("tool_calls"):
            if not m.get("reasoning_content"):
                return (f"messages[{i}]: Missing `reasoning_content` field in the assistant "
                        "message; in thinking mode it must be passed back for turns with tool "
                        "calls")
            pending = {c.get("id") for c in m["tool_calls"] if isinstance(c, dict)}
    if pending:
        return f"tool_calls {sorted(pending)} got no tool message"
    return None


def _tool_output(text: str) -> str:
    # Codex wraps a command's output ("Chunk ID: ...\nOutput:\n<the output>").
    return text.split("Output:\n", 1)[-1].strip()


class Chat(web.RequestHandler):
    def initialize(self, state: State):
        self.state = state

    def fail(self, status: int, message: str, etype="invalid_request_error"):
        self.state.rejected.append(message)
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": {"message": message, "type": etype, "param": None,
                                          "code": None}}))

    async def post(self):
        try:
            body = json.loads(self.request.body)
        except ValueError:
            return self.fail(400, "The request body is not valid JSON")
        self.state.requests.append(body)
        auth = self.request.headers.get("Authorization")
        if auth != f"Bearer {KEY}" and not (self.state.keyless and auth is None):
            return self.fail(401, "Incorrect API key provided", "authentication_error")
        problem = _problem(body)
        if problem:
            return self.fail(400, problem)
        self.state.served += 1
        last = body["messages"][-1]
        message: dict = {"role": "assistant", "reasoning_content": REASONING}
        if last["role"] == "tool":
            message["content"] = QUOTE + _tool_output(str(last.get("content")))
            finish = "stop"
        elif body.get("tools"):
            name = body["tools"][0]["function"]["name"]
            args = json.dumps(self.state.arguments.get(name, {}))
            message["content"] = None
            message["tool_calls"] = [{"id": f"call_{self.state.served}", "type": "function",
                                      "function": {"name": name, "arguments": args}}]
            finish = "tool_calls"
        else:
            message["content"] = GREETING
            finish = "stop"
        if body.get("stream"):
            await self.stream(body, message, finish)
        else:
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({
                "id": f"chatcmpl-{self.state.served}", "object": "chat.completion",
                "created": 1700000000, "model": MODEL, "usage": USAGE,
                "choices": [{"index": 0, "message": message, "finish_reason": finish}]}))

    async def stream(self, body, message, finish):
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        base = {"id": f"chatcmpl-{self.state.served}", "object": "chat.completion.chunk",
                "created": 1700000000, "model": MODEL}

        async def send(delta, finish_reason=None):
            chunk = dict(base, choices=[{"index": 0, "delta": delta,
                                         "finish_reason": finish_reason}])
            self.write(f"data: {json.dumps(chunk)}\n\n")
            await self.flush()

        if body["messages"][-1].get("content") == "!slow":
            await self.flush()  # the 200 and its headers now, the answer later
            await asyncio.sleep(0.5)
        await send({"role": "assistant", "content": ""})
        for word in message["reasoning_content"].split(" "):
            await send({"reasoning_content": word + " "})
        if message.get("content"):
            for i in range(0, len(message["content"]), 8):
                await send({"content": message["content"][i:i + 8]})
                last = body["messages"][-1].get("content")
                if last == "!cut":
                    self.request.connection.stream.close()
                    return
                if last == "!error-event":
                    error = {"message": f"overloaded (key {KEY})", "type": "server_error"}
                    self.write(f"data: {json.dumps({'error': error})}\n\ndata: [DONE]\n\n")
                    return
        for i, call in enumerate(message.get("tool_calls") or ()):
            args = call["function"]["arguments"]
            await send({"tool_calls": [{"index": i, "id": call["id"], "type": "function",
                                        "function": {"name": call["function"]["name"],
                                                     "arguments": ""}}]})
            for j in range(0, len(args), 10):
                await send({"tool_calls": [{"index": i,
                                            "function": {"arguments": args[j:j + 10]}}]})
        await send({}, finish)
        if (body.get("stream_options") or {}).get("include_usage"):
            self.write(f"data: {json.dumps(dict(base, choices=[], usage=USAGE))}\n\n")
        self.write("data: [DONE]\n\n")


NATIVE_TEXT = "Hello from the vendor's own Responses API."
NATIVE_USAGE = {"input_tokens": 30, "output_tokens": 9, "total_tokens": 39,
                "input_tokens_details": {"cached_tokens": 16},
                "output_tokens_details": {"reasoning_tokens": 4}}


def _native_problem(items) -> str | None:
    """The tool-loop rule of thinking mode (https://api-docs.deepseek.com/guides/thinking_mode,
    "Tool Calls") in Responses form: a run of output items that made function calls comes
    back with its reasoning item. (That DeepSeek's Responses API words it so is an
    assumption, 3p unverified; the chat rule is documented.)"""
    reasoned, in_run = False, False
    for i, item in enumerate(items if isinstance(items, list) else ()):
        kind = item.get("type", "message") if isinstance(item, dict) else None
        if kind in ("reasoning", "function_call") or (
                kind == "message" and item.get("role") == "assistant"):
            reasoned = (reasoned and in_run) or kind == "reasoning"
            in_run = True
            if kind == "function_call" and not reasoned:
                return (f"input[{i}]: the reasoning item of a function call must be passed "
                        "back in thinking mode")
        else:
            in_run = False
    return None


def _native_calls(body: dict, n: int, arguments: dict) -> list | None:
    """Output items calling the request's first function tool, unless its input ends with
    a function's result (then the answer is text), or None."""
    tools = [t for t in body.get("tools") or () if isinstance(t, dict)
             and t.get("type") == "function"]
    items = body.get("input")
    if not tools or (isinstance(items, list) and items and isinstance(items[-1], dict)
                     and items[-1].get("type") == "function_call_output"):
        return None
    name = tools[0].get("name")
    return [{"id": f"rs_v{n}", "type": "reasoning", "encrypted_content": f"opaque-{n}",
             "summary": [], "content": [{"type": "reasoning_text", "text": REASONING}]},
            {"id": f"fc_v{n}", "type": "function_call", "status": "completed",
             "call_id": f"call_native_{n}", "name": name,
             "arguments": json.dumps(arguments.get(name, {}))}]


class Responses(web.RequestHandler):
    """The vendor's own, stateless Responses API (DeepSeek's is stateless:
    https://api-docs.deepseek.com/guides/responses_api). This fake refuses `store` and
    `previous_response_id`, which pins that the gateway keeps them to itself. With function
    tools it calls the first one (a reasoning item, then the function_call), and it refuses
    a function call that comes back without its reasoning item (`_native_problem`)."""

    def initialize(self, state: State):
        self.state = state

    fail = Chat.fail

    async def post(self):
        body = json.loads(self.request.body)
        self.state.native_requests.append(body)
        if self.request.headers.get("Authorization") != f"Bearer {KEY}":
            return self.fail(401, "Incorrect API key provided", "authentication_error")
        if body.get("model") != MODEL:
            return self.fail(400, f"Model Not Exist: {body.get('model')!r}")
        for key in ("store", "previous_response_id"):
            if key in body:
                return self.fail(400, f"`{key}` is not supported: this API is stateless")
        problem = _native_problem(body.get("input"))
        if problem:
            return self.fail(400, problem)
        rid = f"resp_vendor_{len(self.state.native_requests)}"
        calls = _native_calls(body, len(self.state.native_requests), self.state.arguments)
        message = {"id": "msg_v1", "type": "message", "role": "assistant",
                   "status": "completed",
                   "content": [{"type": "output_text", "text": NATIVE_TEXT, "annotations": []}]}
        reasoning = {"id": "rs_v1", "type": "reasoning", "summary": [],
                     "content": [{"type": "reasoning_text", "text": REASONING}]}
        output = calls or [reasoning, message]
        response = {"id": rid, "object": "response", "created_at": 1700000000,
                    "status": "completed", "model": MODEL, "output": output,
                    "usage": NATIVE_USAGE, "tools": [], "tool_choice": "auto",
                    "parallel_tool_calls": True, "error": None, "incomplete_details": None}
        if not body.get("stream"):
            self.set_header("Content-Type", "application/json")
            return self.finish(json.dumps(response))
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        begun = dict(response, status="in_progress", output=[], usage=None)
        events = [{"type": "response.created", "response": begun},
                  {"type": "response.output_item.added", "output_index": 0,
                   "item": dict(message, status="in_progress", content=[])},
                  {"type": "response.output_text.delta", "item_id": "msg_v1",
                   "output_index": 0, "content_index": 0, "delta": NATIVE_TEXT,
                   "logprobs": []}]
        if calls:
            events = events[:1] + [
                ev for i, item in enumerate(calls) for ev in (
                    {"type": "response.output_item.added", "output_index": i,
                     "item": dict(item, status="in_progress")},
                    {"type": "response.output_item.done", "output_index": i, "item": item})]
            events.append({"type": "response.completed", "response": response})
        elif body["input"] == "!cut":
            events = events[:2]
        else:
            events += [{"type": "response.output_item.done", "output_index": 0,
                        "item": message},
                       {"type": "response.completed", "response": response}]
        for i, ev in enumerate(events):
            ev["sequence_number"] = i
            self.write(f"event: {ev['type']}\ndata: {json.dumps(ev)}\n\n")
            await self.flush()
        if body["input"] == "!cut":
            self.request.connection.stream.close()


def make_app(state: State) -> web.Application:
    return web.Application([(r"/v1/chat/completions", Chat, {"state": state}),
                            (r"/v1/responses", Responses, {"state": state})])


def start(state: State):
    """Serve on 127.0.0.1 (the current loop); returns (base URL ending in /v1, server)."""
    url, server = serve(make_app(state))
    return url + "/v1", server
