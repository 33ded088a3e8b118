"""POST /v1/embeddings: OpenAI's embeddings API in front of the vendors that offer one,
through the shared pipeline (freeapi/modalities/embeddings.py)."""

from __future__ import annotations

from freeapi.handlers.door import DoorHandler
from freeapi.modalities.embeddings import Embeddings


class EmbeddingsHandler(DoorHandler):
    endpoint = "embeddings"

    async def post(self):
        token = self.client_token()
        op = Embeddings(self.json_body())
        self.write_json(await self.pipeline.call(op, model=op.model, token=token))
