"""Server-sent events: an incremental parser for upstream streams, and the writer of the
client's stream."""

from __future__ import annotations

import asyncio
import time

from tornado.iostream import StreamClosedError

from freeapi.errors import UpstreamError


# The largest event (or line) a vendor's stream may send, by default: real events are a
# few KB (a large tool call's arguments arrive in many events); a longer one is a broken
# or hostile vendor, which must not hold the gateway's memory (server.max_event_size).
MAX_EVENT = 4 * 1024 * 1024
# Line ends as byte values: `int in bytes` is a memchr, while a bytes needle (`b"\n" in
# data`) first fails as an integer inside CPython 3.11 (an exception made and cleared, a
# few times the cost of the search itself on every event).
_LF, _CR = ord("\n"), ord("\r")


class SSEParser:
    """Feed raw bytes as they arrive; get back the `data` of each complete event.

    Handles events split across reads, several events in one read, LF / CRLF / CR line
    endings, multi-line `data:` fields (joined with "\\n") and comment lines, which are
    dropped (the gateway sends its own keep-alives).

    Each byte is scanned a bounded number of times: a read without a line end is only
    kept, not rescanned with the next one (a 50 MB line without a newline once cost
    minutes of blocked loop). An event (or a line) longer than `max_event` bytes is an
    UpstreamError.
    """

    __slots__ = ("_parts", "_tail_size", "_cr", "_data", "_event_size", "max_event")

    def __init__(self, max_event: int = MAX_EVENT):
        self._parts: list[bytes] = []  # the unfinished last line, as it arrived
        self._tail_size = 0
        self._cr = False  # the last read ended with CR: a LF next is the same line end
        self._data: list[str] = []
        self._event_size = 0  # bytes of `data` in the event being read
        self.max_event = max_event

    def feed(self, chunk: bytes) -> list[str]:
        if self._cr and chunk:
            self._cr = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if not chunk:
            return []
        if _LF not in chunk and _CR not in chunk:
            self._parts.append(chunk)  # the line goes on
            self._tail_size += len(chunk)
            self._check()
            return []
        if self._parts:
            buf = b"".join(self._parts) + chunk
            self._parts.clear()
        else:
            buf = chunk
        if _CR in buf:
            self._cr = buf.endswith(b"\r")
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        # An event ends at a blank line, so the text splits into events at "\n\n"; most
        # are one `data: ` line and take one step here, not one per line (the lines of
        # the rest, and of the unfinished last part, are read one by one as before).
        blocks = buf.split(b"\n\n")
        lines = blocks.pop().split(b"\n")
        tail = lines.pop()
        events: list[str] = []
        data = self._data
        for block in blocks:
            # (only the first block can continue an event of the previous read)
            if not data and block[:6] == b"data: " and _LF not in block:
                events.append(block[6:].decode("utf-8", "replace"))
                continue
            self._lines(block.split(b"\n"), events)
            if data:  # the blank line that ended the block
                events.append("\n".join(data))
                data.clear()
                self._event_size = 0
        if lines:
            self._lines(lines, events)
        self._tail_size = len(tail)
        if tail:
            self._parts.append(tail)
        self._check()
        return events

    def _lines(self, lines: list[bytes], events: list[str]) -> None:
        data = self._data
        for line in lines:
            if not line:
                if data:
                    events.append("\n".join(data))
                    data.clear()
                    self._event_size = 0
                continue
            if line[:5] == b"data:":
                value = line[5:]
                if value[:1] == b" ":
                    value = value[1:]
                data.append(value.decode("utf-8", "replace"))
                self._event_size += len(value) + 1
            # Comments (":") and the event/id/retry fields carry nothing the relay needs.

    def _check(self):
        if self._tail_size + self._event_size > self.max_event:
            self._parts.clear()
            self._data.clear()
            raise UpstreamError("protocol", f"a stream event is larger than the gateway's "
                                            f"limit of {self.max_event} bytes "
                                            "(server.max_event_size)")

    @property
    def idle(self) -> bool:
        """Nothing of an event or a line is pending: the next read starts afresh."""
        return not (self._parts or self._data or self._cr)

    def close(self) -> list[str]:
        """Events still pending when the stream ends without a final blank line."""
        self._cr = False
        events = self.feed(b"\n\n") if (self._parts or self._data) else []
        self._parts.clear()
        return events


class Run:
    """A read that is nothing but whole events of one `data: ` line each, in valid UTF-8
    (a fast vendor's usual read): as SSE, these bytes are already what a client gets for
    them, so a relay with nothing to change in them can pass them on in one piece
    (freeapi/relay.py, StreamRelay.block) instead of event by event."""

    __slots__ = ("raw", "parts")

    def __init__(self, raw: bytes, parts: list[bytes]):
        self.raw = raw
        self.parts = parts  # each event's `data: ...` line

    @classmethod
    def of(cls, data: bytes) -> "Run | None":
        """`data` as a Run, or None when anything in it needs SSEParser's reading
        (comments, other fields, multi-line data, CR line ends, a part of an event, bytes
        that are not UTF-8)."""
        if data[:6] != b"data: " or data[-2:] != b"\n\n" or _CR in data:
            return None
        parts = data.split(b"\n\n")
        parts.pop()  # the empty rest after the last blank line
        n = len(parts)
        # Every line a `data: ` line of its own event: no LF but the blank lines' pairs, and
        # each event but the first starting with `data: ` right after one.
        if data.count(b"\n") != 2 * n or data.count(b"\n\ndata: ") != n - 1:
            return None
        if not data.isascii():
            try:
                data.decode()
            except UnicodeDecodeError:  # SSEParser replaces what is not UTF-8
                return None
        return cls(data, parts)

    def first(self) -> str:
        """The first event's data."""
        return self.parts[0][6:].decode()

    def events(self, start: int = 0) -> list[str]:
        """The events' data from `start` on, as SSEParser.feed gives them."""
        return [p[6:].decode() for p in self.parts[start:]]

    def lengths(self, stop: int) -> list[int]:
        """The first `stop` events' data lengths in characters (len() of SSEParser's)."""
        parts = self.parts[:stop]
        if self.raw.isascii():
            return [len(p) - 6 for p in parts]
        return [len(p[6:].decode()) for p in parts]


def event(data: str | bytes) -> bytes:
    if isinstance(data, str):
        try:
            data = data.encode()
        except UnicodeEncodeError:
            data = utf8_replacing(data)
    return b"data: " + data + b"\n\n"


def utf8_replacing(text: str) -> bytes:
    """UTF-8 of text that holds lone surrogates (a vendor's `\\ud800` escape, parsed):
    each becomes U+FFFD, the rest is kept (pairs split in two are joined)."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode()


DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": keep-alive\n\n"


class WriteTimeout(StreamClosedError):
    """A write to the client did not complete before the writer's deadline."""


class SSEWriter:
    """Commits the SSE response, writes and flushes, and sends keep-alive comments while the
    vendor is silent (before its first byte too, so proxies and clients do not give up)."""

    def __init__(self, handler, interval: float, keepalive: bytes = KEEPALIVE):
        self.handler = handler  # a front door (freeapi/pipeline/door.py)
        self.interval = interval
        self.keepalive = keepalive  # the door's own: a comment, or Anthropic's `ping` event
        self.committed = False
        self.deadline: float | None = None  # monotonic; a write still blocked then fails
        self._last = time.monotonic()
        # One timer per stream, re-armed lazily (a write only records its time), and a task
        # only when a keep-alive is actually due: most streams never need one.
        self._loop = asyncio.get_running_loop()
        self._stopped = False
        self._ping: asyncio.Future | None = None
        self._timer = self._loop.call_later(interval, self._tick)

    def commit(self):
        """Fix the response as a 200 event stream; the headers leave with the first write,
        in the same packet as the first event."""
        if self.committed:
            return
        self.committed = True
        self.handler.event_stream_headers()

    async def send(self, data: bytes):
        if not self.committed:
            self.commit()
        self._last = time.monotonic()
        self.handler.write(data)
        done = self.handler.flush()
        if self.deadline is None or done.done():
            await done
            return
        try:
            await asyncio.wait_for(done, self.deadline - self._last)
        except asyncio.TimeoutError:
            # The client stopped reading and the request's time is up: end it, whatever
            # the client does, so its key (and max_concurrency slot) comes free.
            self.handler.cut()
            raise WriteTimeout() from None

    def _tick(self):
        self._timer = None
        if self._stopped:
            return
        delay = self._last + self.interval - time.monotonic()
        if delay > 0:  # written meanwhile: wait out the rest of the new period
            self._timer = self._loop.call_later(delay, self._tick)
            return
        self._ping = asyncio.ensure_future(self._send_keepalive())

    async def _send_keepalive(self):
        try:
            await self.send(self.keepalive)
        except (StreamClosedError, asyncio.CancelledError):
            return
        if not self._stopped:
            self._timer = self._loop.call_later(self.interval, self._tick)

    def stop(self):
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._ping is not None and not self._ping.done():
            self._ping.cancel()
