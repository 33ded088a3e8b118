"""Qwen's speech and transcription (docs/beyond-chat.md), mixed into providers/qwen.py's
provider (kept apart so that module stays readable). Both go to DashScope's native,
synchronous multimodal-generation API beside the OpenAI-compatible base URL.

Speech, Qwen-TTS (https://help.aliyun.com/zh/model-studio/qwen-tts-api, English
https://www.alibabacloud.com/help/en/model-studio/qwen-tts-api; usage guide
https://www.alibabacloud.com/help/zh/model-studio/non-realtime-tts-user-guide):
`{"model", "input": {"text", "voice", "language_type"}}`; the Qwen3 models take at most 600
characters. Without streaming the answer's `output.audio.url` is a wav file kept 24 hours
(downloaded here with no key); with the `X-DashScope-SSE: enable` header each event's
`output.audio.data` is a base64 piece of the audio, relayed as it arrives. The streamed
pieces are 24 kHz 16-bit mono PCM (3p, unverified: the official pages say "Base64" and
"PCM" without the sample rate; Alibaba's own skill repository and SDK wrappers give 24000),
so pcm streams and wav is the downloaded file. No speed is documented for this API (only
for the realtime WebSocket one), so a speed other than 1 is refused.

Transcription, Qwen3-ASR-Flash (https://help.aliyun.com/zh/model-studio/qwen-asr-api-reference,
English https://www.alibabacloud.com/help/en/model-studio/qwen-asr-api-reference): the
synchronous DashScope call (Qwen3-ASR-Flash-Filetrans is asynchronous and takes URLs only),
a system message with context text and a user message with the `audio`, which may be a
data URL of the uploaded file ("data:<media type>;base64,..."), `parameters.asr_options`
with `language` and `enable_itn` (those two as the reference's examples give them, not its
parameter table, which was not readable in full: unverified); the text comes back in
`output.choices[0].message.content[].text`, without timings (so json and text only).
"""

from __future__ import annotations

import base64
import json
import mimetypes

from freeapi.errors import APIError, invalid_request, vendor_error
from freeapi.vendor_request import UpstreamRequest

_GENERATION = "/services/aigc/multimodal-generation/generation"

# DashScope error codes in a stream's error event -> status (the error-code page,
# https://www.alibabacloud.com/help/en/model-studio/developer-reference/error-code).
_EVENT_STATUS = {"InvalidParameter": 400, "DataInspectionFailed": 400,
                 "InvalidApiKey": 401, "Arrearage": 402, "Throttling": 429,
                 "Throttling.RateQuota": 429}


class QwenAudio:
    speech_models = ("qwen3-tts-flash", "qwen3-tts-instruct-flash", "qwen-tts")
    speech_default_format = "wav"
    # System voices: 3p, unverified (the official voice list,
    # https://www.alibabacloud.com/help/en/model-studio/qwen-tts-voice-list, as copied by
    # fal.ai and Qwen's own demo on Hugging Face; Cherry, Serena, Ethan and Chelsie are in
    # the official examples and serve every model, the rest the Qwen3 ones).
    QWEN_VOICES = ("Cherry", "Serena", "Ethan", "Chelsie", "Momo", "Vivian", "Moon", "Maia",
                   "Kai", "Nofish", "Bella", "Jennifer", "Ryan", "Katerina", "Elias", "Jada",
                   "Dylan", "Sunny", "Li", "Marcus", "Roy", "Peter", "Rocky", "Kiki", "Eric")
    # OpenAI's voice names -> the four voices every Qwen-TTS model has (female: Cherry,
    # Serena, Chelsie; male: Ethan). The pairing is the gateway's choice.
    OPENAI_VOICES = {
        "alloy": "Cherry", "ash": "Ethan", "ballad": "Ethan", "coral": "Serena",
        "echo": "Ethan", "fable": "Chelsie", "onyx": "Ethan", "nova": "Cherry",
        "sage": "Serena", "shimmer": "Chelsie", "verse": "Ethan", "marin": "Cherry",
        "cedar": "Ethan"}
    transcription_models = ("qwen3-asr-flash",)

    def _native_post(self, payload: dict, key, headers=None) -> UpstreamRequest:
        return UpstreamRequest("POST", self.native_base() + _GENERATION, {
            "Content-Type": "application/json", **self.auth_headers(key), **(headers or {})},
            json.dumps(payload, ensure_ascii=False).encode())

    # -- speech --------------------------------------------------------------------------
    def speech_transport_for(self, body):
        return "sse" if body.get("response_format") == "pcm" else "json"

    def speech_request(self, body, key):
        fmt = body.get("response_format") or self.speech_default_format
        if fmt not in ("wav", "pcm"):
            raise invalid_request(f"{self.name}: Qwen-TTS makes wav (whole) or pcm "
                                  f"(streamed) audio, not {fmt}.", param="response_format")
        if body.get("speed") not in (None, 1, 1.0):
            raise invalid_request(f"{self.name}: Qwen-TTS takes no speed (send 1.0 or "
                                  "none).", param="speed")
        if body["model"].startswith("qwen3-") and len(body["input"]) > 600:
            raise invalid_request(f"{self.name}: Qwen3-TTS speaks at most 600 characters "
                                  "per request.", param="input")
        voice = self.system_voice(body["voice"], self.QWEN_VOICES, self.OPENAI_VOICES,
                                  "Qwen-TTS")
        payload = {"model": body["model"], "input": {"text": body["input"], "voice": voice}}
        return self._native_post(payload, key, {"X-DashScope-SSE": "enable"}
                                 if fmt == "pcm" else None)

    def speech_answer(self, raw):
        url = json.loads(raw)["output"]["audio"]["url"]
        if not isinstance(url, str) or not url:
            raise ValueError("no audio url")
        return UpstreamRequest("GET", url, {})  # no key: a signed URL of its storage

    def speech_characters(self, data):
        # `usage.characters` of the answer and of the stream's last event: "characters"
        # is what Qwen-TTS bills (https://docs.qwencloud.com/api-reference/
        # speech-synthesis/qwen-tts, read 2026-12-06).
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        if '"characters"' not in text:
            return None
        try:
            n = (json.loads(text).get("usage") or {}).get("characters")
        except (ValueError, AttributeError):
            return None
        return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None

    def speech_decoder(self):
        def decode(data: str) -> bytes:
            event = json.loads(data)
            if event.get("code") and not event.get("output"):
                raise self._event_error(event)
            audio = ((event.get("output") or {}).get("audio") or {}).get("data") or ""
            return base64.b64decode(audio, validate=True)
        return decode

    def _event_error(self, event: dict) -> APIError:
        code = str(event.get("code"))
        message = str(event.get("message") or code)[:500]
        status = _EVENT_STATUS.get(code, 502)
        if status == 402:
            return APIError(402, f"{self.name}: insufficient balance ({code}): {message}",
                            type="insufficient_quota", code=code)
        return vendor_error(self.name, status, message, code=code)

    # -- transcription -------------------------------------------------------------------
    def transcriptions_request(self, body, key):
        if body["response_format"] not in ("json", "text"):
            raise invalid_request(f"{self.name}: Qwen3-ASR gives the text only (json or "
                                  "text), without the timings srt, vtt and verbose_json "
                                  "need.", param="response_format")
        name, media_type, data = body["file"]
        if not media_type.startswith(("audio/", "video/")):
            media_type = mimetypes.guess_type(name)[0] or "audio/mpeg"
        audio = f"data:{media_type};base64,{base64.b64encode(data).decode()}"
        options = {"enable_itn": False}
        if body.get("language"):
            options["language"] = body["language"]
        return self._native_post({"model": body["model"], "input": {"messages": [
            {"role": "system", "content": [{"text": body.get("prompt") or ""}]},
            {"role": "user", "content": [{"audio": audio}]}]},
            "parameters": {"asr_options": options}}, key)

    def transcription_seconds(self, raw):
        # Qwen3-ASR-Flash's answer carries `usage.seconds`, the audio length it bills
        # (https://docs.qwencloud.com/api-reference/speech-recognition/qwen-asr/dashscope,
        # read 2026-12-06).
        try:
            seconds = (json.loads(raw).get("usage") or {}).get("seconds")
        except (ValueError, AttributeError):
            return None
        if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) \
                and seconds > 0:
            return float(seconds)
        return None

    def transcriptions_answer(self, raw, response_format):
        content = json.loads(raw)["output"]["choices"][0]["message"]["content"]
        text = "".join(part["text"] for part in content
                       if isinstance(part, dict) and isinstance(part.get("text"), str))
        if response_format == "text":
            return text.encode()
        return json.dumps({"text": text}, ensure_ascii=False).encode()
