"""POST /v1/chat/completions: the OpenAI wire format in front of a provider."""

from __future__ import annotations

import json
import logging

from tornado.iostream import StreamClosedError

from freeapi import sse
from freeapi.errors import (APIError, UpstreamError, invalid_request, upstream_failure,
                            vendor_error)
from freeapi.handlers.accounting import AccountingMixin
from freeapi.handlers.base import APIHandler, ClientGone
from freeapi.handlers.conversations import ConversationMixin
from freeapi.handlers.failover import FailoverMixin, OpenStream, shutdown_error
from freeapi.keys import redact
from freeapi.relay import StreamRelay, assemble, complete, strip_folded_reasoning, unchanged
from freeapi.routing import MAX_MODEL_NAME, Route

log = logging.getLogger("freeapi.chat")

def validate(body: dict) -> tuple[str, bool]:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise invalid_request("`model` is required and must be a non-empty string.",
                              param="model")
    if len(model) > MAX_MODEL_NAME:
        raise invalid_request(f"`model` is longer than {MAX_MODEL_NAME} characters; no "
                              "model has such a name.", param="model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid_request("`messages` is required and must be a non-empty array.",
                              param="messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise invalid_request(f"`messages[{i}]` must be an object with a string `role`.",
                                  param=f"messages[{i}]")
        if not isinstance(m.get("content"), (str, list, type(None))):
            raise invalid_request(f"`messages[{i}].content` must be a string, an array of "
                                  "content parts, or null.", param=f"messages[{i}].content")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise invalid_request("`stream` must be true or false.", param="stream")
    if body.get("stream_options") is not None and not isinstance(body["stream_options"], dict):
        raise invalid_request("`stream_options` must be an object.", param="stream_options")
    return model, stream


class ChatCompletionsHandler(AccountingMixin, ConversationMixin, FailoverMixin, APIHandler):
    _call = None
    _lease = None
    _queued = None  # the future this request waits on for a free key, if it waits
    _client_gone = False
    _writer: "sse.SSEWriter | None" = None

    def prepare(self):
        super().prepare()
        if self.gateway.draining:
            raise shutdown_error()
        self.gateway.active.add(self)

    def on_finish(self):
        self._done()
        self._account()
        self._remember()

    def on_connection_close(self):
        # The client went away: stop the vendor's work so nobody pays for unread tokens.
        self._client_gone = True
        if self._call is not None:
            self._call.abort()
        self._stop_waiting(ClientGone())
        if self._writer is not None:
            self._writer.stop()
        self._done()
        self._account(gone=True)

    def _stop_waiting(self, exc: Exception):
        # A request queued for a busy key would otherwise hold its place, and later spend
        # the key, for nobody.
        if self._queued is not None and not self._queued.done():
            self._queued.set_exception(exc)

    def _on_queue(self, fut):
        self._queued = fut

    def _done(self, status: int | None = 200, error: str | None = None):
        self.gateway.active.discard(self)
        if self._lease is not None:
            self._lease.release(status, error=error)
            self._lease = None

    def shutdown(self):
        """Graceful shutdown's grace period ran out: end this request with an error."""
        if self._call is not None:
            self._call.abort()
        self._stop_waiting(shutdown_error())

    async def post(self):
        gw = self.gateway
        token = self.client_token()
        body = self.json_body()
        model, stream = validate(body)
        route = gw.resolve(model)
        await self._admit(model, stream, route)
        await self._converse(body)
        if route.display == "fold":
            body["messages"] = strip_folded_reasoning(body["messages"])

        if not stream and route.provider.stream_only(route.upstream_model, body):
            got, route = await self._collect(route, model, body, token)
            self.write_json(complete(got, route, model))
            return
        if not stream:
            raw, route = await self._attempt(route, model, body, token, stream=False)
            # Nothing to change: the vendor's bytes as they are, no second JSON round trip
            # (only the ends are looked at; a long keep-alive prefix takes the slow path).
            if (unchanged(route, model) and raw[:64].lstrip()[:1] == b"{"
                    and raw[-64:].rstrip()[-1:] == b"}"):
                self.finish(raw)
                return
            try:
                data = json.loads(raw)
                if not isinstance(data, dict):
                    raise ValueError
            except (ValueError, UnicodeDecodeError, RecursionError):
                raise vendor_error(route.provider.name, 502, "the answer was not a JSON "
                                   "object") from None
            self.write_json(complete(data, route, model))
            return

        self._writer = writer = sse.SSEWriter(self, gw.config.keepalive_interval)
        try:
            try:
                resp, route = await self._attempt(route, model, body, token, stream=True)
            except APIError as e:
                if not writer.committed:
                    raise
                self._error = e.code
                await writer.send(sse.event(json.dumps(e.to_dict())) + sse.DONE)
                return
            opts = body.get("stream_options") or {}
            relay = StreamRelay(route, model, include_usage=opts.get("include_usage") is True,
                                keys=[self._lease.key] if self._lease else ())
            self._watch_relay(relay)
            if not self._client_gone:
                await self._relay(resp, relay, route.provider)
        finally:
            writer.stop()

    async def _relay(self, stream: OpenStream, relay: StreamRelay, provider):
        writer = self._writer
        writer.commit()
        try:
            try:
                async for events in stream.batches():
                    out = []
                    for ev in events:
                        if ev == "[DONE]":
                            await writer.send(b"".join(out) + relay.finish() + sse.DONE)
                            writer.stop()
                            self.finish()  # the client is done; draining is ours alone
                            await stream.drain()
                            return
                        piece = relay.feed(ev)
                        if piece:
                            out.append(piece)
                    if out:
                        await writer.send(b"".join(out))
                # A clean end without [DONE] (some servers omit it) still completes.
                await writer.send(relay.finish() + sse.DONE)
            except UpstreamError as e:
                if self._client_gone:
                    return
                if e.kind == "aborted" and self.gateway.shutting_down:
                    err = shutdown_error()
                else:
                    log.warning("%s: stream failed mid-way: %s", provider.name, e)
                    self._done(None, error=e.kind)
                    err = upstream_failure(provider.name, e)
                err.message += " (the answer above is incomplete)"
                self._error = err.code
                await writer.send(sse.event(json.dumps(err.to_dict())) + sse.DONE)
        except StreamClosedError:
            pass  # the client left; on_connection_close cancelled the vendor request
        finally:
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
                        chunk = normalize(json.loads(ev))
                    except (ValueError, AttributeError, RecursionError):
                        raise vendor_error(provider.name, 502, "a stream event was not a "
                                           "JSON object") from None
                    if "error" in chunk and "choices" not in chunk:
                        err = chunk["error"] if isinstance(chunk["error"], dict) else {}
                        detail = str(err.get("message") or chunk["error"])[:500]
                        raise vendor_error(provider.name, 502, redact(detail, keys))
                    got.append(chunk)
        except UpstreamError as e:
            if self._client_gone:
                raise ClientGone() from None
            raise upstream_failure(provider.name, e) from None
        finally:
            stream.close()
        return assemble(got), route
