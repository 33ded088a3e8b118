"""The gateway's own small file store behind `POST /v1/files`, so a chat message can carry
OpenAI's `{"type": "file", "file": {"file_id": ...}}`: files live in the state store
(namespace "fil") for FILE_TTL seconds, readable only by the caller that uploaded them
(the conversations' owner rule). Not a blob store: files up to MAX_FILE bytes."""

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
        await store.kv_delete(NS, file_id)
    except StoreError as e:
        raise unavailable(e) from None
