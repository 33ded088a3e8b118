"""multipart/form-data bodies of the OpenAI endpoints that take files (transcriptions,
image edits and variations, files)."""

from __future__ import annotations

import re

from tornado import httputil

from freeapi.errors import invalid_request

_MULTIPART = "multipart/form-data"
# A part's media type is the client's word, later sent back as a header (GET
# /v1/files/{id}/content) or to a vendor: anything but a plain type/subtype is dropped.
_MEDIA_TYPE = re.compile(r"^[A-Za-z0-9][\w.+-]*/[A-Za-z0-9][\w.+-]*$", re.A)


def is_multipart(content_type: str) -> bool:
    return content_type.strip().lower().startswith(_MULTIPART)


def parse_multipart(content_type: str, raw: bytes) -> tuple[dict, dict]:
    """(fields, files) as Tornado parses them: {name: [bytes]}, {name: [HTTPFile]}; a 400
    for a body that is no well-formed form."""
    ctype = content_type.strip()
    # Media types are case-insensitive (RFC 9110 8.3.1) but Tornado only reads lowercase
    # ones; the boundary after it is kept as sent.
    ctype = _MULTIPART + ctype[len(_MULTIPART):]
    args: dict = {}
    files: dict = {}
    try:
        httputil.parse_body_arguments(ctype, raw, args, files)
    except httputil.HTTPInputError as e:  # Tornado raises (since 6.5) where it once logged
        raise invalid_request(f"The multipart/form-data body is malformed: {str(e)[:200]}.",
                              code="invalid_multipart") from None
    return args, files


def media_type(value) -> str:
    value = (value or "").split(";")[0].strip()
    return value.lower() if _MEDIA_TYPE.match(value) else "application/octet-stream"


def parse_upload(content_type: str, raw: bytes, what: str) -> dict:
    """A form of one `file` and text fields, as OpenAI's file-taking endpoints send it:
    `file` as (filename, media type, bytes), the other fields as strings; a 400 for
    anything else. `what` names the file in messages ("audio", "file")."""
    if not is_multipart(content_type):
        raise invalid_request(f"Send the {what} as multipart/form-data with a `file` part, "
                              "as OpenAI's API takes it.", code="invalid_content_type")
    args, files = parse_multipart(content_type, raw)
    uploads = files.get("file") or []
    if len(uploads) != 1 or not uploads[0].body:
        raise invalid_request(f"`file` is required: one {what} file.", param="file")
    up = uploads[0]
    body = text_fields(args)
    body["file"] = (up.filename or what, media_type(up.content_type), up.body)
    return body


def text_fields(args: dict, files: tuple = ()) -> dict:
    """A form's text fields as {name: str}: each given once, as UTF-8; a name in `files`
    sent as text is a 400."""
    body = {}
    for name, values in args.items():
        if name in files:
            raise invalid_request(f"`{name}` must be a file, not a text field.", param=name)
        if len(values) != 1:
            raise invalid_request(f"`{name}` was given {len(values)} times.", param=name)
        try:
            body[name] = values[0].decode("utf-8")
        except UnicodeDecodeError:
            raise invalid_request(f"`{name}` is not UTF-8 text.", param=name) from None
    return body
