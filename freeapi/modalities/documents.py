"""Documents in chat: OpenAI's `file` content part
(`{"type": "file", "file": {"file_data": "data:...;base64,...", "filename": ...}}`).

For a vendor with a document API the gateway uploads the file and puts what the vendor
reads where its docs put it: the extracted text of Kimi
(https://platform.moonshot.ai/docs/guide/use-kimi-api-for-file-based-qa) or of GLM's file
parser (https://docs.bigmodel.cn/cn/guide/tools/file-parser) in a system message before the
question (cached by provider and content hash, namespace "docx"), Qwen-Long's `fileid://`
reference, uploaded with the key that serves the attempt (ids cached per key and content,
namespace "docq").
How: freeapi/pipeline/documents.py. A vendor without one refuses with a 400; `type:
openai` servers get the part as it is. The file's bytes are never logged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

from freeapi.errors import APIError, invalid_request
from freeapi.modalities import files

NS = "docx"  # provider:sha256 -> extracted text
IDS = "docq"  # provider:key hash:sha256 -> the vendor's file id for that key's account
KEPT = "docb"  # owner:sha256 -> a file read by id, kept for its conversation's later turns
TTL = 7 * 86400
#: The field of the placeholder message that stands for files read by id until an
#: attempt's key is known: a list of their sha256 hex digests.
REF = "freeapi_documents"
SHA = re.compile(r"^[0-9a-f]{64}$")
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
        rec, raw = await files.content(store, f["file_id"], owner)
        return rec["filename"], rec["media_type"], raw
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


def forged() -> APIError:
    """A client's own `REF` field: only the gateway writes it (and never sends it on)."""
    return invalid_request(f"`{REF}` is the gateway's own field; a request may not carry "
                           "it.", param="messages", code="invalid_message")


def has_refs(messages) -> bool:
    return any(isinstance(m, dict) and REF in m for m in messages or ())


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


def cache_name(provider: str, raw: bytes) -> str:
    return f"{provider}:{hashlib.sha256(raw).hexdigest()}"
