"""POST /v1/audio/speech through the shared pipeline (freeapi/modalities/speech.py); the
response is the audio, written (and streamed, where the vendor streams) by the operation."""

from __future__ import annotations

from freeapi.handlers.door import DoorHandler
from freeapi.modalities.speech import Speech


class SpeechHandler(DoorHandler):
    endpoint = "speech"

    async def post(self):
        token = self.client_token()
        op = Speech(self.json_body())
        await self.pipeline.call(op, model=op.model, token=token)
