"""The pipeline's part in documents: OpenAI's `file` content parts in chat (parsing and
store names in freeapi/modalities/documents.py). A vendor reads a document one of two
ways, its `Provider.document_mode`:

- "extract" (Kimi, GLM): the gateway uploads the file with a key of the pool, takes the
  vendor's extracted text (asking again while the vendor still parses: GLM's parser is
  an asynchronous task), deletes the vendor's copy and puts the text in a system
  message before the question. A key the vendor refuses (or a vendor failure) moves
  the extraction on to the next key. The text is cached by content hash, so any key,
  or a fallback, can serve the chat.
- "reference" (Qwen-Long): the vendor reads a file by an id that belongs to the account
  that uploaded it. So the upload happens inside each attempt, with the key that will
  serve it (`Documents.bind`, called by Failover.send), waiting until the vendor
  has parsed the file; the ids go where the vendor's docs put them
  (`Provider.document_reference`). Ids are cached per key and content, so the same file
  again uploads nothing, and a failover to another key uploads once more with that key.
  Until an attempt, the request holds a placeholder system message naming the files'
  content hashes (`documents.REF`); a stored conversation keeps the placeholder, and the
  file (namespace "docb", the caller's own, as long as conversations live), so a later
  turn is served by whatever key it gets. Fallbacks that cannot read the files are
  skipped.

The file's bytes and text are never logged.
"""

from __future__ import annotations

import hashlib
import logging
import time

from freeapi import conversations as conv
from freeapi.errors import APIError, invalid_request, vendor_error
from freeapi.healthsync import key_hash
from freeapi.modalities import UNUSABLE, documents
from freeapi.pipeline.exchange import Exchange
from freeapi.pipeline.failover import KEY_FAILURES, server_key_error
from freeapi.pipeline.history import owner
from freeapi.store import StoreError

log = logging.getLogger("freeapi.documents")


class Documents:
    """`read(ex, route, body, token)` before the request is sent (writes `doc_bytes`,
    `doc_refs`, `chat_docs`, `deadline`); `load(ex, route, body)` once the history is in;
    in each attempt when `ex.doc_refs` is set: `bind` (writes `bound`) and, on a 400,
    `stale` (writes `rebound`). `reads(target)` says which fallbacks can serve."""

    def __init__(self, gateway, calls):
        # gateway: store, pools, vendor_keys, config, shutting_down; calls: VendorCalls
        self.gateway, self.calls = gateway, calls

    async def read(self, ex: Exchange, route, body: dict, token) -> None:
        """Replace each `file` part by what the vendor reads: its extracted text, or a
        placeholder for the file ids of the attempt's key; before the message that
        carried it."""
        p = route.provider
        if p.document_upload("probe", "text/plain", b"-", None) is None:
            raise invalid_request(f"{p.name} has no document API: send the document's text, "
                                  "or ask a model of a provider that reads files (kimi, "
                                  "glm, qwen-long).", param="messages",
                                  code="documents_not_supported")
        reference = p.document_mode == "reference"
        if reference and not p.takes_documents(route.upstream_model):
            raise invalid_request(f"{route.upstream_model} reads no documents; {p.name} reads "
                                  f"them with {' or '.join(p.document_models)}.",
                                  param="messages", code="documents_not_supported")
        ex.deadline = time.monotonic() + p.timeouts.total
        out = []
        for i, m in enumerate(body["messages"]):
            parts = m.get("content") if isinstance(m, dict) else None
            if not isinstance(parts, list) or not documents.has_files([m]):
                out.append(m)
                continue
            keep, refs = [], []
            for j, part in enumerate(parts):
                if not (isinstance(part, dict) and part.get("type") == "file"):
                    keep.append(part)
                    continue
                name, media_type, raw = await documents.read_part(
                    part, f"messages[{i}].content[{j}]", self.gateway.store,
                    owner(ex.door))
                if reference:
                    refs.append(await self._hold(ex, body, name, media_type, raw))
                else:
                    out.append({"role": "system", "content": await self._extract(
                        ex, p, name, media_type, raw, token)})
            if refs:
                out.append({"role": "system", "content": "", documents.REF: refs})
            content: list | str = keep
            if all(isinstance(k, dict) and k.get("type") == "text" for k in keep):
                content = "\n".join(str(k.get("text") or "") for k in keep)  # every vendor takes
            out.append(dict(m, content=content))
        body["messages"] = out
        ex.doc_refs = ex.doc_refs or reference
        ex.chat_docs = True  # read the chat way: the native pass-through must not serve

    async def load(self, ex: Exchange, route, body: dict) -> None:
        """Files read by id, in this turn or a conversation's history: check the
        placeholders and fetch their files before any key is leased; a forged or expired
        reference (400) or an unreachable state store (503) is the request's or the
        gateway's failure, never a vendor key's (`Failover.send` would count it against
        one). A conversation holding them continues only where they can be read."""
        refs = documents.has_refs(body["messages"])
        if ex.conversation is not None and (ex.doc_refs or refs):
            ex.doc_refs = True
            self._check(route)
        if not ex.doc_refs:
            if refs:
                raise documents.forged()  # a client's placeholder would go to the vendor as it is
            return
        for m in body["messages"]:
            if isinstance(m, dict) and documents.REF in m:
                for sha in self._refs(m):
                    await self.held(ex, sha)

    # -- "extract": the vendor's text of the file, cached by content --------------------

    async def _extract(self, ex: Exchange, p, name: str, media_type: str, raw: bytes,
                       token) -> str:
        gw = self.gateway
        store, cached = gw.store, documents.cache_name(p.name, raw)
        try:
            hit = await store.kv_get(documents.NS, [cached])
        except StoreError:
            hit = {}
        if isinstance(hit.get(cached), str):
            return hit[cached]
        keys, passthrough = gw.vendor_keys(p, token)
        tried: set[str | None] = set()
        pool, last, text = gw.pool_for(p), None, None
        while text is None and len(tried) < max(1, gw.config.failover.max_attempts):
            try:
                lease = await pool.acquire(keys, tried, last_resort=passthrough,
                                           on_wait=ex.wait_on)
            finally:
                ex.queued = None
            if lease is None:
                break
            tried.add(lease.key)
            status = retry_after = None
            try:
                status, text = await self._extract_with(ex, p, name, media_type, raw,
                                                        lease.key)
            except APIError as e:
                if gw.shutting_down:
                    raise  # not the key's fault (the lease is cancelled below), nor a
                    # reason to upload the file again with the next key
                status, retry_after = e.status, e.retry_after
                # The key (401/402/403/429) or the vendor (5xx) failed, not the file:
                # another key may do, as for chat (pipeline/failover.py).
                if e.code == "upstream_timeout" or not (
                        e.status in KEY_FAILURES or e.status >= 500):
                    raise
                last = e if passthrough else server_key_error(e, p.name)
                last.with_traceback(None)  # which holds this frame: a cycle otherwise
            finally:
                if status is None:
                    lease.cancel()
                else:
                    lease.release(status, retry_after=retry_after)
        if text is None:
            failure, last = last or pool.refusal(keys), None
            try:
                raise failure
            finally:
                failure = None  # raising without a cycle (pipeline/failover.py)
        try:
            await store.kv_put(documents.NS, cached, text, documents.TTL)
        except StoreError as e:
            log.warning("%s: a document's extraction was not cached: %s", p.name, str(e))
        return text

    async def _extract_with(self, ex, p, name, media_type, raw, key) -> tuple[int, str]:
        file_id, _ = await self._upload(ex, p, name, media_type, raw, key)
        polls = 0
        while True:
            status, answer = await self._vendor(ex, p, p.document_text_request(file_id, key),
                                                key, "the document extraction", 64 << 20)
            try:
                text = p.document_text(answer)
            except UNUSABLE:
                raise vendor_error(p.name, 502, "the extraction's answer was not "
                                                "readable") from None
            if text is not None:
                break
            # The vendor still parses the file (None: not ready): ask again, within the
            # request's deadline.
            await self.calls.pause(ex, min(0.5 * 2 ** polls, 3.0), p, "the document's parsing")
            polls += 1
        delete = p.document_delete(file_id, key)
        if delete is not None:
            try:  # best effort: the vendor's copy is no longer needed
                await self.calls.fetch(ex, p, delete, 1 << 20, "the document deletion")
            except APIError as e:
                log.warning("%s: the uploaded document %s was not deleted: %s", p.name,
                            file_id, e.message)
        return status, text

    async def _vendor(self, ex, p, req, key, what: str, limit: int = 1 << 20):
        """One call for a document: (status, body), or the vendor's error raised."""
        status, headers, body = await self.calls.fetch(ex, p, req, limit, what)
        err = p.error_from(status, headers, body, [key] if key else [])
        if err is not None:
            raise err
        return status, body

    async def _upload(self, ex, p, name, media_type, raw, key) -> tuple[str, bytes]:
        status, body = await self._vendor(ex, p, p.document_upload(name, media_type, raw, key),
                                          key, "the document upload")
        try:
            return p.document_id(body), body
        except UNUSABLE:
            raise vendor_error(p.name, 502, "the upload's answer held no file id") from None

    # -- "reference": files the vendor reads by id, uploaded with the attempt's key -----

    async def _hold(self, ex: Exchange, body: dict, name: str, media_type: str,
                    raw: bytes) -> str:
        """Keep a file for this request's attempts (and for its conversation's later
        turns); its content hash names it in the placeholder."""
        sha = hashlib.sha256(raw).hexdigest()
        if ex.doc_bytes is None:
            ex.doc_bytes = {}
        ex.doc_bytes[sha] = (name, media_type, raw)
        cfg, who = self.gateway.config.conversations, owner(ex.door)
        if (body.get("conversation_id") is not None or cfg.store) and who != conv.ANONYMOUS:
            try:
                await self.gateway.store.kv_put(documents.KEPT, f"{who}:{sha}", {
                    "filename": name, "media_type": media_type,
                    "data": documents.b64(raw)}, cfg.ttl)
            except StoreError as e:
                log.warning("a conversation's document was not kept: %s", str(e))
        return sha

    @staticmethod
    def _refs(m: dict) -> list:
        refs = m[documents.REF]
        if not (isinstance(refs, list) and refs and all(
                isinstance(r, str) and documents.SHA.match(r) for r in refs)):
            raise documents.forged()
        return refs

    @staticmethod
    def reads(target) -> bool:
        """Whether `target` reads files by id (a fallback that cannot is skipped)."""
        p = target.provider
        return p.document_mode == "reference" and p.takes_documents(target.upstream_model)

    def _check(self, route) -> None:
        """A conversation holding files read by id continues only where they can be."""
        if not self.reads(route):
            raise invalid_request(f"These messages hold documents that {route.provider.name} "
                                  f"{route.upstream_model} cannot read by file id; continue "
                                  "with the model that read them (e.g. qwen-long).",
                                  param="messages", code="documents_not_supported")

    async def bind(self, ex: Exchange, target, body: dict, key) -> dict:
        """The body for one attempt: each placeholder replaced by the vendor's reference to
        the files as uploaded with `key`."""
        p, messages = target.provider, []
        ex.bound = {}  # the cached ids it sends (`stale`)
        for m in body["messages"]:
            if not (isinstance(m, dict) and documents.REF in m):  # `null` is forged too
                messages.append(m)
                continue
            messages.append(p.document_reference([await self._file_id(ex, p, key, sha)
                                                  for sha in self._refs(m)]))
        return dict(body, messages=messages)

    async def stale(self, ex: Exchange, err: APIError) -> bool:
        """Whether a 400 names a file id the attempt sent: the vendor no longer has that
        file (deleted in its console before the cached id expired). The ids are then
        forgotten, once per request, so the next attempt uploads the file again."""
        if ex.rebound or not ex.bound or err.status != 400:
            return False
        stale = [name for file_id, name in ex.bound.items() if file_id in err.message]
        if not stale:
            return False
        ex.rebound = True
        for name in stale:
            try:
                await self.gateway.store.kv_delete(documents.IDS, name)
            except StoreError as e:
                log.warning("a stale document id was not forgotten: %s", str(e))
                return False
        log.warning("a cached document id is gone at the vendor; uploading the file again")
        return True

    async def _file_id(self, ex: Exchange, p, key, sha: str) -> str:
        # The caller must hold the file (sent now, or kept for its conversation) before a
        # cached id is used: ids are per vendor account, and callers share server keys.
        name, media_type, raw = await self.held(ex, sha)
        store = self.gateway.store
        cached = f"{p.name}:{key_hash(key or '')}:{sha}"
        try:
            hit = (await store.kv_get(documents.IDS, [cached])).get(cached)
        except StoreError:
            hit = None
        if isinstance(hit, str):
            assert ex.bound is not None, "bind() starts the attempt's bound ids"
            ex.bound[hit] = cached
            return hit
        file_id, answer = await self._upload(ex, p, name, media_type, raw, key)
        polls = 0
        while not self._ready(p, answer):  # the vendor still parses the file
            await self.calls.pause(ex, min(0.5 * 2 ** polls, 3.0), p, "the document's parsing")
            polls += 1
            _, answer = await self._vendor(ex, p, p.document_status_request(file_id, key), key,
                                           "the document's parsing")
        try:
            await store.kv_put(documents.IDS, cached, file_id, documents.TTL)
        except StoreError as e:
            log.warning("%s: a document's file id was not cached: %s", p.name, str(e))
        return file_id

    @staticmethod
    def _ready(p, answer: bytes) -> bool:
        try:
            return p.document_ready(answer)
        except UNUSABLE:
            raise vendor_error(p.name, 502, "the file's status was not readable") from None

    async def held(self, ex: Exchange, sha: str) -> tuple[str, str, bytes]:
        """A file this request holds: sent now, or kept for its conversation."""
        got = (ex.doc_bytes or {}).get(sha)
        if got is not None:
            return got
        kept = f"{owner(ex.door)}:{sha}"
        try:
            rec = (await self.gateway.store.kv_get(documents.KEPT, [kept])).get(kept)
        except StoreError as e:
            raise APIError(503, "The gateway cannot reach its state store right now; retry "
                                "shortly.", code="state_unavailable", retry_after="1") from e
        if not isinstance(rec, dict):
            raise invalid_request("A document of this conversation is no longer kept by the "
                                  "gateway; send the file again.", param="messages",
                                  code="document_expired")
        got = rec["filename"], rec["media_type"], documents.unb64(rec["data"])
        ex.doc_bytes = {**(ex.doc_bytes or {}), sha: got}
        return got
