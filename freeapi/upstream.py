"""A small HTTP/1.1 client with a keep-alive connection pool, built on Tornado's IOStream.

Tornado's own simple client opens a connection per request; vendors sit behind TLS, so a
new connection per chat request would add a handshake to every answer. This client keeps
idle connections per host and reads bodies pull-style, so the relay controls pacing,
timeouts and cancellation.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import ssl
import time
from urllib.parse import urlsplit

from tornado import gen
from tornado.httputil import HTTPHeaders, HTTPInputError, parse_response_start_line
from tornado.iostream import IOStream, StreamClosedError
from tornado.tcpclient import TCPClient

from freeapi.errors import APIError

log = logging.getLogger("freeapi.upstream")

_MAX_HEADER = 64 * 1024
_READ = 64 * 1024


class UpstreamError(Exception):
    """The vendor could not be reached or did not answer in time."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind  # "connect", "timeout", "closed", "protocol", "aborted"


def upstream_failure(provider: str, e: UpstreamError) -> APIError:
    """What the client is told: 504 when the vendor was too slow, else 502."""
    if e.kind == "timeout":
        return APIError(504, f"{provider}: {e}", type="timeout_error", code="upstream_timeout")
    return APIError(502, f"{provider}: {e}", code="upstream_unreachable")


async def _within(future, seconds: float, what: str):
    try:
        return await gen.with_timeout(datetime.timedelta(seconds=seconds), future,
                                      quiet_exceptions=(StreamClosedError,))
    except asyncio.TimeoutError:
        raise UpstreamError("timeout", f"no {what} within {seconds:g}s") from None


class _Dechunker:
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
        out = []
        while buf:
            state = self._state
            if state == "data":
                piece = buf[: self._left]
                out.append(piece)
                self._left -= len(piece)
                buf = buf[len(piece):]
                if not self._left:
                    self._state = "crlf"
                continue
            if state == "crlf":
                if len(buf) < 2:
                    break
                if buf[:2] != b"\r\n":
                    raise UpstreamError("protocol", "bad chunk framing")
                buf = buf[2:]
                self._state = "size"
                continue
            end = buf.find(b"\r\n")
            if end < 0:
                if len(buf) > _MAX_HEADER:
                    raise UpstreamError("protocol", "chunk header too long")
                break
            line, buf = buf[:end], buf[end + 2:]
            if state == "trailer":
                if not line:
                    self.done, self.extra = True, bool(buf)
                    buf = b""
                continue
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise UpstreamError("protocol", "bad chunk size") from None
            if size:
                self._left, self._state = size, "data"
            else:
                self._state = "trailer"
        self._buf = buf
        return b"".join(out)


class Response:
    """Status and headers are read; the body is read with `chunks()` or `read()`."""

    def __init__(self, call: "Call", status: int, headers: HTTPHeaders, keep_alive: bool):
        self._call = call
        self.status = status
        self.headers = headers
        self._keep_alive = keep_alive
        #: monotonic time after which reads fail with a timeout; the reader may move it
        #: (a first-event deadline, then the request's total)
        self.deadline: float | None = None

    async def chunks(self, idle_timeout: float):
        """Yield body bytes as they arrive (chunked encoding removed)."""
        stream = self._call.stream
        headers = self.headers

        def read(fut, what="data"):
            wait = idle_timeout
            if self.deadline is not None:
                wait = min(wait, self.deadline - time.monotonic())
            return _within(fut, max(wait, 0.001), what)

        try:
            if headers.get("Transfer-Encoding", "").lower() == "chunked":
                # Decode whatever has arrived in one pass: a burst of small SSE chunks then
                # costs one read and one relay step, not two awaits per chunk.
                decoder = _Dechunker()
                while not decoder.done:
                    data = decoder.feed(await read(stream.read_bytes(_READ, partial=True)))
                    if data:
                        yield data
                if decoder.extra:
                    self._keep_alive = False  # bytes past the end: not a clean connection
            elif "Content-Length" in headers:
                try:
                    remaining = int(headers["Content-Length"])
                except ValueError:
                    raise UpstreamError("protocol", "bad Content-Length") from None
                while remaining > 0:
                    data = await read(stream.read_bytes(min(remaining, _READ), partial=True))
                    remaining -= len(data)
                    yield data
            else:
                self._keep_alive = False
                while True:
                    try:
                        data = await read(stream.read_bytes(_READ, partial=True))
                    except StreamClosedError:
                        break
                    yield data
        except StreamClosedError:
            self._call.close()
            if self._call.aborted:
                raise UpstreamError("aborted", "request cancelled") from None
            raise UpstreamError("closed", "connection closed mid-response") from None
        except BaseException:
            self._call.close()
            raise
        self._call.release(self._keep_alive)

    async def read(self, idle_timeout: float, limit: int, deadline: float | None = None) -> bytes:
        self.deadline = deadline
        parts, size = [], 0
        async for data in self.chunks(idle_timeout):
            size += len(data)
            if size > limit:
                self._call.close()
                raise UpstreamError("protocol", f"response larger than {limit} bytes")
            parts.append(data)
        return b"".join(parts)

    def close(self):
        self._call.close()


class Call:
    """One request on one pooled connection. `abort()` cancels it at any point."""

    def __init__(self, pool: "Pool", key: tuple):
        self.pool = pool
        self.key = key
        self.stream: IOStream | None = None
        self.aborted = False
        self._done = False

    def abort(self):
        self.aborted = True
        self.close()

    def close(self):
        if not self._done:
            self._done = True
            if self.stream is not None:
                self.stream.close()

    def release(self, keep_alive: bool):
        if self._done:
            return
        self._done = True
        if keep_alive and not self.aborted:
            self.pool._put(self.key, self.stream)
        else:
            self.stream.close()


class Pool:
    """Keep-alive connections per (scheme, host, port)."""

    def __init__(self, max_idle_per_host: int = 64, idle_ttl: float = 50.0):
        self._idle: dict[tuple, list[tuple[IOStream, float]]] = {}
        self._tcp = TCPClient()
        self._ssl = ssl.create_default_context()
        self.max_idle_per_host = max_idle_per_host
        # Below the usual 60 s server-side idle timeout, so we rarely pick a dying socket.
        self.idle_ttl = idle_ttl
        self.opened = 0  # connections opened, for tests and stats

    def _get(self, key) -> IOStream | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            stream, since = idle.pop()
            if not stream.closed() and now - since < self.idle_ttl:
                return stream
            stream.close()
        return None

    def _put(self, key, stream: IOStream):
        idle = self._idle.setdefault(key, [])
        if stream.closed() or len(idle) >= self.max_idle_per_host:
            stream.close()
            return
        idle.append((stream, time.monotonic()))

    def close(self):
        for idle in self._idle.values():
            for stream, _ in idle:
                stream.close()
        self._idle.clear()

    def start(self, url: str) -> Call:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return Call(self, (parts.scheme, parts.hostname, port))

    async def send(self, call: Call, method: str, url: str, headers: dict, body: bytes | None,
                   connect_timeout: float, first_byte_timeout: float) -> Response:
        """Send the request on `call` and wait for the response head."""
        parts = urlsplit(url)
        scheme, host, port = call.key
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        default_port = 443 if scheme == "https" else 80
        lines = [f"{method} {path} HTTP/1.1",
                 f"Host: {host}" + ("" if port == default_port else f":{port}"),
                 "Accept-Encoding: identity", "User-Agent: freeapi"]
        for name, value in headers.items():
            value = str(value)
            if "\r" in value or "\n" in value or "\0" in value:
                raise ValueError(f"header {name} contains a line break")
            lines.append(f"{name}: {value}")
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        data = head + body if body else head

        # A pooled connection may have been closed by the server while idle; if it fails
        # before any response byte, the request was not processed: retry once, fresh.
        for fresh in (False, True):
            stream = None if fresh else self._get(call.key)
            reused = stream is not None
            if stream is None:
                stream = await self._connect(call, scheme, host, port, connect_timeout)
            call.stream = stream
            if call.aborted:
                call.close()
                raise UpstreamError("aborted", "request cancelled")
            try:
                stream.write(data)
                return await self._read_head(call, stream, first_byte_timeout)
            except StreamClosedError:
                stream.close()
                if call.aborted:
                    raise UpstreamError("aborted", "request cancelled") from None
                if not reused:
                    raise UpstreamError("closed", "connection closed before a response") \
                        from None
            except BaseException:
                call.close()
                raise
        raise AssertionError("unreachable")

    async def _connect(self, call, scheme, host, port, timeout) -> IOStream:
        try:
            stream = await self._tcp.connect(
                host, port, ssl_options=self._ssl if scheme == "https" else None, timeout=datetime.timedelta(seconds=timeout))
        except asyncio.TimeoutError:
            raise UpstreamError("timeout", f"could not connect within {timeout:g}s") from None
        except (OSError, StreamClosedError) as e:
            # IOStream wraps the OS error ("Connection refused") in a StreamClosedError.
            real = getattr(e, "real_error", None) or e
            reason = getattr(real, "strerror", None) or type(real).__name__
            raise UpstreamError("connect", f"cannot connect to {host}:{port} ({reason})") \
                from None
        stream.set_nodelay(True)
        self.opened += 1
        return stream

    async def _read_head(self, call, stream, timeout) -> Response:
        while True:
            raw = await _within(
                stream.read_until_regex(b"\r?\n\r?\n", max_bytes=_MAX_HEADER), timeout,
                "response")
            try:
                text = raw.decode("latin-1").lstrip("\r\n")
                eol = text.find("\n")
                start = parse_response_start_line(text[:eol].rstrip("\r"))
                headers = HTTPHeaders.parse(text[eol:])
            except (HTTPInputError, ValueError):
                raise UpstreamError("protocol", "malformed response head") from None
            if 100 <= start.code < 200:
                continue
            keep_alive = (start.version == "HTTP/1.1"
                          and headers.get("Connection", "").lower() != "close")
            return Response(call, start.code, headers, keep_alive)
