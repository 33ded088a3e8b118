"""GLM's speech (GLM-TTS) and transcription (GLM-ASR) (docs/beyond-chat.md), mixed into
providers/glm.py's provider (kept apart so that module stays readable). Both are
OpenAI-shaped endpoints beside chat, under the same base URL and key.
"""

from __future__ import annotations

import json

from freeapi.errors import invalid_request


class GLMAudio:
    # Speech, GLM-TTS: POST /audio/speech
    # (https://docs.bigmodel.cn/api-reference/模型-api/文本转语音; the model's page
    # https://docs.bigmodel.cn/cn/guide/models/sound-and-video/glm-tts): model glm-tts,
    # `input` at most 1024 characters, `voice` one of the system voices below (cloned
    # voices exist too, but the API page lists only these), `response_format` wav or pcm
    # (pcm is GLM's default; wav is ours when the client names none), `speed` 0.5-2,
    # `volume` (0, 10]. Not asked to stream: a stream gives pcm only, in events whose shape
    # the page does not show; the whole file comes back as the body, relayed as it arrives.
    speech_models = ("glm-tts",)
    speech_default_format = "wav"
    GLM_VOICES = ("tongtong", "chuichui", "xiaochen", "jam", "kazi", "douji", "luodo")
    # OpenAI's voice names -> GLM's. The docs give no genders or styles, so the pairing is
    # the gateway's own choice (tongtong, the default, for most).
    OPENAI_VOICES = {
        "alloy": "tongtong", "ash": "xiaochen", "ballad": "xiaochen", "coral": "tongtong",
        "echo": "xiaochen", "fable": "chuichui", "onyx": "xiaochen", "nova": "tongtong",
        "sage": "tongtong", "shimmer": "tongtong", "verse": "chuichui", "marin": "tongtong",
        "cedar": "xiaochen"}

    def speech_request(self, body, key):
        fmt = body.get("response_format") or self.speech_default_format
        if fmt not in ("wav", "pcm"):
            raise invalid_request(f"{self.name}: GLM-TTS makes wav or pcm audio, not {fmt}.",
                                  param="response_format")
        if len(body["input"]) > 1024:
            raise invalid_request(f"{self.name}: GLM-TTS speaks at most 1024 characters per "
                                  "request.", param="input")
        voice = self.system_voice(body["voice"], self.GLM_VOICES, self.OPENAI_VOICES,
                                  "GLM-TTS")
        out = {"model": body["model"], "input": body["input"], "voice": voice,
               "response_format": fmt, "stream": False}
        if body.get("speed") is not None:
            if not 0.5 <= body["speed"] <= 2.0:
                raise invalid_request(f"{self.name}: GLM-TTS's speed is 0.5 to 2.0.",
                                      param="speed")
            out["speed"] = body["speed"]
        return self.json_request("/audio/speech", out, key)

    # Transcription, GLM-ASR: POST /audio/transcriptions, multipart
    # (https://docs.bigmodel.cn/api-reference/模型-api/语音转文本; the model's page
    # https://docs.bigmodel.cn/cn/guide/models/sound-and-video/glm-asr-2512): model
    # glm-asr-2512, one .wav or .mp3 `file` of at most 25 MB (and 30 s), `prompt` (earlier
    # text as context), `stream` false; the answer `{"id", "created", "request_id",
    # "model", "text"}` has no timings, so srt, vtt and verbose_json cannot be made.
    transcription_models = ("glm-asr-2512",)
    _ASR_TYPES = {".wav": "audio/wav", ".mp3": "audio/mpeg"}

    def transcriptions_request(self, body, key):
        if body["response_format"] not in ("json", "text"):
            raise invalid_request(f"{self.name}: GLM-ASR gives the text only (json or text), "
                                  "without the timings srt, vtt and verbose_json need.",
                                  param="response_format")
        name, media_type, data = body["file"]
        ext = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
        if ext not in self._ASR_TYPES and media_type not in (
                "audio/wav", "audio/x-wav", "audio/wave", "audio/mpeg", "audio/mp3"):
            raise invalid_request(f"{self.name}: GLM-ASR takes .wav or .mp3 audio.",
                                  param="file")
        if len(data) > 25 << 20:
            raise invalid_request(f"{self.name}: GLM-ASR takes files of at most 25 MB.",
                                  param="file")
        fields = {"model": body["model"], "stream": "false"}
        if body.get("prompt"):
            fields["prompt"] = body["prompt"]
        return self.multipart_request("/audio/transcriptions", fields, "file", name,
                                      media_type, data, key)

    def transcriptions_answer(self, raw, response_format):
        text = json.loads(raw)["text"]
        if not isinstance(text, str):
            raise ValueError("no text")
        if response_format == "text":
            return text.encode()
        return json.dumps({"text": text}, ensure_ascii=False).encode()
