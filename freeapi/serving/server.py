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

from freeapi.serving.accept import DROP, REFUSE, SERVE, ConnectionCap, accept_on
from freeapi.serving.connection import ClientConnection

log = logging.getLogger("freeapi.server")

_FLUSH_WAIT = 1.0  # seconds close_all_connections waits for answers to go out


class HttptoolsServer:
    def __init__(self, app, max_connections: int, max_body_size: int,
                 stall_timeout: float | None, refusal: bytes):
        self.app = app  # an HTTPServerConnectionDelegate: the tornado.web.Application
        self.cap = ConnectionCap(max_connections, log)
        self.max_body_size = max_body_size
        self.stall_timeout = stall_timeout
        self.refusal = refusal  # the 503 a connection beyond the cap gets
        self._connections: set[ClientConnection] = set()
        self._stops: list = []
        self._sockets: list[socket.socket] = []
        self._all_closed: asyncio.Future | None = None

    def listen(self, port: int, address: str = "", reuse_port: bool = False,
               backlog: int = 2048) -> None:
        self.add_sockets(netutil.bind_sockets(port, address or None, reuse_port=reuse_port,
                                              backlog=backlog))

    def add_sockets(self, sockets) -> None:
        for sock in sockets:
            self._sockets.append(sock)
            self._stops.append(accept_on(sock, self.serve_connection, self.cap.exhausted))

    def serve_connection(self, sock: socket.socket, address) -> None:
        """Serve one accepted client connection (or refuse it, at the cap)."""
        sock.setblocking(False)  # (before the cap counts it: nothing after admit() raises)
        verdict = self.cap.admit()
        if verdict == DROP:
            sock.close()
            return
        conn = ClientConnection(self)
        conn.refusing = verdict == REFUSE
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
        self.cap.closed(REFUSE if conn.refusing else SERVE)
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
