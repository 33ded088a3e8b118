"""A fake iFlytek Spark HTTP API: `Authorization: Bearer <APIPassword>`; answers carry
`code`/`message`/`sid` and no `object`/`model` (non-stream also no `id`/`created`/
`finish_reason`); a non-zero `code` is a failure inside HTTP 200; a bad password is an
OpenAI-style error; stream lines are `data:{...}` with no space. The X reasoning models are
served under /v2/chat/completions only (https://www.xfyun.cn/doc/spark/X1http.html), with
`reasoning_content`; /v1 does not know them, nor /v2 the others."""

from __future__ import annotations

from tornado import web

from tests.fakes.common import ANSWER, REASONING, Base, State

GOOD = "SparkGoodPassword:0000000000000000001"
DEAD = "SparkDeadPassword:0000000000000000401"
BUSY = "SparkBusyPassword:0000000000000011202"
KEYS = {GOOD: "ok", DEAD: 401, BUSY: 11202}
USAGE = {"prompt_tokens": 6, "completion_tokens": 42, "total_tokens": 48}
MODELS = ("lite", "generalv3", "pro-128k", "generalv3.5", "max-32k", "4.0Ultra")
V2_MODELS = ("spark-x",)  # X1.5; X1 requests are pointed to it by the vendor
SID = "cha000b0003@dx1905cd86d6bb86d552"


class Chat(Base):
    def initialize(self, state: State, served=MODELS):
        super().initialize(state)
        self.served = served

    async def post(self):
        body = self.body()
        account = self.account()
        if account in (None, 401):
            return self.json({"error": {"message": "invalid user", "type": "api_error",
                                        "param": None, "code": None}}, 401)
        cmd, arg = self.command(body)
        code = account if isinstance(account, int) else (int(arg) if cmd == "!code" else 0)
        code = code or self.state.spent.get((self.key(), body.get("model")), 0)
        if code:
            return self.json({"code": code, "message": f"AppIdQpsOverFlowError ({code})",
                              "sid": SID})
        if body.get("model") not in self.served:
            return self.json({"code": 10404, "message": "model not found", "sid": SID})
        thinking = body["model"] in V2_MODELS
        head = {"code": 0, "message": "Success", "sid": SID}
        if not body.get("stream"):
            message = {"role": "assistant", "content": "".join(ANSWER)}
            if thinking:
                message["reasoning_content"] = "".join(REASONING)
            return self.json(dict(head, usage=USAGE, choices=[
                {"message": message, "index": 0}]))
        self.start_stream()
        chunk = dict(head, id=SID, created=1719546385)
        for piece in (REASONING if thinking else ()):
            await self.event(dict(chunk, choices=[
                {"delta": {"role": "assistant", "reasoning_content": piece}, "index": 0}]),
                "data:")
        for piece in ANSWER:
            await self.event(dict(chunk, choices=[
                {"delta": {"role": "assistant", "content": piece}, "index": 0}]), "data:")
        await self.event(dict(chunk, usage=USAGE, choices=[
            {"delta": {"role": "assistant", "content": ""}, "index": 0,
             "finish_reason": "stop"}]), "data:")
        await self.event("[DONE]", "data:")


def make_app(state: State) -> web.Application:
    return web.Application([
        (r"/v1/chat/completions", Chat, {"state": state}),
        (r"/v2/chat/completions", Chat, {"state": state, "served": V2_MODELS}),
    ])
