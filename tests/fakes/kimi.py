"""A fake Moonshot (Kimi) API: OpenAI-shaped, but a stream's usage sits in
`choices[0].usage` of the final chunk; GET /users/me/balance for key checks."""

from __future__ import annotations

from tornado import web

from tests.fakes.common import ANSWER, REASONING, Base, Models, State

GOOD = "sk-kimi-good-00000000000001"
POOR = "sk-kimi-poor-00000000000402"
DEAD = "sk-kimi-dead-00000000000401"
KEYS = {GOOD: "ok", POOR: "poor", DEAD: 401}
USAGE = {"prompt_tokens": 19, "completion_tokens": 13, "total_tokens": 32}
MODELS = ("moonshot-v1-8k", "kimi-k2-thinking", "kimi-k3-preview")


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
        model = body["model"]
        thinking = "thinking" in model
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


def make_app(state: State) -> web.Application:
    return web.Application([
        (r"/v1/chat/completions", Chat, {"state": state}),
        (r"/v1/users/me/balance", Balance, {"state": state}),
        (r"/v1/models", Models, {"state": state, "ids": MODELS}),
    ])
