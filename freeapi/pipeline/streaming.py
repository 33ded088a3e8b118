"""The response writer: the answer as the door's client gets it.

A streamed answer: the SSE response (keep-alives until the first event, the door's
encoder, an error event after the first byte, a client that stops reading cut off at
timeouts.total), and the reasoning a -silent stream kept from the client. A non-stream
answer: the vendor's bytes as they are when nothing in them must change, else parsed and
rewritten; `stream: false` requests for models the vendor only streams are streamed and
assembled into one completion."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from tornado.iostream import StreamClosedError

from freeapi import reasoning, sse
from freeapi.errors import (APIError, ClientGone, upstream_failure, UpstreamError,
                            vendor_error)
from freeapi.keys import redact
from freeapi.pipeline.accounting import stream_sizes
from freeapi.pipeline.exchange import Exchange
from freeapi.pipeline.failover import shutdown_error
from freeapi.pipeline.history import owner
from freeapi.pipeline.open_stream import OpenStream
from freeapi.relay import StreamRelay, assemble, complete, unchanged
from freeapi.routing import Route

log = logging.getLogger("freeapi.pipeline")


@dataclass
class Answer:
    """A non-stream answer: the vendor's bytes as they are, or a parsed dict."""
    raw: bytes | None = None
    data: dict | None = None
    native: bool = False

    def json(self) -> dict:
        if self.data is None:
            if self.raw is None:
                raise ValueError("an Answer holds the vendor's bytes or a parsed dict")
            self.data = json.loads(self.raw)
        return self.data


def _json_object(raw: bytes, provider) -> dict:
    try:  # parsed even when relayed as is: `{not json}` must not pass for an answer
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise vendor_error(provider.name, 502, "the answer was not a JSON object") from None
    return data


class ResponseWriter:
    """`complete` (a non-stream answer) or `stream` (the SSE response); both get the
    vendor's answer through the failover's `attempt`. The conversation step sees the
    answer (`answered`, `watch`); -silent and the doors that remember reasoning keep
    a tool-call answer's reasoning (`remember_reasoning`)."""

    def __init__(self, gateway, failover, conversations):
        # gateway: store, config (keepalive_interval, reasoning), active, shutting_down
        self.gateway, self.failover, self.conversations = gateway, failover, conversations

    # -- a non-stream answer ----------------------------------------------------------------

    async def complete(self, ex: Exchange, route: Route, model: str, body: dict,
                       token) -> Answer:
        if route.provider.stream_only(route.upstream_model, body):
            got, route = await self._collect(ex, route, model, body, token)
            await self.remember_reasoning(ex, route, got)
            return self.parsed(ex, complete(got, route, model))
        raw, route = await self.failover.attempt(ex, route, model, body, token, stream=False)
        if ex.served_native:
            try:
                assert ex.native is not None, "served_native: the attempt used ex.native"
                data, ex.usage = ex.native.answer(raw, route.shown_as or model)
            except (ValueError, UnicodeDecodeError, RecursionError):
                raise vendor_error(route.provider.name, 502, "the answer was not a JSON "
                                   "object") from None
            return Answer(data=data, native=True)
        data = _json_object(raw, route.provider)
        # Nothing to change: the vendor's bytes as they are, no second encoding (a long
        # keep-alive prefix of blank lines takes the slow path).
        if (ex.conversation is None and not ex.door.remembers_reasoning
                and unchanged(route, model) and raw[:64].lstrip()[:1] == b"{"):
            usage = data.get("usage")  # parsed above: no second decode for the ledger
            ex.usage = usage if isinstance(usage, dict) else None
            return Answer(raw=raw, data=data)
        await self.remember_reasoning(ex, route, data)
        return self.parsed(ex, complete(data, route, model))

    def parsed(self, ex: Exchange, data: dict) -> Answer:
        """A parsed chat.completion as the client gets it; its usage for the ledger."""
        usage = data.get("usage")
        ex.usage = usage if isinstance(usage, dict) else None
        return Answer(data=self.conversations.answered(ex, data))

    def watch(self, ex: Exchange, relay) -> None:
        """The stream's relay: the ledger reads its usage, a conversation its answer."""
        ex.relay = relay
        self.conversations.watch(ex, relay)

    # -- a streamed answer ------------------------------------------------------------------

    async def stream(self, ex: Exchange, route: Route, model: str, body: dict, token,
                     include_usage: bool):
        h = ex.door
        ex.writer = writer = sse.SSEWriter(h, self.gateway.config.keepalive_interval,
                                           h.keepalive)
        try:
            try:
                resp, route = await self.failover.attempt(ex, route, model, body, token,
                                                          stream=True)
            except APIError as e:
                if not writer.committed:
                    raise
                ex.error = e.code
                await writer.send(h.stream_error(e))
                return
            # timeouts.total bounds the writes to the client too: one that stops reading
            # cannot hold the key past it.
            writer.deadline = ex.deadline
            keys = [ex.lease.key] if ex.lease else ()

            def hidden(answer, route=route):  # kept by _ending, at the stream's end
                ex.hidden = (route, answer)
            if ex.served_native:
                assert ex.native is not None, "served_native: the attempt used ex.native"
                encoder = ex.native.relay(route.shown_as or model, keys)
                ex.relay = encoder
                if h.remembers_reasoning and hasattr(encoder, "on_finish"):
                    # a native relay that can tell the answer's reasoning (Responses)
                    encoder.on_finish = hidden
            else:
                relay = StreamRelay(route, model, include_usage=include_usage, keys=keys)
                self.watch(ex, relay)
                encoder = h.chat_encoder(relay)
                if route.display == "silent" or h.remembers_reasoning:
                    # the door's encoder sees the whole answer when it re-encodes chunks
                    (relay if route.display == "silent" else encoder).on_finish = hidden
            if not ex.client_gone:
                await self._relay(ex, resp, encoder, route.provider)
        finally:
            writer.stop()

    async def remember_reasoning(self, ex: Exchange, route: Route, result) -> None:
        """-silent: keep the reasoning of an answer that ended in tool calls, for the turn
        that brings their results back (freeapi/reasoning.py)."""
        if route.display == "silent" or ex.door.remembers_reasoning:
            cfg = self.gateway.config.reasoning
            await reasoning.remember(self.gateway.store, result, owner=owner(ex.door),
                                     ttl=cfg.ttl, max_chars=cfg.max_chars)

    async def _ending(self, ex: Exchange, tail: bytes) -> bytes:
        """A complete stream's last bytes, once what it hid is remembered."""
        if ex.hidden is not None:
            (route, answer), ex.hidden = ex.hidden, None
            await self.remember_reasoning(ex, route, answer)
        return tail

    async def _relay(self, ex: Exchange, stream: OpenStream, encoder, provider):
        writer, h = ex.writer, ex.door
        assert writer is not None, "ResponseWriter.stream opens the writer before relaying"
        writer.commit()
        # An encoder with `block` takes the events at the start of a read of whole one-line
        # events (sse.Run) in one piece, as the vendor's bytes, when nothing in them needs
        # changing: one step for them, not one per event.
        block = getattr(encoder, "block", None)
        # Closed below, not left to the garbage collector: an async generator left
        # unfinished (the loop returns at [DONE]) costs asyncio's finalizer hook a wake-up
        # of the loop from "another thread" and a task, per stream.
        batches = stream.batches(runs=block is not None)
        try:
            try:
                count = stream_sizes(ex)
                async for events in batches:
                    out: list[bytes] = []
                    if type(events) is sse.Run:
                        assert block is not None, "runs come only to an encoder with block"
                        events = _unpassed(events, block, count, out)
                    count(events)  # sizes, for a usage estimate should no usage come
                    for ev in events:
                        if ev == "[DONE]":
                            await writer.send(await self._ending(ex, b"".join(out)
                                                                 + encoder.finish()))
                            writer.stop()
                            h.finish()  # the client is done; draining is ours alone
                            await stream.drain()
                            return
                        piece = encoder.feed(ev)
                        if piece:
                            out.append(piece)
                    if out:
                        await writer.send(b"".join(out))
                # A clean end without [DONE] (some servers omit it) still completes.
                await writer.send(await self._ending(ex, encoder.finish()))
            except (UpstreamError, RecursionError) as e:
                if ex.client_gone:
                    return
                if isinstance(e, RecursionError):  # an event nested deeper than json takes
                    e = UpstreamError("protocol", "a stream event is nested too deeply")
                if e.kind == "aborted" and self.gateway.shutting_down:
                    err = shutdown_error()
                else:
                    # (the text, not the error: a handler that keeps records, such as a
                    # MemoryHandler, would keep the request alive through its traceback)
                    log.warning("%s: stream failed mid-way: %s", provider.name, str(e))
                    end(self.gateway, ex, None, error=e.kind)
                    err = upstream_failure(provider.name, e)
                err.message += " (the answer above is incomplete)"
                ex.error = err.code
                await writer.send(h.stream_error(err))
        except StreamClosedError as e:
            # The client left (on_connection_close cancelled the vendor request), or
            # stopped reading until timeouts.total ran out and was cut off.
            if isinstance(e, sse.WriteTimeout):
                log.warning("%s: the client stopped reading; ended at timeouts.total",
                            provider.name)
                ex.error = "client_stalled"
        finally:
            await batches.aclose()
            stream.close()

    async def _collect(self, ex: Exchange, route, model: str, body: dict,
                       token) -> tuple[dict, Route]:
        """A `stream: false` request for a model the vendor only streams: stream it (with
        usage, so the answer carries the real numbers) and assemble one completion."""
        body = dict(body, stream=True, stream_options={"include_usage": True})
        stream, route = await self.failover.attempt(ex, route, model, body, token,
                                                    stream=True)
        assert ex.lease is not None, "an attempt that served holds its key's lease"
        provider, keys = route.provider, [ex.lease.key]
        normalize = provider.chunk_normalizer()
        got: list[dict] = []
        try:
            async for events in stream.batches():
                for ev in events:
                    if ev == "[DONE]":
                        await stream.drain()
                        return assemble(got), route
                    try:
                        chunk = json.loads(ev)
                        if not isinstance(chunk, dict):
                            raise ValueError
                        if not ("error" in chunk and "choices" not in chunk):
                            chunk = normalize(chunk)
                    except (ValueError, TypeError, AttributeError, RecursionError):
                        raise vendor_error(provider.name, 502, "a stream event was not a "
                                           "JSON object") from None
                    if "error" in chunk and "choices" not in chunk:
                        raise self._event_error(ex, provider, chunk, keys)
                    got.append(chunk)
        except UpstreamError as e:
            if ex.client_gone:
                raise ClientGone() from None
            raise upstream_failure(provider.name, e) from None
        finally:
            stream.close()
        return assemble(got), route

    @staticmethod
    def _event_error(ex: Exchange, provider, chunk: dict, keys) -> APIError:
        """An error event met while assembling: what the vendor's own codes say it is (a
        GLM content filter is the request's 400, a Kimi quota the key's 402; as the relay
        tells a streaming client), and the key's verdict from it."""
        err = provider.chunk_error(chunk, keys)
        if err is None:
            detail = chunk["error"] if isinstance(chunk["error"], dict) else {}
            err = vendor_error(provider.name, 502, redact(
                str(detail.get("message") or chunk["error"])[:500], keys))
        if ex.lease is not None:
            lease, ex.lease = ex.lease, None
            lease.release(err.status, retry_after=err.retry_after)
        return err


def _unpassed(run: sse.Run, block, count, out: list[bytes]) -> list[str]:
    """The events at the start of `run` that the encoder's `block` passes as they are go to
    `out` in one piece (and are counted); the rest are returned, to be fed one by one."""
    raw = run.raw
    n = block(raw)
    whole = n == len(raw)
    passed = len(run.parts) if whole else raw.count(b"\n\n", 0, n)
    if passed:
        count.add(run.lengths(passed))
        out.append(raw if whole else raw[:n])
    return [] if whole else run.events(passed)


def end(gateway, ex: Exchange, status: int | None = 200, error: str | None = None) -> None:
    """The request is over for the gateway (no longer active, for graceful shutdown) and
    for its key (released with the answer's verdict)."""
    gateway.active.discard(ex.door)
    if ex.lease is not None:
        ex.lease.release(status, error=error)
        ex.lease = None
