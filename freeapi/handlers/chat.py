"""POST /v1/chat/completions: the OpenAI wire format in front of a provider."""

from __future__ import annotations

import asyncio
import json
import logging
import time

from tornado.iostream import StreamClosedError

from freeapi import sse
from freeapi.errors import APIError, invalid_request, vendor_error
from freeapi.handlers.base import APIHandler, ClientGone
from freeapi.keys import mask, redact
from freeapi.relay import StreamRelay, assemble, complete, strip_folded_reasoning
from freeapi.upstream import UpstreamError

log = logging.getLogger("freeapi.chat")

# Vendor answers that are about the key, not the request: another key may succeed.
_KEY_FAILURES = frozenset({401, 402, 403, 429})
_MAX_UPSTREAM_BODY = 64 * 1024 * 1024


def validate(body: dict) -> tuple[str, bool]:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise invalid_request("`model` is required and must be a non-empty string.",
                              param="model")
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


def upstream_failure(provider: str, e: UpstreamError) -> APIError:
    if e.kind == "timeout":
        return APIError(504, f"{provider}: {e}", type="timeout_error", code="upstream_timeout")
    return APIError(502, f"{provider}: {e}", code="upstream_unreachable")


class ChatCompletionsHandler(APIHandler):
    _call = None
    _client_gone = False
    _writer: "SSEWriter | None" = None

    def on_connection_close(self):
        # The client went away: stop the vendor's work so nobody pays for unread tokens.
        self._client_gone = True
        if self._call is not None:
            self._call.abort()
        if self._writer is not None:
            self._writer.stop()

    async def post(self):
        gw = self.gateway
        token = self.client_token()
        body = self.json_body()
        model, stream = validate(body)
        route = gw.resolve(model)
        provider = route.provider
        keys = gw.vendor_keys(provider, token)

        body["model"] = route.upstream_model
        if route.display == "fold":
            body["messages"] = strip_folded_reasoning(body["messages"])
        self.set_header("x-freeapi-provider", provider.name)
        self.set_header("x-freeapi-upstream-model", route.upstream_model)

        if not stream and provider.stream_only(route.upstream_model):
            self.write_json(complete(await self._collect(route, body, keys), route, model))
            return
        if not stream:
            raw = await self._attempt(route, body, keys, stream=False)
            try:
                data = json.loads(raw)
                if not isinstance(data, dict):
                    raise ValueError
            except (ValueError, UnicodeDecodeError):
                raise vendor_error(provider.name, 502, "the answer was not a JSON object") \
                    from None
            self.write_json(complete(data, route, model))
            return

        opts = body.get("stream_options") or {}
        relay = StreamRelay(route, model, include_usage=opts.get("include_usage") is True)
        self._writer = writer = SSEWriter(self, gw.config.keepalive_interval)
        try:
            try:
                resp = await self._attempt(route, body, keys, stream=True)
            except APIError as e:
                if not writer.committed:
                    raise
                await writer.send(sse.event(json.dumps(e.to_dict())) + sse.DONE)
                return
            if not self._client_gone:
                await self._relay(resp, relay, provider)
        finally:
            writer.stop()

    async def _attempt(self, route, body: dict, keys: list[str], stream: bool):
        """Send to the vendor, trying the next key while the failure is the key's fault.

        Returns the open streaming Response, or the raw body of a non-stream answer.
        """
        gw, provider = self.gateway, route.provider
        t = provider.timeouts
        self._deadline = time.monotonic() + t.total
        for n, key in enumerate(keys, 1):
            req = provider.chat_request(body, key)
            self._call = call = gw.http.start(req.url)
            try:
                resp = await gw.http.send(call, req.method, req.url, req.headers, req.body,
                                          t.connect, provider.first_byte_timeout(
                                              route.upstream_model))
                if stream and resp.status == 200 and resp.headers.get(
                        "Content-Type", "").startswith("text/event-stream"):
                    self.set_header("x-freeapi-key", mask(key))
                    return resp
                raw = await resp.read(t.idle, _MAX_UPSTREAM_BODY, self._deadline)
            except UpstreamError as e:
                if self._client_gone:
                    raise ClientGone() from None
                log.warning("%s: %s (key %s)", provider.name, e, mask(key))
                raise upstream_failure(provider.name, e) from None
            err = provider.error_from(resp.status, resp.headers, raw, keys)
            if err is None:
                if stream:
                    err = vendor_error(provider.name, 502, "expected an event stream, got "
                                       f"{resp.headers.get('Content-Type') or 'no type'}")
                else:
                    self.set_header("x-freeapi-key", mask(key))
                    return raw
            log.warning("%s answered %d for key %s: %s", provider.name, resp.status, mask(key),
                        err.message)
            if err.status in _KEY_FAILURES and n < len(keys) and not self._client_gone:
                continue
            raise err
        raise AssertionError("no keys")  # vendor_keys never returns an empty list

    async def _relay(self, resp, relay: StreamRelay, provider):
        writer = self._writer
        await writer.commit()
        parser = sse.SSEParser()
        chunks = resp.chunks(provider.timeouts.idle, self._deadline)
        try:
            try:
                async for data in chunks:
                    out = []
                    for ev in parser.feed(data):
                        if ev == "[DONE]":
                            await writer.send(b"".join(out) + relay.finish() + sse.DONE)
                            writer.stop()
                            self.finish()  # the client is done; draining is ours alone
                            await self._drain(chunks)
                            return
                        piece = relay.feed(ev)
                        if piece:
                            out.append(piece)
                    if out:
                        await writer.send(b"".join(out))
                # A clean end without [DONE] (some servers omit it) still completes.
                tail = [relay.feed(ev) for ev in parser.close() if ev != "[DONE]"]
                await writer.send(b"".join(tail) + relay.finish() + sse.DONE)
            except UpstreamError as e:
                if self._client_gone:
                    return
                log.warning("%s: stream failed mid-way: %s", provider.name, e)
                err = upstream_failure(provider.name, e)
                err.message += " (the answer above is incomplete)"
                await writer.send(sse.event(json.dumps(err.to_dict())) + sse.DONE)
        except StreamClosedError:
            pass  # the client left; on_connection_close cancelled the vendor request
        finally:
            resp.close()

    async def _collect(self, route, body: dict, keys: list) -> dict:
        """A `stream: false` request for a model the vendor only streams: stream it (with
        usage, so the answer carries the real numbers) and assemble one completion."""
        provider = route.provider
        body = dict(body, stream=True, stream_options={"include_usage": True})
        resp = await self._attempt(route, body, keys, stream=True)
        normalize, parser, got = provider.chunk_normalizer(), sse.SSEParser(), []
        chunks = resp.chunks(provider.timeouts.idle, self._deadline)
        try:
            async for data in chunks:
                for ev in parser.feed(data):
                    if ev == "[DONE]":
                        await self._drain(chunks)
                        return assemble(got)
                    try:
                        chunk = normalize(json.loads(ev))
                    except (ValueError, AttributeError):
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
            resp.close()
        return assemble(got)

    @staticmethod
    async def _drain(chunks):
        """Read the end of the upstream body so its connection can be reused."""
        async def rest():
            async for _ in chunks:
                pass
        try:
            await asyncio.wait_for(rest(), 2.0)
        except (asyncio.TimeoutError, UpstreamError):
            pass


class SSEWriter:
    """Commits the SSE response, writes and flushes, and sends keep-alive comments while the
    vendor is silent (before its first byte too, so proxies and clients do not give up)."""

    def __init__(self, handler: APIHandler, interval: float):
        self.handler = handler
        self.interval = interval
        self.committed = False
        self._last = time.monotonic()
        self._task = asyncio.ensure_future(self._keepalive())

    async def commit(self):
        if self.committed:
            return
        self.committed = True
        h = self.handler
        h.set_header("Content-Type", "text/event-stream; charset=utf-8")
        h.set_header("Cache-Control", "no-cache")
        h.set_header("X-Accel-Buffering", "no")
        await h.flush()

    async def send(self, data: bytes):
        if not self.committed:
            await self.commit()
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
                await self.send(sse.KEEPALIVE)
        except (StreamClosedError, asyncio.CancelledError):
            pass

    def stop(self):
        self._task.cancel()
