"""POST /v1/audio/speech (https://platform.openai.com/docs/api-reference/audio/createSpeech).

The answer is the audio itself. Where the vendor streams (StepFun's and OpenAI-compatible
servers' binary bodies, MiniMax's events of hex audio) each piece goes to the client as it
arrives; a failure after the first byte can only cut the body short (the connection is
closed without the end of the chunked body, so clients see it incomplete)."""

from __future__ import annotations

import logging

from tornado.iostream import StreamClosedError

from freeapi.errors import APIError, UpstreamError, invalid_request, upstream_failure, \
    vendor_error
from freeapi.handlers.base import ClientGone
from freeapi.modalities import UNUSABLE, Operation
from freeapi.routing import require_model
from freeapi.pipeline.operations import StreamMark

log = logging.getLogger("freeapi.speech")

# OpenAI's formats and their media types.
FORMATS = {"mp3": "audio/mpeg", "opus": "audio/ogg", "aac": "audio/aac",
           "flac": "audio/flac", "wav": "audio/wav", "pcm": "audio/pcm"}
MAX_INPUT = 4096  # OpenAI's limit; vendors' own (StepFun 1,000) are theirs to say


def validate(body: dict) -> str:
    model = require_model(body)
    text = body.get("input")
    if not isinstance(text, str) or not text.strip():
        raise invalid_request("`input` is required and must be a non-empty string.",
                              param="input")
    if len(text) > MAX_INPUT:
        raise invalid_request(f"`input` is longer than {MAX_INPUT} characters.",
                              param="input")
    voice = body.get("voice")
    if not isinstance(voice, str) or not voice.strip() or len(voice) > 256:
        raise invalid_request("`voice` is required and must be a voice name.", param="voice")
    fmt = body.get("response_format", "mp3")
    if not isinstance(fmt, str) or fmt not in FORMATS:  # a list or object is unhashable
        raise invalid_request(f"`response_format` must be one of {', '.join(FORMATS)}.",
                              param="response_format")
    speed = body.get("speed")
    if speed is not None and not (isinstance(speed, (int, float))
                                  and not isinstance(speed, bool) and 0.25 <= speed <= 4.0):
        raise invalid_request("`speed` must be a number from 0.25 to 4.0.", param="speed")
    return model


_TRANSPORT = {"bytes": "bytes", "sse": True, "json": False}


class Speech(Operation):
    endpoint = capability = "speech"
    hook = "speech_request"

    def __init__(self, body: dict):
        super().__init__(body, validate(body))
        self.format = body.get("response_format", "mp3")

    def check(self, route) -> None:
        super().check(route)
        self.transport = route.provider.speech_transport
        self.stream = _TRANSPORT[self.transport]

    def offered(self, route) -> bool:
        # A fallback must deliver the audio the same way as the first choice.
        transport = getattr(self, "transport", None)
        return super().offered(route) and transport in (
            None, route.provider.speech_transport)

    async def finish(self, pipeline, result, route) -> None:
        provider, h = route.provider, pipeline.handler
        h.set_header("Content-Type", FORMATS[self.format])
        if self.transport == "json":
            try:
                audio = provider.speech_answer(result)
            except UNUSABLE:
                raise vendor_error(provider.name, 502, "the speech answer held no audio"
                                   ) from None
            h.finish(audio)
            return
        mark = pipeline._stream_relay = StreamMark()
        if self.transport == "bytes":
            upstream = result.headers.get("Content-Type", "")
            if upstream.startswith("audio/"):
                h.set_header("Content-Type", upstream)
            result.deadline = pipeline._deadline
            pieces = _chunks(result, provider.timeouts.idle)
        else:
            pieces = _events(result, provider.speech_decoder(), provider)
        await _relay(pipeline, provider, pieces, mark)


async def _chunks(resp, idle):
    async for data in resp.chunks(idle):
        yield data


async def _events(stream, decode, provider):
    try:
        async for events in stream.batches():
            out = []
            for ev in events:
                if ev == "[DONE]":
                    break
                try:
                    out.append(decode(ev))
                except UNUSABLE:
                    raise vendor_error(provider.name, 502, "an audio event was not "
                                       "understood") from None
            yield b"".join(out)
    finally:
        stream.close()


async def _relay(pipeline, provider, pieces, mark) -> None:
    h = pipeline.handler
    sent = False
    try:
        async for data in pieces:
            if data:
                h.write(data)
                await h.flush()
                sent = True
        mark.finished = True
        h.finish()
    except (UpstreamError, APIError) as e:
        if pipeline._client_gone:
            raise ClientGone() from None
        err = e if isinstance(e, APIError) else upstream_failure(provider.name, e)
        if not sent:
            raise err from None
        log.warning("%s: the audio stream failed after its first byte: %s", provider.name,
                    err.message)
        pipeline._error = err.code
        h.request.connection.stream.close()  # cut short: the client sees it incomplete
    except StreamClosedError:
        pass  # the client left; on_connection_close stopped the vendor request
