"""POST /v1/audio/transcriptions
(https://platform.openai.com/docs/api-reference/audio/createTranscription): the client's
multipart form (a `file` and fields) becomes the vendor's; the vendor's answer goes back
as it is, JSON or text (text, srt, vtt). The audio is never logged."""

from __future__ import annotations

import math

from freeapi.errors import invalid_request, vendor_error
from freeapi.modalities import UNUSABLE, Operation
from freeapi.modalities.audio_length import wav_seconds
from freeapi.modalities.forms import parse_upload
from freeapi.routing import require_model

# 32 kbit/s: speech in MP3, AAC or Opus is usually encoded at that rate or above, so
# a file's seconds are at most its bytes / 4000 (WAV and FLAC: far fewer than that).
AUDIO_BYTES_PER_S = 4000
FORMATS = {"json": "application/json", "verbose_json": "application/json",
           "text": "text/plain; charset=utf-8", "srt": "text/plain; charset=utf-8",
           "vtt": "text/vtt; charset=utf-8"}


def parse_form(content_type: str, raw: bytes) -> dict:
    """OpenAI's form as a dict: `file` as (filename, media type, bytes), the other fields
    as strings; a 400 for anything that is not one."""
    return parse_upload(content_type, raw, "audio")


class Transcriptions(Operation):
    endpoint = "transcriptions"
    capability = "transcription"
    hook = "transcriptions_request"

    def __init__(self, body: dict):
        model = require_model(body)
        fmt = body.setdefault("response_format", "json")
        if fmt not in FORMATS:
            raise invalid_request(f"`response_format` must be one of {', '.join(FORMATS)}.",
                                  param="response_format")
        super().__init__(body, model)

    def estimate(self, body: dict) -> tuple[dict, dict]:
        """Seconds of audio, before the vendor has heard it: its size at AUDIO_BYTES_PER_S
        (an overestimate for every common speech encoding but the lowest-rate Opus)."""
        audio = body.get("file")
        size = len(audio[2]) if isinstance(audio, tuple) and len(audio) == 3 else 0
        return {}, {"second": max(1, math.ceil(size / AUDIO_BYTES_PER_S))}

    async def finish(self, ctx, raw: bytes, route) -> None:
        h, fmt = ctx.door, self.body["response_format"]
        try:  # a vendor with its own answer shape gives OpenAI's (GLM-ASR, Qwen3-ASR)
            out = route.provider.transcriptions_answer(raw, fmt)
        except UNUSABLE:
            raise vendor_error(route.provider.name, 502, "the transcription answer was not "
                               "understood") from None
        # The audio seconds, for prices per second: the vendor's own figure, else a WAV
        # upload's length; neither (an mp3 to a vendor that does not say): unpriced.
        seconds = route.provider.transcription_seconds(raw)
        if seconds is None:
            seconds = wav_seconds(self.body["file"][2])
        if seconds is not None:
            ctx.report_usage({"seconds": seconds})
        h.set_header("Content-Type", FORMATS[fmt])
        h.finish(out)

