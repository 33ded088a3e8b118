"""The accept loop both HTTP servers use: descriptor exhaustion pauses accepting briefly
(the pending connections wait in the kernel's backlog) instead of raising.

Tornado's own accept callback (netutil.add_accept_handler) lets EMFILE escape: the
listening socket stays readable, so the loop spins and logs a traceback per attempt (59 MB
of log in 5 s); asyncio's create_server and libuv's (uvloop) handle it their own ways, the
latter by accepting and closing connections to make room.
"""

from __future__ import annotations

import errno
import resource
import socket
import time
from typing import Callable

from tornado.ioloop import IOLoop

# accept() errors that mean "no descriptor or memory for another connection now".
EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
ACCEPT_PAUSE = 0.25  # seconds without accepting after such an error: the loop stays free
LOG_EVERY = 60.0  # seconds between two log lines about refused or failed accepts
MAX_LINGERING = 256  # refused connections read out before closing; beyond: closed at once


def accept_on(sock: socket.socket, handle: Callable[[socket.socket, tuple], None],
              exhausted: Callable[[str], None]) -> Callable[[], None]:
    """Accept connections on `sock` for as long as it is served, each passed to
    `handle(connection, address)`; `exhausted(message)` hears of each pause. Returns the
    function that stops accepting."""
    loop = IOLoop.current()
    state = {"removed": False, "paused": False}

    def resume():
        state["paused"] = False
        if not state["removed"]:
            loop.add_handler(sock, accept, IOLoop.READ)

    def accept(fd, events):
        for _ in range(128):  # as Tornado: bounded, so other work is not starved
            if state["removed"]:
                return
            try:
                connection, address = sock.accept()
            except BlockingIOError:
                return
            except ConnectionAbortedError:
                continue
            except OSError as e:
                if e.errno not in EXHAUSTED:
                    raise
                exhausted("cannot accept connections: %s (open-file limit %d); waiting "
                          "connections are served as descriptors free up. Raise `ulimit "
                          "-n` or lower server.max_connections" % (
                              e.strerror or e, resource.getrlimit(resource.RLIMIT_NOFILE)[0]))
                loop.remove_handler(sock)
                state["paused"] = True
                loop.call_later(ACCEPT_PAUSE, resume)
                return
            handle(connection, address)

    def remove():
        state["removed"] = True
        if not state["paused"]:
            loop.remove_handler(sock)

    loop.add_handler(sock, accept, IOLoop.READ)
    return remove


SERVE, REFUSE, DROP = "serve", "refuse", "drop"  # ConnectionCap.admit's verdicts


class ConnectionCap:
    """The cap on open client connections (server.max_connections) both servers keep: a
    connection within it is served; one beyond it gets a short 503 and a clean close
    (read out for a while, so the client sees the 503 rather than a reset), or, with
    MAX_LINGERING such closes under way, is closed at once. Refusals and failed accepts
    are logged once per interval and counted (tests, stats)."""

    def __init__(self, max_connections: int, logger):
        self.max_connections = max_connections
        self.open = 0  # connections served now
        self.lingering = 0  # refused connections being read out
        self.refused = 0
        self.accept_failures = 0  # accept() calls that found no descriptor
        self._report = Reports(logger)

    def admit(self) -> str:
        """SERVE, REFUSE or DROP a new connection; the caller reports its end with
        `closed(verdict)` for the first two."""
        if self.open < self.max_connections:
            self.open += 1
            return SERVE
        self.refused += 1
        self._report("refused", "refusing new connections: %d open, the limit is "
                                "server.max_connections=%d" % (self.open,
                                                              self.max_connections))
        if self.lingering >= MAX_LINGERING:
            return DROP
        self.lingering += 1
        return REFUSE

    def closed(self, verdict: str) -> None:
        if verdict == SERVE:
            self.open -= 1
        elif verdict == REFUSE:
            self.lingering -= 1

    def exhausted(self, message: str) -> None:
        """accept_on's report of a pause for want of descriptors."""
        self.accept_failures += 1
        self._report("exhausted", message)


class Reports:
    """One warning per interval and kind (refused connections, exhausted descriptors), with
    how often it happened meanwhile."""

    def __init__(self, logger, every: float = LOG_EVERY):
        self.log, self.every = logger, every
        self.last: dict[str, tuple[float, int]] = {}

    def __call__(self, what: str, message: str) -> None:
        last, count = self.last.get(what, (0.0, 0))
        now = time.monotonic()
        if now - last >= self.every:
            more = f" ({count} more since the last report)" if count else ""
            self.log.warning("%s%s", message, more)
            self.last[what] = (now, 0)
        else:
            self.last[what] = (last, count + 1)
