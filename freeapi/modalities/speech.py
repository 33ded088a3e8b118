"""POST /v1/audio/speech (https://platform.openai.com/docs/api-reference/audio/createSpeech).

The answer is the audio itself. Where the vendor streams (StepFun's and OpenAI-compatible
servers' binary bodies, MiniMax's events of hex audio) each piece goes to the client as it
arrives; a failure after the first byte can only cut the body short (the connection is
closed without the end of the chunked body, so clients see it incomplete). A vendor that
answers whole (Qwen-TTS's wav) may give a URL instead: it is downloaded, with no key."""

from __future__ import annotations

import logging

from tornado.iostream import StreamClosedError

from freeapi.errors import (APIError, ClientGone, UpstreamError, invalid_request,
                            upstream_failure, vendor_error)
from freeapi.modalities import UNUSABLE, Operation, required_text
from freeapi.routing import require_model
from freeapi.relay import StreamMark
from freeapi.vendor_request import UpstreamRequest

log = logging.getLogger("freeapi.speech")

# OpenAI's formats and their media types.
FORMATS = {"mp3": "audio/mpeg", "opus": "audio/ogg", "aac": "audio/aac",
           "flac": "audio/flac", "wav": "audio/wav", "pcm": "audio/pcm"}
MAX_INPUT = 4096  # OpenAI's limit; vendors' own (StepFun 1,000) are theirs to say
MAX_AUDIO_BYTES = 64 << 20  # a downloaded audio file (4,096 characters of speech fit well)


def validate(body: dict) -> str:
    model = require_model(body)
    required_text(body, "input", MAX_INPUT)
    voice = body.get("voice")
    if not isinstance(voice, str) or not voice.strip() or len(voice) > 256:
        raise invalid_request("`voice` is required and must be a voice name.", param="voice")
    fmt = body.get("response_format")
    # (a list or object is unhashable: checked as a string first)
    if fmt is not None and (not isinstance(fmt, str) or fmt not in FORMATS):
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
        model = validate(body)
        if body.get("response_format") is None:  # no format: each vendor's own default
            body = {k: v for k, v in body.items() if k != "response_format"}
        super().__init__(body, model)

    def estimate(self, body: dict) -> tuple[dict, dict]:
        return {}, {"character": len(body.get("input") or "")}

    def _transport(self, route) -> str:
        return route.provider.speech_transport_for(dict(self.body, model=route.upstream_model))

    def check(self, route) -> None:
        super().check(route)
        self.transport = self._transport(route)
        self.stream = _TRANSPORT[self.transport]

    def offered(self, route) -> bool:
        # A fallback must deliver the audio the same way as the first choice.
        transport = getattr(self, "transport", None)
        return super().offered(route) and transport in (None, self._transport(route))

    async def finish(self, ctx, result, route) -> None:
        provider, h = route.provider, ctx.door
        fmt = self.body.get("response_format") or provider.speech_default_format
        h.set_header("Content-Type", FORMATS.get(fmt, "application/octet-stream"))
        # Characters, for prices per character: the vendor's count where its answer says
        # (MiniMax, Qwen-TTS), else the input's characters (code points, as Python counts
        # them; docs/money.md).
        usage = {"characters": len(self.body["input"])}
        if self.transport == "json":
            audio = await _whole(ctx, provider, result)
            usage["characters"] = provider.speech_characters(result) or usage["characters"]
            ctx.report_usage(usage)
            h.finish(audio)
            return
        mark = StreamMark()
        ctx.relaying(mark)
        if self.transport == "bytes":
            upstream = result.headers.get("Content-Type", "")
            if upstream.startswith("audio/"):
                h.set_header("Content-Type", upstream)
            result.deadline = ctx.deadline
            pieces = _chunks(result, provider.timeouts.idle)
        else:
            pieces = _events(result, provider.speech_decoder(), provider, usage)
        await _relay(ctx, provider, pieces, mark, usage)


async def _whole(ctx, provider, raw: bytes) -> bytes:
    try:
        audio = provider.speech_answer(raw)
    except UNUSABLE:
        raise vendor_error(provider.name, 502, "the speech answer held no audio") from None
    if isinstance(audio, UpstreamRequest):  # a URL of the vendor's storage, no key
        audio = await ctx.download(provider, audio.url, MAX_AUDIO_BYTES,
                                   "the audio download")
    if not audio:
        raise vendor_error(provider.name, 502, "the speech answer held no audio")
    return audio


async def _chunks(resp, idle):
    async for data in resp.chunks(idle):
        yield data


async def _events(stream, decode, provider, usage: dict):
    try:
        async for events in stream.batches():
            out = []
            for ev in events:
                if ev == "[DONE]":
                    break
                billed = provider.speech_characters(ev)
                if billed:
                    usage["characters"] = billed
                try:
                    out.append(decode(ev))
                except UNUSABLE:
                    raise vendor_error(provider.name, 502, "an audio event was not "
                                       "understood") from None
            yield b"".join(out)
    finally:
        stream.close()


async def _relay(ctx, provider, pieces, mark, usage: dict) -> None:
    """`usage` goes on the mark with the first byte sent (audio was made); the events may
    still correct its count (`_events`) before the ledger reads it."""
    h = ctx.door
    sent = False
    try:
        async for data in pieces:
            if data:
                h.write(data)
                await h.flush()
                sent = True
                mark.usage = usage
        mark.finished = True
        h.finish()
    except (UpstreamError, APIError) as e:
        if ctx.client_gone:
            raise ClientGone() from None
        err = e if isinstance(e, APIError) else upstream_failure(provider.name, e)
        if not sent:
            try:
                raise err from None
            finally:
                err = None  # raising without a cycle (freeapi/pipeline/failover.py)
        log.warning("%s: the audio stream failed after its first byte: %s", provider.name,
                    err.message)
        ctx.failed(err.code)
        h.cut()  # cut short: the client sees it incomplete
    except StreamClosedError:
        pass  # the client left; on_connection_close stopped the vendor request
