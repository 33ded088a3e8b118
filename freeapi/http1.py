"""HTTP/1.1 wire pieces the upstream client needs: the response head and chunked bodies.

Pure and incremental, so they can be tested byte by byte.
"""

from __future__ import annotations

from freeapi.errors import UpstreamError

_MAX_HEADER = 64 * 1024


class Headers(dict):
    """Response headers by lower-cased name; `get`, `in` and `[]` ignore case."""

    def get(self, name, default=None):
        return dict.get(self, name.lower(), default)

    def __getitem__(self, name):
        return dict.__getitem__(self, name.lower())

    def __contains__(self, name):
        return dict.__contains__(self, name.lower())


def parse_head(raw: bytes) -> tuple[str, int, Headers]:
    """The status line and headers; only what the relay needs, faster than Tornado's
    general parser (this runs once per vendor answer)."""
    text = raw.decode("latin-1").lstrip("\r\n")
    lines = text.replace("\r\n", "\n").split("\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise UpstreamError("protocol", "malformed response head")
    headers = Headers()
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise UpstreamError("protocol", "malformed response header")
        name, value = name.strip().lower(), value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return version, int(code), headers


class Dechunker:
    """Incremental decoder of HTTP/1.1 chunked transfer encoding."""

    __slots__ = ("_buf", "_left", "_state", "done", "extra")

    def __init__(self):
        self._buf = b""
        self._left = 0  # data bytes still due in the current chunk
        self._state = "size"  # size -> data -> crlf -> size ... -> trailer
        self.done = False
        self.extra = False

    def feed(self, data: bytes) -> bytes:
        buf = self._buf + data if self._buf else data
        pos, end, out = 0, len(buf), []
        while pos < end:
            state = self._state
            if state == "data":
                stop = min(end, pos + self._left)
                out.append(buf[pos:stop])
                self._left -= stop - pos
                pos = stop
                if not self._left:
                    self._state = "crlf"
                continue
            if state == "crlf":
                if end - pos < 2:
                    break
                if buf[pos:pos + 2] != b"\r\n":
                    raise UpstreamError("protocol", "bad chunk framing")
                pos += 2
                self._state = "size"
                continue
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                if end - pos > _MAX_HEADER:
                    raise UpstreamError("protocol", "chunk header too long")
                break
            line, pos = buf[pos:eol], eol + 2
            if state == "trailer":
                if not line:
                    self.done, self.extra = True, pos < end
                    pos = end
                continue
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise UpstreamError("protocol", "bad chunk size") from None
            if size:
                self._left, self._state = size, "data"
            else:
                self._state = "trailer"
        self._buf = buf[pos:] if pos < end else b""
        return out[0] if len(out) == 1 else b"".join(out)
