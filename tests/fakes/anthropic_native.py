"""A vendor's Anthropic-compatible Messages endpoint (as DeepSeek hosts at /anthropic,
https://api-docs.deepseek.com/guides/anthropic_api), for the fake DeepSeek.

Shapes follow Anthropic's documentation: https://docs.anthropic.com/en/api/messages,
https://docs.anthropic.com/en/api/messages-streaming, https://docs.anthropic.com/en/api/errors.
The key comes as `x-api-key`; `max_tokens` is required; the models are the chat fake's
current ones, and they think unless `thinking.type` is "disabled" (as on chat); the last
user text can carry a scenario command as in the chat fake ("!tools", "!status 500").
No count_tokens: DeepSeek documents none.
"""

from __future__ import annotations

import json

from tornado import web

ANSWER = ["Hello", "!", " How", " can", " I", " help", "?"]
THINKING = "Let me think."
USAGE = {"input_tokens": 3, "output_tokens": 7, "cache_read_input_tokens": 8,
         "cache_creation_input_tokens": 0}
_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
          429: "rate_limit_error", 500: "api_error", 503: "overloaded_error"}


class AnthropicMessages(web.RequestHandler):
    def initialize(self, state):
        self.state = state

    def fail(self, status: int, message: str):
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"type": "error", "error": {
            "type": _TYPES.get(status, "api_error"), "message": message}}))

    async def post(self):
        st = self.state
        key = self.request.headers.get("x-api-key", "")
        try:
            body = json.loads(self.request.body)
        except ValueError:
            return self.fail(400, "invalid JSON")
        st.requests.append({"path": self.request.path, "body": body,
                            "headers": dict(self.request.headers)})
        account = st.keys.get(key)
        if account is None or account == 401:
            return self.fail(401, "invalid x-api-key")
        if account != "ok":
            return self.fail(account, "account problem")
        from tests.fakes.deepseek import MODELS
        if body.get("model") not in MODELS:
            return self.fail(400, f"Model Not Exist: {body.get('model')}")
        if not isinstance(body.get("max_tokens"), int):
            return self.fail(400, "max_tokens: Field required")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return self.fail(400, "messages: Field required")
        last = messages[-1].get("content")
        if isinstance(last, list):
            last = next((b.get("text", "") for b in last if b.get("type") == "text"), "")
        cmd, _, arg = last.partition(" ") if isinstance(last, str) and last.startswith("!") \
            else ("", "", "")
        if cmd == "!status":
            return self.fail(int(arg), "scenario")
        st.served += 1
        msg_id = f"msg_fake_{st.served}"
        content = []
        thinking = body.get("thinking") if isinstance(body.get("thinking"), dict) else {}
        if thinking.get("type") != "disabled":
            content.append({"type": "thinking", "thinking": THINKING, "signature": "sig-fake"})
        if cmd == "!tools":
            content.append({"type": "tool_use", "id": "toolu_fake_0", "name": "get_weather",
                            "input": {"city": "Paris"}})
            stop = "tool_use"
        else:
            content.append({"type": "text", "text": "".join(ANSWER)})
            stop = "end_turn"
        if body.get("stream"):
            await self.stream(msg_id, body["model"], content, stop)
        else:
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"id": msg_id, "type": "message", "role": "assistant",
                                    "model": body["model"], "content": content,
                                    "stop_reason": stop, "stop_sequence": None,
                                    "usage": USAGE}))

    async def send(self, name: str, data: dict):
        self.write(f"event: {name}\ndata: {json.dumps(data)}\n\n")
        await self.flush()

    async def stream(self, msg_id, model, content, stop):
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        await self.send("message_start", {"type": "message_start", "message": {
            "id": msg_id, "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": dict(USAGE, output_tokens=1)}})
        await self.send("ping", {"type": "ping"})
        for i, block in enumerate(content):
            kind = block["type"]
            start = {"thinking": {"type": "thinking", "thinking": "", "signature": ""},
                     "text": {"type": "text", "text": ""},
                     "tool_use": dict(block, input={})}[kind]
            await self.send("content_block_start", {"type": "content_block_start",
                                                    "index": i, "content_block": start})
            if kind == "thinking":
                deltas = [{"type": "thinking_delta", "thinking": block["thinking"]},
                          {"type": "signature_delta", "signature": block["signature"]}]
            elif kind == "text":
                deltas = [{"type": "text_delta", "text": piece} for piece in ANSWER]
            else:
                raw = json.dumps(block["input"])
                deltas = [{"type": "input_json_delta", "partial_json": raw[:5]},
                          {"type": "input_json_delta", "partial_json": raw[5:]}]
            for delta in deltas:
                await self.send("content_block_delta", {"type": "content_block_delta",
                                                        "index": i, "delta": delta})
            await self.send("content_block_stop", {"type": "content_block_stop", "index": i})
        await self.send("message_delta", {"type": "message_delta",
                                          "delta": {"stop_reason": stop, "stop_sequence": None},
                                          "usage": {"output_tokens": USAGE["output_tokens"]}})
        await self.send("message_stop", {"type": "message_stop"})
