"""The fake DashScope's speech (Qwen-TTS) and transcription (Qwen3-ASR-Flash), on the same
multimodal-generation endpoint as the image edits (tests/fakes/qwen.py), told apart by
model, as DashScope does. Loaded by tests/fakes/qwen.py; import that module.

https://help.aliyun.com/zh/model-studio/qwen-tts-api: `input.text` (at most 600
characters for the Qwen3 models), `input.voice` a system voice; whole: the answer's
output.audio.url (a wav kept 24 h, here served by this fake and refused when any
Authorization comes with it); `X-DashScope-SSE: enable`: events in DashScope's SSE form
(id:, event:, :HTTP_STATUS/200, data:) whose output.audio.data is base64 PCM, the last
with finish_reason "stop" and the url. Text "!cut" dies after the first piece, "!flagged"
sends an error event first (DataInspectionFailed).
https://help.aliyun.com/zh/model-studio/qwen-asr-api-reference: a system message (context)
and a user message with one `audio` (URL or data URL); the text in
output.choices[0].message.content[0].text."""

from __future__ import annotations

import base64 as _b64
import json
import re as _re

from tests.fakes.common import Base
from tests.fakes.qwen import ImageEdit, native_error

TTS_MODELS = ("qwen3-tts-flash", "qwen3-tts-instruct-flash", "qwen-tts")
TTS_VOICES = ("Cherry", "Serena", "Ethan", "Chelsie", "Dylan", "Jada", "Sunny")
PCM = [b"\x01\x00\x02\x00qwen-pcm-1|", b"\x03\x00pcm-2|", b"\x04\x00pcm-3"]
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt qwen-tts-whole-file"
TRANSCRIPT = "欢迎使用阿里云百炼。"
ASR_SECONDS = 2  # the audio length the answer's usage reports (not the clip's own)
_AUDIO_URL = _re.compile(r"^(data:(audio|video)/[\w.+-]+;base64,[A-Za-z0-9+/=]+|https?://.+)$")


def _tts_refusal(body: dict) -> str | None:
    inp = body.get("input") or {}
    if body.get("model") not in TTS_MODELS:
        return f"Model not exist: {body.get('model')}"
    if inp.get("voice") not in TTS_VOICES:
        return f"Voice not found: {inp.get('voice')}"
    if not isinstance(inp.get("text"), str) or not inp["text"] \
            or len(inp["text"]) > 600 and body["model"].startswith("qwen3-"):
        return "Range of input length should be [1, 600]"
    return None


def _asr_refusal(body: dict) -> str | None:
    messages = (body.get("input") or {}).get("messages")
    if not isinstance(messages, list) or not messages or messages[-1].get("role") != "user":
        return "input.messages must end with the user's audio"
    audio = [c.get("audio") for c in messages[-1].get("content") or () if "audio" in c]
    if len(audio) != 1 or not isinstance(audio[0], str) or not _AUDIO_URL.match(audio[0]):
        return "The audio is not a valid URL or Base64 data"
    return None


class Multimodal(ImageEdit):
    async def post(self):
        model = json.loads(self.request.body or b"{}").get("model")
        if model in TTS_MODELS:
            return await self.speech()
        if model == "qwen3-asr-flash":
            return self.transcription()
        return await super().post()

    def refused(self) -> bool:
        account = self.account()
        if account in (None, 401):
            self.json(native_error("InvalidApiKey", "Invalid API-key provided."), 401)
        elif account == "poor":
            self.json(native_error("Arrearage", "Access denied, please make sure your "
                                   "account is in good standing."), 400)
        else:
            return False
        return True

    async def speech(self):
        body = self.body()
        if self.refused():
            return
        why = _tts_refusal(body)
        if why is not None:
            return self.json(native_error("InvalidParameter", why), 400)
        text = body["input"]["text"]
        base = f"{self.request.protocol}://{self.request.host}"
        audio = {"url": f"{base}/files/qwen-tts.wav?Expires=1", "id": "audio_1",
                 "expires_at": 1760000000, "data": ""}
        usage = {"characters": len(text)}
        if self.request.headers.get("X-DashScope-SSE") != "enable":
            return self.json({"output": {"finish_reason": "stop", "audio": audio},
                              "usage": usage, "request_id": "5c7c4c2f"})
        self.set_header("Content-Type", "text/event-stream;charset=UTF-8")
        if text.startswith("!flagged"):
            self.write("id:1\nevent:error\n:HTTP_STATUS/400\ndata:" + json.dumps(native_error(
                "DataInspectionFailed", "Output data may contain inappropriate content."))
                + "\n\n")
            return self.finish()
        gate = self.state.__dict__.get("gate")
        for i, piece in enumerate(PCM):
            if i == 1 and text.startswith("!cut"):
                self.request.connection.stream.close()
                return
            if i == 1 and gate is not None:
                await gate.wait()
            event = {"output": {"finish_reason": "null", "audio": dict(
                audio, url="", data=_b64.b64encode(piece).decode())}, "request_id": "5c7c"}
            self.write(f"id:{i + 1}\nevent:result\n:HTTP_STATUS/200\ndata:"
                       f"{json.dumps(event)}\n\n")
            await self.flush()
        last = {"output": {"finish_reason": "stop", "audio": audio}, "usage": usage,
                "request_id": "5c7c"}
        self.write(f"id:9\nevent:result\n:HTTP_STATUS/200\ndata:{json.dumps(last)}\n\n")
        self.finish()

    def transcription(self):
        body = self.body()
        if self.refused():
            return
        if body.get("model") != "qwen3-asr-flash":
            return self.json(native_error("InvalidParameter", "Model not exist"), 400)
        why = _asr_refusal(body)
        if why is not None:
            return self.json(native_error("InvalidParameter", why), 400)
        self.json({"output": {"choices": [{"finish_reason": "stop", "message": {
            "role": "assistant", "content": [{"text": TRANSCRIPT}],
            "annotations": [{"type": "audio_info", "language": "zh", "emotion": "neutral"}]}}]},
            "usage": {"seconds": ASR_SECONDS}, "request_id": "8a1f"})


class TtsFile(Base):
    def get(self):
        # (recorded by Base.prepare: the tests check that no key came with it)
        if self.request.headers.get("Authorization"):
            return self.json(native_error("AccessDenied", "unexpected credentials"), 400)
        self.set_header("Content-Type", "audio/wav")
        self.finish(WAV)

