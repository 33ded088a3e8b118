"""What a request must pass before its body is read: the gateway key, the body's size and
the gateway-wide budget of buffered body bytes (freeapi/body_budget.py).

A caller without a key must not make the gateway hold a 16 MB body, and an oversized body
is refused as soon as its size is known. Tornado offers that only through
`@stream_request_body`, which costs every request two more turns of the event loop (the
connection waits for the handler's prepare() in a task of its own, the handler for the
body's future). Here the checks run in the connection's own turn instead: the
application puts a `BodyGate` in front of the delegate Tornado makes for each request
(`Application.get_handler_delegate`, its documented seam), and the gate asks the
handler class's `before_body(arrival, request)`. A request with a body that fails them is
answered at once on a connection taken over from Tornado (whose own close would reset it
before the client read the answer); one without a body is answered by its handler as
usual (`prepare()` raises the refusal). The `Arrival` the gate filled in (the caller, the
budget bytes held, the body as it came) is handed to the handler as
`initialize(arrival=...)`.

Handlers that must do slower work before the body (file uploads await quota checks) keep
Tornado's streamed mode (`@streamed_body` in handlers/base.py) and refuse through
`APIHandler.refuse`, which answers with `answer_unread` too.
"""

from __future__ import annotations

import asyncio
import json
import logging
from http.client import responses

from tornado import httputil, web

from freeapi import access_log, logs
from freeapi.errors import APIError
from freeapi.server import answer_and_close_connection

log = logging.getLogger("freeapi")


class Arrival:
    """One request as the gate saw it before its body: the caller, and the bytes of the
    gateway's body budget its body holds (given back exactly once, by whoever ends it)."""

    __slots__ = ("gateway", "caller", "token", "checked", "body_coming", "reserved", "size",
                 "too_large", "over_budget", "refusal", "chunks")

    def __init__(self, gateway):
        self.gateway = gateway
        self.caller = None  # the config.GatewayKey that authenticated the request
        self.token: str | None = None  # the bearer token, once checked
        self.checked = False  # the token was checked (by the gate or the handler)
        self.body_coming = False
        self.reserved = 0  # bytes of the body budget held
        self.size = 0  # body bytes received so far
        self.too_large = False  # over server.max_body_size: answered 413, not buffered
        self.over_budget = False  # a chunked body outgrew the budget: 503, not buffered
        self.refusal: APIError | None = None  # for a handler to raise: no body was coming
        # The body's pieces, kept here rather than by Tornado's delegate, which would hold
        # those before a refusal as it comes (a 413, a 503) while the rest arrives,
        # uncounted once the budget is given back.
        self.chunks: list[bytes] = []

    def take(self, size: int) -> None:
        """Hold `size` bytes of the budget for a body announced by its Content-Length."""
        if not self.gateway.body_budget.take(size):
            raise self.no_room()
        self.reserved += size

    def received(self, chunk: bytes) -> bool:
        """Count a piece of the body; False when it is not to be kept (the answer will be
        a 413 or a 503, whatever else arrives)."""
        self.size += len(chunk)
        if self.too_large or self.over_budget:
            return False
        if self.size > self.gateway.config.max_body_size:
            self.too_large = True
            self.release()
            return False
        if self.size > self.reserved:  # a chunked body: reserved as it comes
            if not self.gateway.body_budget.take(self.size - self.reserved):
                self.over_budget = True
                self.release()
                return False
            self.reserved = self.size
        return True

    def body(self) -> bytes:
        raw = b"".join(self.chunks)
        self.chunks = [raw]  # the joined copy is the only one kept
        return raw

    def release(self) -> None:
        """Give the budget back; what it counted of the body is dropped with it."""
        self.chunks = []
        if self.reserved:
            self.gateway.body_budget.give_back(self.reserved)
            self.reserved = 0

    def body_error(self) -> APIError | None:
        """Why the body that came cannot be used, if it cannot."""
        if self.too_large:
            return self.too_large_error()
        if self.over_budget:
            return self.no_room()
        return None

    def too_large_error(self) -> APIError:
        return APIError(413, f"Request body is larger than the gateway's limit of "
                             f"{self.gateway.config.max_body_size} bytes "
                             "(server.max_body_size).", code="request_too_large")

    def no_room(self) -> APIError:
        return APIError(503, "The gateway is holding as many request bodies as it may at "
                             f"once ({self.gateway.body_budget.limit} bytes, "
                             "server.max_buffered_bytes); retry shortly.",
                        code="body_buffer_full", retry_after="1")


def access_line(gateway, rlog, request, status: int, caller, gone: bool = False) -> None:
    """The request's access line (freeapi/access_log.py), once, one loop turn later: by
    then a door's pipeline has made the ledger entry the line is written from."""
    if rlog is None or rlog.access_logged or not gateway.config.access_log \
            or not access_log.enabled():
        return
    rlog.access_logged = True
    asyncio.get_running_loop().call_soon(
        access_log.write, rlog, request.method, request.path, status,
        round(request.request_time() * 1000), caller.name if caller is not None else None,
        gone)


def answer_unread(request, rlog, err: APIError, body: dict, drain: int = 1 << 20,
                  seconds: float = 1.0) -> None:
    """Answer `err` (`body`: in the door's shape) before the request's body is read, on
    its connection taken over from Tornado (which would close it with the body unread,
    resetting it before the client reads the answer), and close it cleanly after reading
    and dropping at most `drain` bytes for `seconds`."""
    data = json.dumps(body).encode()
    retry = f"Retry-After: {err.retry_after}\r\n" if err.retry_after else ""
    head = (f"HTTP/1.1 {err.status} {responses.get(err.status, 'Error')}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
            f"X-Request-Id: {rlog.request_id}\r\n{retry}"  # logs.begin: a sane id
            "Connection: close\r\n\r\n").encode()
    log.debug("%s %s -> %d before the body (%s)", request.method, request.path, err.status,
              err.code)
    rlog.error = err.code
    answer_and_close_connection(request.connection, head + data, seconds, drain)


class BodyGate(httputil.HTTPMessageDelegate):
    """In front of Tornado's delegate for one request to an APIHandler route."""

    __slots__ = ("inner", "handler_class", "request", "arrival", "refused")

    def __init__(self, inner, handler_class, request, arrival: Arrival):
        self.inner, self.handler_class = inner, handler_class
        self.request, self.arrival = request, arrival
        self.refused = False

    def headers_received(self, start_line, headers):
        arrival, cls = self.arrival, self.handler_class
        # Known before any check: a route that refuses every request (unknown routes, the
        # admin API without gateway keys) must not wait for the body of one.
        length = headers.get_list("Content-Length")
        arrival.body_coming = (length not in ([], ["0"])
                               or bool(headers.get_list("Transfer-Encoding")))
        try:
            cls.before_body(arrival, self.request)
        except APIError as err:
            arrival.release()
            if not arrival.body_coming:
                arrival.refusal = err  # answered by the handler, the connection kept
                return self.inner.headers_received(start_line, headers)
            self.refused = True
            # A 503 for want of room is retried: the client, which may only read once it
            # has sent everything, must get to read it (its body is read and dropped,
            # costing no memory). Other refusals read 1 MB at most.
            full = err.code == "body_buffer_full"
            length = headers.get("Content-Length", "")
            drain = (int(length) + 4096) if full and length.isdigit() else 1 << 20
            rlog = logs.begin(headers.get("X-Request-Id"), getattr(cls, "endpoint", None))
            if cls.access_logged:
                access_line(arrival.gateway, rlog, self.request, err.status, arrival.caller)
            answer_unread(self.request, rlog, err, cls.error_body(err), drain,
                          10.0 if full else 1.0)
            return None
        return self.inner.headers_received(start_line, headers)

    def data_received(self, chunk: bytes):
        # Kept in the Arrival (for every handler: Tornado's delegate gets none of it).
        if self.arrival.received(chunk):
            self.arrival.chunks.append(chunk)

    def finish(self) -> None:
        self.inner.finish()

    def on_connection_close(self) -> None:
        # Before a handler took the request over, nobody else gives the budget back.
        self.arrival.release()
        if not self.refused:
            self.inner.on_connection_close()


def _body_not_parsed() -> None:
    """HTTPServerRequest._parse_body for freeapi's routes: none (see below)."""


class GatewayApplication(web.Application):
    """Tornado's Application with a BodyGate in front of every route whose handler class
    has `before_body` (freeapi's APIHandler and its subclasses)."""

    def get_handler_delegate(self, request, target_class, target_kwargs=None,
                             path_args=None, path_kwargs=None):
        if not hasattr(target_class, "before_body"):
            return super().get_handler_delegate(request, target_class, target_kwargs,
                                                path_args, path_kwargs)
        arrival = Arrival(self.settings["freeapi"])
        # Tornado parses the body of a handler without @stream_request_body as a form when
        # its Content-Type says so, before prepare(): a JSON body sent as one (`curl -d`)
        # was refused for holding a thousand `&`, a multipart Content-Type without a
        # boundary for that alone, and a body-less 401 became that 400. Freeapi's handlers
        # read their bodies themselves (the multipart doors parse their own forms).
        request._parse_body = _body_not_parsed  # type: ignore[method-assign]
        kwargs = dict(target_kwargs) if target_kwargs else {}
        kwargs["arrival"] = arrival
        inner = super().get_handler_delegate(request, target_class, kwargs, path_args,
                                             path_kwargs)
        return BodyGate(inner, target_class, request, arrival)
