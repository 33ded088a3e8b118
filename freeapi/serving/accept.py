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
