"""The request pipeline every front door shares: admission, routing, the key pool,
retries and fallbacks, timeouts, the usage ledger, conversations, client-disconnect
cancellation and graceful shutdown.

The path of a request::

    handler (one per door: freeapi/handlers/chat.py, messages.py, ...)
      -> dialect (pure translation to an OpenAI chat-completions body: freeapi/dialects/)
      -> Pipeline.run (this package)
      -> provider plugin (pure: builds the vendor request, reads its answer)
      -> upstream client (freeapi/upstream.py) -> the door's encoder -> SSE writer

`Pipeline.run` is the script of one chat request; each line calls one step and hands it
the request's `Exchange` (exchange.py: the door it came in by, and every field naming
the step that writes it). A step is an object made once per gateway (`Steps`, kept as
`Gateway.steps`) with the narrow part of the gateway it needs; it keeps nothing of any
request, so a request costs one Exchange and one Pipeline:

    Admission.admit              admission.py    the caller's limits and money budgets
                                                 (freeapi/budgets.py: the first target's
                                                 estimated cost reserved); routed, admitted
    Documents.read               documents.py    `file` parts read (extract / reference)
    Conversations.continue_history  history.py   stored history in front of the messages
    Documents.load               documents.py    files read by id checked and fetched
    reasoning.for_vendor/restore freeapi/reasoning.py  reasoning put back
    choose_native                native.py       the door's native pass-through, or chat
    ResponseWriter.complete/stream  streaming.py the answer, whole or as a stream, through
      Failover.attempt           failover.py     targets -> budget top-up -> lease ->
                                                 send -> verdict
    SearchRounds.run             search.py       a `-search` model's rounds instead
    Accounting.account           accounting.py   the ledger entry, once the answer ended;
                                                 the budget reservation settled to its cost
    Conversations.remember       history.py      the finished turn stored

Traces (freeapi/telemetry.py, only with `telemetry.otlp_endpoint`): the request's span
begins in `run`/`call` and ends in `finished`/`client_left` after the ledger entry;
`Failover.traced_send` wraps each attempt in a child span. Off, each is one
`is not None` check.

`Pipeline.call` is the same for an operation (embeddings, images, speech), which gets an
`OperationContext` (operations.py), not the pipeline. The door's side is the `Door`
protocol (door.py); nothing below freeapi/handlers imports from it.

Using it from a door
--------------------
A door implements `freeapi.pipeline.door.Door`. Subclass
`freeapi.handlers.door.DoorHandler`, which implements it with the OpenAI chat defaults
(its request accessors, `authorization()`, `elapsed()`, `request_id()`, `logged(entry)`,
`cut()`, and Tornado's writing) and creates `self.pipeline` in `prepare`, wiring
Tornado's lifecycle to it: `gateway.active`, client disconnect, shutdown, the ledger
entry in `on_finish` (a draining gateway's 503 comes before the body, from its
`before_body`). Set on the class:

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
the chat path, since history is kept as chat messages (the whole decision: native.py).
Chat `file` parts (documents) are read through the provider's document API first
(freeapi/pipeline/documents.py), unless the native pass-through carries them in the
vendor's own form.

Non-chat requests (embeddings, images, speech): `Pipeline.call(operation, model=...,
token=...)` with a `freeapi.modalities.Operation`, whose `finish(ctx, result, route)`
gets an `OperationContext`: the door, the key that served, `fetch`/`pause` for more
vendor calls, `download` for a URL the vendor named, `report_usage`, `relaying(mark)`,
`failed(code)`; see freeapi/pipeline/operations.py.
"""

from __future__ import annotations

from freeapi import reasoning
from freeapi.budgets import Budgets
from freeapi.errors import ClientGone
from freeapi.modalities.documents import has_files
from freeapi.modalities.vision import check_chat, has_parts
from freeapi.pipeline.accounting import Accounting
from freeapi.pipeline.admission import Admission
from freeapi.pipeline.documents import Documents
from freeapi.pipeline.door import Door
from freeapi.pipeline.exchange import Exchange
from freeapi.pipeline.failover import Failover, shutdown_error
from freeapi.pipeline.history import Conversations, owner
from freeapi.pipeline.native import choose_native, native_reads_documents
from freeapi.pipeline.operations import OperationContext, VendorCalls
from freeapi.pipeline.search import SearchRounds
from freeapi.pipeline.streaming import Answer, ResponseWriter, end

__all__ = ["Answer", "Door", "Exchange", "Pipeline", "Steps", "shutdown_error"]


class Steps:
    """The steps of every request through one gateway, made once with what each needs
    of it (Gateway.steps); they keep nothing of any request."""

    def __init__(self, gateway):
        self.calls = VendorCalls(gateway.http, gateway.downloads,
                                 lambda: gateway.shutting_down)
        self.budgets = Budgets(gateway.store, lambda: gateway.pricing, gateway.metrics)
        self.admission = Admission(gateway.limits, self.budgets)
        self.conversations = Conversations(gateway.store, gateway.config.conversations)
        self.documents = Documents(gateway, self.calls)
        self.failover = Failover(gateway, self.calls, self.documents, self.budgets)
        self.response = ResponseWriter(gateway, self.failover, self.conversations)
        self.search = SearchRounds(gateway.config.keepalive_interval, self.failover,
                                   self.response, self.budgets)
        self.accounting = Accounting(gateway.metrics, gateway.store, gateway.limits,
                                     lambda: gateway.pricing, self.budgets)


class Pipeline:
    """One request's way through the gateway; made by DoorHandler.prepare. `run` (chat)
    and `call` (an operation) are the script; the steps they call get the request's
    `Exchange` and what they need, nothing else."""

    def __init__(self, door: Door, gateway):
        self.gateway, self.steps = gateway, gateway.steps
        self.ex = Exchange(door)

    @property
    def native(self) -> bool:
        """The attempt that served used the door's native pass-through."""
        return self.ex.served_native

    @property
    def served_model(self) -> str | None:
        """The name answers carry for the model that served when it is not the requested
        one (a `free` target's: freeapi/free.py); None otherwise."""
        served = self.ex.served
        return served[0].shown_as if served is not None else None

    # -- the request ------------------------------------------------------------------------

    async def run(self, body: dict, *, model: str, stream: bool, token: str | None,
                  include_usage: bool = False, native=None) -> Answer | None:
        ex, gw, step = self.ex, self.gateway, self.steps
        door = ex.door
        if gw.telemetry is not None:  # the request's trace span (freeapi/telemetry.py)
            gw.telemetry.request_started(ex, model, stream)
        route = await gw.resolve_fresh(model)
        parts = has_parts(body["messages"])  # content parts: images, files (one cheap pass)
        check_chat(route, body, model, parts)  # images to a text model, chat to an embedder
        await step.admission.admit(ex, model, stream, route, body)
        if parts and route.provider.file_parts != "pass" and has_files(body["messages"]) \
                and not native_reads_documents(ex, native, route, body, stream,
                                               gw.config.conversations.store):
            await step.documents.read(ex, route, body, token)  # `file` parts
        await step.conversations.continue_history(ex, body)
        await step.documents.load(ex, route, body)  # files read by id, before a key is leased
        if route.display:  # put back the reasoning the display mode kept from the client
            body["messages"] = await reasoning.for_vendor(
                gw.store, route.display, body["messages"], owner=owner(door),
                tools=body.get("tools"))
        elif door.remembers_reasoning:  # the reasoning a client dropped
            body["messages"] = await reasoning.restore(
                gw.store, body["messages"], owner=owner(door))
        ex.sent_body = body  # the messages as sent, for a usage estimate if none comes
        if getattr(route, "search", False):  # the `-search` suffix (modalities/search.py)
            body = route.provider.search_body(body)
            if route.provider.search_round_trip:
                return await step.search.run(ex, route, model, body, token, stream,
                                             include_usage)
        else:
            choose_native(ex, native, route, body, stream)  # or chat (pipeline/native.py)
        if not stream:
            return await step.response.complete(ex, route, model, body, token)
        await step.response.stream(ex, route, model, body, token, include_usage)
        return None

    async def call(self, op, *, model: str, token: str | None):
        """Serve `op` (a freeapi.modalities.Operation); returns what its `finish` returns
        (a dict for the door to write, or None when it wrote the response itself)."""
        ex, step = self.ex, self.steps
        if self.gateway.telemetry is not None:  # the request's trace span
            self.gateway.telemetry.request_started(ex, model, op.stream is not False)
        route = await self.gateway.resolve_fresh(model)
        op.check(route)
        ex.operation = op
        await step.admission.admit(ex, model, op.stream is not False, route, op.body)
        result, route = await step.failover.attempt(ex, route, model, op.body, token,
                                                    stream=op.stream)
        return await op.finish(OperationContext(ex, step.calls), result, route)

    # -- lifecycle (DoorHandler calls these) ------------------------------------------------

    def finished(self):
        """The response has ended (on_finish)."""
        end(self.gateway, self.ex)
        self.steps.accounting.account(self.ex)
        if self.ex.span is not None:  # traced: the span ends with the ledger's entry
            self.gateway.telemetry.request_ended(self.ex)
        self.steps.conversations.remember(self.ex)

    def client_left(self):
        # The client went away: stop the vendor's work so nobody pays for unread tokens.
        ex = self.ex
        ex.client_gone = True
        if ex.call is not None:
            ex.call.abort()
        self._stop_waiting(ClientGone())
        if ex.writer is not None:
            ex.writer.stop()
        end(self.gateway, ex)
        self.steps.accounting.account(ex, gone=True)
        if ex.span is not None:
            self.gateway.telemetry.request_ended(ex)

    def shutdown(self):
        """Graceful shutdown's grace period ran out: end this request with an error."""
        if self.ex.call is not None:
            self.ex.call.abort()
        self._stop_waiting(shutdown_error())

    def failed(self, exc, status_code: int) -> None:
        """The door answered with an error (its write_error ran)."""
        self.ex.error = getattr(exc, "code", None) or f"http_{status_code}"

    def _stop_waiting(self, exc: Exception):
        # A request queued for a busy key would otherwise hold its place, and later spend
        # the key, for nobody.
        queued = self.ex.queued
        if queued is not None and not queued.done():
            queued.set_exception(exc)
