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
from freeapi.keys import redact
from freeapi.routing import Route
from freeapi.relay import StreamRelay, assemble, complete, strip_folded_reasoning
from freeapi.upstream import UpstreamError, upstream_failure

log = logging.getLogger("freeapi.chat")

# Vendor answers that are about the key, not the request: another key may succeed.
_KEY_FAILURES = frozenset({401, 402, 403, 429})
# Every key of a provider busy (max_concurrency): a fallback target may be free.
_BUSY = frozenset({"queue_full", "queue_timeout"})
_MAX_UPSTREAM_BODY = 64 * 1024 * 1024


def _shutdown_error() -> APIError:
    return APIError(503, "freeapi is shutting down; retry on another instance.",
                    code="shutting_down")


def _context_too_long(err: APIError) -> bool:
    text = err.message.lower()
    return err.status in (400, 413) and ("context" in text or "too long" in text
                                         or "maximum" in text and "token" in text)


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


class ChatCompletionsHandler(APIHandler):
    _call = None
    _lease = None
    _queued = None  # the future this request waits on for a free key, if it waits
    _client_gone = False
    _writer: "SSEWriter | None" = None

    def prepare(self):
        super().prepare()
        if self.gateway.draining:
            raise _shutdown_error()
        self.gateway.active.add(self)

    def on_finish(self):
        self._done()

    def on_connection_close(self):
        # The client went away: stop the vendor's work so nobody pays for unread tokens.
        self._client_gone = True
        if self._call is not None:
            self._call.abort()
        self._stop_waiting(ClientGone())
        if self._writer is not None:
            self._writer.stop()
        self._done()

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
        self._stop_waiting(_shutdown_error())

    async def post(self):
        gw = self.gateway
        token = self.client_token()
        body = self.json_body()
        model, stream = validate(body)
        route = gw.resolve(model)
        if route.display == "fold":
            body["messages"] = strip_folded_reasoning(body["messages"])

        if not stream and route.provider.stream_only(route.upstream_model):
            got, route = await self._collect(route, model, body, token)
            self.write_json(complete(got, route, model))
            return
        if not stream:
            raw, route = await self._attempt(route, model, body, token, stream=False)
            try:
                data = json.loads(raw)
                if not isinstance(data, dict):
                    raise ValueError
            except (ValueError, UnicodeDecodeError, RecursionError):
                raise vendor_error(route.provider.name, 502, "the answer was not a JSON "
                                   "object") from None
            self.write_json(complete(data, route, model))
            return

        self._writer = writer = SSEWriter(self, gw.config.keepalive_interval)
        try:
            try:
                resp, route = await self._attempt(route, model, body, token, stream=True)
            except APIError as e:
                if not writer.committed:
                    raise
                await writer.send(sse.event(json.dumps(e.to_dict())) + sse.DONE)
                return
            opts = body.get("stream_options") or {}
            relay = StreamRelay(route, model, include_usage=opts.get("include_usage") is True)
            if not self._client_gone:
                await self._relay(resp, relay, route.provider)
        finally:
            writer.stop()

    async def _attempt(self, route: Route, model: str, body: dict, token, stream: bool):
        """Send to the vendor; while nothing has reached the client, move past failures to
        another key, then along the fallback chain, within config `failover`.

        Returns (open streaming Response or raw non-stream body, the route that served).
        """
        gw = self.gateway
        limits = gw.config.failover
        started = time.monotonic()
        attempts, last = 0, None
        targets = [route] + gw.fallbacks_for(model, route)
        for t_index, target in enumerate(targets):
            provider = target.provider
            try:
                keys, passthrough = gw.vendor_keys(provider, token)
            except APIError as e:
                last = last or e
                continue
            pool = gw.pools[provider.name]
            tbody = dict(body, model=target.upstream_model)
            tried = set()
            while attempts < limits.max_attempts and (
                    attempts == 0 or time.monotonic() - started < limits.max_time):
                try:
                    lease = await pool.acquire(keys, tried, last_resort=passthrough,
                                               on_wait=self._on_queue)
                except APIError as e:
                    if e.code in _BUSY and t_index + 1 < len(targets):
                        last = e
                        break
                    raise
                finally:
                    self._queued = None
                if lease is not None and (self._client_gone or gw.shutting_down):
                    lease.cancel()  # nothing was sent: no verdict on the key
                    if self._client_gone:
                        raise ClientGone()
                    raise _shutdown_error()
                if lease is None:
                    if not tried:
                        last = last or self._no_key(pool, keys, provider.name)
                    break
                tried.add(lease.key)
                attempts += 1
                result, err = await self._send(target, tbody, lease, stream)
                if err is None:
                    self._lease = lease
                    self.set_header("x-freeapi-provider", provider.name)
                    self.set_header("x-freeapi-upstream-model", target.upstream_model)
                    self.set_header("x-freeapi-key", lease.id)
                    if attempts > 1:
                        self.set_header("x-freeapi-attempts", str(attempts))
                    return result, target
                last = err
                if self._client_gone:
                    raise ClientGone()
                if gw.shutting_down:
                    raise err
                if getattr(err, "host_down", False):
                    break  # no key gets through a closed port: the next target may
                if err.status in _KEY_FAILURES or err.status >= 500:
                    continue  # this key or this vendor: try another
                if t_index + 1 < len(targets) and _context_too_long(err):
                    break  # a longer-context fallback may take it
                raise err  # the request itself is wrong: no key or vendor will take it
        raise last or APIError(503, "No provider could take the request.", code="no_target")

    @staticmethod
    def _no_key(pool, keys, name: str) -> APIError:
        wait = pool.wait_hint(keys)
        if wait is not None:
            return APIError(429, f"{name}: every key is cooling down after rate limits; "
                                 f"retry in {wait:.0f}s.", code="keys_cooling_down",
                            retry_after=str(max(1, round(wait))))
        return APIError(503, f"{name}: no usable API key (all are invalid or out of "
                             "balance; they are re-checked in the background).",
                        code="no_usable_key")

    async def _send(self, target: Route, body: dict, lease, stream: bool):
        """One attempt with one key: (result, None) or (None, error); the lease is released
        here unless the attempt succeeded."""
        gw, provider = self.gateway, target.provider
        t = provider.timeouts
        self._deadline = time.monotonic() + t.total
        req = provider.chat_request(body, lease.key)
        self._call = call = gw.http.start(req.url)
        try:
            resp = await gw.http.send(call, req.method, req.url, req.headers, req.body,
                                      t.connect, provider.first_byte_timeout(target.upstream_model))
            if stream and resp.status == 200 and resp.headers.get(
                    "Content-Type", "").startswith("text/event-stream"):
                return resp, None
            raw = await resp.read(t.idle, _MAX_UPSTREAM_BODY, self._deadline)
        except UpstreamError as e:
            if e.kind == "aborted":  # by us (client gone, shutdown): not the key's fault
                lease.cancel()
            else:
                lease.release(None, error=e.kind)
            if self._client_gone:
                raise ClientGone() from None
            if e.kind == "aborted" and self.gateway.shutting_down:
                return None, _shutdown_error()
            log.warning("%s: %s (key %s)", provider.name, e, lease.id)
            err = upstream_failure(provider.name, e)
            err.host_down = e.kind == "connect"
            return None, err
        err = provider.error_from(resp.status, resp.headers, raw, [lease.key])
        if err is None:
            if not stream:
                lease.release(resp.status)
                return raw, None
            err = vendor_error(provider.name, 502, "expected an event stream, got "
                               f"{resp.headers.get('Content-Type') or 'no type'}")
        lease.release(err.status, retry_after=err.retry_after)
        log.warning("%s answered %d for key %s: %s", provider.name, resp.status, lease.id,
                    err.message)
        return None, err

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
                if e.kind == "aborted" and self.gateway.shutting_down:
                    err = _shutdown_error()
                else:
                    log.warning("%s: stream failed mid-way: %s", provider.name, e)
                    self._done(None, error=e.kind)
                    err = upstream_failure(provider.name, e)
                err.message += " (the answer above is incomplete)"
                await writer.send(sse.event(json.dumps(err.to_dict())) + sse.DONE)
        except StreamClosedError:
            pass  # the client left; on_connection_close cancelled the vendor request
        finally:
            resp.close()

    async def _collect(self, route, model: str, body: dict, token) -> tuple[dict, Route]:
        """A `stream: false` request for a model the vendor only streams: stream it (with
        usage, so the answer carries the real numbers) and assemble one completion."""
        body = dict(body, stream=True, stream_options={"include_usage": True})
        resp, route = await self._attempt(route, model, body, token, stream=True)
        provider, keys = route.provider, [self._lease.key]
        normalize, parser, got = provider.chunk_normalizer(), sse.SSEParser(), []
        chunks = resp.chunks(provider.timeouts.idle, self._deadline)
        try:
            async for data in chunks:
                for ev in parser.feed(data):
                    if ev == "[DONE]":
                        await self._drain(chunks)
                        return assemble(got), route
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
        return assemble(got), route

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
