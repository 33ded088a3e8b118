"""A fake MiniMax API: failures are HTTP 200 with a non-zero `base_resp.status_code`;
M-series models reason inline as `<think>...</think>` at the start of `content` (the
streamed tags split across chunks on purpose), or in `reasoning_details` when the request
sets `reasoning_split`; the last stream chunk repeats the whole reply as `message`."""

from __future__ import annotations

from tornado import web

from tests.fakes.common import ANSWER, Base, Models, State

GOOD = "sk-mm-good-000000000000000000000001"
DEAD = "sk-mm-dead-000000000000000000001004"
POOR = "sk-mm-poor-000000000000000000001008"
BUSY = "sk-mm-busy-000000000000000000001002"
KEYS = {GOOD: "ok", DEAD: 1004, POOR: 1008, BUSY: 1002}
STATUS_MSG = {1004: "login fail: Please carry the API secret key in the 'Authorization' "
                    "field of the request header",
              1008: "insufficient balance", 1002: "rate limit exceeded(RPM)",
              1026: "input new_sensitive"}
THINK = "Let me think.\nYes."
USAGE = {"total_tokens": 40, "prompt_tokens": 20, "completion_tokens": 20,
         "completion_tokens_details": {"reasoning_tokens": 9}}
RAW = f"<think>\n{THINK}\n</think>\n\n" + "".join(ANSWER)
# The streamed content, cut so that both tags straddle chunk boundaries.
PIECES = ["<thi", "nk>\nLet me", " think.\nYes.\n</th", "ink>\n", "\nHel", "lo there!"]
assert "".join(PIECES) == RAW
MODELS = ("MiniMax-M3", "MiniMax-M2.7", "MiniMax-M2.5")
RETIRED = ("abab6.5s-chat", "MiniMax-Text-01")


def base_resp(code=0):
    return {"status_code": code, "status_msg": STATUS_MSG.get(code, "")}


class Chat(Base):
    async def post(self):
        body = self.body()
        account = self.account()
        cmd, arg = self.command(body)
        code = account if isinstance(account, int) else (1004 if account is None else 0)
        if cmd == "!code":
            code = int(arg)
        if code:  # HTTP 200 all the same
            return self.json({"id": "", "choices": None, "created": 0, "model": "",
                              "object": "", "usage": None, "base_resp": base_resp(code)})
        model = body["model"]
        if model not in MODELS:  # an unknown model: invalid params, HTTP 200 (3p, unverified)
            return self.json({"id": "", "choices": None, "base_resp": {
                "status_code": 2013, "status_msg": f"invalid params, unknown model {model}"}})
        base = {"id": "04ecb5d9b192", "created": 1755153113, "model": model}
        split = body.get("reasoning_split") is True
        if not body.get("stream"):
            message = {"role": "assistant", "name": "MiniMax AI", "audio_content": ""}
            if split:
                message["content"] = "".join(ANSWER)
                message["reasoning_details"] = [{"type": "reasoning.text", "id": "r0",
                                                 "format": "MiniMax-response-v1",
                                                 "index": 0, "text": THINK}]
            else:
                message["content"] = RAW
            return self.json(dict(base, object="chat.completion", usage=USAGE,
                                  input_sensitive=False, output_sensitive=False,
                                  base_resp=base_resp(), choices=[
                                      {"finish_reason": "stop", "index": 0,
                                       "message": message}]))
        self.start_stream()
        for piece in PIECES:
            await self.event(dict(base, object="chat.completion.chunk", choices=[
                {"index": 0, "delta": {"role": "assistant", "content": piece}}]))
        await self.event(dict(base, object="chat.completion", usage=USAGE,
                              base_resp=base_resp(), choices=[
                                  {"finish_reason": "stop", "index": 0,
                                   "message": {"role": "assistant", "content": RAW}}]))
        await self.event("[DONE]")


class ModelList(Models):
    """GET /models; a bad key is refused MiniMax's way, HTTP 200 with base_resp."""

    def get(self):
        account = self.account()
        if account is None or isinstance(account, int):
            code = 1004 if account is None else account
            return self.json({"base_resp": base_resp(code)})
        super().get()


def make_app(state: State) -> web.Application:
    return web.Application([
        (r"/v1/chat/completions", Chat, {"state": state}),
        (r"/v1/models", ModelList, {"state": state, "ids": MODELS}),
    ])
