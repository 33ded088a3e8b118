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
import select
import ssl
import time
from urllib.parse import urlsplit

from tornado.iostream import IOStream, StreamClosedError, UnsatisfiableReadError
from tornado.tcpclient import TCPClient

from freeapi import proxy as proxies
from freeapi.errors import UpstreamError
from freeapi.http1 import Dechunker, Headers, body_framing, parse_head

log = logging.getLogger("freeapi.upstream")

_MAX_HEADER = 64 * 1024
_READ = 64 * 1024


def idle_clean(stream: IOStream) -> bool:
    """Whether a connection between two answers holds nothing to read. Bytes after the end
    of an answer (a vendor that framed it wrongly) would be read as the start of the next
    caller's answer; a readable socket is such bytes, or the vendor's close. Either way the
    connection is not reused."""
    # Bytes Tornado has already read past the body wait in its buffer (no public API).
    if stream.closed() or getattr(stream, "_read_buffer_size", 0):
        return False
    sock = stream.socket
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return False  # decrypted bytes waiting in the TLS layer
    try:
        # poll, not select: select refuses descriptors above 1023, common on a busy gateway.
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return not poller.poll(0)
    except (OSError, ValueError):
        return False


class Response:
    """Status and headers are read; the body is read with `chunks()` or `read()`."""

    def __init__(self, call: "Call", status: int, headers: Headers, keep_alive: bool):
        self._call = call
        self.status = status
        self.headers = headers
        self._keep_alive = keep_alive
        #: monotonic time after which reads fail with a timeout; the reader may move it
        #: (a first-event deadline, then the request's total)
        self.deadline: float | None = None

    async def chunks(self, idle_timeout: float):
        """Yield body bytes as they arrive (chunked encoding removed)."""
        call = self._call
        stream = call.stream
        headers = self.headers

        async def read(fut):
            wait = idle_timeout
            if self.deadline is not None:
                wait = min(wait, self.deadline - time.monotonic())
            call.arm(wait, "data")
            try:
                return await fut
            finally:
                call.disarm()

        try:
            framing, remaining = body_framing(self.status, headers)
            encoding = headers.get("Content-Encoding", "identity").strip().lower()
            if encoding not in ("identity", "") and framing != "none":
                # We sent `Accept-Encoding: identity`: compressed bytes relayed as text
                # would reach the client as garbage (or, in an event stream, as nothing).
                raise UpstreamError("protocol", f"the answer came with Content-Encoding "
                                                f"{encoding[:20]!r}, which was not asked for")
            if framing == "chunked":
                if "Content-Length" in headers:
                    self._keep_alive = False  # both framings: RFC 9112 6.3 says close after
                # Decode whatever has arrived in one pass: a burst of small SSE chunks then
                # costs one read and one relay step, not two awaits per chunk.
                decoder = Dechunker()
                while not decoder.done:
                    data = decoder.feed(await read(stream.read_bytes(_READ, partial=True)))
                    if data:
                        yield data
                if decoder.extra:
                    self._keep_alive = False  # bytes past the end: not a clean connection
            elif framing == "length":
                while remaining > 0:
                    data = await read(stream.read_bytes(min(remaining, _READ), partial=True))
                    remaining -= len(data)
                    yield data
            elif framing == "close":
                self._keep_alive = False
                while True:
                    try:
                        data = await read(stream.read_bytes(_READ, partial=True))
                    except StreamClosedError:
                        # Only the vendor's own EOF ends such a body: a close by our
                        # timeout or abort cut it, and must not pass for its end.
                        if call.timed_out or call.aborted:
                            raise
                        break
                    yield data
        except StreamClosedError:
            raise call.failure("connection closed mid-response") from None
        except BaseException:
            call.close()
            raise
        call.release(self._keep_alive)

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

    def __init__(self, pool: "Pool", key: tuple, path: str):
        self.pool = pool
        self.key = key
        self.path = path
        self.stream: IOStream | None = None
        self.aborted = False
        self.timed_out: str | None = None
        self._done = False
        # One watchdog timer per call, re-armed lazily: a read only records its deadline,
        # instead of scheduling and cancelling a timeout of its own.
        self._expires = float("inf")
        self._timer = None
        self._what = ""

    def arm(self, seconds: float, what: str):
        loop = asyncio.get_running_loop()
        self._expires = expires = loop.time() + max(seconds, 0.001)
        self._what = f"no {what} within {seconds:g}s"
        timer = self._timer
        if timer is None or timer.when() > expires:  # none yet, or set for a longer wait
            if timer is not None:
                timer.cancel()
            self._timer = loop.call_at(expires, self._watch)

    def disarm(self):
        self._expires = float("inf")

    def _watch(self):
        self._timer = None
        if self._done or self._expires == float("inf"):
            return
        loop = asyncio.get_running_loop()
        if loop.time() < self._expires:  # re-armed since: wait for the new deadline
            self._timer = loop.call_at(self._expires, self._watch)
            return
        self.timed_out = self._what
        self.close()  # the pending read fails; failure() says it was a timeout

    def failure(self, closed: str) -> UpstreamError:
        """The error for a read or write that found the connection closed."""
        self.close()
        if self.aborted:
            return UpstreamError("aborted", "request cancelled")
        if self.timed_out:
            return UpstreamError("timeout", self.timed_out)
        return UpstreamError("closed", closed)

    def abort(self):
        self.aborted = True
        self.close()

    def close(self):
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._done:
            self._done = True
            if self.stream is not None:
                self.stream.close()

    def release(self, keep_alive: bool):
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._done:
            return
        self._done = True
        if keep_alive and not self.aborted and not self.timed_out and idle_clean(self.stream):
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
        self._urls: dict[str, tuple[tuple, str]] = {}  # url -> (host key, path); few urls
        # (scheme, host, port) -> freeapi.proxy.Proxy or None (direct); set by the Gateway.
        self.proxy_for = None

    def _get(self, key) -> IOStream | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            stream, since = idle.pop()
            if now - since < self.idle_ttl and idle_clean(stream):
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
        split = self._urls.get(url)
        if split is None:
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            # The proxy is part of the pool key: connections through it are not direct ones.
            proxy = self.proxy_for and self.proxy_for(parts.scheme, parts.hostname, port)
            if proxy and parts.scheme == "http":  # a plain-http proxy takes absolute form
                path = f"http://{parts.netloc.rpartition('@')[2]}{path}"
            split = ((parts.scheme, parts.hostname, port, proxy or None), path)
            if len(self._urls) < 1024:  # provider URLs, not per-request ones
                self._urls[url] = split
        return Call(self, *split)

    async def send(self, call: Call, method: str, url: str, headers: dict, body: bytes | None,
                   connect_timeout: float, first_byte_timeout: float) -> Response:
        """Send the request on `call` (made by `start(url)`) and wait for the head."""
        scheme, host, port, proxy = call.key
        path = call.path
        default_port = 443 if scheme == "https" else 80
        lines = [f"{method} {path} HTTP/1.1",
                 f"Host: {host}" + ("" if port == default_port else f":{port}"),
                 "Accept-Encoding: identity", "User-Agent: freeapi"]
        if proxy is not None and scheme == "http" and proxy.authorization:
            lines.append(f"Proxy-Authorization: {proxy.authorization}")
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
                if call.aborted or call.timed_out or not reused:
                    raise call.failure("connection closed before a response") from None
            except BaseException:
                call.close()
                raise
        raise AssertionError("unreachable")

    async def _connect(self, call, scheme, host, port, timeout) -> IOStream:
        if call.key[3] is not None:
            stream = await proxies.connect(self._tcp, call.key[3], scheme, host, port,
                                           timeout, self._ssl)
            stream.set_nodelay(True)
            self.opened += 1
            return stream
        try:
            stream = await self._tcp.connect(
                host, port, ssl_options=self._ssl if scheme == "https" else None,
                timeout=datetime.timedelta(seconds=timeout))
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
        call.arm(timeout, "response")
        try:
            while True:
                try:
                    raw = await stream.read_until_regex(b"\r?\n\r?\n", max_bytes=_MAX_HEADER)
                except UnsatisfiableReadError:
                    raise UpstreamError("protocol", "response head too large") from None
                version, code, headers = parse_head(raw)
                if not 100 <= code < 200:
                    break
        finally:
            call.disarm()
        keep_alive = version == "HTTP/1.1" and "close" not in {
            t.strip(" \t") for t in headers.get("Connection", "").lower().split(",")}
        return Response(call, code, headers, keep_alive)
