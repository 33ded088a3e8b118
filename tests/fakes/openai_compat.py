"""A fake local OpenAI-compatible server (Ollama-like): no key needed, GET /v1/models lists
what is pulled, and a distilled reasoning model writes `<think>` inline in `content`."""

from __future__ import annotations

from tornado import web

from tests.fakes.common import ANSWER, Base, Models, State

MODELS = ("qwen2.5:0.5b", "deepseek-r1:1.5b", "llama3.2:1b")
RAW = "<think>\nHmm.\n</think>\n\n" + "".join(ANSWER)
USAGE = {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}


class Chat(Base):
    async def post(self):
        body = self.body()
        model = body["model"]
        if model not in MODELS:
            return self.json({"error": {"message": f'model "{model}" not found, try '
                                        "pulling it first", "type": "api_error",
                                        "param": None, "code": None}}, 404)
        content = RAW if model.startswith("deepseek-r1") else "".join(ANSWER)
        base = {"id": "chatcmpl-123", "created": 1700000000, "model": model,
                "system_fingerprint": "fp_ollama"}
        if not body.get("stream"):
            return self.json(dict(base, object="chat.completion", usage=USAGE, choices=[
                {"index": 0, "message": {"role": "assistant", "content": content},
                 "finish_reason": "stop"}]))
        self.start_stream()
        chunk = dict(base, object="chat.completion.chunk")
        for i in range(0, len(content), 3):
            await self.event(dict(chunk, choices=[
                {"index": 0, "delta": {"role": "assistant", "content": content[i:i + 3]},
                 "finish_reason": None}]))
        await self.event(dict(chunk, choices=[{"index": 0, "delta": {"role": "assistant",
                                                                      "content": ""},
                                                "finish_reason": "stop"}]))
        if (body.get("stream_options") or {}).get("include_usage"):
            await self.event(dict(chunk, choices=[], usage=USAGE))
        await self.event("[DONE]")


def make_app(state: State) -> web.Application:
    return web.Application([
        (r"/v1/chat/completions", Chat, {"state": state}),
        (r"/v1/models", Models, {"state": state, "ids": MODELS, "needs_key": False}),
    ])
