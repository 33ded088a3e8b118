"""A vendor's event stream, opened: read until its first data event, then relayed in
batches (freeapi/pipeline/streaming.py) and drained for the connection's reuse. Failover
(freeapi/pipeline/failover.py) opens it and fails over on what the first event says.
"""

from __future__ import annotations

import json
import time

from freeapi import sse
from freeapi.errors import APIError, UpstreamError
from freeapi.provider import Provider
from freeapi.upstream import Response


class OpenStream:
    """A vendor's event stream whose first data event has arrived.

    Vendors answer 200 at once and then may queue the request for minutes, sending only
    `: keep-alive` comments (DeepSeek does); the first data event, not the headers, is
    when the answer really starts, so failover stays possible until then.
    """

    def __init__(self, resp: Response, chunks, parser: sse.SSEParser,
                 pending: list[str] | sse.Run):
        # pending: the events read with the first one (a Run when that read was one)
        self.resp, self.chunks, self.parser, self.pending = resp, chunks, parser, pending
        self.waited = 0.0  # seconds spent waiting for the vendor's events after the first

    @classmethod
    async def first_event(cls, resp: Response, idle: float, first_deadline: float,
                          deadline: float, max_event: int = sse.MAX_EVENT) -> "OpenStream":
        parser = sse.SSEParser(max_event)
        resp.deadline = min(first_deadline, deadline)
        chunks = resp.chunks(idle).__aiter__()
        pending: list[str] | sse.Run = []
        try:
            while not pending:
                try:
                    data = await chunks.__anext__()
                    # (a fast vendor's whole answer often comes in this one read)
                    run = (sse.Run.of(data) if parser.idle and len(data) <= max_event
                           else None)
                    pending = run if run is not None else parser.feed(data)
                except StopAsyncIteration:
                    pending = parser.close()
                    if not pending:  # empty, or nothing an event stream would hold
                        raise UpstreamError("protocol", "the event stream ended before "
                                                        "its first event") from None
        except BaseException:
            resp.close()  # a framing error or an oversized event: the connection is done
            raise
        finally:
            resp.deadline = deadline
        return cls(resp, chunks, parser, pending)

    async def batches(self, runs: bool = False):
        """Lists of event data as they arrive: what first_event read, then one list per
        read that completed events; the parser's remainder when the body ends. With
        `runs`, a read that is nothing but whole one-line events comes as an sse.Run
        instead, its bytes as the vendor sent them (for a relay that can pass them on)."""
        if self.pending:
            pending, self.pending = self.pending, []
            yield pending if runs or type(pending) is not sse.Run else pending.events()
        parser = self.parser
        asked = time.monotonic()
        async for data in self.chunks:
            self.waited += time.monotonic() - asked  # the vendor's time, not the gateway's
            if runs and len(data) <= parser.max_event and parser.idle:
                run = sse.Run.of(data)
                if run is not None:
                    yield run
                    asked = time.monotonic()
                    continue
            events = parser.feed(data)
            if events:
                yield events
            asked = time.monotonic()
        tail = self.parser.close()
        if tail:
            yield tail

    async def drain(self):
        """Read the end of the body (after [DONE]) so the connection can be reused."""
        # The upstream call's own watchdog bounds it (no task and timer of wait_for's).
        end = time.monotonic() + 2.0
        if self.resp.deadline is None or self.resp.deadline > end:
            self.resp.deadline = end
        try:
            async for _ in self.chunks:
                pass
        except UpstreamError:
            pass

    def error(self, provider, key) -> APIError | None:
        """An error the vendor sent as the stream's first event, instead of an answer:
        nothing has reached the client, so it fails over like any other error."""
        pending = self.pending
        first = pending.first() if isinstance(pending, sse.Run) else pending[0]
        if first == "[DONE]" or ('"error"' not in first
                                 and type(provider).body_error is Provider.body_error):
            return None
        try:
            chunk = json.loads(first)
        except (ValueError, RecursionError):
            return None
        return provider.chunk_error(chunk, [key]) if isinstance(chunk, dict) else None

    def close(self):
        self.resp.close()
