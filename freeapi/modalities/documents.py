"""Documents in chat: OpenAI's `file` content part
(`{"type": "file", "file": {"file_data": "data:...;base64,...", "filename": ...}}`).

For a vendor with a document API (Kimi's files API with `purpose: file-extract`) the
gateway uploads the file with a key of the provider's pool, takes the extracted text,
deletes the vendor's copy, and puts the text where the vendor's docs put it (a system
message before the question:
https://platform.moonshot.ai/docs/guide/use-kimi-api-for-file-based-qa).
Extractions are cached by provider and content hash (`state` store, namespace "docx"), so
the same file sent again costs no second upload. A vendor without one refuses with a 400;
`type: openai` servers get the part as it is. The file's bytes are never logged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

from freeapi.errors import invalid_request
from freeapi.modalities import files

NS = "docx"
TTL = 7 * 86400
_DATA_URL = re.compile(r"^data:([\w.+-]+/[\w.+-]+)?(?:;[\w.+-]+=[\w.+-]+)*;base64,", re.A)


def has_files(messages) -> bool:
    for m in messages or ():
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and part.get("type") == "file":
                    return True
    return False


async def read_part(part: dict, where: str, store, owner: str) -> tuple[str, str, bytes]:
    """(filename, media type, bytes) of a `file` part: inline `file_data`, or a `file_id`
    of the caller's from POST /v1/files; a 400 (or 404) for anything else."""
    f = part.get("file")
    if not isinstance(f, dict):
        raise invalid_request(f"`{where}.file` must be an object with `file_data` or "
                              "`file_id`.", param=where)
    if f.get("file_id") is not None and f.get("file_data") is None:
        rec = await files.load(store, f["file_id"], owner)
        return rec["filename"], rec["media_type"], base64.b64decode(rec["data"])
    data = f.get("file_data")
    m = _DATA_URL.match(data) if isinstance(data, str) else None
    if not m:
        raise invalid_request(f"`{where}.file.file_data` must be a base64 data: URL "
                              "(data:application/pdf;base64,...).", param=where)
    try:
        raw = base64.b64decode(data[m.end():], validate=True)
    except (binascii.Error, ValueError):
        raise invalid_request(f"`{where}.file.file_data` is not valid base64.",
                              param=where) from None
    if not raw:
        raise invalid_request(f"`{where}.file.file_data` is empty.", param=where)
    name = f.get("filename")
    name = name if isinstance(name, str) and name.strip() else "document"
    return name[:200], m.group(1) or "application/octet-stream", raw


def cache_name(provider: str, raw: bytes) -> str:
    return f"{provider}:{hashlib.sha256(raw).hexdigest()}"
