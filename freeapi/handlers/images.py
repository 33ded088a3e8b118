"""POST /v1/images/generations through the shared pipeline (freeapi/modalities/images.py)."""

from __future__ import annotations

from freeapi.handlers.door import DoorHandler
from freeapi.modalities.images import Images


class ImagesHandler(DoorHandler):
    endpoint = "images"

    async def post(self):
        token = self.client_token()
        op = Images(self.json_body())
        self.write_json(await self.pipeline.call(op, model=op.model, token=token))
