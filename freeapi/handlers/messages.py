"""POST /v1/messages and /v1/messages/count_tokens: Anthropic's Messages API in front of
any provider (Claude Code, the `anthropic` SDKs).

A provider with an Anthropic-compatible endpoint of its own gets the request as the client
sent it (freeapi.dialects.anthropic.NativeMessages); any other gets it translated to chat
completions and the answer translated back. Both go through the same pipeline.
"""

from __future__ import annotations

import json
import logging
import re

from freeapi.dialects import anthropic as dialect
from freeapi.dialects.anthropic_count import check_countable, estimate_tokens
from freeapi.dialects.anthropic_stream import ChatToMessages, NativeMessages
from freeapi.errors import APIError, UpstreamError
from freeapi.handlers.base import APIHandler
from freeapi.handlers.door import DoorHandler

log = logging.getLogger("freeapi.messages")


class AnthropicWire:
    """What both endpoints share: the key in `x-api-key` as well as `Authorization`, and
    errors in Anthropic's shape."""

    @classmethod
    def before_body(cls, arrival, request) -> None:
        # The Anthropic SDK sends its key as x-api-key (ANTHROPIC_API_KEY), Claude Code's
        # ANTHROPIC_AUTH_TOKEN as a bearer token: the gateway's auth reads the latter.
        headers = request.headers
        if "Authorization" not in headers and headers.get("x-api-key"):
            headers["Authorization"] = "Bearer " + headers["x-api-key"]
        super().before_body(arrival, request)  # type: ignore[misc]

    @classmethod
    def error_body(cls, err: APIError) -> dict:
        return dialect.error_body(err)


class MessagesHandler(AnthropicWire, DoorHandler):
    endpoint = "messages"
    keepalive = dialect.PING
    # Answers carry signed thinking blocks, so Claude Code keeps and returns them; a client
    # that drops them (or a block it could not verify) still gets the tool-call turn's
    # reasoning back to vendors that require it.
    remembers_reasoning = True
    _model = None

    def stream_error(self, err: APIError) -> bytes:
        return dialect.stream_error(err)

    def chat_encoder(self, relay):
        return ChatToMessages(relay, relay.model)  # the model that served, for `free`

    async def post(self):
        token = self.client_token()
        body = self.json_body()
        self._model, stream = dialect.validate(body)
        chat, dropped = dialect.to_chat(body)
        if dropped:
            names = ",".join(re.sub(r"[^A-Za-z0-9_.:-]", "?", n) for n in dropped)
            self.set_header("x-freeapi-dropped-tools", names[:512])
        answer = await self.pipeline.run(chat, model=self._model, stream=stream, token=token,
                                         include_usage=True,
                                         native=NativeMessages(body))
        if answer is None:
            return  # streamed
        self.write_json(answer.data if answer.native
                        else dialect.from_chat(answer.json(), self.pipeline.served_model
                                               or self._model))


class CountTokensHandler(AnthropicWire, APIHandler):
    """The vendor counts where its Anthropic endpoint can (`anthropic_count_tokens`);
    otherwise the gateway estimates (estimate_tokens) and says so in
    `x-freeapi-estimated: true`. A request of the caller's rpm either way, and a bounded
    walk (check_countable)."""

    _call = None

    def on_connection_close(self):
        super().on_connection_close()  # ends a wait for the rest of the body
        if self._call is not None:
            self._call.abort()

    async def post(self):
        gw = self.gateway
        token = self.client_token()
        body = self.json_body()
        check_countable(body)  # before validate() walks the blocks
        model, _ = dialect.validate(body, count_only=True)
        route = gw.resolve(model)
        caller = self.caller
        if caller is not None and caller.limited:
            # Admitted like any request: the key's models, and one request of its rpm (the
            # estimate is work done for the caller, and count_tokens was an unmetered way
            # to make the gateway do it). No tokens are charged: nothing was generated.
            await gw.limits.admit(caller, model, route)
        counted = await self._ask_vendor(route, token, body)
        if counted is None:
            self.set_header("x-freeapi-estimated", "true")
            counted = estimate_tokens(body)
        self.write_json({"input_tokens": counted})

    async def _ask_vendor(self, route, token, body) -> int | None:
        provider = route.provider
        if not provider.anthropic_counts:
            return None
        try:
            keys, passthrough = self.gateway.vendor_keys(provider, token)
            lease = await self.gateway.pool_for(provider).acquire(
                keys, last_resort=passthrough)
        except APIError:
            return None
        if lease is None:
            return None
        req = provider.messages_request(dict(body, model=route.upstream_model), lease.key,
                                        "/v1/messages/count_tokens")
        t = provider.timeouts
        status = None
        try:
            self._call = call = self.gateway.http.start(req.url)
            resp = await self.gateway.http.send(call, req.method, req.url, req.headers,
                                                req.body, t.connect, t.first_byte)
            raw = await resp.read(t.idle, 1 << 20)
            status = resp.status
            count = json.loads(raw).get("input_tokens") if status == 200 else None
        except (UpstreamError, ValueError, AttributeError) as e:
            log.info("%s: count_tokens failed, estimating: %s", provider.name, str(e))
            count = None
        finally:
            if status is None:
                lease.cancel()
            else:
                # Only the key's fate is told to the pool: the count's failure is estimated.
                lease.release(status if status in (200, 401, 402, 403, 429) else 200)
        return count if isinstance(count, int) and not isinstance(count, bool) else None
