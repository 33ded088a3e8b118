"""The request pipeline every front door shares: admission, routing, the key pool,
retries and fallbacks, timeouts, the usage ledger, conversations, client-disconnect
cancellation and graceful shutdown.

The path of a request::

    handler (one per door: freeapi/handlers/chat.py, messages.py, ...)
      -> dialect (pure translation to an OpenAI chat-completions body: freeapi/dialects/)
      -> Pipeline.run (this package)
      -> provider plugin (pure: builds the vendor request, reads its answer)
      -> upstream client (freeapi/upstream.py) -> the door's encoder -> SSE writer

Using it from a door
--------------------
Subclass `freeapi.handlers.door.DoorHandler` (it creates `self.pipeline` in `prepare`
and wires Tornado's lifecycle to it: draining 503, `gateway.active`, client disconnect,
shutdown, the ledger entry in `on_finish`). Set on the class:

- `endpoint`: the ledger's name for the door ("chat", "messages", "responses").
- `keepalive`: the bytes sent while the vendor is silent (`sse.KEEPALIVE` is the
  `: keep-alive` comment; Anthropic sends `event: ping`).
- `error_body(err) -> dict`: an APIError in the door's JSON shape (used for HTTP errors).
- `stream_error(err) -> bytes`: the last SSE bytes of a stream that failed after the
  first byte (chat: an error event then `[DONE]`).
- `chat_encoder(relay) -> encoder`: turns the vendor's chat-completions events into the
  door's events. `relay` is a `freeapi.relay.StreamRelay` already set up for the route
  (model name rewritten, provider quirks normalized, display mode applied). The encoder
  has `feed(data: str) -> bytes` (one upstream event's data; for parsed chunk dicts call
  `relay.chunk(data)`, which returns the client-shaped dict, a str to pass on as is, or
  None) and `finish() -> bytes` (the bytes owed at the end of a complete stream; it must
  call `relay.finish()`, which marks the stream complete for the ledger).
- `remembers_reasoning` (default False): the door's clients may drop the reasoning of
  tool-call turns (Anthropic clients drop thinking blocks they cannot verify). The pipeline
  then keeps each tool-call answer's reasoning (freeapi/reasoning.py, by caller and
  tool call: id, name, arguments; nothing for callers without credentials) and puts it
  back into turns that return without it; the door's encoder must then have an
  `on_finish` attribute, called with the answer's reasoning and tool calls (a
  chat.completion-shaped dict, or one assistant message) when the stream completes. A
  native relay that has `on_finish` too (the Responses door's) is hooked the same way.

Then in `post()`::

    token = self.client_token()                      # gateway auth
    body = dialect.to_chat(self.json_body())         # an OpenAI chat-completions body
    answer = await self.pipeline.run(body, model=requested_model, stream=stream,
                                     token=token, include_usage=True, native=None)
    if answer is not None:                           # non-stream: an Answer
        self.write_json(dialect.from_chat(answer.json()))
    # stream: the pipeline has written the whole stream through chat_encoder

`Pipeline.run(body, *, model, stream, token, include_usage=False, native=None)`:

- `body` is the chat-completions body (`messages` required; `model` is replaced by the
  route's upstream model per attempt; a retired name's translation adds its defaults).
  It may be changed in place (conversation history, the reasoning a display mode kept
  from the client put back: freeapi/reasoning.py).
- `model` is the name the client asked for: it is resolved (the `models:` map,
  `provider/model`, suffixes), checked against the caller's limits, recorded in the
  ledger, and put back into every answer.
- `include_usage`: whether the stream's usage-only chunk reaches the encoder (the chat
  client's `stream_options.include_usage`; doors that re-encode pass True and put the
  usage into their own final event). The ledger gets the usage either way.
- non-stream: returns an `Answer`. `answer.raw` is the vendor's body to send as is
  (only when nothing in it must change: the chat door's zero-parse fast path), else
  `answer.data` is the parsed chat.completion (model rewritten, provider quirks
  normalized, `conversation_id` added when one is used); `answer.json()` gives the dict
  either way. `answer.native` is True when a native pass-through served it: `data` is
  then the native answer (see below).
- stream: writes the SSE response (keep-alives until the first event, the door's
  encoder, the door's `stream_error` after the first byte) and returns None.
- Errors before anything was written raise `APIError`; the door's `write_error` renders
  them with `error_body`. A request that fails after the first byte ends with
  `stream_error`; the ledger notes the error either way.

Native pass-through (a vendor that speaks the door's own dialect): pass `native=`, an
object with `body` (the client's request as the vendor's native endpoint takes it),
`request(provider, body, key) -> UpstreamRequest | None` (None: that provider has no
native endpoint, so the chat body is sent instead; `body` has the upstream model and
a retired name's defaults),
`answer(raw: bytes, model) -> (dict, usage)` (the client's answer and its usage in
chat-completions terms, for the ledger) and `relay(model, keys)` (a stream encoder as
above that also has `usage` and `finished`). Key pool, failover, timeouts and the ledger
are the same; a conversation (`conversation_id`, or `conversations.store`) always takes
the chat path, since history is kept as chat messages. Chat `file` parts (documents) are
read through the provider's document API first (freeapi/pipeline/documents.py), unless
the native pass-through carries them in the vendor's own form.

Non-chat requests (embeddings, images, speech): `Pipeline.call(operation, model=...,
token=...)` with a `freeapi.modalities.Operation`; see freeapi/pipeline/operations.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from freeapi import reasoning, sse
from freeapi.errors import vendor_error
from freeapi.handlers.base import ClientGone
from freeapi.modalities.documents import forged, has_files, has_refs
from freeapi.modalities.vision import check_chat, has_parts
from freeapi.pipeline.accounting import AccountingMixin
from freeapi.pipeline.documents import DocumentsMixin
from freeapi.pipeline.failover import FailoverMixin, shutdown_error
from freeapi.pipeline.history import ConversationMixin
from freeapi.pipeline.operations import OperationMixin
from freeapi.pipeline.streaming import StreamingMixin
from freeapi.relay import complete, unchanged
from freeapi.routing import Route

__all__ = ["Answer", "Pipeline", "shutdown_error"]


@dataclass
class Answer:
    """A non-stream answer: the vendor's bytes as they are, or a parsed dict."""
    raw: bytes | None = None
    data: dict | None = None
    native: bool = False

    def json(self) -> dict:
        if self.data is None:
            self.data = json.loads(self.raw)
        return self.data


class Pipeline(AccountingMixin, ConversationMixin, DocumentsMixin, FailoverMixin,
               OperationMixin, StreamingMixin):
    """One request's way through the gateway; made by DoorHandler.prepare."""

    _call = None
    _lease = None
    _queued = None  # the future this request waits on for a free key, if it waits
    _client_gone = False
    _writer: "sse.SSEWriter | None" = None
    _native = None  # the door's native pass-through, if it has one
    native = False  # the attempt that served used the native endpoint

    def __init__(self, handler):
        self.handler = handler
        self.gateway = handler.gateway
        self.endpoint = handler.endpoint

    @property
    def caller(self):
        return self.handler.caller

    @property
    def served_model(self) -> str | None:
        """The name answers carry for the model that served when it is not the requested
        one (a `free` target's: freeapi/free.py); None otherwise."""
        return self._served[0].shown_as if self._served is not None else None

    # -- lifecycle (DoorHandler calls these) ------------------------------------------------

    def finished(self):
        """The response has ended (on_finish)."""
        self._done()
        self._account()
        self._remember()

    def client_left(self):
        # The client went away: stop the vendor's work so nobody pays for unread tokens.
        self._client_gone = True
        if self._call is not None:
            self._call.abort()
        self._stop_waiting(ClientGone())
        if self._writer is not None:
            self._writer.stop()
        self._done()
        self._account(gone=True)

    def shutdown(self):
        """Graceful shutdown's grace period ran out: end this request with an error."""
        if self._call is not None:
            self._call.abort()
        self._stop_waiting(shutdown_error())

    def _stop_waiting(self, exc: Exception):
        # A request queued for a busy key would otherwise hold its place, and later spend
        # the key, for nobody.
        if self._queued is not None and not self._queued.done():
            self._queued.set_exception(exc)

    def _on_queue(self, fut):
        self._queued = fut

    def _done(self, status: int | None = 200, error: str | None = None):
        self.gateway.active.discard(self.handler)
        if self._lease is not None:
            self._lease.release(status, error=error)
            self._lease = None

    # -- the request ------------------------------------------------------------------------

    async def run(self, body: dict, *, model: str, stream: bool, token: str | None,
                  include_usage: bool = False, native=None) -> Answer | None:
        route = await self.gateway.resolve_fresh(model)
        parts = has_parts(body["messages"])  # content parts: images, files (one cheap pass)
        check_chat(route, body, model, parts)  # images to a text model, chat to an embedder
        await self._admit(model, stream, route)
        if parts and route.provider.file_parts != "pass" and has_files(body["messages"]) \
                and not self._native_reads(native, route, body, stream):
            await self._documents(route, body, token)  # `file` parts (pipeline/documents.py)
        await self._converse(body)
        if self._conv is not None and (self._doc_refs or has_refs(body["messages"])):
            self._doc_refs = True  # files read by id, in this turn or the history
            self._check_documents(route)
        if self._doc_refs:
            await self._load_documents(body)  # before a key is leased for them
        elif has_refs(body["messages"]):
            raise forged()  # a client's placeholder would go to the vendor as it is
        if route.display:  # put back the reasoning the display mode kept from the client
            body["messages"] = await reasoning.for_vendor(
                self.gateway.store, route.display, body["messages"], owner=self._owner(),
                tools=body.get("tools"))
        elif self.handler.remembers_reasoning:  # the reasoning a client dropped
            body["messages"] = await reasoning.restore(
                self.gateway.store, body["messages"], owner=self._owner())
        self._sent_body = body  # the messages as sent, for a usage estimate if none comes
        if getattr(route, "search", False):  # the `-search` suffix (freeapi/modalities/search.py)
            body = route.provider.search_body(body)
            if route.provider.search_round_trip:
                return await self._search_rounds(route, model, body, token, stream,
                                                 include_usage)
        elif native is not None and self._conv is None and not self._chat_docs:
            self._native = native
        if not stream:
            return await self._complete(route, model, body, token)
        await self._stream(route, model, body, token, include_usage)
        return None

    def _request(self, target: Route, body: dict, key):
        """The vendor request for one attempt: native when the door and provider allow
        (the client's own body, with the route's model and translation defaults)."""
        if self._op is not None:  # embeddings, images, speech: the operation's hook
            return self._op.request(target.provider, body, key)
        native = self._native
        if native is not None:
            req = native.request(target.provider, target.body_for(native.body), key)
            if req is not None:
                self.native = True
                return req
        self.native = False
        return target.provider.chat_request(body, key)

    async def _complete(self, route: Route, model: str, body: dict, token) -> Answer:
        if route.provider.stream_only(route.upstream_model, body):
            self._native = None  # the stream is assembled from chat chunks
            got, route = await self._collect(route, model, body, token)
            await self._remember_reasoning(route, got)
            return self._parsed(complete(got, route, model))
        raw, route = await self._attempt(route, model, body, token, stream=False)
        if self.native:
            try:
                data, self._usage = self._native.answer(raw, route.shown_as or model)
            except (ValueError, UnicodeDecodeError, RecursionError):
                raise vendor_error(route.provider.name, 502, "the answer was not a JSON "
                                   "object") from None
            return Answer(data=data, native=True)
        try:  # parsed even when relayed as is: `{not json}` must not pass for an answer
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise vendor_error(route.provider.name, 502, "the answer was not a JSON "
                               "object") from None
        # Nothing to change: the vendor's bytes as they are, no second encoding (a long
        # keep-alive prefix of blank lines takes the slow path).
        if (self._conv is None and not self.handler.remembers_reasoning
                and unchanged(route, model) and raw[:64].lstrip()[:1] == b"{"):
            usage = data.get("usage")  # parsed above: no second decode for the ledger
            self._usage = usage if isinstance(usage, dict) else None
            return Answer(raw=raw, data=data)
        await self._remember_reasoning(route, data)
        return self._parsed(complete(data, route, model))

    def _parsed(self, data: dict) -> Answer:
        usage = data.get("usage")
        self._usage = usage if isinstance(usage, dict) else None
        return Answer(data=self._answered(data))
