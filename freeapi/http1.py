"""HTTP/1.1 wire pieces the upstream client needs: the response head and chunked bodies.

Pure and incremental, so they can be tested byte by byte. Strict where a lenient reading
could frame a body wrongly (RFC 9112 sections 6 and 7,
https://www.rfc-editor.org/rfc/rfc9112#name-message-body-length): a misread length leaves
bytes on a pooled connection that the next caller would read as *their* answer.
"""

from __future__ import annotations

import functools
import re

from freeapi.errors import UpstreamError

_MAX_HEADER = 64 * 1024
# A chunk-size line: hex digits (16 of them already exceed any body we accept), optional
# whitespace and extensions. Anything else (`-6`, `0x10`, `+5`, ` 5`) is a framing error.
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?")
_MAX_CHUNK_LINE = 4096  # a size line with extensions; real ones are under 100 bytes
_MAX_TRAILER = 64 * 1024  # the whole trailer section
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def framing_error(what: str) -> UpstreamError:
    return UpstreamError("protocol", what)


class Headers(dict):
    """Response headers by lower-cased name; `get`, `in` and `[]` ignore case."""

    def get(self, name, default=None):
        return dict.get(self, name.lower(), default)

    def __getitem__(self, name):
        return dict.__getitem__(self, name.lower())

    def __contains__(self, name):
        return dict.__contains__(self, name.lower())


@functools.lru_cache(maxsize=512)
def _header_name(name: str) -> str | None:
    """A header name's lower-case form, or None when it is not a token. Cached: vendors
    send the same dozen names in every answer (a regex per line was measurable)."""
    return name.lower() if _TOKEN.fullmatch(name) else None


def parse_head(raw: bytes) -> tuple[str, int, Headers]:
    """The status line and headers; only what the relay needs, faster than Tornado's
    general parser (this runs once per vendor answer)."""
    text = raw.decode("latin-1").lstrip("\r\n")
    status, _, fields = text.replace("\r\n", "\n").partition("\n")
    version, _, rest = status.partition(" ")
    code = rest[:3]
    if (version not in ("HTTP/1.1", "HTTP/1.0") or len(code) != 3 or not code.isdigit()
            or not code.isascii() or rest[3:4] not in ("", " ")):  # "²00" is no status
        raise framing_error("malformed response head")
    # No CR or NUL in a header line, no space before the colon, no obs-fold continuation
    # lines (RFC 9112 5.1, 5.2): each has been used to make two parsers disagree about a
    # message's framing. (A CR or NUL anywhere in them fails the head as any of its lines
    # would have, so the lines are not searched one by one.)
    if "\r" in fields or "\0" in fields:
        raise framing_error("malformed response header")
    headers: dict[str, str] = {}
    for line in fields.split("\n"):
        if not line:
            continue
        name, sep, value = line.partition(":")
        low = _header_name(name) if sep else None
        if low is None:
            raise framing_error("malformed response header")
        value = value.strip(" \t")
        have = headers.get(low)
        headers[low] = value if have is None else f"{have}, {value}"
    return version, int(code), Headers(headers)


def content_length(value: str) -> int:
    """A Content-Length value: digits only; a list of identical values (the header sent
    twice, RFC 9110 8.6) is that value; anything else is a framing error."""
    if value.isdigit() and value.isascii() and len(value) <= 18:
        return int(value)  # the usual one value: what the checks below would accept
    values = {v.strip(" \t") for v in value.split(",")}
    if len(values) != 1:
        raise framing_error("conflicting Content-Length values")
    (v,) = values
    if not v.isdigit() or not v.isascii() or len(v) > 18:
        raise framing_error("bad Content-Length")
    return int(v)


def body_framing(status: int, headers: Headers) -> tuple[str, int]:
    """How the body of a response to a POST/GET is delimited (RFC 9112 6.3):
    ("none", 0), ("length", n), ("chunked", 0) or ("close", 0)."""
    if 100 <= status < 200 or status in (204, 304):
        return "none", 0
    te = headers.get("Transfer-Encoding")
    if te is not None:
        codings = [c.strip(" \t").lower() for c in te.split(",")]
        # We send `Accept-Encoding: identity` and decode no transfer coding but chunked,
        # which must come last (and only once).
        if codings != ["chunked"]:
            raise framing_error(f"unsupported Transfer-Encoding {te[:40]!r}")
        return "chunked", 0  # overrides any Content-Length; the caller does not reuse
    cl = headers.get("Content-Length")
    if cl is not None:
        return "length", content_length(cl)
    return "close", 0


_HEX_DIGITS = b"0123456789abcdefABCDEF"
_SIZE, _DATA, _CRLF, _TRAILER = range(4)


class Dechunker:
    """Incremental decoder of HTTP/1.1 chunked transfer encoding."""

    __slots__ = ("_buf", "_left", "_state", "_trailer", "_split", "done", "extra")

    def __init__(self):
        self._buf = b""
        self._left = 0  # data bytes still due in the current chunk
        self._state = _SIZE  # size -> data -> crlf -> size ... -> trailer
        self._trailer = 0  # trailer bytes seen
        # Whether _whole_chunks reads the chunks that follow a whole one: None until the
        # first whole chunk, then whether its data was free of CRLFs.
        self._split: bool | None = None
        self.done = False
        self.extra = False

    def feed(self, data: bytes) -> bytes:
        if self.done:
            if data:
                self.extra = True
            return b""
        buf = self._buf + data if self._buf else data
        pos, end, out = 0, len(buf), []
        state, left = self._state, self._left
        while pos < end:
            if state == _SIZE:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    if end - pos > _MAX_CHUNK_LINE:
                        raise framing_error("chunk header too long")
                    break
                line = buf[pos:eol]
                # The usual size line is bare hex digits: no regex for it.
                if 0 < len(line) <= 16 and not line.strip(_HEX_DIGITS):
                    size = int(line, 16)
                else:
                    m = _CHUNK_SIZE.fullmatch(line) if len(line) <= _MAX_CHUNK_LINE else None
                    if m is None:
                        raise framing_error("bad chunk size")
                    size = int(m.group(1), 16)
                pos = eol + 2
                if size:
                    # A whole chunk and its CRLF already here: take it in one step, and
                    # read the next size line (the usual case: no state change at all).
                    stop = pos + size
                    if buf[stop:stop + 2] == b"\r\n":
                        out.append(buf[pos:stop])
                        if self._split is None:
                            self._split = buf.find(b"\r\n", pos, stop) < 0
                        pos = stop + 2
                        if pos < end and self._split:  # more after it: in one split
                            pos += self._whole_chunks(buf[pos:], out)
                        continue
                    left, state = size, _DATA
                else:
                    state = _TRAILER
            elif state == _DATA:
                stop = min(end, pos + left)
                out.append(buf[pos:stop])
                left -= stop - pos
                pos = stop
                if not left:
                    state = _CRLF
            elif state == _CRLF:
                if end - pos < 2:
                    if buf[pos:pos + 1] not in (b"", b"\r"):
                        raise framing_error("bad chunk framing")
                    break
                if buf[pos:pos + 2] != b"\r\n":
                    raise framing_error("bad chunk framing")
                pos += 2
                state = _SIZE
            else:  # trailer
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    if end - pos > _MAX_TRAILER - self._trailer:
                        raise framing_error("chunked trailer too long")
                    break
                line, pos = buf[pos:eol], eol + 2
                self._trailer += len(line) + 2
                if self._trailer > _MAX_TRAILER:
                    raise framing_error("chunked trailer too long")
                if not line:
                    self.done, self.extra = True, pos < end
                    pos = end
        self._state, self._left = state, left
        self._buf = buf[pos:] if pos < end else b""
        return out[0] if len(out) == 1 else b"".join(out)

    def _whole_chunks(self, buf: bytes, out: list) -> int:
        """Take the whole chunks `buf` starts with (a bare hex size line, data without a
        CRLF in it, CRLF: a fast vendor's events, many to a read) in one split; how many
        bytes they were. What is not such a chunk is left to `feed`'s reading, which would
        have read these the same way. A chunk of data holding a CRLF (or a size line with
        extensions) turns this off for the rest of the body: such a vendor does not pay
        for splits that find nothing."""
        parts = buf.split(b"\r\n")
        pos = 0
        for i in range(0, len(parts) - 2, 2):  # a size line and data, each followed by CRLF
            line, data = parts[i], parts[i + 1]
            if not 0 < len(line) <= 16 or line.strip(_HEX_DIGITS) \
                    or int(line, 16) != len(data):
                self._split = False
                break
            if not data:  # the last chunk: its trailer is feed's
                break
            out.append(data)
            pos += len(line) + len(data) + 4
        return pos
