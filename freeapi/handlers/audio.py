"""POST /v1/audio/speech and /v1/audio/transcriptions through the shared pipeline
(freeapi/modalities/speech.py, transcriptions.py); the operation writes the response
(audio, streamed where the vendor streams; a transcript as the vendor gave it)."""

from __future__ import annotations

from freeapi.handlers.base import streamed_body
from freeapi.handlers.door import DoorHandler
from freeapi.modalities.speech import Speech
from freeapi.modalities.transcriptions import Transcriptions, parse_form


class SpeechHandler(DoorHandler):
    endpoint = "speech"

    async def post(self):
        token = self.client_token()
        op = Speech(self.json_body())
        await self.pipeline.call(op, model=op.model, token=token)


@streamed_body  # a multipart body, read as it comes (Tornado would parse it again)
class TranscriptionsHandler(DoorHandler):
    endpoint = "transcriptions"

    async def post(self):
        token = self.client_token()
        form = parse_form(self.request.headers.get("Content-Type", ""), self.raw_body())
        op = Transcriptions(form)
        await self.pipeline.call(op, model=op.model, token=token)
