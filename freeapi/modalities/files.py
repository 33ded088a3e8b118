"""The gateway's own small file store behind `POST /v1/files`, so a chat message can carry
OpenAI's `{"type": "file", "file": {"file_id": ...}}`: files live in the state store for
FILE_TTL seconds, readable only by the caller that uploaded them (the conversations' owner
rule). Not a blob store: files up to `files.max_file_bytes`, within per-caller and
gateway-wide quotas (FilesConfig).

A file is two records: its metadata (namespace "fil", small JSON) and its bytes (a blob,
namespace "fib", Store.blob_*), so reading a file's metadata never loads its content and
the content is read in bounded pieces. Files written by the previous version kept the
bytes in the metadata record itself, base64, as `data`; those are still read (until they
expire, within FILE_TTL).

`GET /v1/files` lists the caller's files from a third, small record per file (namespace
"fli", the file object) put in the caller's store group, so a listing never reads the
files themselves and never sees another caller's."""

from __future__ import annotations

import base64
import logging
import math
import re
import secrets
import time

from freeapi.errors import APIError, invalid_request
from freeapi.store import BLOB_PIECE, Hit, StoreError

log = logging.getLogger("freeapi.files")
NS = "fil"
CONTENT = "fib"  # the files' bytes
LIST_NS = "fli"  # the file objects, grouped by owner, for GET /v1/files
MAX_LIMIT = 10000  # OpenAI's `limit`: 1 to 10,000, default 10,000
FILE_TTL = 24 * 3600
# The text fields OpenAI's upload takes, bounded (OpenAI's purposes are short words).
MAX_PURPOSE = 64
MAX_FILENAME = 255
_ID = re.compile(r"^file-[A-Za-z0-9_-]{16,64}$")


def unavailable(e: StoreError) -> APIError:
    log.error("files: %s", str(e))
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


def check_fields(filename: str, purpose) -> None:
    """A 400 naming the field for a `purpose` or file name that is missing, too long, or
    holds control characters (the name is sent back in a header)."""
    if not purpose:
        raise invalid_request("`purpose` is required (e.g. user_data).", param="purpose")
    if len(purpose) > MAX_PURPOSE or not purpose.isprintable():
        raise invalid_request(f"`purpose` is at most {MAX_PURPOSE} printable characters "
                              "(e.g. user_data).", param="purpose", code="invalid_purpose")
    if len(filename) > MAX_FILENAME or not filename.isprintable():
        raise invalid_request(f"The `file` part's filename is at most {MAX_FILENAME} "
                              "printable characters.", param="file", code="invalid_filename")


def quota_hits(owner: str, size: int, cfg) -> list[tuple[str, Hit]]:
    """The caller's file count and bytes, and every caller's bytes, over the last FILE_TTL
    seconds (size 0: whether any room is left)."""
    return [("max_per_caller", Hit(f"fn:{owner}", 1 if size else 0, FILE_TTL,
                                   cfg.max_per_caller)),
            ("max_bytes_per_caller", Hit(f"fb:{owner}", size, FILE_TTL,
                                         cfg.max_bytes_per_caller)),
            ("max_total_bytes", Hit("fb:*", size, FILE_TTL, cfg.max_total_bytes))]


async def take_quota(store, owner: str, size: int, cfg) -> None:
    """Count an upload of `size` bytes (0: only check) against the quotas, all or nothing;
    a 429 naming the quota when one is full."""
    checks = quota_hits(owner, size, cfg)
    try:
        ok, wait, failed = await store.hits([h for _, h in checks])
    except StoreError as e:
        raise unavailable(e) from None
    if ok:
        return
    name, hit = checks[failed]
    seconds = max(1, math.ceil(wait))
    whose = "all callers together" if name == "max_total_bytes" else "this caller"
    raise APIError(429, f"The gateway keeps at most {hit.limit} "
                        f"{'files' if name == 'max_per_caller' else 'bytes of files'} "
                        f"uploaded within {FILE_TTL // 3600} hours for {whose} "
                        f"(files.{name}); retry in {seconds}s.", code="file_quota_exceeded",
                   retry_after=str(seconds))


async def save(store, owner: str, filename: str, media_type: str, data: bytes,
               purpose: str, cfg) -> dict:
    if len(data) > cfg.max_file_bytes:
        raise too_large(cfg)
    check_fields(filename, purpose)
    await take_quota(store, owner, len(data), cfg)
    file_id = "file-" + secrets.token_urlsafe(18)
    rec = {"owner": owner, "filename": filename, "media_type": media_type,
           "purpose": purpose, "bytes": len(data), "created_at": int(time.time())}
    try:
        # Content first, then the record, then the listing: a listed file can be read.
        await store.blob_put(CONTENT, file_id, data, FILE_TTL)
        await store.kv_put(NS, file_id, rec, FILE_TTL)
        await store.kv_put(LIST_NS, file_id, info(file_id, rec), FILE_TTL, group=owner)
    except StoreError as e:
        raise unavailable(e) from None
    return info(file_id, rec)


def too_large(cfg) -> APIError:
    return APIError(413, f"Files kept by the gateway are at most {cfg.max_file_bytes} bytes "
                         "(files.max_file_bytes); send a larger document inline as "
                         "`file_data`.", code="file_too_large")


async def load(store, file_id, owner: str) -> dict:
    """The caller's file record (its metadata; a previous version's record also holds the
    base64 `data`), or a 404."""
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
        await store.blob_delete(CONTENT, file_id)
    except StoreError as e:
        raise unavailable(e) from None


async def pieces(store, file_id: str, rec: dict):
    """The file's bytes, BLOB_PIECE at a time (one bounded store call each); a 404 when
    the content is gone meanwhile (expired or deleted)."""
    if "data" in rec:  # written by the previous version: the bytes are in the record
        data = base64.b64decode(rec["data"])
        for at in range(0, len(data), BLOB_PIECE):
            yield data[at:at + BLOB_PIECE]
        return
    at, size = 0, rec["bytes"]
    while at < size:
        try:
            piece = await store.blob_read(CONTENT, file_id, at, min(BLOB_PIECE, size - at))
        except StoreError as e:
            raise unavailable(e) from None
        if not piece:
            raise not_found(file_id)
        at += len(piece)
        yield piece


async def content(store, file_id, owner: str) -> tuple[dict, bytes]:
    """The caller's file record and its whole content (a chat `file` part reads it)."""
    rec = await load(store, file_id, owner)
    return rec, b"".join([p async for p in pieces(store, file_id, rec)])


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
