"""Deadlines for a client connection that stops sending: the wait for a request's headers
(a slowloris client trickling them, and an idle keep-alive connection, whose wait starts
as soon as the previous response is done) and each pause in a request's body. Both are
bounded by server.body_timeout; the connection is closed when one runs out.

Tornado offers these as per-request timers: every header read wrapped in gen.with_timeout
(a Future, a timer and two callbacks per request; with idle_connection_timeout unset it
waits an hour rather than not at all), and a body-stall timer had to be armed and
cancelled per request. Here a connection has one timer, re-armed lazily: a request only
notes when it entered a phase (in the body: when its last chunk came), and the timer, when
it fires, closes the connection if the phase's deadline has passed or sets itself for what
is left. An active keep-alive connection costs one timer callback per `timeout` seconds.

The watch sits between Tornado's HTTP1Connection and the request's delegate (the
HTTPMessageDelegate interface: headers_received, data_received, finish,
on_connection_close), one object per connection reused by its successive requests.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from tornado import httputil

log = logging.getLogger("freeapi.server")

_HEAD, _BODY, _BUSY = 0, 1, 2  # waiting for headers / for the body / the gateway's turn


class ConnectionWatch(httputil.HTTPMessageDelegate):
    def __init__(self, timeout: float):
        self.timeout = timeout
        self.phase = _BUSY
        self.since = 0.0
        self.conn: httputil.HTTPConnection | None = None
        self.delegate: Any = None  # the request's own HTTPMessageDelegate
        self.start_line: Any = None  # the request's RequestStartLine
        self.prepared = None  # what headers_received returned: the handler's prepare()
        self.stopped = False
        # Invariant: the timer fires no later than the current phase's deadline. A phase
        # starting later than now has its deadline more than `timeout` from now.
        self.timer: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(
            timeout, self._check)

    def request(self, conn: httputil.HTTPConnection,
                delegate: httputil.HTTPMessageDelegate) -> ConnectionWatch:
        """A new request on this connection: from now its headers are awaited."""
        self.conn, self.delegate = conn, delegate
        self.phase, self.since = _HEAD, time.monotonic()
        return self

    def stop(self) -> None:
        """The connection is closed (or detached): nothing more to watch."""
        self.stopped = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _check(self) -> None:
        self.timer = None
        if self.stopped:
            return
        now = time.monotonic()
        wait = self.timeout
        if self.phase != _BUSY:
            prepared = self.prepared
            if self.phase == _BODY and prepared is not None and not prepared.done():
                # The body is not read while the handler's prepare() runs (it may refuse
                # the request before reading it): the client is not the one stalling.
                self.since = now
            wait = self.since + self.timeout - now
            if wait <= 0:
                self._stalled()
                return
        self.timer = asyncio.get_running_loop().call_later(wait, self._check)

    def _stalled(self) -> None:
        if self.phase == _BODY and self.start_line is not None:
            # no query string: a key may be passed there
            log.info("%s %s: dropped; the request body stalled for %gs "
                     "(server.body_timeout)", self.start_line.method,
                     self.start_line.path.partition("?")[0], self.timeout)
        self.stop()
        if self.conn is not None:
            # As Tornado's own header timeout: closes the stream and ends the request (the
            # read in progress fails; the delegate is told through on_connection_close).
            self.conn.close()

    # -- HTTPMessageDelegate: passed on to the request's own delegate ----------------------

    def headers_received(self, start_line, headers):
        self.phase, self.since = _BODY, time.monotonic()
        self.start_line = start_line
        self.prepared = self.delegate.headers_received(start_line, headers)
        return self.prepared

    def data_received(self, chunk: bytes):
        self.since = time.monotonic()
        return self.delegate.data_received(chunk)

    # After either, Tornado calls nothing more for this request (unless finish() raises:
    # then on_connection_close follows): the delegate is dropped so the handler is not
    # kept alive while the connection idles.
    def finish(self) -> None:
        self.phase, self.prepared = _BUSY, None
        self.delegate.finish()
        self.delegate = None

    def on_connection_close(self) -> None:
        delegate, self.delegate, self.prepared, self.phase = self.delegate, None, None, _BUSY
        if delegate is not None:
            delegate.on_connection_close()
