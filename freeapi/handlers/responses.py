"""POST /v1/responses, GET and DELETE /v1/responses/{id}: OpenAI's Responses API (what
Codex CLI speaks) in front of every chat-completions provider.

    handler (this file) -> dialect (freeapi/dialects/responses.py: request -> chat body)
      -> Pipeline.run (freeapi/pipeline) -> provider -> upstream
      -> ResponseEvents (responses_stream.py) or from_chat (responses_output.py)

A provider with a Responses API of its own (`responses_url`) gets the request as it came
instead (freeapi/dialects/responses_native.py), through the same pipeline.

Stored responses: `store` is true unless the client says false, as in OpenAI's API
(https://platform.openai.com/docs/api-reference/responses/create). A stored response
keeps its Response object (for GET) and the conversation in chat form up to and including
its answer, reasoning included (for `previous_response_id`, so DeepSeek or Kimi get the
reasoning of a tool-call turn back).

Reasoning a client drops: many Responses clients send back a `function_call` item without
the `reasoning` item before it (OpenAI's API tolerates it; DeepSeek and Kimi answer 400).
As at the messages door, the reasoning of every answer that ended in function calls is
remembered (freeapi/reasoning.py: by caller and call id, name and arguments; translated
answers through the pipeline, pass-through ones here and in responses_native.py), and put
back into the input items of a request that returns the calls without it
(`reasoning.restore_items`), before the request is translated or passed through. Records live in the state store (`kv_put`, namespace
"rs") for `responses.ttl` seconds, at most `responses.max_bytes` of JSON each, and belong
to the caller that made them, like conversations: any other caller gets 404. What one
caller keeps is bounded (`responses.max_per_caller` records and `max_bytes_per_caller`
bytes within `ttl`: store: true over either is a 429 before the vendor is asked), and an
`input_file`'s inline data is not kept beyond `responses.max_file_bytes`: a bigger one
is replaced in the stored conversation by a note naming the file and its sha256, so a
continuation tells the model it was there and the client can send it again.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import math
import re
import time

from freeapi import conversations as conv
from freeapi import reasoning
from freeapi.dialects.responses import Translation, input_messages, to_chat
from freeapi.dialects.responses_output import from_chat, new_id, reasoning_item
from freeapi.dialects.responses_native import NativeResponses, remembered
from freeapi.dialects.responses_stream import EventStream
from freeapi.errors import APIError, invalid_request
from freeapi.handlers.base import APIHandler
from freeapi.handlers.conversations import store_unavailable
from freeapi.handlers.door import DoorHandler
from freeapi.keys import bearer
from freeapi.pipeline.history import needs_credentials
from freeapi.sse import SSEParser
from freeapi.store import Hit, StoreError

log = logging.getLogger("freeapi.responses")

NS = "rs"  # the state store namespace of stored responses
DROPPED_TOOLS = "x-freeapi-dropped-tools"
DROPPED_ITEMS = "x-freeapi-dropped-items"
_ID = re.compile(r"^resp_[0-9a-f]{32}$")


def _listed(kinds: list) -> str:
    return ",".join(dict.fromkeys(kinds))[:512]


def _owner(handler: APIHandler) -> str:
    return conv.owner_of(handler.caller, bearer(handler.request.headers.get("Authorization")))


def not_found(rid, param: str | None = None) -> APIError:
    return APIError(404, f"No response {str(rid)[:80]!r} for this caller: it does not exist, "
                         "was made with store: false, has expired, was larger than "
                         "responses.max_bytes, or belongs to someone else.",
                    param=param, code="response_not_found")


async def load(handler: APIHandler, rid, param: str | None = None) -> dict:
    """The caller's stored response record, or the 401/404/503 that says why there is
    none. Callers without credentials have none: they would all be one owner."""
    if _owner(handler) == conv.ANONYMOUS:
        raise needs_credentials()
    if not isinstance(rid, str) or not _ID.match(rid):
        raise not_found(rid, param)
    try:
        got = await handler.gateway.store.kv_get(NS, [rid])
    except StoreError as e:
        raise store_unavailable(e) from None
    record = got.get(rid)
    if not isinstance(record, dict) or record.get("owner") != _owner(handler):
        raise not_found(rid, param)
    return record


def _error_code(err: APIError) -> str:
    # The codes of OpenAI's ResponseError that Codex acts on: it waits and retries on
    # rate_limit_exceeded, and treats server_error as a retryable stream failure.
    return "rate_limit_exceeded" if err.status == 429 else "server_error"


def _vendor_message(text: str) -> str | None:
    """The message of a vendor error report passed on by the relay (keys already
    scrubbed), or None for a line that is not JSON."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict):
        return str(err.get("message") or err)[:500]
    return str(err or data)[:500]


def without_file_data(messages: list, limit: int) -> list:
    """The messages as stored: a `file` part whose inline data is longer than `limit`
    becomes a text note naming it (a file_id part stays: it is a reference already)."""
    out = []
    for m in messages:
        parts = m.get("content") if isinstance(m, dict) else None
        if isinstance(parts, list) and any(_big_file(p, limit) for p in parts):
            m = dict(m, content=[_note(p) if _big_file(p, limit) else p for p in parts])
        out.append(m)
    return out


def _big_file(part, limit: int) -> bool:
    f = part.get("file") if isinstance(part, dict) and part.get("type") == "file" else None
    return isinstance(f, dict) and isinstance(f.get("file_data"), str) \
        and len(f["file_data"]) > limit


def _note(part: dict) -> dict:
    f = part["file"]
    data = f["file_data"]
    try:
        raw = base64.b64decode(data.partition(",")[2], validate=True)
    except (binascii.Error, ValueError):
        raw = data.encode()
    name = str(f.get("filename") or "document")[:200]
    return {"type": "text", "text": f"[The file {name!r} ({len(raw)} bytes, sha256 "
                                    f"{hashlib.sha256(raw).hexdigest()}) was sent with an "
                                    "earlier turn; the gateway does not keep files with "
                                    "stored responses: to ask about it again, send it "
                                    "again as input_file.]"}


class ResponseEvents:
    """The stream encoder the pipeline drives: the vendor's chat chunks, as the relay
    shapes them for the client (model name, provider quirks, display mode), become
    Responses events."""

    def __init__(self, door: "ResponsesHandler", relay):
        self.door, self.relay, self.events = door, relay, door.events
        self.failed = False
        self.on_finish = None  # set by the pipeline: called with the answer at the end

    def feed(self, data: str) -> bytes:
        if self.failed:
            return b""
        chunk = self.relay.chunk(data)
        if chunk is None:
            return b""
        out = self.door.started()
        if isinstance(chunk, str):
            message = _vendor_message(chunk)
            if message is None:
                return out  # a line that is not JSON: nothing a Responses client can use
            self.failed = True
            return out + self.events.fail(message)
        return out + self.events.feed(chunk)

    def finish(self) -> bytes:
        if self.failed:
            return b""
        out = self.door.started()
        # What the relay owes at the end (a closing think tag, a usage chunk) as chunks.
        for data in SSEParser().feed(self.relay.finish()):
            chunk = json.loads(data)
            if isinstance(chunk, dict):
                out += self.events.feed(chunk)
        if self.events.usage is None:
            self.events.usage = self.relay.usage
        out += self.events.end()
        answer = self.events.answer()
        self.door.keep(self.events.final, answer)
        if self.on_finish is not None:
            on_finish, self.on_finish = self.on_finish, None
            on_finish(answer)
        return out


class ResponsesHandler(DoorHandler):
    """POST /v1/responses."""

    endpoint = "responses"
    # Clients that return a function_call without its reasoning item still get the
    # reasoning back to vendors that require it (see the module's docstring).
    remembers_reasoning = True
    req: Translation | None = None
    events: EventStream | None = None
    native: NativeResponses | None = None
    _started = False

    async def post(self):
        token = self.client_token()
        body = self.json_body()
        history = None
        if body.get("previous_response_id") is not None:
            record = await load(self, body["previous_response_id"], "previous_response_id")
            history = record.get("messages")
            if history is None:
                raise invalid_request("The previous response was too large to keep for a "
                                      "continuation (responses.max_bytes); send the whole "
                                      "input instead.", param="previous_response_id",
                                      code="previous_response_too_large")
        if isinstance(body.get("input"), list):
            body["input"] = await reasoning.restore_items(
                self.gateway.store, body["input"], owner=_owner(self), make_item=reasoning_item)
        self.req = req = to_chat(body, history)
        if req.store and _owner(self) != conv.ANONYMOUS:
            await self._room_to_store()
        # A vendor answers 400 to a tool it cannot run: say what was left out instead (the
        # same header as the messages door's).
        if req.dropped:
            self.set_header(DROPPED_TOOLS, _listed(req.dropped))
        if req.skipped:
            self.set_header(DROPPED_ITEMS, _listed(req.skipped))
        model = req.chat["model"]
        self.rid, self.created = new_id("resp"), time.time()
        self.events = EventStream(req, self.rid, model, self.created)
        # A provider with its own Responses API (responses_base_url) gets the request as it
        # came; a continuation is always translated, as its history is kept in chat form.
        self.native = None if history is not None else \
            NativeResponses(body, self.rid, on_final=self.keep_native)
        answer = await self.pipeline.run(req.chat, model=model, stream=req.stream,
                                         token=token, include_usage=True,
                                         native=self.native)
        if answer is None:
            return  # streamed through ResponseEvents or the native events
        if answer.native:
            cfg = self.gateway.config.reasoning
            await reasoning.remember(self.gateway.store, remembered(answer.data),
                                     owner=_owner(self), ttl=cfg.ttl, max_chars=cfg.max_chars)
            self.write_json(answer.data)
            return
        obj, turn = from_chat(answer.json(), req, self.rid,
                              self.pipeline.served_model or model, self.created)
        self.keep(obj, turn)
        self.write_json(obj)

    def on_finish(self):
        super().on_finish()
        # Its on_final is this handler's keep_native: a cycle left for the collector, with
        # the request's whole graph behind it, unless it goes when the request is over.
        self.native = None

    def ended_unanswered(self):  # the client left: no on_finish comes
        super().ended_unanswered()
        self.native = None

    # -- the door's wire details (see freeapi/pipeline) ----------------------------------

    def chat_encoder(self, relay):
        self.events.model = relay.model  # the model that served, for `free`
        return ResponseEvents(self, relay)

    def started(self) -> bytes:
        """`response.created` and `response.in_progress`, once, before anything else."""
        if self._started:
            return b""
        self._started = True
        return self.events.start()

    def stream_error(self, err: APIError) -> bytes:
        if self.pipeline.native and self.native is not None and self.native.events:
            return self.native.events.fail(err.message, _error_code(err))
        return self.started() + self.events.fail(err.message, _error_code(err))

    # -- storage ------------------------------------------------------------------------

    def keep_native(self, obj: dict) -> None:
        """Store a vendor's own Response: its output items, in chat form, continue it."""
        output = obj.get("output")
        try:
            turn = input_messages(output if isinstance(output, list) else [], [])
        except APIError:
            turn = None  # an item with no chat form: it can be read, not continued
        self.keep(obj, turn)

    def keep(self, obj: dict, turn) -> None:
        """Store a finished response (in the background: the write is queued on the
        store's one connection before the client could ask for it)."""
        req = self.req
        if not req.store or obj.get("status") == "failed":
            return
        owner = _owner(self)
        if owner == conv.ANONYMOUS:
            return  # no credentials: nobody could be told apart to read it back
        cfg = self.gateway.config.responses
        if turn is None:
            messages = None
        else:
            messages = without_file_data(
                req.messages + (turn if isinstance(turn, list) else [turn]),
                cfg.max_file_bytes)
        record = {"owner": owner, "response": obj, "messages": messages}
        size = len(json.dumps(record, ensure_ascii=False, separators=(",", ":")))
        if size > cfg.max_bytes and messages is not None:
            record["messages"] = None  # GET still works; a continuation is refused
            size = len(json.dumps(record, ensure_ascii=False, separators=(",", ":")))
            if size > cfg.max_bytes:
                log.warning("response %s not stored: %d bytes > responses.max_bytes",
                            self.rid, size)
                return
        store = self.gateway.store
        # The record first, in its own task: its write is then queued before the client
        # can ask for it; the quota count after it would queue it one round trip later.
        store.spawn(store.kv_put(NS, self.rid, record, cfg.ttl),
                    f"response {self.rid}: not stored")
        store.spawn(store.hits(self._quota(owner, size)),
                    f"response {self.rid}: not counted in the caller's quota")

    def _quota(self, owner: str, size: int) -> list[Hit]:
        """The caller's stored responses and their bytes within `ttl`. Size 0: whether any
        room is left (before the vendor is asked); else the record, counted whatever the
        total (as a key's token budget, a quota is overshot by the requests in flight
        when it fills up, never by more)."""
        cfg = self.gateway.config.responses
        if not size:
            return [Hit(f"rsn:{owner}", 0, cfg.ttl, cfg.max_per_caller),
                    Hit(f"rsb:{owner}", 0, cfg.ttl, cfg.max_bytes_per_caller)]
        return [Hit(f"rsn:{owner}", 1, cfg.ttl), Hit(f"rsb:{owner}", size, cfg.ttl)]

    async def _room_to_store(self) -> None:
        try:
            ok, wait, failed = await self.gateway.store.hits(self._quota(_owner(self), 0))
        except StoreError:
            return  # answered all the same; storing it will fail and be logged (as before)
        if ok:
            return
        cfg = self.gateway.config.responses
        key = ("max_per_caller", "max_bytes_per_caller")[failed]
        what = (f"{cfg.max_per_caller} responses" if failed == 0
                else f"{cfg.max_bytes_per_caller} bytes of responses")
        seconds = max(1, math.ceil(wait))
        raise APIError(429, f"This caller has stored {what} within {cfg.ttl:g}s "
                            f"(responses.{key}); send store: false, or retry in {seconds}s.",
                       code="stored_response_limit", retry_after=str(seconds))


class ResponseHandler(APIHandler):
    """GET / DELETE /v1/responses/{id}, for the caller that made it."""

    async def get(self, rid):
        self.client_token()
        record = await load(self, rid)
        self.write_json(record["response"])

    async def delete(self, rid):
        self.client_token()
        await load(self, rid)
        try:
            await self.gateway.store.kv_delete(NS, rid)
        except StoreError as e:
            raise store_unavailable(e) from None
        self.write_json({"id": rid, "object": "response.deleted", "deleted": True})
