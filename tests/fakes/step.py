"""A fake StepFun API: OpenAI-shaped; reasoning models put their thinking in `reasoning`
(deltas and messages), StepFun's default `reasoning_format`; only today's models are served
(https://platform.stepfun.ai/docs/en/guides/models/reasoning, .../models/vision)."""

from __future__ import annotations

from tornado import web

from tests.fakes.common import ANSWER, REASONING, Base, Models, State

GOOD = "step-good-key-000000000000000000001"
DEAD = "step-dead-key-000000000000000000401"
KEYS = {GOOD: "ok", DEAD: 401}
USAGE = {"prompt_tokens": 83, "completion_tokens": 176, "total_tokens": 259}
REASONERS = ("step-3.7-flash", "step-3.5-flash")
MODELS = ("step-3.7-flash", "step-3.5-flash", "step-1o-turbo-vision")
RETIRED = ("step-3", "step-1-8k", "step-2-16k")


class Chat(Base):
    async def post(self):
        body = self.body()
        if self.account() in (None, 401):
            return self.json({"error": {"message": "Incorrect API key provided",
                                        "type": "invalid_api_key"}}, 401)
        model = body["model"]
        if model not in MODELS:  # the shape of StepFun's 404 is a guess (3p, unverified)
            return self.json({"error": {"message": f"model {model} not found",
                                        "type": "invalid_request_error"}}, 404)
        reasoner = model in REASONERS
        base = {"id": "b7b56af0-52a6-483f", "created": 1709893411, "model": model}
        if not body.get("stream"):
            message = {"role": "assistant", "content": "".join(ANSWER)}
            if reasoner:
                message["reasoning"] = "".join(REASONING)
            return self.json(dict(base, object="chat.completion", usage=USAGE, choices=[
                {"index": 0, "message": message, "finish_reason": "stop"}]))
        self.start_stream()
        chunk = dict(base, object="chat.completion.chunk")
        deltas = [{"role": "assistant", "reasoning": r} for r in REASONING] if reasoner else []
        deltas += [{"role": "assistant", "content": c} for c in ANSWER]
        for delta in deltas:
            await self.event(dict(chunk, choices=[{"index": 0, "delta": delta,
                                                    "finish_reason": None}]))
        await self.event(dict(chunk, usage=USAGE, choices=[
            {"index": 0, "delta": {}, "finish_reason": "stop"}]))
        await self.event("[DONE]")


def make_app(state: State) -> web.Application:
    return web.Application([
        (r"/v1/chat/completions", Chat, {"state": state}),
        (r"/v1/models", Models, {"state": state, "ids": MODELS}),
    ])
