"""POST /v1/images/generations, /v1/images/edits and /v1/images/variations through the
shared pipeline (freeapi/modalities/images.py, image_edits.py); the ledger counts all
three as "images"."""

from __future__ import annotations

from freeapi.handlers.base import streamed_body
from freeapi.handlers.door import DoorHandler
from freeapi.modalities.image_edits import ImageEdits, ImageVariations, parse_form
from freeapi.modalities.images import Images


class ImagesHandler(DoorHandler):
    endpoint = "images"

    async def post(self):
        token = self.client_token()
        op = Images(self.json_body())
        self.write_json(await self.pipeline.call(op, model=op.model, token=token))


@streamed_body  # a multipart body, read as it comes (Tornado would parse it again)
class ImageEditsHandler(DoorHandler):
    endpoint = "images"
    operation = ImageEdits

    async def post(self):
        token = self.client_token()
        form = parse_form(self.request.headers.get("Content-Type", ""), self.raw_body(),
                          variation=self.operation.variation)
        editors = [m for p in self.gateway.providers.values() for m in p.image_edit_models]
        op = self.operation(form, editors)
        self.write_json(await self.pipeline.call(op, model=op.model, token=token))


class ImageVariationsHandler(ImageEditsHandler):
    operation = ImageVariations
