"""`POST` / `GET /v1/files`, `GET` / `DELETE /v1/files/{id}`, `GET /v1/files/{id}/content`:
the gateway's small file store (freeapi/modalities/files.py) for chat `file` parts given by
`file_id`. The file's bytes are never logged.

Everything here needs credentials (a caller without them could not be told apart from any
other). An upload is admitted before its body is read: the key's limits (rpm, token
budgets: the same Limits as every request), then whether the caller's and the gateway's
file quotas have room; its size is counted once known. Content goes out in pieces, each
written only once the client has taken the previous one, under `files.write_timeout` for
the whole download, at most `files.max_downloads_per_caller` at once; as an attachment
that a browser will neither sniff nor run (the media type is the uploader's word)."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import quote

from tornado.iostream import StreamClosedError

from freeapi import conversations as conv
from freeapi.errors import APIError, ClientGone
from freeapi.handlers.base import APIHandler, streamed_body
from freeapi.keys import bearer
from freeapi.modalities import files
from freeapi.modalities.forms import media_type, parse_upload

log = logging.getLogger("freeapi.files")
# Room for the multipart framing and text fields around the file itself.
FORM_SLACK = 64 << 10


class _Files(APIHandler):
    def _owner(self) -> str:
        self.client_token()
        owner = conv.owner_of(self.caller, bearer(self.request.headers.get("Authorization")))
        if owner == conv.ANONYMOUS:  # callers without credentials cannot be told apart
            raise files.needs_owner()
        return owner


@streamed_body  # its checks before the body wait for the store (quotas) and the limits
class FilesHandler(_Files):
    _receiving = False  # counted in gateway.uploads

    async def prepare(self):
        super().prepare()
        if self.request.method != "POST":
            return
        cfg, gw = self.gateway.config.files, self.gateway
        try:
            owner = self._owner()
            length = self.request.headers.get("Content-Length", "")
            if length.isascii() and length.isdigit() \
                    and int(length) > cfg.max_file_bytes + FORM_SLACK:
                raise files.too_large(cfg)
            if gw.uploads >= cfg.max_concurrent_uploads:
                raise APIError(429, f"The gateway is receiving {cfg.max_concurrent_uploads} "
                                    "uploads already (files.max_concurrent_uploads); retry "
                                    "shortly.", code="too_many_uploads", retry_after="1")
            gw.uploads += 1  # before the waits below: no more than the cap get past them
            self._receiving = True
            if self.caller is not None and self.caller.limited:
                await gw.limits.admit_call(self.caller)
            await files.take_quota(gw.store, owner, 0, cfg)
        except APIError as e:
            self._done_receiving()
            self.refuse(e)

    def on_finish(self):
        super().on_finish()
        self._done_receiving()

    def on_connection_close(self):
        super().on_connection_close()
        self._done_receiving()

    def _done_receiving(self):
        if self._receiving:
            self._receiving = False
            self.gateway.uploads -= 1

    async def post(self):
        owner = self._owner()
        cfg = self.gateway.config.files
        raw = self.raw_body()
        if len(raw) > cfg.max_file_bytes + FORM_SLACK:  # sent without a Content-Length
            raise files.too_large(cfg)
        form = parse_upload(self.request.headers.get("Content-Type", ""), raw, "file")
        name, mtype, data = form["file"]
        self.write_json(await files.save(self.gateway.store, owner, name, mtype, data,
                                         form.get("purpose"), cfg))

    async def get(self):
        """OpenAI's list files (https://platform.openai.com/docs/api-reference/files/list):
        the caller's own files only."""
        owner = self._owner()
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


def attachment(filename: str) -> str:
    """Content-Disposition for a name the uploader chose: an ASCII fallback and the exact
    name in RFC 6266's filename* (UTF-8, percent-encoded), so no header can be forged."""
    plain = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_"
                    for c in filename) or "file"
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(filename, safe='')}"


class FileContentHandler(_Files):
    async def get(self, file_id):
        owner = self._owner()
        cfg = self.gateway.config.files
        busy = self.gateway.file_downloads
        if busy.get(owner, 0) >= cfg.max_downloads_per_caller:
            raise APIError(429, f"This caller is already downloading "
                                f"{cfg.max_downloads_per_caller} files "
                                "(files.max_downloads_per_caller); retry when one ends.",
                           code="too_many_downloads", retry_after="1")
        busy[owner] = busy.get(owner, 0) + 1
        try:
            await self._send(file_id, owner, cfg)
        finally:
            busy[owner] -= 1
            if busy[owner] <= 0:
                del busy[owner]

    async def _send(self, file_id, owner: str, cfg):
        store = self.gateway.store
        rec = await files.load(store, file_id, owner)
        # The media type is the uploader's word: served as an attachment, never sniffed,
        # and with nothing a browser may run or load should it render it anyway.
        self.set_header("Content-Type", media_type(rec.get("media_type")))
        self.set_header("Content-Disposition", attachment(rec.get("filename") or file_id))
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Content-Security-Policy", "default-src 'none'; sandbox")
        self.set_header("Content-Length", str(rec["bytes"]))
        loop = asyncio.get_running_loop()
        deadline, sent = loop.time() + cfg.write_timeout, False
        try:
            async for piece in files.pieces(store, file_id, rec):
                self.write(piece)
                sent = True
                # The next piece is read only once this one is with the kernel: a client
                # that does not read holds one piece, not the file.
                await asyncio.wait_for(self.flush(), max(deadline - loop.time(), 0.001))
        except asyncio.TimeoutError:
            log.info("GET %s: dropped; the client had not taken the file within %gs "
                     "(files.write_timeout)", self.request.path, cfg.write_timeout)
            self.request.connection.close()
            raise ClientGone() from None
        except StreamClosedError:
            raise ClientGone() from None
        except APIError:
            if sent:  # the content went away mid-download: the client sees a short body
                self.request.connection.close()
                raise ClientGone() from None
            raise
        self.finish()
