"""A fake MiniMax API: failures are HTTP 200 with a non-zero `base_resp.status_code`;
M-series models reason inline as `<think>...</think>` at the start of `content` (the
streamed tags split across chunks on purpose), or in `reasoning_details` when the request
sets `reasoning_split`; the last stream chunk repeats the whole reply as `message`."""

from __future__ import annotations

import base64

from tornado import web

from tests.fakes.common import ANSWER, Base, Models, State

GOOD = "sk-mm-good-000000000000000000000001"
DEAD = "sk-mm-dead-000000000000000000001004"
POOR = "sk-mm-poor-000000000000000000001008"
BUSY = "sk-mm-busy-000000000000000000001002"
KEYS = {GOOD: "ok", DEAD: 1004, POOR: 1008, BUSY: 1002}
# A key whose account refuses a stream only after answering 200: the refusal is the
# stream's first event (the base_resp MiniMax's last chunk carries; unverified for a
# refusal, but an event the gateway must read either way). Tests add it to `state.keys`
# as "stream 1008".
STREAM_POOR = "sk-mm-spoor-00000000000000000001008"
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
        if account == "stream 1008" and body.get("stream"):
            self.start_stream()
            await self.event({"id": "", "choices": None, "base_resp": base_resp(1008)})
            await self.event("[DONE]")
            return
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
    ] + [(path, handler, {"state": state}) for path, handler in EXTRA_ROUTES])


# -- beyond chat: T2A v2, hex audio in JSON or in events ----------------------------------
# https://platform.minimax.io/docs/api-reference/speech-t2a-http: `stream: true` sends
# events whose `data.audio` is a hex piece (status 1), the last (status 2) the whole audio
# again with `extra_info`; failures are HTTP 200 with a non-zero base_resp.status_code.

AUDIO = [b"ID3\x04minimax-part-1|", b"part-2|", b"part-3"]
SYSTEM_VOICES = ("male-qn-qingse", "female-shaonv", "English_expressive_narrator",
                 "English_radiant_girl", "English_CalmWoman")
STATUS_MSG.setdefault(2054, "voice id not exist")
STATUS_MSG.setdefault(2013, "invalid params")


class T2A(Base):
    async def post(self):
        body = self.body()
        account = self.account()
        code = account if isinstance(account, int) else (1004 if account is None else 0)
        voice = (body.get("voice_setting") or {}).get("voice_id")
        audio_setting = body.get("audio_setting") or {}
        if not code and voice not in SYSTEM_VOICES:
            code = 2054
        if not code and (not body.get("text") or audio_setting.get("format", "mp3") not in (
                "mp3", "pcm", "flac", "wav") or body.get("stream") and
                audio_setting.get("format") == "wav"):
            code = 2013
        if code:
            return self.json({"trace_id": "01b8bf9b", "base_resp": base_resp(code)})
        whole = b"".join(AUDIO)
        extra = {"audio_length": 990, "audio_sample_rate": audio_setting.get("sample_rate"),
                 "audio_size": len(whole),
                 # What MiniMax bills need not be the text's length (its own example:
                 # 26 for 22 characters); a test may set the count.
                 "usage_characters": self.state.__dict__.get("usage_characters",
                                                             len(body["text"])),
                 "audio_format": audio_setting.get("format", "mp3"), "audio_channel": 1}
        if not body.get("stream"):
            return self.json({"data": {"audio": whole.hex(), "status": 2},
                              "extra_info": extra, "trace_id": "01b8bf9b",
                              "base_resp": {"status_code": 0, "status_msg": "success"}})
        self.start_stream()
        if body["text"].startswith("!badhex"):  # a broken event, for the gateway's sake
            return await self.event({"data": {"audio": "zz", "status": 1}})
        gate = self.state.__dict__.get("gate")
        for i, piece in enumerate(AUDIO):
            if i == 1 and body["text"].startswith("!cut"):  # the connection dies mid-audio
                self.request.connection.stream.close()
                return
            if i == 1 and gate is not None:
                await gate.wait()
            await self.event({"data": {"audio": piece.hex(), "status": 1, "ced": ""},
                              "trace_id": "01b8bf9b", "base_resp": base_resp()})
        await self.event({"data": {"audio": whole.hex(), "status": 2, "ced": ""},
                          "extra_info": extra, "trace_id": "01b8bf9b",
                          "base_resp": base_resp()})


EXTRA_ROUTES = [(r"/v1/t2a_v2", T2A)]


# -- image generation: POST /v1/image_generation ------------------------------------------
# https://platform.minimaxi.com/docs/api-reference/image-generation-t2i: image-01 and
# image-01-live; prompt <= 1500; aspect_ratio from the list, or (image-01 only) width and
# height together, 512-2048 in multiples of 8; response_format url or base64; n 1-9.
# The answer is {"id", "data": {"image_urls" | "image_base64"}, "metadata", "base_resp"};
# every refusal is HTTP 200 with base_resp (2013 for bad parameters: the code is 3p,
# unverified). A prompt "!code N" answers that base_resp code; "!fail" makes no image.

IMAGE = b"\xff\xd8\xff\xe0fake-minimax-jpeg" * 4
ASPECTS = ("1:1", "16:9", "4:3", "3:2", "2:3", "3:4", "9:16", "21:9")


def image_problem(body: dict) -> bool:
    model, n = body.get("model"), body.get("n", 1)
    w, h = body.get("width"), body.get("height")
    sized = w is not None or h is not None
    return (model not in ("image-01", "image-01-live")
            or not body.get("prompt") or len(body["prompt"]) > 1500
            or not (isinstance(n, int) and 1 <= n <= 9)
            or body.get("aspect_ratio", "1:1") not in ASPECTS
            or body.get("response_format", "url") not in ("url", "base64")
            or sized and (model != "image-01" or not all(
                isinstance(v, int) and 512 <= v <= 2048 and v % 8 == 0 for v in (w, h))))


class ImageGeneration(Base):
    def post(self):
        body = self.body()
        account = self.account()
        code = account if isinstance(account, int) else (1004 if account is None else 0)
        prompt = body.get("prompt") or ""
        if not code and prompt.startswith("!code "):
            code = int(prompt.split()[1])
        if not code and image_problem(body):
            code = 2013
        if code:
            return self.json({"id": "", "base_resp": base_resp(code)})
        n = 0 if prompt.startswith("!fail") else body.get("n", 1)
        if body.get("response_format") == "base64":
            data = {"image_base64": [base64.b64encode(IMAGE).decode()] * n}
        else:
            url = f"{self.request.protocol}://{self.request.host}/files/image-01.jpeg"
            data = {"image_urls": [f"{url}?i={i}" for i in range(n)]}
        self.json({"id": "03ff3cd0820949eb8a410056b5f21d38", "data": data,
                   "metadata": {"failed_count": str(body.get("n", 1) - n),
                                "success_count": str(n)},
                   "base_resp": {"status_code": 0, "status_msg": "success"}})


class ImageFile(Base):
    def get(self):
        self.set_header("Content-Type", "image/jpeg")
        self.finish(IMAGE)


EXTRA_ROUTES += [(r"/v1/image_generation", ImageGeneration),
                 (r"/files/image-01.jpeg", ImageFile)]
STATUS_MSG.setdefault(1026, "input new_sensitive")
