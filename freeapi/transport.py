"""One vendor connection as an asyncio Protocol: bytes buffered as they arrive.

The upstream client (freeapi/upstream.py) used Tornado's IOStream, which costs a Future and
an epoll re-registration per read, and could only learn by a poll() syscall per request
that a pooled connection had been closed or had sent stray bytes. Here asyncio's transport
hands bytes over as they arrive (`data_received`): a read takes what is buffered, and waits
on one future only when nothing is; and a connection idling in the pool learns at once that
the vendor closed it or sent bytes nobody asked for, and is dropped there and then.
"""

from __future__ import annotations

import asyncio
import os
import socket

# Bytes buffered before the transport stops reading from the socket until the reader takes
# them: a relay whose client reads slowly must not pull a fast vendor's answer into memory.
HIGH_WATER = 64 * 1024


class Conn(asyncio.Protocol):
    """Bytes as they arrive; `wait()` until there are some (or the end), `take()` them."""

    __slots__ = ("transport", "_loop", "_parts", "_size", "_waiter", "eof", "closed",
                 "idle_since", "_paused")

    def __init__(self):
        self.transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._parts: list[bytes] = []
        self._size = 0
        self._waiter: asyncio.Future | None = None
        self.eof = False  # the vendor closed its side, or the connection was lost
        self.closed = False  # closed (by us or lost): never used again
        #: monotonic time it was put in the pool; None while a request uses it
        self.idle_since: float | None = None
        self._paused = False

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data: bytes):
        if self.idle_since is not None:
            # Bytes between two answers (a vendor that framed its answer wrongly, or sent a
            # second one) would be read as the start of the next caller's answer.
            self.close()
            return
        self._parts.append(data)
        self._size += len(data)
        if self._size >= HIGH_WATER and not self._paused:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self):
        self.eof = True
        if self.idle_since is not None:
            self.close()
        self._wake()
        return False  # close our side as well

    def connection_lost(self, exc):
        self.eof = self.closed = True
        self._wake()

    # -- the reader's side --------------------------------------------------------------

    def _wake(self):
        w = self._waiter
        if w is not None:
            self._waiter = None
            if not w.done():
                w.set_result(None)

    @property
    def ready(self) -> bool:
        """Whether `take()` would not have to wait: bytes, or the end, are there."""
        return bool(self._parts) or self.eof

    @property
    def buffered(self) -> int:
        return self._size

    async def wait(self):
        """Until bytes are buffered, or the vendor closed, or `close()` was called."""
        if self._parts or self.eof:
            return
        w = self._waiter = self._loop.create_future()
        await w

    def take(self, limit: int = HIGH_WATER) -> bytes:
        """Up to `limit` buffered bytes (b"" when none are: the end, if `ready`). Bounded,
        so one read never hands the relay more than a socket read of Tornado's did."""
        parts = self._parts
        if not parts:
            return b""
        if self._size <= limit:
            data = parts[0] if len(parts) == 1 else b"".join(parts)
            self._parts = []
            self._size = 0
        else:
            out, n = [], 0
            while n < limit:
                part = parts[0]
                if n + len(part) > limit:
                    parts[0] = part[limit - n:]
                    part = part[:limit - n]
                else:
                    del parts[0]
                out.append(part)
                n += len(part)
            data = b"".join(out)
            self._size -= n
        if self._paused and self._size < HIGH_WATER:
            self._paused = False
            if not self.closed:
                self.transport.resume_reading()
        return data

    def unread(self, data: bytes):
        """Put bytes back in front (what followed a response head)."""
        if data:
            self._parts.insert(0, data)
            self._size += len(data)

    def write(self, data: bytes):
        self.transport.write(data)

    def close(self):
        """Close at once (no TLS goodbye): a pending `wait()` returns."""
        if not self.closed:
            self.closed = self.eof = True
            self._parts, self._size = [], 0
            if self.transport is not None:
                # The transport closes the socket on the loop's next turn; the vendor
                # learns it now (as a closed socket would tell it) with a shutdown.
                sock = self.transport.get_extra_info("socket")
                if sock is not None:
                    _shutdown(sock)
                self.transport.abort()
        self._wake()


def _shutdown(sock) -> None:
    """shutdown(SHUT_RDWR) of a transport's socket. uvloop's transport sockets refuse
    shutdown() (a TypeError); a duplicate of the descriptor reaches the same socket."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    except TypeError:
        try:
            with socket.socket(fileno=os.dup(sock.fileno())) as dup:
                dup.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


async def read_head(conn: Conn, max_bytes: int, too_large) -> bytes:
    """The head up to and including its blank line (what follows stays buffered in
    `conn`); b"" when the connection ended first. `too_large()` is raised past
    `max_bytes`."""
    buf = b""
    while True:
        # The blank line that ends a head, with CRLF or bare LF line ends (as the regex
        # \r?\n\r?\n that Tornado's reader was given).
        end = _head_end(buf)
        if end >= 0:
            if end > max_bytes:
                raise too_large()
            conn.unread(buf[end:])
            return buf[:end]
        if len(buf) > max_bytes:
            raise too_large()
        await conn.wait()
        data = conn.take()
        if not data:
            return b""
        buf = buf + data if buf else data


def _head_end(buf: bytes) -> int:
    # The first "\n\r\n" or "\n\n", whichever comes first: two searches, not one per
    # line; the second stops where the first matched (a large body after a CRLF head is
    # not scanned).
    crlf = buf.find(b"\n\r\n")
    lf = buf.find(b"\n\n") if crlf < 0 else buf.find(b"\n\n", 0, crlf + 1)
    if lf >= 0:
        return lf + 2
    return crlf + 3 if crlf >= 0 else -1


def failure_reason(e: OSError) -> str:
    """What a failed connect says in an error message: the system's words for its errno
    ("Connection refused"), as Tornado's IOStream gave them; asyncio's own strerror
    ("Connect call failed ('127.0.0.1', 80)") only repeats the address."""
    if isinstance(e.errno, int) and e.errno > 0:
        return os.strerror(e.errno)
    return e.strerror or type(e).__name__


async def open_conn(host: str, port: int, ssl_context=None, server_hostname=None) -> Conn:
    """A new connection (TCP_NODELAY is asyncio's default for TCP transports)."""
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(Conn, host, port, ssl=ssl_context,
                                           server_hostname=server_hostname)
    return conn


async def start_tls(conn: Conn, ssl_context, server_hostname: str) -> Conn:
    """TLS over an open connection (a proxy's CONNECT tunnel)."""
    loop = asyncio.get_running_loop()
    transport = await loop.start_tls(conn.transport, conn, ssl_context,
                                     server_hostname=server_hostname)
    conn.transport = transport
    return conn
