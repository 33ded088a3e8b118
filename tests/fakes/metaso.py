"""A fake Metaso API: `/chat/completions` answers with sources (`citations`; `highlights`
and `citations` deltas in streams), `reasoning_content` from the thinking models, and
HTTP 200 `{"errCode", "errMsg"}` failures."""

from __future__ import annotations

from tornado import web

from tests.fakes.common import ANSWER, REASONING, Base, State

GOOD = "mk-GOOD0000000000000000000000000001"
DEAD = "mk-DEAD0000000000000000000000000401"
KEYS = {GOOD: "ok", DEAD: 401}
USAGE = {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42}
CITATIONS = [{"title": "Example", "link": "https://example.com/a", "date": "2025-01-01"}]


class Chat(Base):
    async def post(self):
        body = self.body()
        if self.account() in (None, 401):
            return self.json({"errCode": 401, "errMsg": "invalid api key"}, 401)
        cmd, arg = self.command(body)
        if cmd == "!code":
            return self.json({"errCode": int(arg), "errMsg": "参数错误"})
        model = body["model"]
        thinking = model in ("fast_thinking", "ds-r1")
        base = {"id": "8540164362687471616", "created": 1750000000, "model": model}
        if not body.get("stream"):
            message = {"role": "assistant", "content": "".join(ANSWER)}
            if thinking:
                message["reasoning_content"] = "".join(REASONING)
            return self.json(dict(base, object="chat.completion", usage=USAGE,
                                  citations=CITATIONS, choices=[
                                      {"index": 0, "message": message, "finish_reason": "stop"}]))
        self.start_stream()
        deltas = [{"citations": CITATIONS}, {"highlights": ["hello"]}]
        deltas += [{"reasoning_content": r} for r in (REASONING if thinking else ())]
        deltas += [{"content": c} for c in ANSWER]
        for delta in deltas:
            await self.event(dict(base, choices=[{"index": 0, "delta": delta}]))
        await self.event(dict(base, usage=USAGE, choices=[
            {"index": 0, "delta": {}, "finish_reason": "stop"}]))
        await self.event("[DONE]")


def make_app(state: State) -> web.Application:
    return web.Application([(r"/api/v1/chat/completions", Chat, {"state": state})])
