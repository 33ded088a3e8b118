"""The gateway's HTTP server on httptools (freeapi/serving/connection.py): the same
contract as server.GatewayServer on Tornado's HTTPServer -- a cap on open connections
(beyond it a short 503 and a clean close), the accept loop that survives running out of
descriptors, the connection watch's stall deadlines, TCP_NODELAY for a connection's life
-- and the methods `freeapi serve` and the tests call: listen, add_sockets, stop,
close_all_connections.
"""

from __future__ import annotations

import asyncio
import logging
import socket

from tornado import netutil

from freeapi.serving.accept import MAX_LINGERING, Reports, accept_on
from freeapi.serving.connection import ClientConnection

log = logging.getLogger("freeapi.server")

_FLUSH_WAIT = 1.0  # seconds close_all_connections waits for answers to go out


class HttptoolsServer:
    def __init__(self, app, max_connections: int, max_body_size: int,
                 stall_timeout: float | None, refusal: bytes):
        self.app = app  # an HTTPServerConnectionDelegate: the tornado.web.Application
        self.max_connections = max_connections
        self.max_body_size = max_body_size
        self.stall_timeout = stall_timeout
        self.open_connections = 0
        self.refused = 0  # connections refused at the cap, for tests and stats
        self.accept_failures = 0  # accept() calls that found no descriptor
        self.refusal = refusal  # the 503 a connection beyond the cap gets
        self._lingering = 0
        self._connections: set[ClientConnection] = set()
        self._stops: list = []
        self._sockets: list[socket.socket] = []
        self._all_closed: asyncio.Future | None = None
        self._report = Reports(log)

    def listen(self, port: int, address: str = "", reuse_port: bool = False,
               backlog: int = 2048) -> None:
        self.add_sockets(netutil.bind_sockets(port, address or None, reuse_port=reuse_port,
                                              backlog=backlog))

    def add_sockets(self, sockets) -> None:
        for sock in sockets:
            self._sockets.append(sock)
            self._stops.append(accept_on(sock, self.serve_connection, self._exhausted))

    def _exhausted(self, message: str) -> None:
        self.accept_failures += 1
        self._report("exhausted", message)

    def serve_connection(self, sock: socket.socket, address) -> None:
        """Serve one accepted client connection (or refuse it, at the cap)."""
        sock.setblocking(False)
        conn = ClientConnection(self)
        if self.open_connections >= self.max_connections:
            self.refused += 1
            self._report("refused", "refusing new connections: %d open, the limit is "
                                    "server.max_connections=%d" % (self.open_connections,
                                                                  self.max_connections))
            if self._lingering >= MAX_LINGERING:
                sock.close()
                return
            self._lingering += 1
            conn.refusing = True
        else:
            self.open_connections += 1
        self._connections.add(conn)
        loop = asyncio.get_running_loop()
        task = loop.create_task(loop.connect_accepted_socket(lambda: conn, sock))
        task.add_done_callback(lambda t: self._transport_made(t, conn, sock))

    def _transport_made(self, task: asyncio.Task, conn: ClientConnection, sock) -> None:
        if task.cancelled() or task.exception() is not None:
            # never served (the loop closing, a socket already reset)
            sock.close()
            self.connection_closed(conn)

    def connection_closed(self, conn: ClientConnection) -> None:
        if conn not in self._connections:
            return
        self._connections.discard(conn)
        if conn.refusing:
            self._lingering -= 1
        else:
            self.open_connections -= 1
        if not self._connections and self._all_closed is not None \
                and not self._all_closed.done():
            self._all_closed.set_result(None)

    def stop(self) -> None:
        """Stop accepting; open connections are served on."""
        for stop in self._stops:
            stop()
        for sock in self._sockets:
            sock.close()
        self._stops, self._sockets = [], []

    async def close_all_connections(self) -> None:
        """Close every client connection and wait until they are gone."""
        if not self._connections:
            return
        self._all_closed = asyncio.get_running_loop().create_future()
        for conn in list(self._connections):
            conn.close()  # after what is written so far has gone out
        try:
            await asyncio.wait_for(asyncio.shield(self._all_closed), _FLUSH_WAIT)
        except asyncio.TimeoutError:
            # A client that reads nothing would hold its connection open: what it has not
            # taken is dropped, as Tornado's IOStream.close drops it.
            for conn in list(self._connections):
                conn.abort()
            await self._all_closed
