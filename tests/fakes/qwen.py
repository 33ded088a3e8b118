"""A fake DashScope OpenAI-compatible API: usage only with `stream_options.include_usage`
(as a final chunk with `choices: []`), QwQ/QVQ-style models refuse `stream: false` and so
does any request with `enable_thinking: true` ("parameter.enable_thinking must be set to
false for non-streaming calls", https://help.aliyun.com/en/model-studio/error-code); an
account in arrears is HTTP 400 `Arrearage`, a spent free tier in "free tier only" mode HTTP
403 `AllocationQuota.FreeTierOnly`; unknown (retired) models are refused; DashScope's own
fields (`enable_thinking`...) accepted."""

from __future__ import annotations

from tornado import web

from tests.fakes.common import ANSWER, REASONING, Base, Models, State

GOOD = "sk-qwen-good-0000000000000001"
DEAD = "sk-qwen-dead-0000000000000401"
POOR = "sk-qwen-poor-0000000000000402"
FREE = "sk-qwen-free-tier-only-00000403"
KEYS = {GOOD: "ok", DEAD: 401, POOR: "poor", FREE: "free-tier-spent"}
USAGE = {"prompt_tokens": 10, "completion_tokens": 7, "total_tokens": 17,
         "completion_tokens_details": {"reasoning_tokens": 3}}
STREAM_ONLY = ("qwq-plus", "qvq-max")
MODELS = ("qwen3.7-plus", "qwen3.6-flash", "qwen-plus", "qwq-plus", "qvq-max", "qwen3-vl-plus")
# GET /models also lists a name another provider claims (the routing tests use it).
LISTED = MODELS + ("deepseek-r1",)
RETIRED = ("qwen-turbo", "qwen3-max", "qwen3-32b", "qwen-vl-max")


def _error(code: str, message: str, etype: str):
    return {"error": {"code": code, "param": None, "message": message, "type": etype}}


class Chat(Base):
    async def post(self):
        body = self.body()
        account = self.account()
        if account in (None, 401):
            return self.json(_error("invalid_api_key", "Incorrect API key provided.",
                                    "invalid_request_error"), 401)
        if account == "poor":
            return self.json(_error("Arrearage", "Access denied, please make sure your "
                                    "account is in good standing.", "Arrearage"), 400)
        if account == "free-tier-spent":
            return self.json(_error("AllocationQuota.FreeTierOnly", "The free tier of the "
                                    "model has been exhausted. If you wish to continue "
                                    "access the model on a paid basis, please disable the "
                                    "\"use free tier only\" mode in the management console.",
                                    "AllocationQuota.FreeTierOnly"), 403)
        model = body["model"]
        if model not in MODELS:
            return self.json(_error("model_not_found", f"The model `{model}` does not exist "
                                    "or you do not have access to it.",
                                    "invalid_request_error"), 404)
        if model in STREAM_ONLY and not body.get("stream"):
            return self.json(_error("invalid_parameter_error", "This model only support "
                                    "stream mode, please enable the stream parameter to "
                                    "access the model.", "invalid_request_error"), 400)
        if body.get("enable_thinking") is True and not body.get("stream"):
            return self.json(_error("invalid_parameter_error", "parameter.enable_thinking "
                                    "must be set to false for non-streaming calls",
                                    "invalid_request_error"), 400)
        cmd, _ = self.command(body)
        thinking = model.startswith(("qwq", "qvq")) or body.get("enable_thinking") is True
        base = {"id": "chatcmpl-qwen", "created": 1741185359, "model": model,
                "system_fingerprint": None, "object": "chat.completion.chunk"}
        if not body.get("stream"):
            message = {"role": "assistant", "content": "".join(ANSWER)}
            return self.json(dict(base, object="chat.completion", usage=USAGE, choices=[
                {"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}]))
        self.start_stream()

        async def send(delta, finish=None):
            await self.event(dict(base, usage=None, choices=[
                {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]))

        await send({"role": "assistant", "content": None,
                    "reasoning_content": "" if thinking else None})
        for piece in (REASONING if thinking else ()):
            await send({"content": None, "reasoning_content": piece})
        if cmd == "!tools":
            await send({"content": None, "tool_calls": [
                {"index": 0, "id": "call_abc", "type": "function",
                 "function": {"name": "get_weather", "arguments": ""}}]})
            for part in ('{"city": ', '"Hangzhou"}'):
                await send({"content": None, "tool_calls": [
                    {"index": 0, "id": "", "type": "function",
                     "function": {"arguments": part}}]})
            await send({"content": None}, "tool_calls")
        else:
            for piece in ANSWER:
                await send({"content": piece, "reasoning_content": None})
            await send({"content": ""}, "stop")
        if (body.get("stream_options") or {}).get("include_usage"):
            await self.event(dict(base, choices=[], usage=USAGE))
        await self.event("[DONE]")


def make_app(state: State) -> web.Application:
    return web.Application([
        (r"/compatible-mode/v1/chat/completions", Chat, {"state": state}),
        (r"/compatible-mode/v1/models", Models, {"state": state, "ids": LISTED}),
    ])
