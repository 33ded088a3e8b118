"""A client connection's reading: httptools (llhttp) turns the bytes that arrive into each
request's parts -- its head, its body in pieces, its end -- which the connection
(connection.py) runs in order, one request at a time. The limits Tornado's HTTP1Connection
puts on a request are kept here: the size of its head, and of its body as it comes."""

from __future__ import annotations

from typing import Callable

import httptools
from tornado import httputil

from freeapi.serving.framing import can_keep_alive

MAX_HEADER_SIZE = 65536  # bytes of a request's start line and headers (Tornado's default)
# Consecutive body chunks are joined up to this size before they are passed on (Tornado's
# chunk_size): a body sent in one-byte chunks is not kept as one object a byte.
BODY_PIECE = 65536


class Malformed(Exception):
    """A request the gateway will not read further (answered 400, connection closed)."""


class Head:
    """One request's start line and headers as parsed, waiting for its turn."""
    __slots__ = ("start_line", "headers", "keep_alive", "expect_continue")

    def __init__(self, start_line, headers, keep_alive, expect_continue):
        self.start_line, self.headers = start_line, headers
        self.keep_alive, self.expect_continue = keep_alive, expect_continue


class RequestReader:
    """Feeds llhttp and passes each request on as `head(Head)`, `body(bytes)` (one or
    more times) and `end(None)`."""

    def __init__(self, max_body_size: int, head: Callable, body: Callable, end: Callable):
        self.parser = httptools.HttpRequestParser(self)
        self.max_body_size = max_body_size
        self.head, self.body, self.end = head, body, end
        self._url: list[bytes] = []
        self._headers: httputil.HTTPHeaders | None = None
        self._head_bytes = self._body_bytes = 0
        self._pending: list[bytes] = []  # body chunks not yet passed on
        self._pending_size = 0

    def feed(self, data: bytes) -> None:
        """Parse `data`; raises httptools.HttpParserError for a malformed request (its
        __cause__: a Malformed, or an exception of ours within a callback)."""
        while True:
            try:
                self.parser.feed_data(data)
                break
            except httptools.HttpParserUpgrade as e:
                # A request offering an upgrade (`Upgrade: h2c` from curl --http2) is
                # answered over HTTP/1.1 like any other, as Tornado does; llhttp stops
                # after it, so what follows it is parsed on.
                data = data[int(e.args[0]):]
                if not data:
                    break
        self._flush_body()  # what came of the body is passed on before waiting for more

    def drop(self) -> None:
        """The connection is closed: the parser (whose callbacks point back at the reader)
        and the connection's callbacks are let go, so both are freed without the garbage
        collector."""
        self.parser = self.head = self.body = self.end = None

    # -- httptools' callbacks (within feed_data) --------------------------------------------

    def on_message_begin(self):
        self._url, self._headers = [], httputil.HTTPHeaders()
        self._head_bytes = self._body_bytes = 0

    def on_url(self, url: bytes):
        self._url.append(url)
        self._count_head(len(url))

    def on_header(self, name: bytes, value: bytes):
        self._count_head(len(name) + len(value) + 4)
        # Stripped of whitespace around the value, as Tornado's header parser does. llhttp
        # has already refused a name that is not a token and a value with a control
        # character, which HTTPHeaders.add would check again (two regular expressions a
        # header); only a repeated name needs it, to keep both values.
        name_s, value_s = name.decode("latin-1"), value.strip(b" \t").decode("latin-1")
        headers = self._headers
        if name_s in headers:
            headers.add(name_s, value_s)
        else:
            headers[name_s] = value_s

    def _count_head(self, n: int):
        self._head_bytes += n
        if self._head_bytes > MAX_HEADER_SIZE:
            raise Malformed("headers too long")

    def on_headers_complete(self):
        p, headers = self.parser, self._headers
        version = p.get_http_version()
        if not version.startswith("1."):  # llhttp takes 0.9 and 2.0 too; Tornado does not
            raise Malformed(f"Unexpected HTTP version HTTP/{version}")
        if p.should_upgrade() and (headers.get("Content-Length", "0") != "0"
                                   or "Transfer-Encoding" in headers):
            # llhttp reads no body after an upgrade offer: the request would run without
            # it and the body be read as the next request. Refused instead (Tornado reads
            # the body and answers over HTTP/1.1; curl --http2 offers h2c without one).
            raise Malformed("a request offering an upgrade carries a body")
        start_line = httputil.RequestStartLine(
            p.get_method().decode("latin-1"), b"".join(self._url).decode("latin-1"),
            "HTTP/" + version)
        self.head(Head(start_line, headers, can_keep_alive(start_line, headers),
                       headers.get("Expect") == "100-continue"))

    def on_body(self, body: bytes):
        self._body_bytes += len(body)
        if self._body_bytes > self.max_body_size:
            raise Malformed("body too large")
        self._pending.append(body)
        self._pending_size += len(body)
        if self._pending_size >= BODY_PIECE:
            self._flush_body()

    def _flush_body(self):
        pending = self._pending
        if pending:
            data = pending[0] if len(pending) == 1 else b"".join(pending)
            self._pending, self._pending_size = [], 0
            self.body(data)

    def on_message_complete(self):
        self._flush_body()
        self.end(None)
