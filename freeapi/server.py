"""The gateway's HTTP server. make_server picks it by server.http_core: freeapi's own on
httptools (freeapi/serving/, the default) or Tornado's (GatewayServer here); both with a
cap on open connections and an accept loop that survives running out of file descriptors.

Tornado accepts every connection it can and, when accept() fails with EMFILE, lets the
error escape its accept callback: the listening socket stays readable, so the loop spins
and logs a traceback per attempt (59 MB of log in 5 s). Here a connection beyond
`server.max_connections` gets a short 503 and is closed, and descriptor exhaustion pauses
accepting briefly and is logged once per interval.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import resource
import socket

from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop
from tornado.iostream import IOStream, StreamClosedError

from freeapi.connection_watch import ConnectionWatch
from freeapi.errors import APIError
from freeapi.serving.accept import DROP, REFUSE, SERVE, ConnectionCap, accept_on

log = logging.getLogger("freeapi.server")



def default_max_connections() -> int:
    """Half the open-file limit, less a reserve: each client connection may need a vendor
    connection too, and the store, logs and listening sockets need a few."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(16, (soft - 64) // 2)


def raise_fd_limit(cap: int = 1 << 16) -> int:
    """Raise the soft open-file limit to the hard one (up to `cap`), as Go's runtime does:
    the soft default of 1024 is far below what a gateway holding streams needs."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = cap if hard == resource.RLIM_INFINITY else min(hard, cap)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            return want
        except (ValueError, OSError):
            pass
    return soft


# Container allocations between two young-generation collections (CPython's default: 700).
# A request keeps a few hundred objects alive while it runs, and with dozens in flight every
# collection re-walks the same live requests and promotes them, so the older generations
# are walked again too: at c=32, 25 us of each request's ~400 us went to collections at 700,
# 13 us at 10,000 (bench/gc_cost.py). What is garbage is freed as before, only in larger
# batches: a few MB more at most before a collection.
GC_YOUNG_THRESHOLD = 10_000


def tune_gc() -> None:
    """The collector's thresholds for a serving process (see GC_YOUNG_THRESHOLD); the older
    generations keep CPython's defaults."""
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def answer_and_close(stream: IOStream, answer: bytes, seconds: float = 1.0,
                     max_bytes: int = 1 << 20) -> asyncio.Future:
    """Write `answer` and close, without a reset: closing a socket with unread bytes (the
    request, or the body a refused client is still sending) makes the kernel send a RST,
    and the client then loses the answer before reading it. So the answer is written,
    our side shut down, and what the client still sends read and dropped, for at most
    `seconds` and `max_bytes`."""
    async def linger():
        loop = IOLoop.current()
        timer = loop.call_later(seconds, stream.close)
        try:
            await stream.write(answer)
            stream.socket.shutdown(socket.SHUT_WR)
            got = 0
            while got < max_bytes:
                got += len(await stream.read_bytes(65536, partial=True))
        except (StreamClosedError, OSError):
            pass
        finally:
            loop.remove_timeout(timer)
            stream.close()

    fut = asyncio.ensure_future(linger())
    fut.add_done_callback(lambda f: f.cancelled() or f.exception())
    return fut


def answer_and_close_connection(conn, answer: bytes, seconds: float = 1.0,
                                max_bytes: int = 1 << 20) -> None:
    """answer_and_close for a request's connection, taken over from the server mid-request
    (before its body is read): Tornado's by detaching its stream, httptools' itself."""
    if hasattr(conn, "answer_and_close"):
        conn.answer_and_close(answer, seconds, max_bytes)
    else:
        answer_and_close(conn.detach(), answer, seconds, max_bytes)


def _nodelay_kept(value: bool) -> None:
    """A client stream's set_nodelay once GatewayServer has turned Nagle off for good."""


def _refusal() -> bytes:
    err = APIError(503, "The gateway has too many open connections (server.max_connections); "
                        "retry shortly.", code="too_many_connections")
    body = json.dumps(err.to_dict()).encode()
    return (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            b"Retry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body))


class GatewayServer(HTTPServer):
    """HTTPServer with `max_connections` (open client connections) and `stall_timeout`:
    seconds a client may pause while sending a request's headers or body, or keep an idle
    keep-alive connection (freeapi/connection_watch.py)."""

    def initialize(self, request_callback, max_connections: int | None = None,
                   stall_timeout: float | None = None, **kwargs):
        super().initialize(request_callback, **kwargs)
        self.stall_timeout = stall_timeout
        self._watches: dict[object, ConnectionWatch] = {}
        if stall_timeout:
            # The connection's watch bounds the header read; Tornado's own header timeout
            # (HTTP1ConnectionParameters.header_timeout, one gen.with_timeout per request)
            # would only repeat it.
            self.conn_params.header_timeout = None
        self.cap = ConnectionCap(max_connections or default_max_connections(), log)
        self._refusal = _refusal()

    # -- the connection cap ---------------------------------------------------------------

    def handle_stream(self, stream: IOStream, address: tuple) -> None:
        verdict = self.cap.admit()
        if verdict == DROP:
            stream.close()
            return
        if verdict == REFUSE:
            answer_and_close(stream, self._refusal).add_done_callback(self._lingered)
            return
        # Nagle off for the connection's life. Tornado turns it off when a response ends and
        # back on after it, two setsockopt calls (and two Python-level socket.family enum
        # conversions) per request, and leaves it on while a streamed response's events
        # are written, where it can only delay them. The gateway writes nothing between
        # requests, so keeping it off changes nothing else.
        stream.set_nodelay(True)
        stream.set_nodelay = _nodelay_kept  # type: ignore[method-assign]
        super().handle_stream(stream, address)

    def on_close(self, server_conn) -> None:
        self.cap.closed(SERVE)
        watch = self._watches.pop(server_conn, None)
        if watch is not None:
            watch.stop()
        super().on_close(server_conn)

    def start_request(self, server_conn, request_conn):
        delegate = super().start_request(server_conn, request_conn)
        if not self.stall_timeout:
            return delegate
        watch = self._watches.get(server_conn)
        if watch is None:
            watch = self._watches[server_conn] = ConnectionWatch(self.stall_timeout)
        return watch.request(request_conn, delegate)

    def _lingered(self, _):
        self.cap.closed(REFUSE)

    # -- accepting ------------------------------------------------------------------------

    def add_sockets(self, sockets) -> None:
        for sock in sockets:
            self._sockets[sock.fileno()] = sock
            self._handlers[sock.fileno()] = accept_on(sock, self._handle_connection,
                                                      self.cap.exhausted)


def make_server(app, config):
    """The server for `app` with the config's transport limits: on httptools
    (freeapi/serving/) unless server.http_core is `tornado` or httptools is not installed."""
    # The handlers enforce server.max_body_size with a JSON 413; the server's own limit only
    # stops absurd bodies before they reach them. server.body_timeout bounds an idle
    # keep-alive connection, the wait for a request's headers and each pause in its body.
    max_body_size = max(config.max_body_size * 2, 1 << 20)
    if config.http_core != "tornado":
        try:
            from freeapi.serving.server import HttptoolsServer
        except ImportError:  # httptools is a dependency only where it has wheels
            pass
        else:
            return HttptoolsServer(app, config.max_connections or default_max_connections(),
                                   max_body_size, config.body_timeout, _refusal())
    return GatewayServer(app, max_connections=config.max_connections,
                         max_body_size=max_body_size, stall_timeout=config.body_timeout)
