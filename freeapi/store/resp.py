"""A minimal async Redis client (RESP2) over Tornado's IOStream.

One multiplexed connection per store: commands from every request are written as they
come and replies are matched in order (Redis answers each connection strictly in order),
so concurrent requests pipeline into one socket with no pool to size. Scripts run by
EVALSHA with an EVAL fallback. A lost connection fails the commands waiting on it and the
next command reconnects; a command that times out closes the connection, because a
server that stopped answering one command will not answer the next one in time either.

With a `redis+sentinel://` URL each (re)connect first asks the sentinels, in turn, where
the primary named in the URL is, then checks with ROLE that the server it reached is
that primary (the guidelines for Sentinel clients:
https://redis.io/docs/latest/develop/reference/sentinel-clients/). After a failover the
old primary closes its clients' connections (or answers writes with -READONLY, which
closes ours): the next command asks the sentinels again and reaches the new one.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import time
from collections import deque

from tornado.iostream import StreamClosedError
from tornado.tcpclient import TCPClient

from freeapi.store import StoreError
from freeapi.store.redis_url import parse_redis_url

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


class ReplyReader:
    """Replies from a byte stream that arrives in pieces. The elements of an array reply
    already parsed are kept (on a stack of the arrays still being filled) and their bytes
    dropped, so a multi-megabyte reply costs time in proportion to its size, however many
    pieces it arrives in (parsing each reply from its start as each piece came made it
    grow with the square of the size)."""

    __slots__ = ("buf", "stack")

    def __init__(self):
        self.buf = bytearray()
        self.stack: list[list] = []  # [items, how many still to come] per open array

    def feed(self, data: bytes) -> list:
        buf, stack, out = self.buf, self.stack, []
        buf += data
        pos = 0
        while pos < len(buf):
            if buf[pos] == 0x2A:  # b"*": an array header; its items follow
                end = buf.find(b"\r\n", pos)
                if end < 0:
                    break
                n, pos = int(buf[pos + 1:end]), end + 2
                if n > 0:
                    stack.append([[], n])
                    continue
                value = None if n < 0 else []
            else:
                try:
                    value, pos = parse(buf, pos)
                except _Incomplete:
                    break
            while stack:  # put the value in its array; a filled array is a value in turn
                frame = stack[-1]
                frame[0].append(value)
                frame[1] -= 1
                if frame[1]:
                    break
                value = stack.pop()[0]
            else:
                out.append(value)
        if pos:
            del buf[:pos]
        return out


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
        self.target = t = parse_redis_url(url)
        self.username, self.password, self.db, self.tls = t.username, t.password, t.db, t.tls
        self.sentinels = list(t.hosts) if t.sentinel else []
        self.host, self.port = t.hosts[0]  # the server, or (Sentinel) the primary last found
        self._ssl = t.ssl_context()
        self.timeout = timeout
        self._conn: _Conn | None = None
        self._connecting: asyncio.Future | None = None
        self._failed: tuple[float, StoreError] | None = None

    def describe(self) -> str:
        # Never the password: this goes to logs.
        if self.sentinels:
            return f"{self.target.describe()} (primary {self.host}:{self.port})"
        return self.target.describe()

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
            if self.sentinels:
                self.host, self.port = await self._ask_sentinels()
            hello = []
            if self.password is not None:
                hello.append(("AUTH", self.username, self.password) if self.username
                             else ("AUTH", self.password))
            if self.db:
                hello.append(("SELECT", self.db))
            if self.sentinels:
                hello.append(("ROLE",))
            conn, replies = await self._open(self.host, self.port, hello)
            if self.sentinels and (not replies[-1] or replies[-1][0] != b"master"):
                # Sentinel has not caught up with a failover yet (or was wrong): not ours.
                conn.stream.close()
                raise StoreError(f"{self.describe()} is not the primary yet")
        except StoreError as err:
            self._failed = (time.monotonic(), err)
            raise
        self._failed = None
        self._conn = conn
        return conn

    async def _open(self, host: str, port: int, hello: list) -> tuple[_Conn, list]:
        """A connection to host:port with `hello` sent and answered (an error reply to any
        of them fails the connect)."""
        where = f"redis {host}:{port}" if self.sentinels else self.describe()
        try:
            # Tornado checks the certificate against `host` (SNI and hostname) itself.
            stream = await asyncio.wait_for(
                TCPClient().connect(host, port, ssl_options=self._ssl), self.timeout)
        except (OSError, StreamClosedError, asyncio.TimeoutError, ssl.SSLError) as e:
            raise StoreError(f"cannot reach {where}: {_reason(e)}") from None
        stream.set_nodelay(True)
        conn = _Conn(stream)
        conn.reader = asyncio.ensure_future(self._read(conn))
        try:
            replies = await asyncio.wait_for(self._send(conn, hello), self.timeout)
            for reply in replies:
                if isinstance(reply, ReplyError):
                    raise StoreError(f"{where}: {reply}")
        except (StoreError, asyncio.TimeoutError) as e:
            stream.close()
            raise (e if isinstance(e, StoreError) else
                   StoreError(f"{where} did not answer the handshake")) from None
        return conn, replies

    async def _ask_sentinels(self) -> tuple[str, int]:
        """The primary's address from the first sentinel that knows it; that sentinel
        goes first next time (as the Sentinel client guidelines ask)."""
        t = self.target
        hello, problems = [], []
        if t.option("sentinel_password") is not None:
            user = t.option("sentinel_username")
            hello.append(("AUTH", user, t.option("sentinel_password")) if user
                         else ("AUTH", t.option("sentinel_password")))
        hello.append(("SENTINEL", "get-master-addr-by-name", t.master_name))
        for i, (host, port) in enumerate(self.sentinels):
            try:
                conn, replies = await self._open(host, port, hello)
            except StoreError as e:
                problems.append(str(e))
                continue
            conn.stream.close()
            addr = replies[-1]
            if not addr:
                problems.append(f"sentinel {host}:{port} does not know "
                                f"{t.master_name!r}")
                continue
            if i:
                self.sentinels.insert(0, self.sentinels.pop(i))
            return addr[0].decode(), int(addr[1])
        raise StoreError(f"no sentinel of {t.describe()} named the primary: "
                         + "; ".join(problems))

    async def _read(self, conn: _Conn):
        reader = ReplyReader()
        try:
            while True:
                for reply in reader.feed(await conn.stream.read_bytes(1 << 16, partial=True)):
                    fut = conn.waiting.popleft() if conn.waiting else None
                    if fut is not None and not fut.done():
                        fut.set_result(reply)
                    if isinstance(reply, ReplyError) and str(reply).startswith("READONLY"):
                        # A primary demoted by a failover: find the new one.
                        conn.stream.close()
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
