"""A fake DeepSeek API on 127.0.0.1, reproducing the official wire behaviour of late 2026.

Keys decide the account's state (see KEYS); the last user message can carry a scenario
command, e.g. "!status 500", "!slow 2", "!cut", "!stall", "!drip 0.1" (a pause before each
streamed piece), "!tools", "!queued 2".

Today's rules (https://api-docs.deepseek.com/, .../guides/thinking_mode): only the current
model ids exist (the retired `deepseek-chat` / `deepseek-reasoner` get 400 "Model Not
Exist", and so do names DeepSeek never had, like `deepseek_chat`); thinking is on unless
`thinking.type` is "disabled"; in thinking mode an assistant turn with tool calls must
come back with its `reasoning_content`, else 400; `deepseek-v4-pro` takes no images
("图像理解: 不支持", https://api-docs.deepseek.com/zh-cn/quick_start/pricing, read
2026-12-06), so an `image_url` part sent to it is a 400 (the wording is a guess).
"""

from __future__ import annotations

import asyncio
import json
import time

from tornado import web

from tests.fakes.anthropic_native import AnthropicMessages

GOOD = "sk-good-0000000000000001"
GOOD2 = "sk-good-0000000000000002"
DEAD = "sk-dead-0000000000000401"
POOR = "sk-poor-0000000000000402"
BUSY = "sk-busy-0000000000000429"
KEYS = {GOOD: "ok", GOOD2: "ok", DEAD: 401, POOR: 402, BUSY: 429}

ERRORS = {  # DeepSeek's documented error bodies
    400: ("Invalid request: messages format error", "invalid_request_error"),
    "context": ("This model's maximum context length is 65536 tokens. However, you "
                "requested 70000 tokens (70000 in the messages, 0 in the completion). Please "
                "reduce the length of the messages or completion.", "invalid_request_error"),
    401: ("Authentication Fails, Your api key: ****{tail} is invalid", "authentication_error"),
    402: ("Insufficient Balance", "unknown_error"),
    422: ("Invalid Parameters: temperature must be <= 2", "invalid_request_error"),
    429: ("Rate Limit Reached", "rate_limit_error"),
    500: ("Server Error", "server_error"),
    503: ("Server Overloaded", "server_error"),
}

# https://api-docs.deepseek.com/zh-cn/quick_start/pricing (read 2026-12-06): the ids
# accepted today, the two older Flash ids served by V4.1 Flash (footnote 1).
MODELS = ("deepseek-flash", "deepseek-v4-flash", "deepseek-v4-flash-vision-exp",
          "deepseek-v4-pro")
NO_VISION = ("deepseek-v4-pro",)  # same page: "图像理解: 不支持"
MODEL_NOT_EXIST = ("Model Not Exist", "invalid_request_error")
NO_IMAGES = ("Invalid request: this model does not support image input",
             "invalid_request_error")
REASONING_MISSING = ("The reasoning_content in the thinking mode must be passed back to the "
                     "API.", "invalid_request_error")

ANSWER = ["Hello", "!", " How", " can", " I", " help", "?"]
REASONING = ["Let", " me", " think", "."]
USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18,
         "prompt_tokens_details": {"cached_tokens": 8},
         "prompt_cache_hit_tokens": 8, "prompt_cache_miss_tokens": 3}
REASONER_USAGE = dict(USAGE, completion_tokens=11, total_tokens=22,
                      completion_tokens_details={"reasoning_tokens": 4})


def _has_image(messages) -> bool:
    return any(isinstance(part, dict) and part.get("type") == "image_url"
               for m in messages or () if isinstance(m, dict)
               and isinstance(m.get("content"), list) for part in m["content"])


class State:
    def __init__(self):
        self.requests: list[dict] = []  # {"path", "headers", "body"}
        self.cancelled = asyncio.Event()
        self.keys = dict(KEYS)  # a key's value "outage" makes /user/balance answer 503
        self.balance_delay = 0.0  # seconds /user/balance waits before answering
        self.connections = 0
        # Fault injection (tests/test_reliability.py):
        self.retry_after: str | None = "3"  # the Retry-After a 429 carries (None: none)
        self.fail_next = 0  # the next N chat requests get `fail_status` (an overload burst)
        self.fail_status = 503
        self.hang_keys: set[str] = set()  # requests with these keys never get a first byte
        # Streams with these keys stay queued: 200 at once, then only `: keep-alive`.
        self.queued_keys: set[str] = set()
        # Streams with these keys answer 200, then an OpenAI-style error event at once, as
        # OpenAI-compatible servers do for a rate limit found after the headers.
        self.error_event_keys: set[str] = set()
        self.context_limit: int | None = None  # characters of messages this "model" takes
        self.balance_checks: list[str] = []  # keys asked about on /user/balance
        self.active: dict[str, int] = {}  # chat requests being processed now, per key
        self.peak: dict[str, int] = {}  # the most ever processed at once, per key
        self.served = 0  # completions started, for unique ids


class Base(web.RequestHandler):
    def initialize(self, state: State):
        self.state = state

    def key(self):
        auth = self.request.headers.get("Authorization", "")
        return auth[7:] if auth.startswith("Bearer ") else ""

    def fail(self, status, key: str = ""):
        if isinstance(status, tuple) and len(status) == 3:  # (HTTP status, message, type)
            status, message, etype = status
        else:
            message, etype = status if isinstance(status, tuple) else ERRORS[status]
            status = 400 if isinstance(status, (str, tuple)) else status
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        if status == 429 and self.state.retry_after is not None:
            self.set_header("Retry-After", self.state.retry_after)
        self.finish(json.dumps({"error": {"message": message.format(tail=key[-4:]),
                                          "type": etype, "param": None, "code": etype}}))


class Chat(Base):
    def initialize(self, state: State):
        super().initialize(state)
        self.closed = asyncio.Event()

    def on_connection_close(self):
        self.closed.set()
        self.state.cancelled.set()

    async def pause(self, seconds: float) -> bool:
        """Sleep; a real server stops generating when its client goes, so wake up then.
        Returns whether the client is still there."""
        try:
            await asyncio.wait_for(self.closed.wait(), seconds)
        except asyncio.TimeoutError:
            pass
        return not self.closed.is_set()

    async def post(self):
        body = json.loads(self.request.body)
        self.state.requests.append({"path": self.request.path, "body": body,
                                    "headers": dict(self.request.headers)})
        key = self.key()
        st = self.state
        st.active[key] = st.active.get(key, 0) + 1
        st.peak[key] = max(st.peak.get(key, 0), st.active[key])
        try:
            await self.answer(body, key)
        finally:
            st.active[key] -= 1

    async def answer(self, body, key):
        st = self.state
        if key in st.hang_keys:  # accepted, then silence: no status line ever comes
            await self.pause(60)
            return
        if key in st.queued_keys and body.get("stream"):  # DeepSeek under load
            self.set_header("Content-Type", "text/event-stream; charset=utf-8")
            while not self.closed.is_set():
                self.write(": keep-alive\n\n")
                await self.flush()
                await self.pause(0.1)
            return
        if st.fail_next > 0:
            st.fail_next -= 1
            return self.fail(st.fail_status)
        account = st.keys.get(key)
        if account is None:
            return self.fail(401, key)
        if account != "ok":
            return self.fail(account, key)
        if body.get("model") not in MODELS:
            return self.fail(MODEL_NOT_EXIST)
        if body["model"] in NO_VISION and _has_image(body.get("messages")):
            return self.fail(NO_IMAGES)
        thinking = body.get("thinking", {"type": "enabled"})
        if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled",
                                                                          "disabled"):
            return self.fail(422)
        self.thinking = thinking["type"] == "enabled"
        if self.thinking and any(m.get("role") == "assistant" and m.get("tool_calls")
                                 and not m.get("reasoning_content")
                                 for m in body["messages"]):
            return self.fail(REASONING_MISSING)
        if st.context_limit is not None and len(json.dumps(body["messages"])) > st.context_limit:
            return self.fail("context")
        st.served += 1
        self.id = f"chatcmpl-fake-{st.served}"
        last = body["messages"][-1].get("content")
        last = last if isinstance(last, str) else ""  # content parts carry no command
        cmd, _, arg = last.partition(" ") if last.startswith("!") else ("", "", "")
        if cmd == "!status":
            return self.fail(int(arg))
        if cmd == "!slow" and not await self.pause(float(arg)):
            return
        if body.get("stream"):
            await self.stream(body, cmd, arg)
        else:
            await self.complete(body, cmd, arg)

    def chunk(self, delta, finish=None, usage=None, choices=True):
        c = {"id": self.id, "object": "chat.completion.chunk", "created": 1700000000,
             "model": self.model, "system_fingerprint": "fp_fake_prompt_cache"}
        c["choices"] = [{"index": 0, "delta": delta, "logprobs": None,
                         "finish_reason": finish}] if choices else []
        if usage is not None:
            c["usage"] = usage
        return c

    async def send(self, obj, raw=False):
        self.write(obj if raw else "data: " + json.dumps(obj) + "\n\n")
        await self.flush()

    async def stream(self, body, cmd, arg):
        self.model = body["model"]
        reasoner = self.thinking
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        if cmd == "!queued":  # DeepSeek keeps queued streams alive with SSE comments
            for _ in range(int(arg)):
                await self.send(": keep-alive\n\n", raw=True)
                if not await self.pause(0.2):
                    return
        if self.key() in self.state.error_event_keys:
            await self.send({"error": {"message": f"Rate limit reached for {self.key()}",
                                       "type": "rate_limit_error", "code": "rate_limit"}})
            await self.send("data: [DONE]\n\n", raw=True)
            return
        include = (body.get("stream_options") or {}).get("include_usage")
        await self.send(self.chunk({"role": "assistant", "content": ""}))
        if cmd == "!tools":
            for r in REASONING if reasoner else ():
                await self.send(self.chunk({"content": None, "reasoning_content": r}))
            calls = [{"index": 0, "id": f"call_{self.state.served}", "type": "function",
                      "function": {"name": "get_weather", "arguments": ""}}]
            await self.send(self.chunk({"tool_calls": calls}))
            for part in ['{"city"', ': "Paris"}']:
                await self.send(self.chunk(
                    {"tool_calls": [{"index": 0, "function": {"arguments": part}}]}))
            await self.send(self.chunk({}, "tool_calls", None if include else USAGE))
        else:
            if reasoner:
                for r in REASONING:
                    await self.send(self.chunk({"content": None, "reasoning_content": r}))
            for i, piece in enumerate(ANSWER):
                if cmd == "!error-event" and i == 3:  # a vendor quoting the key it used
                    await self.send({"error": {"message": f"key {self.key()} overloaded",
                                               "type": "server_error"}})
                    await self.send("data: [DONE]\n\n", raw=True)
                    return
                if cmd == "!cut" and i == 3:
                    self.request.connection.stream.close()  # mid-way, no terminator
                    return
                if cmd == "!stall" and i == 3 and not await self.pause(float(arg or 30)):
                    return
                if cmd == "!drip" and not await self.pause(float(arg)):
                    return
                if cmd == "!crlf":
                    self.write("data: " + json.dumps(self.chunk({"content": piece})) + "\r\n\r\n")
                    await self.flush()
                    continue
                await self.send(self.chunk({"content": piece}))
            usage = REASONER_USAGE if reasoner else USAGE
            await self.send(self.chunk({"content": ""}, "stop", None if include else usage))
        if include:
            await self.send(self.chunk(None, usage=REASONER_USAGE if reasoner else USAGE,
                                       choices=False))
        await self.send("data: [DONE]\n\n", raw=True)

    async def complete(self, body, cmd, arg):
        self.model = body["model"]
        reasoner = self.thinking
        self.set_header("Content-Type", "application/json")
        if cmd == "!queued":  # non-stream requests are kept alive with blank lines
            for _ in range(int(arg)):
                self.write("\n")
                await self.flush()
                if not await self.pause(0.2):
                    return
        message = {"role": "assistant", "content": "".join(ANSWER)}
        finish = "stop"
        if reasoner:
            message["reasoning_content"] = "".join(REASONING)
        if cmd == "!tools":
            message = {"role": "assistant", "content": "", "tool_calls": [
                {"id": f"call_{self.state.served}", "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]}
            if reasoner:
                message["reasoning_content"] = "".join(REASONING)
            finish = "tool_calls"
        if cmd == "!json":
            message["content"] = json.dumps({"answer": 42})
        self.finish(json.dumps({
            "id": self.id, "object": "chat.completion", "created": int(time.time()),
            "model": self.model, "system_fingerprint": "fp_fake_prompt_cache",
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": finish}],
            "usage": REASONER_USAGE if reasoner else USAGE}))


class Balance(Base):
    async def get(self):
        if self.state.balance_delay:
            await asyncio.sleep(self.state.balance_delay)
        key = self.key()
        self.state.balance_checks.append(key)
        account = self.state.keys.get(key)
        if account in (None, 401):
            return self.fail(401, key)
        if account == "outage":
            return self.fail(503)
        self.finish({"is_available": account != 402, "balance_infos": [
            {"currency": "CNY", "total_balance": "0.00" if account == 402 else "110.00",
             "granted_balance": "0.00", "topped_up_balance": "110.00"}]})


def make_app(state: State) -> web.Application:
    return web.Application([
        (r"/chat/completions", Chat, {"state": state}),
        (r"/user/balance", Balance, {"state": state}),
        (r"/anthropic/v1/messages", AnthropicMessages, {"state": state}),
    ])
