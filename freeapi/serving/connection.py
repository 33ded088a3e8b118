"""One client connection, read by httptools (llhttp, the parser of Node.js and uvicorn;
reading.py) from an asyncio Protocol, and answered through Tornado's documented
`httputil.HTTPConnection` interface: the Application, its routing, the body gate and the
RequestHandlers above it run as they do on Tornado's own HTTP1Connection.

Why: Tornado's HTTPServer, IOStream and HTTP1Connection cost a request more than all of
freeapi's own work (bench/README.md, "The HTTP core": a relaying proxy on
them runs ~1,019k instructions a request, the same proxy on a Protocol and httptools
~160k). The semantics follow HTTP1Connection's, point by point, so that nothing above
changes: which answers keep the connection, chunked framing of answers, Content-Length
checks on what a handler writes, `Expect: 100-continue`, a 400 and a close for a malformed
request, the body not read while the delegate's future is pending, one request at a time
(pipelined requests wait their turn), a write's future resolving once the data is with the
kernel, and which of the delegate's `on_connection_close` or the close callback hears of
a client leaving.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from functools import partial

import httptools
from tornado import httputil
from tornado.iostream import StreamClosedError
from tornado.log import app_log

from freeapi.connection_watch import ConnectionWatch
from freeapi.serving.framing import response_head
from freeapi.serving.reading import Head, Malformed, RequestReader

log = logging.getLogger("freeapi.server")

_INFLIGHT = object()  # what the reading waits for while the gateway answers a request
_CONTINUE = b"HTTP/1.1 100 (Continue)\r\n\r\n"
_BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\n\r\n"


class _Quiet(Exception):
    """The delegate raised; it has been logged and the connection closed."""


class _Context:
    """What HTTPServerRequest reads of a connection (as Tornado's _HTTPRequestContext:
    remote_ip and protocol; its address and trusted_downstream serve X-Forwarded-For
    handling, which freeapi does not ask of Tornado)."""

    def __init__(self, address):
        self.remote_ip = address[0] if isinstance(address, tuple) and address else "0.0.0.0"
        self.protocol = "http"

    def __str__(self) -> str:
        return self.remote_ip


class ClientConnection(asyncio.Protocol, httputil.HTTPConnection):
    def __init__(self, server):
        self.server = server  # HttptoolsServer: app, stall_timeout, max_body_size, refusal,
        # connection_closed()
        event = self._event
        self.reader = RequestReader(server.max_body_size, partial(event, self._start),
                                    partial(event, self._body), partial(event, self._end))
        self.transport: asyncio.Transport | None = None
        self.context: _Context | None = None
        self.watch: ConnectionWatch | None = None
        self.closed = False
        # reading: the parser's events wait in `queue` while `blocked` (a delegate's
        # future, or _INFLIGHT while a request is answered); the socket is not read then.
        self.queue: deque = deque()
        self.blocked = None
        self.reading = True
        # the request being answered
        self.msg: Head | None = None
        self.delegate = None
        self.read_finished = True
        self.write_finished = True
        self.disconnect = False
        self.chunking = False
        self.answering = False  # the answer's head is written, its end not yet
        self.remaining: int | None = None
        self.close_callback = None
        self.writable: asyncio.Future | None = None  # pending while the kernel is full
        self._done: asyncio.Future | None = None
        self.lingering = 0  # bytes still to read and drop after answer_and_close
        self.eof_sent = False
        self.refusing = False  # beyond server.max_connections: answered 503 and closed
        self.close_on_arrival = False  # close() came before the transport did

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport
        if self.close_on_arrival:  # the server is closing every connection (close())
            transport.close()
            return
        # A write's future resolves once the kernel has the data (as IOStream's): a client
        # that does not read holds up the writer, not the gateway's memory.
        transport.set_write_buffer_limits(high=0)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self.context = _Context(transport.get_extra_info("peername"))
        if self.refusing:
            self.answer_and_close(self.server.refusal)
            return
        done = self._done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        if self.server.stall_timeout:
            self.watch = ConnectionWatch(self.server.stall_timeout)
            self.watch.request(self, None)  # the first request's headers are awaited

    def data_received(self, data):
        if self.eof_sent:
            self.lingering = max(0, self.lingering - len(data))
            if not self.lingering:
                self.transport.close()
            return
        try:
            self.reader.feed(data)
        except httptools.HttpParserError as e:
            cause = e.__cause__
            if cause is not None and not isinstance(cause, Malformed):
                # not the client's fault: a step of ours failed within a callback
                app_log.error("Uncaught exception", exc_info=cause)
            self._event(self._bad, str(cause or e))

    def eof_received(self):
        return False  # close: a half-closed client gets no answer (as Tornado)

    def connection_lost(self, exc):
        self.closed = True
        self.queue.clear()
        # The reader's callbacks and the watch point back at this connection: dropped, so
        # a closed connection is freed without the garbage collector.
        reader, self.reader = self.reader, None
        reader.drop()
        watch, self.watch = self.watch, None
        if watch is not None:
            watch.stop()
        delegate, self.delegate = self.delegate, None
        cb, self.close_callback = self.close_callback, None
        try:
            if delegate is not None and not self.read_finished:
                delegate.on_connection_close()
            elif cb is not None and not self.write_finished:
                cb()
        except Exception:
            app_log.error("Uncaught exception", exc_info=True)
        w = self.writable
        if w is not None and not w.done():
            w.set_exception(StreamClosedError())
            w.exception()
        self.server.connection_closed(self)

    def pause_writing(self):
        if self.writable is None or self.writable.done():
            self.writable = asyncio.get_running_loop().create_future()

    def resume_writing(self):
        w = self.writable
        if w is not None and not w.done():
            w.set_result(None)

    # -- the reader's events, in order, one request at a time -------------------------------
    def _gone(self) -> bool:
        # closed, or closing since our close(): as an IOStream's closed() is right after
        # its close(), nothing more is read or written (what the parser still has of the
        # data it was fed must not start another request on a closing connection).
        return self.closed or self.eof_sent or self.transport.is_closing()

    def _event(self, step, arg):
        if self._gone():
            return  # answered and closing: what the client still sends is dropped
        if self.blocked is None and not self.queue:
            self._run(step, arg)
            return
        self.queue.append((step, arg))
        if self.reading and not self.closed:
            self.reading = False
            self.transport.pause_reading()

    def _run(self, step, arg):
        try:
            step(arg)
        except _Quiet:
            self.queue.clear()

    def _unblock(self, fut=None):
        if fut is not None and not fut.cancelled() and fut.exception() is not None:
            self._run(self._call, fut.result)
            return
        self.blocked = None
        while self.queue and self.blocked is None and not self._gone():
            self._run(*self.queue.popleft())
        if self.blocked is None and not self.reading and not self._gone():
            self.reading = True
            self.transport.resume_reading()

    def _wait_for(self, ret) -> bool:
        """Block the reading on a delegate's future; whether it had to."""
        if ret is None or (isinstance(ret, asyncio.Future) and ret.done()
                           and not ret.cancelled() and ret.exception() is None):
            return False
        self.blocked = ret = asyncio.ensure_future(ret)
        ret.add_done_callback(self._unblock)
        return True

    def _call(self, fn, *args):
        try:
            return fn(*args)
        except httputil.HTTPInputError as e:  # the request's fault (as Tornado: a 400)
            self._bad(str(e))
        except Exception:
            app_log.error("Uncaught exception", exc_info=True)
            self.close()
            raise _Quiet() from None

    def _start(self, msg: Head):
        self.msg = msg
        self.read_finished = self.write_finished = False
        self.disconnect = not msg.keep_alive
        self.chunking, self.remaining = False, None
        delegate = self.server.app.start_request(self, self)
        if self.watch is not None:
            delegate = self.watch.request(self, delegate)
        self.delegate = delegate
        ret = self._call(delegate.headers_received, msg.start_line, msg.headers)
        if self.delegate is None:  # answered and closed before the body (answer_and_close)
            return
        # As Tornado, the server's own cap on a declared body is checked after the delegate
        # has seen the headers (the gate answers an oversized one with the door's 413).
        length = msg.headers.get("Content-Length")
        if length is not None and (not length.isascii() or not length.isdigit()
                                   or int(length) > self.server.max_body_size):
            self._bad("Content-Length too long")
        if msg.expect_continue:
            if self._wait_for(ret):
                self.queue.appendleft((self._continue, None))
            else:
                self._continue(None)
        else:
            self._wait_for(ret)

    def _continue(self, _):
        if not self.write_finished and not self._gone():
            self.transport.write(_CONTINUE)

    def _body(self, data: bytes):
        if self.write_finished or self.delegate is None:
            return  # answered already: the rest of the body is dropped (as Tornado)
        self._wait_for(self._call(self.delegate.data_received, data))

    def _end(self, _):
        self.read_finished = True
        delegate = self.delegate
        if delegate is None:
            return
        # (With the answer written before the body was read, finish() has let go of the
        # delegate: the request ends above.)
        self.blocked = _INFLIGHT  # the next request waits for this one's answer
        self._call(delegate.finish)

    def _bad(self, reason: str):
        log.info("Malformed HTTP message from %s: %s", self.context, reason)
        if not self.answering and not self._gone():  # (not in the middle of an answer)
            self.transport.write(_BAD_REQUEST)
        self.close()
        raise _Quiet()

    # -- httputil.HTTPConnection: the answer ------------------------------------------------

    def write_headers(self, start_line, headers, chunk=None):
        msg = self.msg
        self.answering = True
        data, self.chunking, self.remaining = response_head(
            msg.start_line, msg.headers, start_line, headers, self.disconnect)
        if chunk and not self._gone():
            data += self._framed(chunk)
        return self._send(data)

    def _framed(self, chunk: bytes) -> bytes:
        if self.remaining is not None:
            self.remaining -= len(chunk)
            if self.remaining < 0:
                self.close()
                raise httputil.HTTPOutputError("Tried to write more data than "
                                               "Content-Length")
        if self.chunking and chunk:
            return b"%x\r\n%s\r\n" % (len(chunk), chunk)
        return chunk

    def write(self, chunk: bytes):
        return self._send(b"" if self._gone() else self._framed(chunk))

    def _send(self, data: bytes):
        if self._gone():
            fut = asyncio.get_running_loop().create_future()
            fut.set_exception(StreamClosedError())
            fut.exception()  # retrieved: a write after the client left is not news
            return fut
        if data:
            self.transport.write(data)
        w = self.writable
        return w if w is not None and not w.done() else self._done

    def finish(self):
        if self.remaining and not self._gone():
            self.close()
            raise httputil.HTTPOutputError(f"Tried to write {self.remaining} bytes less "
                                           "than Content-Length")
        if self.chunking and not self._gone():
            self.transport.write(b"0\r\n\r\n")
        self.write_finished = True
        self.answering = False
        self.close_callback = None
        if not self.read_finished:
            # Answered before the body was read: the connection cannot be reused, and
            # closing it with the body unread would reset it before the client reads the
            # answer; the rest is read and dropped, for a while.
            self.delegate = None
            self.answer_and_close(b"")
            return
        if self.disconnect:
            self.delegate = None
            self.close()
            return
        w = self.writable
        if w is not None and not w.done():
            # As Tornado, the next request waits until this answer is with the kernel: a
            # client that pipelines requests and reads no answer holds up the reading,
            # not the gateway's memory.
            w.add_done_callback(self._done_with_request)
        else:
            self._done_with_request()

    def _done_with_request(self, _=None):
        if self.closed:
            return
        self.delegate, self.msg = None, None
        if self.watch is not None:
            self.watch.request(self, None)  # the next request's headers are awaited
        if self.blocked is _INFLIGHT:
            self._unblock()

    def set_close_callback(self, callback):
        self.close_callback = callback

    def close(self):
        if self.transport is None:  # accepted, its transport still being made
            self.close_on_arrival = True
        elif not self.closed:
            self.transport.close()

    def abort(self):
        """Close at once: what the kernel has not taken yet is dropped."""
        if self.transport is None:
            self.close_on_arrival = True
        elif not self.closed:
            self.transport.abort()

    def answer_and_close(self, answer: bytes, seconds: float = 1.0,
                         max_bytes: int = 1 << 20) -> None:
        """Write `answer` and close without a reset (see server.answer_and_close): our side
        is shut, and what the client still sends is read and dropped for at most `seconds`
        and `max_bytes`. Ends the request: its delegate hears nothing more."""
        self.delegate, self.msg, self.close_callback = None, None, None
        self.read_finished = self.write_finished = True
        self.queue.clear()
        watch, self.watch = self.watch, None
        if watch is not None:  # (it holds the request's delegate; the linger has a timer)
            watch.stop()
        if self.closed:
            return
        if answer:
            self.transport.write(answer)
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()
        self.eof_sent = True
        self.lingering = max_bytes
        if not self.reading:
            self.reading = True
            self.transport.resume_reading()
        asyncio.get_running_loop().call_later(seconds, self.close)
