"""`POST` / `GET /v1/files`, `GET` / `DELETE /v1/files/{id}`, `GET /v1/files/{id}/content`:
the gateway's small file store (freeapi/modalities/files.py) for chat `file` parts given by
`file_id`. The file's bytes are never logged."""

from __future__ import annotations

import base64

from freeapi import conversations as conv
from freeapi.errors import invalid_request
from freeapi.handlers.base import APIHandler
from freeapi.keys import bearer
from freeapi.modalities import files
from freeapi.modalities.forms import media_type, parse_upload


class _Files(APIHandler):
    def _owner(self) -> str:
        self.client_token()
        return conv.owner_of(self.caller, bearer(self.request.headers.get("Authorization")))


class FilesHandler(_Files):
    async def post(self):
        owner = self._owner()
        form = parse_upload(self.request.headers.get("Content-Type", ""), self.raw_body(),
                            "file")
        purpose = form.get("purpose")
        if not purpose:
            raise invalid_request("`purpose` is required (e.g. user_data).", param="purpose")
        name, media_type, data = form["file"]
        self.write_json(await files.save(self.gateway.store, owner, name, media_type, data,
                                         purpose))

    async def get(self):
        """OpenAI's list files (https://platform.openai.com/docs/api-reference/files/list):
        the caller's own files only."""
        owner = self._owner()
        if owner == conv.ANONYMOUS:  # callers without credentials cannot be told apart
            raise files.needs_owner()
        query = {k: self.get_query_argument(k) for k in ("purpose", "limit", "order", "after")
                 if self.get_query_argument(k, None) is not None}
        self.write_json(await files.listing(self.gateway.store, owner,
                                            *files.list_params(query)))


class FileHandler(_Files):
    async def get(self, file_id):
        rec = await files.load(self.gateway.store, file_id, self._owner())
        self.write_json(files.info(file_id, rec))

    async def delete(self, file_id):
        await files.delete(self.gateway.store, file_id, self._owner())
        self.write_json({"id": file_id, "object": "file", "deleted": True})


class FileContentHandler(_Files):
    async def get(self, file_id):
        rec = await files.load(self.gateway.store, file_id, self._owner())
        self.set_header("Content-Type", media_type(rec.get("media_type")))
        self.finish(base64.b64decode(rec["data"]))
