"""A minimal async Redis client (RESP2) over Tornado's IOStream.

One multiplexed connection per store: commands from every request are written as they
come and replies are matched in order (Redis answers each connection strictly in order),
so concurrent requests pipeline into one socket with no pool to size. Scripts run by
EVALSHA with an EVAL fallback. A lost connection fails the commands waiting on it and the
next command reconnects; a command that times out closes the connection, because a
server that stopped answering one command will not answer the next one in time either.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import time
from collections import deque
from urllib.parse import unquote, urlsplit

from tornado.iostream import StreamClosedError
from tornado.tcpclient import TCPClient

from freeapi.store import StoreError

_RETRY_GAP = 0.5  # seconds a failed connect is remembered: requests fail fast meanwhile


class ReplyError(StoreError):
    """An error reply from Redis (`-ERR ...`)."""


class _Incomplete(Exception):
    pass


def encode(args) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        elif isinstance(a, (int, float)):
            a = repr(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def parse(buf, pos: int):
    """One reply from `buf` at `pos`: (value, next pos); raises _Incomplete. Bulk strings
    stay bytes; error replies are returned as ReplyError values (EXEC nests them)."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise _Incomplete
    kind, line, pos = buf[pos:pos + 1], bytes(buf[pos + 1:end]), end + 2
    if kind == b"+":
        return line.decode(), pos
    if kind == b"-":
        return ReplyError(line.decode(errors="replace")), pos
    if kind == b":":
        return int(line), pos
    if kind == b"$":
        n = int(line)
        if n < 0:
            return None, pos
        if len(buf) < pos + n + 2:
            raise _Incomplete
        return bytes(buf[pos:pos + n]), pos + n + 2
    if kind == b"*":
        n = int(line)
        if n < 0:
            return None, pos
        items = []
        for _ in range(n):
            item, pos = parse(buf, pos)
            items.append(item)
        return items, pos
    raise StoreError(f"redis: unexpected reply type {kind!r}")


class Script:
    def __init__(self, source: str):
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


class _Conn:
    def __init__(self, stream):
        self.stream = stream
        self.waiting: deque[asyncio.Future] = deque()
        self.reader: asyncio.Task | None = None


class RespClient:
    def __init__(self, url: str, timeout: float = 5.0):
        u = urlsplit(url)
        if u.scheme not in ("redis", "rediss"):
            raise ValueError("expected redis://[user:password@]host[:port][/db] or rediss://")
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 6379
        self.username = unquote(u.username) if u.username else None
        self.password = unquote(u.password) if u.password else None
        db = u.path.strip("/")
        if db and not db.isdigit():
            raise ValueError("the database in redis://host:port/DB must be a number")
        self.db = int(db or 0)
        self.tls = u.scheme == "rediss"
        self.timeout = timeout
        self._conn: _Conn | None = None
        self._connecting: asyncio.Future | None = None
        self._failed: tuple[float, StoreError] | None = None

    def describe(self) -> str:
        # Never the password: this goes to logs.
        return f"{'rediss' if self.tls else 'redis'}://{self.host}:{self.port}/{self.db}"

    # -- connecting ---------------------------------------------------------------------

    async def _ready(self) -> _Conn:
        conn = self._conn
        if conn is not None and not conn.stream.closed():
            return conn
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.ensure_future(self._connect())
        return await asyncio.shield(self._connecting)

    async def _connect(self) -> _Conn:
        if self._failed and time.monotonic() - self._failed[0] < _RETRY_GAP:
            raise self._failed[1]
        try:
            kw = {}
            if self.tls:
                kw = {"ssl_options": ssl.create_default_context(), "server_hostname": self.host}
            stream = await asyncio.wait_for(
                TCPClient().connect(self.host, self.port, **kw), self.timeout)
        except (OSError, StreamClosedError, asyncio.TimeoutError, ssl.SSLError) as e:
            err = StoreError(f"cannot reach {self.describe()}: {_reason(e)}")
            self._failed = (time.monotonic(), err)
            raise err from None
        stream.set_nodelay(True)
        conn = _Conn(stream)
        conn.reader = asyncio.ensure_future(self._read(conn))
        hello = []
        if self.password is not None:
            hello.append(("AUTH", self.username, self.password) if self.username
                         else ("AUTH", self.password))
        if self.db:
            hello.append(("SELECT", self.db))
        try:
            for reply in await asyncio.wait_for(self._send(conn, hello), self.timeout):
                if isinstance(reply, ReplyError):
                    raise StoreError(f"{self.describe()}: {reply}")
        except (StoreError, asyncio.TimeoutError) as e:
            stream.close()
            err = e if isinstance(e, StoreError) else StoreError(
                f"{self.describe()} did not answer the handshake")
            self._failed = (time.monotonic(), err)
            raise err from None
        self._failed = None
        self._conn = conn
        return conn

    async def _read(self, conn: _Conn):
        buf = bytearray()
        try:
            while True:
                buf += await conn.stream.read_bytes(1 << 16, partial=True)
                pos = 0
                while pos < len(buf):
                    try:
                        reply, pos2 = parse(buf, pos)
                    except _Incomplete:
                        break
                    pos = pos2
                    fut = conn.waiting.popleft() if conn.waiting else None
                    if fut is not None and not fut.done():
                        fut.set_result(reply)
                del buf[:pos]
        except (StreamClosedError, StoreError, ValueError, IndexError):
            pass
        finally:
            self._drop(conn, StoreError(f"lost the connection to {self.describe()}"))

    def _drop(self, conn: _Conn, exc: StoreError):
        if self._conn is conn:
            self._conn = None
        conn.stream.close()
        while conn.waiting:
            fut = conn.waiting.popleft()
            if not fut.done():
                fut.set_exception(exc)

    async def _send(self, conn: _Conn, commands) -> list:
        if not commands:
            return []
        loop = asyncio.get_running_loop()
        futs = [loop.create_future() for _ in commands]
        try:
            written = conn.stream.write(b"".join(encode([a for a in c if a is not None])
                                                 for c in commands))
        except StreamClosedError:
            raise StoreError(f"lost the connection to {self.describe()}") from None
        written.add_done_callback(lambda f: f.cancelled() or f.exception())
        conn.waiting.extend(futs)
        return [await f for f in futs]

    # -- commands -----------------------------------------------------------------------

    async def pipeline(self, commands) -> list:
        """Several commands in one write; their replies in order (errors as values)."""
        conn = await self._ready()
        try:
            return await asyncio.wait_for(self._send(conn, commands), self.timeout)
        except asyncio.TimeoutError:
            self._drop(conn, StoreError(f"{self.describe()} did not answer in time"))
            raise StoreError(f"{self.describe()} did not answer within "
                             f"{self.timeout:g}s") from None

    async def execute(self, *args):
        reply = (await self.pipeline([args]))[0]
        if isinstance(reply, ReplyError):
            raise reply
        return reply

    async def run(self, script: Script, keys: list, args: list):
        try:
            return await self.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except ReplyError as e:
            if not str(e).startswith("NOSCRIPT"):
                raise
        # First use on this server (or after SCRIPT FLUSH): EVAL also caches it.
        return await self.execute("EVAL", script.source, len(keys), *keys, *args)

    def close(self):
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.stream.close()
            if conn.reader is not None:
                conn.reader.cancel()


def _reason(e: Exception) -> str:
    if isinstance(e, asyncio.TimeoutError):
        return "timed out"
    return getattr(e, "strerror", None) or str(e) or type(e).__name__
