"""The pipeline's part in streams: the SSE response of a streamed answer (keep-alives
until the first event, the door's encoder, an error event after the first byte, a client
that stops reading cut off at timeouts.total), the reasoning a -silent stream kept from
the client, and `stream: false` requests for models the vendor only streams (streamed and
assembled into one completion)."""

from __future__ import annotations

import json
import logging

from tornado.iostream import StreamClosedError

from freeapi import reasoning, sse
from freeapi.errors import APIError, UpstreamError, upstream_failure, vendor_error
from freeapi.handlers.base import ClientGone
from freeapi.keys import redact
from freeapi.pipeline.failover import OpenStream, shutdown_error
from freeapi.relay import StreamRelay, assemble
from freeapi.routing import Route

log = logging.getLogger("freeapi.pipeline")


class StreamingMixin:
    """Part of the Pipeline: `_stream` (a streamed answer), `_collect` (a stream-only
    model's answer assembled), `_remember_reasoning`."""

    async def _stream(self, route: Route, model: str, body: dict, token, include_usage):
        h = self.handler
        self._writer = writer = sse.SSEWriter(h, self.gateway.config.keepalive_interval,
                                              h.keepalive)
        try:
            try:
                resp, route = await self._attempt(route, model, body, token, stream=True)
            except APIError as e:
                if not writer.committed:
                    raise
                self._error = e.code
                await writer.send(h.stream_error(e))
                return
            # timeouts.total bounds the writes to the client too: one that stops reading
            # cannot hold the key past it.
            writer.deadline = self._deadline
            keys = [self._lease.key] if self._lease else ()
            if self.native:
                encoder = self._native.relay(route.shown_as or model, keys)
                self._stream_relay = encoder
                if h.remembers_reasoning and hasattr(encoder, "on_finish"):
                    # a native relay that can tell the answer's reasoning (Responses)
                    encoder.on_finish = lambda answer: setattr(self, "_hidden", (route, answer))
            else:
                relay = StreamRelay(route, model, include_usage=include_usage, keys=keys)
                self._watch_relay(relay)
                encoder = h.chat_encoder(relay)
                if route.display == "silent" or h.remembers_reasoning:
                    # the door's encoder sees the whole answer when it re-encodes chunks
                    (relay if route.display == "silent" else encoder).on_finish = \
                        lambda answer: setattr(self, "_hidden", (route, answer))
            if not self._client_gone:
                await self._relay(resp, encoder, route.provider)
        finally:
            writer.stop()

    _hidden = None  # (route, what a -silent stream kept from the client), at its end

    async def _remember_reasoning(self, route: Route, result) -> None:
        """-silent: keep the reasoning of an answer that ended in tool calls, for the turn
        that brings their results back (freeapi/reasoning.py)."""
        if route.display == "silent" or self.handler.remembers_reasoning:
            cfg = self.gateway.config.reasoning
            await reasoning.remember(self.gateway.store, result, owner=self._owner(),
                                     ttl=cfg.ttl, max_chars=cfg.max_chars)

    async def _ending(self, tail: bytes) -> bytes:
        """A complete stream's last bytes, once what it hid is remembered."""
        if self._hidden is not None:
            (route, answer), self._hidden = self._hidden, None
            await self._remember_reasoning(route, answer)
        return tail

    async def _relay(self, stream: OpenStream, encoder, provider):
        writer, h = self._writer, self.handler
        writer.commit()
        # Closed below, not left to the garbage collector: an async generator left
        # unfinished (the loop returns at [DONE]) costs asyncio's finalizer hook a wake-up
        # of the loop from "another thread" and a task, per stream.
        batches = stream.batches()
        try:
            try:
                count = self._streamed
                async for events in batches:
                    out = []
                    count(events)  # sizes, for a usage estimate should no usage come
                    for ev in events:
                        if ev == "[DONE]":
                            await writer.send(await self._ending(b"".join(out)
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
                await writer.send(await self._ending(encoder.finish()))
            except (UpstreamError, RecursionError) as e:
                if self._client_gone:
                    return
                if isinstance(e, RecursionError):  # an event nested deeper than json takes
                    e = UpstreamError("protocol", "a stream event is nested too deeply")
                if e.kind == "aborted" and self.gateway.shutting_down:
                    err = shutdown_error()
                else:
                    log.warning("%s: stream failed mid-way: %s", provider.name, e)
                    self._done(None, error=e.kind)
                    err = upstream_failure(provider.name, e)
                err.message += " (the answer above is incomplete)"
                self._error = err.code
                await writer.send(h.stream_error(err))
        except StreamClosedError as e:
            # The client left (on_connection_close cancelled the vendor request), or
            # stopped reading until timeouts.total ran out and was cut off.
            if isinstance(e, sse.WriteTimeout):
                log.warning("%s: the client stopped reading; ended at timeouts.total",
                            provider.name)
                self._error = "client_stalled"
        finally:
            await batches.aclose()
            stream.close()

    async def _collect(self, route, model: str, body: dict, token) -> tuple[dict, Route]:
        """A `stream: false` request for a model the vendor only streams: stream it (with
        usage, so the answer carries the real numbers) and assemble one completion."""
        body = dict(body, stream=True, stream_options={"include_usage": True})
        stream, route = await self._attempt(route, model, body, token, stream=True)
        provider, keys = route.provider, [self._lease.key]
        normalize, got = provider.chunk_normalizer(), []
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
                        raise self._event_error(provider, chunk, keys)
                    got.append(chunk)
        except UpstreamError as e:
            if self._client_gone:
                raise ClientGone() from None
            raise upstream_failure(provider.name, e) from None
        finally:
            stream.close()
        return assemble(got), route

    def _event_error(self, provider, chunk: dict, keys) -> APIError:
        """An error event met while assembling: what the vendor's own codes say it is (a
        GLM content filter is the request's 400, a Kimi quota the key's 402; as the relay
        tells a streaming client), and the key's verdict from it."""
        err = provider.chunk_error(chunk, keys)
        if err is None:
            detail = chunk["error"] if isinstance(chunk["error"], dict) else {}
            err = vendor_error(provider.name, 502, redact(
                str(detail.get("message") or chunk["error"])[:500], keys))
        if self._lease is not None:
            lease, self._lease = self._lease, None
            lease.release(err.status, retry_after=err.retry_after)
        return err
