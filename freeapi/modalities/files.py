"""The gateway's own small file store behind `POST /v1/files`, so a chat message can carry
OpenAI's `{"type": "file", "file": {"file_id": ...}}`: files live in the state store
(namespace "fil") for FILE_TTL seconds, readable only by the caller that uploaded them
(the conversations' owner rule). Not a blob store: files up to MAX_FILE bytes.

`GET /v1/files` lists the caller's files from a second, small record per file (namespace
"fli", the file object without its bytes) put in the caller's store group, so a listing
never reads the files themselves and never sees another caller's."""

from __future__ import annotations

import base64
import logging
import re
import secrets
import time

from freeapi.errors import APIError, invalid_request
from freeapi.store import StoreError

log = logging.getLogger("freeapi.files")
NS = "fil"
LIST_NS = "fli"  # the file objects, grouped by owner, for GET /v1/files
MAX_LIMIT = 10000  # OpenAI's `limit`: 1 to 10,000, default 10,000
FILE_TTL = 24 * 3600
MAX_FILE = 20 << 20
_ID = re.compile(r"^file-[A-Za-z0-9_-]{16,64}$")


def unavailable(e: StoreError) -> APIError:
    log.error("files: %s", e)
    return APIError(503, "The gateway cannot reach its state store right now; retry shortly.",
                    code="state_unavailable", retry_after="1")


def not_found(file_id: str) -> APIError:
    shown = file_id if len(file_id) <= 80 else file_id[:80] + "..."
    return APIError(404, f"No file {shown!r} (files are kept {FILE_TTL // 3600} hours, for "
                         "the caller that uploaded them).", param="file_id",
                    code="file_not_found")


def needs_owner() -> APIError:
    return APIError(401, "Files are listed for the caller that uploaded them: send "
                         "credentials as `Authorization: Bearer <key>` (a gateway key, or "
                         "your vendor key when the gateway passes them through).",
                    code="missing_api_key")


def info(file_id: str, rec: dict) -> dict:
    return {"id": file_id, "object": "file", "bytes": rec["bytes"],
            "created_at": rec["created_at"], "expires_at": rec["created_at"] + FILE_TTL,
            "filename": rec["filename"], "purpose": rec["purpose"], "status": "processed"}


async def save(store, owner: str, filename: str, media_type: str, data: bytes,
               purpose: str) -> dict:
    if len(data) > MAX_FILE:
        raise APIError(413, f"Files kept by the gateway are at most {MAX_FILE} bytes; send "
                            "a larger document inline as `file_data`.",
                       code="file_too_large")
    file_id = "file-" + secrets.token_urlsafe(18)
    rec = {"owner": owner, "filename": filename, "media_type": media_type,
           "purpose": purpose, "bytes": len(data), "created_at": int(time.time()),
           "data": base64.b64encode(data).decode()}
    try:
        await store.kv_put(NS, file_id, rec, FILE_TTL)
        # Listed only once its bytes are stored: a listed file can always be read.
        await store.kv_put(LIST_NS, file_id, info(file_id, rec), FILE_TTL, group=owner)
    except StoreError as e:
        raise unavailable(e) from None
    return info(file_id, rec)


async def load(store, file_id, owner: str) -> dict:
    """The caller's file record (with `data` still base64), or a 404."""
    if not isinstance(file_id, str) or not _ID.match(file_id):
        raise invalid_request("`file_id` is not one of this gateway's file ids "
                              "(POST /v1/files gives them).", param="file_id",
                              code="invalid_file_id")
    try:
        rec = (await store.kv_get(NS, [file_id])).get(file_id)
    except StoreError as e:
        raise unavailable(e) from None
    if not isinstance(rec, dict) or rec.get("owner") != owner:
        raise not_found(file_id)
    return rec


async def delete(store, file_id, owner: str) -> None:
    await load(store, file_id, owner)
    try:
        await store.kv_delete(LIST_NS, file_id)  # unlisted first, then gone
        await store.kv_delete(NS, file_id)
    except StoreError as e:
        raise unavailable(e) from None


def list_params(query: dict) -> tuple[str | None, int, str, str | None]:
    """(purpose, limit, order, after) from GET /v1/files' query
    (https://platform.openai.com/docs/api-reference/files/list); a 400 for bad values."""
    limit = query.get("limit", str(MAX_LIMIT))
    try:
        limit = int(limit)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise invalid_request(f"`limit` is a whole number from 1 to {MAX_LIMIT}.",
                              param="limit")
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise invalid_request("`order` is asc or desc (by created_at).", param="order")
    return query.get("purpose") or None, limit, order, query.get("after") or None


async def listing(store, owner: str, purpose: str | None = None, limit: int = MAX_LIMIT,
                  order: str = "desc", after: str | None = None) -> dict:
    """OpenAI's list of the caller's live files, `created_at` in `order` (ties by id, so
    pages never overlap), `limit` of them after the file `after`."""
    try:
        found = await store.kv_group(LIST_NS, owner)
    except StoreError as e:
        raise unavailable(e) from None
    files = sorted((f for f in found.values() if isinstance(f, dict)
                    and (purpose is None or f.get("purpose") == purpose)),
                   key=lambda f: (f["created_at"], f["id"]), reverse=order == "desc")
    if after is not None:
        ids = [f["id"] for f in files]
        if after not in ids:  # deleted or expired meanwhile: the client starts again
            shown = after if len(after) <= 80 else after[:80] + "..."
            raise invalid_request(f"`after` ({shown!r}) is none of your files in this "
                                  "listing; list again without it.", param="after",
                                  code="file_not_found")
        files = files[ids.index(after) + 1:]
    page = files[:limit]
    return {"object": "list", "data": page, "has_more": len(files) > limit,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None}
