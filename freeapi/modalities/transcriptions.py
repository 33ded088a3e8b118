"""POST /v1/audio/transcriptions
(https://platform.openai.com/docs/api-reference/audio/createTranscription): the client's
multipart form (a `file` and fields) becomes the vendor's; the vendor's answer goes back
as it is, JSON or text (text, srt, vtt). The audio is never logged."""

from __future__ import annotations

from tornado import httputil

from freeapi.errors import invalid_request, vendor_error
from freeapi.modalities import Operation
from freeapi.routing import require_model

FORMATS = {"json": "application/json", "verbose_json": "application/json",
           "text": "text/plain; charset=utf-8", "srt": "text/plain; charset=utf-8",
           "vtt": "text/vtt; charset=utf-8"}


def parse_form(content_type: str, raw: bytes) -> dict:
    """OpenAI's form as a dict: `file` as (filename, media type, bytes), the other fields
    as strings; a 400 for anything that is not one."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise invalid_request("Send the audio as multipart/form-data with a `file` part, as "
                              "OpenAI's API takes it.", code="invalid_content_type")
    args: dict = {}
    files: dict = {}
    httputil.parse_body_arguments(content_type, raw, args, files)
    uploads = files.get("file") or []
    if len(uploads) != 1 or not uploads[0].body:
        raise invalid_request("`file` is required: one audio file.", param="file")
    up = uploads[0]
    body = {}
    for name, values in args.items():
        if len(values) != 1:
            raise invalid_request(f"`{name}` was given {len(values)} times.", param=name)
        try:
            body[name] = values[0].decode("utf-8")
        except UnicodeDecodeError:
            raise invalid_request(f"`{name}` is not UTF-8 text.", param=name) from None
    body["file"] = (up.filename or "audio", up.content_type or "application/octet-stream",
                    up.body)
    return body


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

    async def finish(self, pipeline, raw: bytes, route) -> None:
        h, fmt = pipeline.handler, self.body["response_format"]
        try:  # a vendor with its own answer shape gives OpenAI's (GLM-ASR, Qwen3-ASR)
            out = route.provider.transcriptions_answer(raw, fmt)
        except (ValueError, KeyError, TypeError, AttributeError, IndexError,
                RecursionError):
            raise vendor_error(route.provider.name, 502, "the transcription answer was not "
                               "understood") from None
        h.set_header("Content-Type", FORMATS[fmt])
        h.finish(out)
