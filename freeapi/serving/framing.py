"""How an answer is framed, decided as Tornado's HTTP1Connection decides it: pure functions
of the request and the answer's head, so the connection (connection.py) only keeps state."""

from __future__ import annotations

from tornado import httputil


def can_keep_alive(start_line: httputil.RequestStartLine,
                   headers: httputil.HTTPHeaders) -> bool:
    """Whether the connection may serve another request after this one."""
    connection = (headers.get("Connection") or "").lower()
    if start_line.version == "HTTP/1.1":
        return connection != "close"
    if "Content-Length" in headers or "Transfer-Encoding" in headers \
            or start_line.method in ("HEAD", "GET"):
        return connection == "keep-alive"
    return False


def response_head(request: httputil.RequestStartLine, request_headers: httputil.HTTPHeaders,
                  start_line: httputil.ResponseStartLine, headers: httputil.HTTPHeaders,
                  disconnect: bool) -> tuple[bytes, bool, int | None]:
    """(the head's bytes, whether the body is chunked, how many body bytes are due or None)
    for an answer to `request`; `disconnect`: the connection closes after it. Sets the
    Connection and Transfer-Encoding headers the framing needs."""
    code = start_line.code
    chunking = (request.version == "HTTP/1.1" and request.method != "HEAD"
                and code not in (204, 304) and not 100 <= code < 200
                and "Content-Length" not in headers and "Transfer-Encoding" not in headers)
    if request.version == "HTTP/1.1" and disconnect:
        headers["Connection"] = "close"
    if request.version == "HTTP/1.0" and \
            request_headers.get("Connection", "").lower() == "keep-alive":
        headers["Connection"] = "Keep-Alive"
    if chunking:
        headers["Transfer-Encoding"] = "chunked"
    if request.method == "HEAD" or code == 304:
        remaining: int | None = 0
    elif "Content-Length" in headers:
        remaining = int(headers["Content-Length"])
    else:
        remaining = None
    lines = [f"HTTP/1.1 {code} {start_line.reason}"]
    lines.extend(f"{name}: {value}" for name, value in headers.get_all())
    for line in lines:
        if "\r" in line or "\n" in line:  # one header must not become two
            raise ValueError(f"Illegal characters (CR or LF) in header: {line!r}")
    return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n", chunking, remaining
