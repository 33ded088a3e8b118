"""A fake Moonshot (Kimi) API: OpenAI-shaped, but a stream's usage sits in
`choices[0].usage` of the final chunk; GET /users/me/balance for key checks.

Today's rules (https://platform.kimi.com/docs/models, .../docs/api/errors.md): retired and
unknown model names are a 404; an account out of balance is HTTP 429
`exceeded_current_quota_error`; the organization's concurrency limit is HTTP 429
`rate_limit_reached_error` with "please try again after N seconds"; kimi-k2.6 / kimi-k2.5
think unless `thinking: {"type": "disabled"}`, kimi-k2-thinking* always think."""

from __future__ import annotations

import json

from tornado import web

from tests.fakes.common import ANSWER, REASONING, Base, Models, State

GOOD = "sk-kimi-good-00000000000001"
POOR = "sk-kimi-poor-00000000000402"
DEAD = "sk-kimi-dead-00000000000401"
BUSY = "sk-kimi-busy-00000000000429"
POOR403 = "sk-kimi-poor-00000000000403"
KEYS = {GOOD: "ok", POOR: "poor", DEAD: 401, BUSY: "busy", POOR403: "poor-403"}
USAGE = {"prompt_tokens": 19, "completion_tokens": 13, "total_tokens": 32}
MODELS = ("moonshot-v1-8k", "kimi-k2-thinking", "kimi-k3-preview")
# What the fake serves: the listed models and today's catalog; nothing retired.
SERVED = MODELS + ("kimi-k2.6", "kimi-k2.5", "kimi-k2-thinking-turbo", "kimi-k2-0905-preview",
                   "kimi-k2-turbo-preview", "moonshot-v1-32k", "moonshot-v1-128k")
THINKING_DEFAULT = ("kimi-k2.6", "kimi-k2.5")  # thinking unless disabled
RETIRED = ("kimi-latest", "kimi-thinking-preview", "moonshot-v1-auto")


def thinks(body: dict) -> bool:
    model = body["model"]
    if "thinking" in model and model in SERVED:
        return True
    return model in THINKING_DEFAULT and (body.get("thinking") or {}).get("type") != "disabled"


class Chat(Base):
    async def post(self):
        body = self.body()
        account = self.account()
        if account in (None, 401):
            return self.json({"error": {"message": "Invalid Authentication",
                                        "type": "invalid_authentication_error"}}, 401)
        if account == "poor":
            return self.json({"error": {"message": "Your account is suspended, please check "
                                        "your plan and billing details",
                                        "type": "exceeded_current_quota_error"}}, 429)
        if account == "poor-403":  # the help center's other wording (message text guessed)
            return self.json({"error": {"message": "Your account balance is insufficient, "
                                        "please recharge",
                                        "type": "permission_denied_error"}}, 403)
        if account == "busy":
            return self.json({"error": {"message": "Your account org-fake<ak-fake> request "
                                        "reached organization max concurrency: 1, please "
                                        "try again after 7 seconds",
                                        "type": "rate_limit_reached_error"}}, 429)
        model = body["model"]
        if model not in SERVED:
            return self.json({"error": {"message": f"Not found the model {model} or "
                                        "Permission denied",
                                        "type": "resource_not_found_error"}}, 404)
        thinking = thinks(body)
        base = {"id": "cmpl-kimi", "object": "chat.completion.chunk", "created": 1698999575,
                "model": model}
        if not body.get("stream"):
            message = {"role": "assistant", "content": "".join(ANSWER)}
            if thinking:
                message["reasoning_content"] = "".join(REASONING)
            return self.json(dict(base, object="chat.completion", usage=USAGE, choices=[
                {"index": 0, "message": message, "finish_reason": "stop"}]))
        self.start_stream()
        await self.event(dict(base, choices=[{"index": 0, "delta": {"role": "assistant",
                                                                      "content": ""},
                                               "finish_reason": None}]))
        for piece in (REASONING if thinking else ()):
            await self.event(dict(base, choices=[{"index": 0, "delta": {
                "reasoning_content": piece}, "finish_reason": None}]))
        for piece in ANSWER:
            await self.event(dict(base, choices=[{"index": 0, "delta": {"content": piece},
                                                   "finish_reason": None}]))
        # The quirk: usage inside the choice, none at the top level.
        await self.event(dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": "stop",
                                               "usage": USAGE}]))
        await self.event("[DONE]")


class Balance(Base):
    def get(self):
        account = self.account()
        if account in (None, 401):
            return self.json({"error": {"message": "Invalid Authentication",
                                        "type": "invalid_authentication_error"}}, 401)
        available = 0.0 if account == "poor" else 49.58894
        self.json({"code": 0, "data": {"available_balance": available,
                                       "voucher_balance": available, "cash_balance": 0.0},
                   "scode": "0x0", "status": True})


class ToolLoopChat(Chat):
    """Tool calls ("!tools" in the last message), and the thinking models' rule
    (https://platform.kimi.com/docs/guide/use-kimi-k2-thinking-model: keep
    `reasoning_content` in a tool loop): a tool-call turn back without it is a 400."""

    async def post(self):
        body = json.loads(self.request.body or b"{}")
        model = body.get("model") or ""
        thinks = "thinking" in model or (model in ("kimi-k2.6", "kimi-k2.5") and (
            body.get("thinking") or {}).get("type") != "disabled")
        missing = next((i for i, m in enumerate(body.get("messages") or ())
                        if m.get("role") == "assistant" and m.get("tool_calls")
                        and not m.get("reasoning_content")), None) if thinks else None
        if self.account() != "ok" or missing is None and self.command(body)[0] != "!tools":
            return await super().post()
        self.body()  # record it
        if missing is not None:
            return self.json({"error": {
                "message": "thinking is enabled but reasoning_content is missing in "
                           f"assistant tool call message at index {missing}",
                "type": "invalid_request_error"}}, 400)
        self.state.served = getattr(self.state, "served", 0) + 1
        call = {"index": 0, "id": f"get_weather:{self.state.served}", "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
        reasoning = "".join(REASONING) if thinks else None
        base = {"id": "cmpl-kimi", "created": 1698999575, "model": model}
        if not body.get("stream"):
            message = {"role": "assistant", "content": "", "tool_calls": [call]}
            if reasoning:
                message["reasoning_content"] = reasoning
            return self.json(dict(base, object="chat.completion", usage=USAGE, choices=[
                {"index": 0, "message": message, "finish_reason": "tool_calls"}]))
        self.start_stream()
        base["object"] = "chat.completion.chunk"
        deltas = ([{"role": "assistant", "reasoning_content": reasoning}] if reasoning
                  else []) + [{"tool_calls": [call]}]
        for delta in deltas:
            await self.event(dict(base, choices=[{"index": 0, "delta": delta,
                                                  "finish_reason": None}]))
        await self.event(dict(base, choices=[{"index": 0, "delta": {},
                                              "finish_reason": "tool_calls", "usage": USAGE}]))
        await self.event("[DONE]")


def make_app(state: State) -> web.Application:
    return web.Application([
        (r"/v1/chat/completions", ToolLoopChat, {"state": state}),
        (r"/v1/users/me/balance", Balance, {"state": state}),
        (r"/v1/models", Models, {"state": state, "ids": MODELS}),
    ])
