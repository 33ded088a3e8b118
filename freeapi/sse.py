"""Server-sent events: an incremental parser for upstream streams, and the writer of the
client's stream."""

from __future__ import annotations

import asyncio
import time

from tornado.iostream import StreamClosedError


class SSEParser:
    """Feed raw bytes as they arrive; get back the `data` of each complete event.

    Handles events split across reads, several events in one read, LF / CRLF / CR line
    endings, multi-line `data:` fields (joined with "\\n") and comment lines, which are
    dropped (the gateway sends its own keep-alives).
    """

    __slots__ = ("_tail", "_data")

    def __init__(self):
        self._tail = b""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[str]:
        buf = self._tail + chunk if self._tail else chunk
        if b"\r" in buf:
            # A trailing CR may be the first half of a CRLF split across reads.
            held = buf.endswith(b"\r")
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if held:
                buf = buf[:-1]
        else:
            held = False
        lines = buf.split(b"\n")
        self._tail = lines.pop() + (b"\r" if held else b"")
        events = []
        data = self._data
        for line in lines:
            if not line:
                if data:
                    events.append("\n".join(data))
                    data.clear()
                continue
            if line[:5] == b"data:":
                value = line[5:]
                if value[:1] == b" ":
                    value = value[1:]
                data.append(value.decode("utf-8", "replace"))
            # Comments (":") and the event/id/retry fields carry nothing the relay needs.
        return events

    def close(self) -> list[str]:
        """Events still pending when the stream ends without a final blank line."""
        events = self.feed(b"\n\n") if (self._tail or self._data) else []
        self._tail = b""
        return events


def event(data: str | bytes) -> bytes:
    if isinstance(data, str):
        data = data.encode()
    return b"data: " + data + b"\n\n"


DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": keep-alive\n\n"


class SSEWriter:
    """Commits the SSE response, writes and flushes, and sends keep-alive comments while the
    vendor is silent (before its first byte too, so proxies and clients do not give up)."""

    def __init__(self, handler, interval: float, keepalive: bytes = KEEPALIVE):
        self.handler = handler
        self.interval = interval
        self.keepalive = keepalive  # the door's own: a comment, or Anthropic's `ping` event
        self.committed = False
        self._last = time.monotonic()
        self._task = asyncio.ensure_future(self._keepalive())

    def commit(self):
        """Fix the response as a 200 event stream; the headers leave with the first write,
        in the same packet as the first event."""
        if self.committed:
            return
        self.committed = True
        h = self.handler
        h.set_header("Content-Type", "text/event-stream; charset=utf-8")
        h.set_header("Cache-Control", "no-cache")
        h.set_header("X-Accel-Buffering", "no")

    async def send(self, data: bytes):
        if not self.committed:
            self.commit()
        self._last = time.monotonic()
        self.handler.write(data)
        await self.handler.flush()

    async def _keepalive(self):
        try:
            while True:
                delay = self._last + self.interval - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                    continue
                await self.send(self.keepalive)
        except (StreamClosedError, asyncio.CancelledError):
            pass

    def stop(self):
        self._task.cancel()
