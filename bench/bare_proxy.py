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
uvloop against bare-on-uvloop ratio.
"""
import argparse
import asyncio
from urllib.parse import urlsplit

from tornado import web


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


class Proxy(web.RequestHandler):
    def initialize(self, upstream: Upstream):
        self.up = upstream

    async def post(self):
        body = self.request.body
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


async def main(args):
    app = web.Application([(r"/v1/chat/completions", Proxy, {"upstream": Upstream(args.upstream)})],
                          log_function=lambda h: None)
    app.listen(args.port, "127.0.0.1", backlog=2048)
    await asyncio.Event().wait()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=18198)
    p.add_argument("--upstream", default="http://127.0.0.1:18100")
    p.add_argument("--uvloop", action="store_true")
    a = p.parse_args()
    if a.uvloop:
        import uvloop
        uvloop.run(main(a))
    else:
        asyncio.run(main(a))
