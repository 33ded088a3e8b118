#!/usr/bin/env python3
"""Context for the table: the cheapest honest Tornado *proxy* on this machine.

A Tornado RequestHandler that relays POST /v1/chat/completions to the upstream over a
keep-alive pool of raw asyncio connections (`loop.create_connection` with a small
Protocol), and relays the answer: a Content-Length body in one write, a chunked body
(the 20-chunk SSE stream) de-chunked and flushed as it arrives. No auth, routing, key
pool, ledger, metrics or framing hardening: what freeapi does on top of this is what the
"freeapi / bare proxy" ratios measure (issue 18).

  python bench/bare_proxy.py --port 18198 --upstream http://127.0.0.1:18100 [--uvloop]

--uvloop runs it on uvloop's event loop (which must be importable), for the freeapi-on-
uvloop against bare-on-uvloop ratio. --mode lean / raw serve the same proxying without a
RequestHandler (with Tornado's routing and request object, or a bare delegate on its
HTTPServer): what the handler layer costs (bench/README.md, "What a RequestHandler costs").
--mode protocol serves it without Tornado at all: an asyncio Protocol per client connection
parsing requests with httptools (a freeapi dependency), what a client side outside Tornado
costs (bench/README.md, "The HTTP core"; freeapi's own is freeapi/serving/).
"""
import argparse
import asyncio
from urllib.parse import urlsplit

from tornado import httputil, web
from tornado.httpserver import HTTPServer


class Conn(asyncio.Protocol):
    """One upstream connection; `data_received` feeds whatever waits for bytes."""

    def __init__(self):
        self.transport = None
        self.buf = bytearray()
        self.waiter: asyncio.Future | None = None
        self.eof = False

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.buf += data
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    def connection_lost(self, exc):
        self.eof = True
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def more(self):
        if self.buf:
            return
        if self.eof:
            raise ConnectionError("upstream closed")
        self.waiter = asyncio.get_running_loop().create_future()
        await self.waiter
        self.waiter = None
        if self.eof and not self.buf:
            raise ConnectionError("upstream closed")

    def take(self) -> bytes:
        out = bytes(self.buf)
        self.buf.clear()
        return out


class Upstream:
    def __init__(self, url: str):
        u = urlsplit(url)
        self.host, self.port = u.hostname, u.port or 80
        self.idle: list[Conn] = []

    async def get(self) -> Conn:
        while self.idle:
            c = self.idle.pop()
            if not c.eof:
                return c
        _, c = await asyncio.get_running_loop().create_connection(Conn, self.host, self.port)
        return c

    def put(self, c: Conn):
        if not c.eof and not c.buf:
            self.idle.append(c)
        else:
            c.transport.close()


class Relay:
    """The proxying itself, over the RequestHandler methods it uses (set_status, set_header,
    write, flush, finish): the handler's own, or ConnWriter's for the --mode comparisons."""

    up: Upstream

    async def relay(self, body: bytes):
        c = await self.up.get()
        c.transport.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: %s:%d\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (self.up.host.encode(), self.up.port, len(body), body))
        while b"\r\n\r\n" not in c.buf:
            await c.more()
        buf = c.take()
        end = buf.index(b"\r\n\r\n")
        lines = buf[:end].decode("latin-1").split("\r\n")
        rest = buf[end + 4:]
        self.set_status(int(lines[0].split(" ", 2)[1]))
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        self.set_header("Content-Type", headers.get("content-type", "application/json"))
        if "content-length" in headers:
            n = int(headers["content-length"])
            parts, got = [rest], len(rest)
            while got < n:
                await c.more()
                data = c.take()
                parts.append(data)
                got += len(data)
            self.up.put(c)
            self.finish(b"".join(parts))
            return
        # chunked: de-chunk what has arrived, write it, flush, repeat until the 0 chunk
        pending = rest
        while True:
            out, done, pos = [], False, 0
            while True:
                eol = pending.find(b"\r\n", pos)
                if eol < 0:
                    break
                size = int(pending[pos:eol].split(b";")[0], 16)
                if size == 0:
                    if pending.find(b"\r\n", eol + 2) < 0:
                        break
                    done = True
                    pos = pending.find(b"\r\n", eol + 2) + 2
                    break
                if len(pending) < eol + 2 + size + 2:
                    break
                out.append(pending[eol + 2:eol + 2 + size])
                pos = eol + 2 + size + 2
            pending = pending[pos:]
            if out:
                self.write(b"".join(out))
                self.flush()
            if done:
                break
            await c.more()
            pending += c.take()
        self.up.put(c)
        self.finish()


class Proxy(Relay, web.RequestHandler):
    def initialize(self, upstream: Upstream):
        self.up = upstream

    def post(self):
        return self.relay(self.request.body)


# -- --mode lean / raw: what a RequestHandler costs (bench/README.md) ----------------------

class ConnWriter(Relay):
    """An answer written through Tornado's HTTP1Connection without a RequestHandler
    (Content-Length, or chunked as the connection does for HTTP/1.1)."""

    def __init__(self, up: Upstream, conn):
        self.up, self.conn = up, conn
        self.status, self.headers, self.started = 200, httputil.HTTPHeaders(), False

    def set_status(self, status):
        self.status = status

    def set_header(self, name, value):
        self.headers[name] = value

    def _start(self, data=None):
        self.started = True
        self.conn.write_headers(httputil.ResponseStartLine("HTTP/1.1", self.status, "OK"),
                                self.headers, data)

    def write(self, data):
        if self.started:
            self.conn.write(data)
        else:
            self._start(data)

    def flush(self):
        pass

    def finish(self, data=None):
        if not self.started:
            self.headers["Content-Length"] = str(len(data or b""))
            self._start(data)
        self.conn.finish()


class BodyReader(httputil.HTTPMessageDelegate):
    """--mode raw / lean: the request body gathered through the delegate interface, then
    relayed by a ConnWriter in a task of its own (as Tornado runs a handler)."""

    def __init__(self, up: Upstream, conn, watch_close: bool = False):
        self.up, self.conn, self.watch_close = up, conn, watch_close
        self.chunks: list[bytes] = []

    def data_received(self, chunk):
        self.chunks.append(chunk)

    def finish(self):
        if self.watch_close:  # as every RequestHandler does, to learn of a client leaving
            self.conn.set_close_callback(_ignore)
        asyncio.ensure_future(ConnWriter(self.up, self.conn).relay(b"".join(self.chunks)))


def _ignore():
    pass


class RawApp(httputil.HTTPServerConnectionDelegate):
    """--mode raw: Tornado's HTTPServer and a bare delegate (no routing, no request object)."""

    def __init__(self, up: Upstream):
        self.up = up

    def start_request(self, server_conn, request_conn):
        return BodyReader(self.up, request_conn)


class LeanApp(web.Application):
    """--mode lean: Tornado's routing and HTTPServerRequest and a close callback, but no
    RequestHandler: what a handler-less door would keep of Tornado's request path."""

    def get_handler_delegate(self, request, target_class, target_kwargs=None,
                             path_args=None, path_kwargs=None):
        return BodyReader(target_kwargs["upstream"], request.connection, watch_close=True)


# -- --mode protocol: no Tornado -----------------------------------------------------------

class ProtoWriter(Relay):
    """The Relay's answer written straight to the client's transport: a Content-Length
    body, or chunked (HTTP/1.1) as it arrives."""

    def __init__(self, up: Upstream, transport):
        self.up, self.transport = up, transport
        self.status, self.headers, self.started = 200, {}, False

    def set_status(self, status):
        self.status = status

    def set_header(self, name, value):
        self.headers[name] = value

    def _head(self, extra: str) -> bytes:
        lines = "".join(f"{k}: {v}\r\n" for k, v in self.headers.items())
        return f"HTTP/1.1 {self.status} OK\r\n{lines}{extra}\r\n".encode("latin-1")

    def write(self, data):
        if not self.started:
            self.started = True
            self.transport.write(self._head("Transfer-Encoding: chunked\r\n"))
        self.transport.write(b"%x\r\n%s\r\n" % (len(data), data))

    def flush(self):
        pass

    def finish(self, data=None):
        if self.started:
            self.transport.write(b"0\r\n\r\n")
        else:
            data = data or b""
            self.transport.write(self._head(f"Content-Length: {len(data)}\r\n") + data)


class ClientProtocol(asyncio.Protocol):
    """One client connection: httptools parses, each whole request is relayed in a task
    of its own (as Tornado runs a handler); keep-alive, no pipelining."""

    def __init__(self, up: Upstream):
        import httptools
        self.up = up
        self.parser = httptools.HttpRequestParser(self)
        self.body: list[bytes] = []

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        try:
            self.parser.feed_data(data)
        except Exception:  # httptools.HttpParserError
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            self.transport.close()

    def on_body(self, body):
        self.body.append(body)

    def on_message_complete(self):
        body, self.body = b"".join(self.body), []
        asyncio.ensure_future(ProtoWriter(self.up, self.transport).relay(body))


async def main(args):
    up = Upstream(args.upstream)
    if args.mode == "protocol":
        server = await asyncio.get_running_loop().create_server(
            lambda: ClientProtocol(up), "127.0.0.1", args.port, backlog=2048)
        await server.serve_forever()
    routes = [(r"/v1/chat/completions", Proxy, {"upstream": up})]
    if args.mode == "raw":
        server = HTTPServer(RawApp(up))
    elif args.mode == "lean":
        server = HTTPServer(LeanApp(routes))
    else:
        server = HTTPServer(web.Application(routes, log_function=lambda h: None))
    server.listen(args.port, "127.0.0.1", backlog=2048)
    await asyncio.Event().wait()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=18198)
    p.add_argument("--upstream", default="http://127.0.0.1:18100")
    p.add_argument("--uvloop", action="store_true")
    p.add_argument("--mode", choices=("handler", "lean", "raw", "protocol"), default="handler",
                   help="handler: the RequestHandler proxy (the issue's bare proxy); lean: "
                        "routing and HTTPServerRequest, no RequestHandler; raw: a bare "
                        "HTTPMessageDelegate; protocol: no Tornado (asyncio Protocol + "
                        "httptools)")
    a = p.parse_args()
    if a.uvloop:
        import uvloop
        uvloop.run(main(a))
    else:
        asyncio.run(main(a))
