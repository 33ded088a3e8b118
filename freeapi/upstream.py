"""A small HTTP/1.1 client with a keep-alive connection pool, on asyncio transports.

Tornado's own simple client opens a connection per request; vendors sit behind TLS, so a
new connection per chat request would add a handshake to every answer. This client keeps
idle connections per host and reads bodies pull-style, so the relay controls pacing,
timeouts and cancellation. Connections are freeapi.transport.Conn protocols (a read is a
buffer swap, no Future or epoll change per read); an idle one that the vendor closes or
sends bytes on is dropped as it happens, and `Pool.sweep()` (run by the gateway's
housekeeping, freeapi/app.py) closes those idle past `idle_ttl`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from urllib.parse import urlsplit

from freeapi import proxy as proxies
from freeapi.errors import UpstreamError
from freeapi.http1 import Dechunker, Headers, body_framing, parse_head
from freeapi.transport import Conn, failure_reason, open_conn, read_head

log = logging.getLogger("freeapi.upstream")

_MAX_HEADER = 64 * 1024


class _Closed(Exception):
    """The connection ended before any byte of a response."""


def _head_too_large():
    return UpstreamError("protocol", "response head too large")


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

    async def _more(self, idle_timeout: float) -> bytes:
        """The next bytes of the body; b"" when the vendor closed the connection."""
        call = self._call
        conn = call.conn
        if not conn.ready:
            wait = idle_timeout
            if self.deadline is not None:
                wait = min(wait, self.deadline - time.monotonic())
            call.arm(wait, "data")
            try:
                await conn.wait()
            finally:
                call.disarm()
        if call._done:  # closed by our timeout or an abort, not by the vendor
            raise call.failure("connection closed mid-response")
        return conn.take()

    async def chunks(self, idle_timeout: float):
        """Yield body bytes as they arrive (chunked encoding removed)."""
        call = self._call
        headers = self.headers
        data = b""
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
                while True:
                    if data:
                        out = decoder.feed(data)
                        if out:
                            yield out
                        if decoder.done:
                            break
                    data = await self._more(idle_timeout)
                    if not data:
                        raise call.failure("connection closed mid-response")
                if decoder.extra:
                    self._keep_alive = False  # bytes past the end: not a clean connection
            elif framing == "length":
                while remaining > 0:
                    if not data:
                        data = await self._more(idle_timeout)
                        if not data:
                            raise call.failure("connection closed mid-response")
                    if len(data) > remaining:  # bytes past the end: not a clean connection
                        self._keep_alive = False
                        data = data[:remaining]
                    remaining -= len(data)
                    yield data
                    data = b""
            elif framing == "close":
                self._keep_alive = False
                while True:
                    if data:
                        yield data
                    # Only the vendor's own EOF ends such a body: a close by our timeout or
                    # abort cut it, and must not pass for its end (_more raises then).
                    data = await self._more(idle_timeout)
                    if not data:
                        break
            elif call.conn.buffered:  # a body after a head that says there is none
                self._keep_alive = False
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
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def close(self):
        self._call.close()


class Call:
    """One request on one pooled connection. `abort()` cancels it at any point."""

    __slots__ = ("pool", "key", "path", "conn", "aborted", "timed_out", "_done", "_expires",
                 "_timer", "_what")

    def __init__(self, pool: "Pool", key: tuple, path: str):
        self.pool = pool
        self.key = key
        self.path = path
        self.conn: Conn | None = None
        self.aborted = False
        self.timed_out: str | None = None
        self._done = False
        # One watchdog timer per call, re-armed lazily: a read only records its deadline,
        # instead of scheduling and cancelling a timeout of its own.
        self._expires = float("inf")
        self._timer = None
        self._what = ("", 0.0)

    def arm(self, seconds: float, what: str):
        loop = asyncio.get_running_loop()
        self._expires = expires = loop.time() + max(seconds, 0.001)
        self._what = (what, seconds)  # the message is spelled out only on a timeout
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
        what, seconds = self._what
        self.timed_out = f"no {what} within {seconds:g}s"
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
            if self.conn is not None:
                self.conn.close()

    def release(self, keep_alive: bool):
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._done:
            return
        self._done = True
        if keep_alive and not self.aborted and not self.timed_out:
            self.pool._put(self.key, self.conn)
        else:
            self.conn.close()


class Pool:
    """Keep-alive connections per (scheme, host, port, proxy)."""

    def __init__(self, max_idle_per_host: int = 64, idle_ttl: float = 50.0):
        self._idle: dict[tuple, list[Conn]] = {}
        self._ssl = ssl.create_default_context()
        self.max_idle_per_host = max_idle_per_host
        # Below the usual 60 s server-side idle timeout, so we rarely pick a dying socket.
        self.idle_ttl = idle_ttl
        self.opened = 0  # connections opened, for tests and stats
        self._urls: dict[str, tuple[tuple, str]] = {}  # url -> (host key, path); few urls
        # (scheme, host, port) -> freeapi.proxy.Proxy or None (direct); set by the Gateway.
        self.proxy_for = None

    def _get(self, key) -> Conn | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            # A connection the vendor closed, or sent stray bytes on, was closed as it
            # happened (freeapi.transport.Conn): what is open here is clean.
            if not conn.closed and now - conn.idle_since < self.idle_ttl:
                conn.idle_since = None
                return conn
            conn.close()
        return None

    def _put(self, key, conn: Conn):
        if conn.closed or conn.eof or conn.buffered:
            conn.close()  # bytes past the answer, or the vendor is closing it
            return
        idle = self._idle.get(key)
        if idle is None:
            idle = self._idle[key] = []
        if len(idle) >= self.max_idle_per_host:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        idle.append(conn)

    def sweep(self) -> int:
        """Close idle connections past `idle_ttl` and forget closed ones (the gateway's
        housekeeping runs this every few seconds); how many went."""
        now, gone = time.monotonic(), 0
        for key, idle in list(self._idle.items()):
            keep = [c for c in idle if not c.closed and now - c.idle_since < self.idle_ttl]
            for c in idle:
                if c.closed or now - c.idle_since >= self.idle_ttl:
                    c.close()
                    gone += 1
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]
        return gone

    def idle_count(self) -> int:
        """Idle connections ready for reuse (closed ones wait for the sweep to go)."""
        return sum(not c.closed for idle in self._idle.values() for c in idle)

    def close(self):
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
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
            conn = None if fresh else self._get(call.key)
            reused = conn is not None
            if conn is None:
                conn = await self._connect(call, scheme, host, port, connect_timeout)
            call.conn = conn
            if call.aborted:
                call.close()
                raise UpstreamError("aborted", "request cancelled")
            try:
                conn.write(data)
                return await self._read_head(call, conn, first_byte_timeout)
            except _Closed:
                conn.close()
                if call.aborted or call.timed_out or not reused:
                    raise call.failure("connection closed before a response") from None
            except BaseException:
                call.close()
                raise
        raise AssertionError("unreachable")

    async def _connect(self, call, scheme, host, port, timeout) -> Conn:
        if call.key[3] is not None:
            conn = await proxies.connect(call.key[3], scheme, host, port, timeout, self._ssl)
            self.opened += 1
            return conn
        tls = scheme == "https"
        try:
            conn = await asyncio.wait_for(open_conn(
                host, port, self._ssl if tls else None, host if tls else None), timeout)
        except asyncio.TimeoutError:
            raise UpstreamError("timeout", f"could not connect within {timeout:g}s") from None
        except OSError as e:
            reason = failure_reason(e)
            raise UpstreamError("connect", f"cannot connect to {host}:{port} ({reason})") \
                from None
        self.opened += 1
        return conn

    async def _read_head(self, call, conn: Conn, timeout) -> Response:
        call.arm(timeout, "response")
        try:
            while True:
                raw = await read_head(conn, _MAX_HEADER, _head_too_large)
                if call._done:  # our timeout or an abort closed it
                    raise _Closed()
                if not raw:
                    raise _Closed()
                version, code, headers = parse_head(raw)
                if not 100 <= code < 200:
                    break  # (an interim 1xx answer: the real head follows)
        finally:
            call.disarm()
        connection = headers.get("Connection", "").lower()
        # (the usual value, "keep-alive" or none, is not split into its tokens)
        keep_alive = version == "HTTP/1.1" and ("close" not in connection or "close" not in {
            t.strip(" \t") for t in connection.split(",")})
        return Response(call, code, headers, keep_alive)
