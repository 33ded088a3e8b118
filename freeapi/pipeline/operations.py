"""The pipeline's part in non-chat requests (embeddings, images, speech): the same
admission, routing, key pool, failover, timeouts, ledger and shutdown as chat, with the
vendor request built by the operation's provider hook (freeapi/modalities/).

After the attempt that served, an operation may need more calls to the same vendor (a
poll of an asynchronous image task, with the key that submitted it) or to a download URL
the vendor gave: `fetch` makes them within the request's deadline (the provider's
`timeouts.total`), cancellable by the client leaving and by shutdown, and never fails
over (the vendor already has the work).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from freeapi import sse
from freeapi.download_policy import Refused
from freeapi.errors import APIError, UpstreamError, upstream_failure, vendor_error
from freeapi.handlers.base import ClientGone
from freeapi.modalities.search import MAX_ROUNDS, add_usage, search_calls
from freeapi.pipeline.failover import shutdown_error
from freeapi.relay import StreamRelay, complete

log = logging.getLogger("freeapi.downloads")


class StreamMark:
    """What the ledger needs of a relayed (audio) stream: its usage and whether it ended."""

    usage = None
    finished = False


class OperationMixin:
    """Part of the Pipeline: `call(op, model=..., token=...)` for a non-chat request."""

    _op = None
    _deadline = None

    async def call(self, op, *, model: str, token: str | None):
        """Serve `op` (a freeapi.modalities.Operation); returns what its `finish` returns
        (a dict for the door to write, or None when it wrote the response itself)."""
        route = await self.gateway.resolve_fresh(model)
        op.check(route)
        self._op = op
        await self._admit(model, op.stream is not False, route)
        result, route = await self._attempt(route, model, op.body, token, stream=op.stream)
        return await op.finish(self, result, route)

    @property
    def key(self) -> str | None:
        """The vendor key that served (polls of a task must use the key that made it)."""
        return self._lease.key if self._lease is not None else None

    def remaining(self) -> float:
        return (self._deadline or time.monotonic()) - time.monotonic()

    async def fetch(self, provider, req, limit: int, what: str):
        """One more call after the attempt that served: (status, headers, body). A request
        past its deadline is a 504 naming `what` was still pending."""
        if self._client_gone:  # it left while nothing could be aborted (a store call)
            raise ClientGone()
        remaining = self.remaining()
        if remaining <= 0:
            raise self.timed_out(provider, what)
        t, gw = provider.timeouts, self.gateway
        self._call = call = gw.http.start(req.url)
        try:
            resp = await gw.http.send(call, req.method, req.url, req.headers, req.body,
                                      min(t.connect, remaining), min(t.first_byte, remaining))
            raw = await resp.read(t.idle, limit, self._deadline)
        except UpstreamError as e:
            raise self._failed(e, provider, what) from None
        return resp.status, resp.headers, raw

    async def download(self, provider, url, limit: int, what: str) -> bytes:
        """The body of a URL the vendor's answer named (an image, an audio file), fetched
        as `fetch` makes its calls but by the gateway's Downloads: no key, never an
        internal address unless exempt (freeapi/download_policy.py), the provider's proxy.
        A URL refused, or anything but a 200 with a body, is the vendor's 502."""
        if self._client_gone:
            raise ClientGone()
        remaining = self.remaining()
        if remaining <= 0:
            raise self.timed_out(provider, what)
        t, downloads = provider.timeouts, self.gateway.downloads
        try:
            self._call = call = downloads.start(provider, url)
            resp = await downloads.send(call, min(t.connect, remaining),
                                        min(t.first_byte, remaining))
            raw = await resp.read(t.idle, limit, self._deadline)
        except Refused as e:
            log.warning("%s: %s refused: %s", provider.name, what, e)
            raise vendor_error(provider.name, 502, f"{what} was refused: {e}",
                               code="download_refused") from None
        except UpstreamError as e:
            raise self._failed(e, provider, what) from None
        if resp.status != 200 or not raw:
            raise vendor_error(provider.name, 502, f"{what} gave HTTP {resp.status}"
                               + ("" if raw else " with no body"))
        return raw

    def _failed(self, e: UpstreamError, provider, what: str) -> Exception:
        """What a failed fetch or download raises."""
        if self._client_gone:
            return ClientGone()
        if e.kind == "aborted" and self.gateway.shutting_down:
            return shutdown_error()
        if e.kind == "timeout" and self.remaining() <= 0:
            return self.timed_out(provider, what)
        return upstream_failure(provider.name, e)

    @staticmethod
    def timed_out(provider, what: str) -> APIError:
        return APIError(504, f"{provider.name}: {what} did not finish within "
                             f"{provider.timeouts.total:g}s (providers.{provider.name}."
                             "timeouts.total).", type="timeout_error",
                        code="upstream_timeout")

    async def pause(self, seconds: float, provider, what: str):
        """Wait between polls; the client leaving or shutdown ends the wait at once."""
        if self._client_gone:
            raise ClientGone()
        if seconds >= self.remaining():
            raise self.timed_out(provider, what)
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._queued = fut  # _stop_waiting (client gone, shutdown) fails it
        handle = loop.call_later(seconds, lambda: fut.done() or fut.set_result(None))
        try:
            await fut
        finally:
            handle.cancel()
            self._queued = None
        if self.gateway.shutting_down:
            raise shutdown_error()

    # -- a vendor's builtin web search the caller must complete (Kimi's $web_search) ----

    async def _search_rounds(self, route, model: str, body: dict, token, stream: bool,
                             include_usage: bool):
        """Kimi answers a `$web_search` call with the search's arguments, which the caller
        hands back as the tool's result (https://platform.moonshot.ai/docs/guide/use-web-search);
        the gateway does that until the answer is final. The rounds are non-stream; a
        stream client gets keep-alives meanwhile, then the final answer as a stream."""
        h = self.handler
        writer = None
        if stream:
            self._writer = writer = sse.SSEWriter(h, self.gateway.config.keepalive_interval,
                                                  h.keepalive)
        try:
            data, served = await self._searched(route, model, body, token)
        except APIError as e:
            if writer is None or not writer.committed:
                if writer is not None:
                    writer.stop()
                raise
            self._error = e.code
            await writer.send(h.stream_error(e))
            writer.stop()
            return None
        if not stream:
            return self._parsed(complete(data, served, model))
        relay = StreamRelay(served, model, include_usage=include_usage,
                            keys=[self._lease.key] if self._lease else ())
        self._watch_relay(relay)
        encoder = h.chat_encoder(relay)
        out = [encoder.feed(json.dumps(c, ensure_ascii=False)) for c in _as_chunks(data)]
        try:
            await writer.send(b"".join(out) + encoder.finish())
        finally:
            writer.stop()
        h.finish()
        return None

    async def _searched(self, route, model: str, body: dict, token):
        body = {k: v for k, v in body.items() if k != "stream_options"}
        body["stream"] = False
        messages, usage = list(body["messages"]), None
        for _ in range(MAX_ROUNDS):
            raw, route = await self._attempt(route, model, dict(body, messages=messages),
                                             token, stream=False)
            try:
                data = json.loads(raw)
                if not isinstance(data, dict):
                    raise ValueError
            except (ValueError, UnicodeDecodeError, RecursionError):
                raise vendor_error(route.provider.name, 502, "the answer was not a JSON "
                                   "object") from None
            usage = add_usage(usage, data.get("usage"))
            found = search_calls(data)
            if found is None:
                if usage is not None:
                    data["usage"] = usage
                return data, route
            message, calls = found
            messages.append(message)
            for call in calls:
                messages.append({"role": "tool", "tool_call_id": call.get("id"),
                                 "name": "$web_search",
                                 "content": call["function"].get("arguments") or "{}"})
        raise vendor_error(route.provider.name, 502, f"still searching after {MAX_ROUNDS} "
                           "rounds")


def _as_chunks(data: dict) -> list[dict]:
    """A chat.completion as the chunks a stream of it would have had."""
    base = {k: data[k] for k in ("id", "created", "model") if k in data}
    base["object"] = "chat.completion.chunk"
    chunks = []
    for choice in data.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        message = dict(choice.get("message") or {})
        delta = {"role": "assistant"}
        for k in ("reasoning_content", "content", "tool_calls"):
            if message.get(k):
                delta[k] = message[k]
        if "tool_calls" in delta:
            delta["tool_calls"] = [dict(c, index=i) for i, c in enumerate(delta["tool_calls"])]
        index = choice.get("index", 0)
        chunks.append(dict(base, choices=[{"index": index, "delta": delta,
                                           "finish_reason": None}]))
        chunks.append(dict(base, choices=[{"index": index, "delta": {},
                                           "finish_reason": choice.get("finish_reason")}]))
    if data.get("usage"):
        chunks.append(dict(base, choices=[], usage=data["usage"]))
    return chunks
