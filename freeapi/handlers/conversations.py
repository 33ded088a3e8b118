"""Conversations over HTTP: the chat handler's part (history in, the new turn stored) and
`POST /v1/conversations`, `GET` and `DELETE /v1/conversations/{id}`. The rules are in
freeapi/conversations.py."""

from __future__ import annotations

import json
import logging
import time

from freeapi import conversations as conv
from freeapi.errors import APIError
from freeapi.handlers.base import APIHandler
from freeapi.keys import bearer
from freeapi.relay import assemble
from freeapi.store import StoreError

log = logging.getLogger("freeapi.conversations")
HEADER = "x-freeapi-conversation-id"


def store_unavailable(e: StoreError) -> APIError:
    log.error("conversations: %s", e)
    return APIError(503, "The gateway cannot reach its conversation store right now; retry "
                         "shortly.", code="state_unavailable", retry_after="1")


async def stored_turns(store, cid: str, owner: str) -> list:
    """The caller's conversation, or the 400/404/503 that says why there is none."""
    conv.check_id(cid)
    try:
        turns = await store.conversation_get(cid, owner)
    except StoreError as e:
        raise store_unavailable(e) from None
    if turns is None:
        raise conv.not_found(cid)
    return turns


class ConversationMixin:
    """Mixed into the chat handler: `_converse(body)` before the request is sent,
    `_watch_relay(relay)` for streams, `_remember()` once the answer has ended."""

    _conv = None  # (id, owner, the request's new messages)
    _conv_answer = None  # the non-stream answer's assistant message
    _remembered = False

    def _owner(self) -> str:
        return conv.owner_of(self.caller, bearer(self.request.headers.get("Authorization")))

    async def _converse(self, body: dict) -> None:
        """Put the stored history in front of the new messages (or start a conversation
        when the operator stores all); the vendor never sees `conversation_id`."""
        cfg = self.gateway.config.conversations
        cid = body.pop("conversation_id", None)
        if cid is None and not cfg.store:
            return
        new = [conv.clean(m) if m.get("role") == "assistant" else m for m in body["messages"]]
        if conv.size(new) > cfg.max_bytes:
            raise APIError(413, f"These messages are larger than a stored conversation may "
                                f"be ({cfg.max_bytes} bytes, conversations.max_bytes).",
                           code="conversation_too_large")
        owner = self._owner()
        if cid is None:
            cid, turns = conv.new_id(), []
        else:
            turns = await stored_turns(self.gateway.store, cid, owner)
        body["messages"] = conv.with_history(turns, new, cfg.max_history_chars)
        self._conv = (cid, owner, new)
        self.set_header(HEADER, cid)

    def _watch_relay(self, relay) -> None:
        self._stream_relay = relay
        if self._conv is not None:
            relay.collect = []
            relay.extra = {"conversation_id": self._conv[0]}
            relay.parse_all = True

    def finish(self, chunk=None):
        # A non-stream answer: keep its message, tell the client the conversation's id.
        if self._conv is not None and chunk is not None and self._error is None \
                and self.get_status() == 200 and not self._acct[1]:
            try:
                data = json.loads(chunk)
            except (ValueError, UnicodeDecodeError, RecursionError):
                data = None
            if isinstance(data, dict) and "choices" in data:
                self._conv_answer = conv.answer_message(data)
                data["conversation_id"] = self._conv[0]
                chunk = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        return super().finish(chunk)

    def _stream_answer(self, relay) -> dict | None:
        normalize, chunks = relay.provider.chunk_normalizer(), []
        for data in relay.collect or ():
            try:
                chunk = normalize(json.loads(data))
            except (ValueError, AttributeError, RecursionError):
                continue
            if isinstance(chunk, dict) and "choices" in chunk:
                chunks.append(chunk)
        return conv.answer_message(assemble(chunks))

    def _remember(self) -> None:
        """Store the finished turn (a failed, cut or abandoned answer stores nothing). The
        write is queued on the store's one connection/thread before the client could send
        its next turn, so that turn's read sees it."""
        if self._conv is None or self._remembered or self._error is not None \
                or self.get_status() != 200:
            return
        self._remembered = True
        relay = self._stream_relay
        if relay is not None:
            message = self._stream_answer(relay) if relay.finished else None
        else:
            message = self._conv_answer
        if message is None:
            return
        cid, owner, new = self._conv
        cfg = self.gateway.config.conversations
        self.gateway.store.spawn(
            self.gateway.store.conversation_append(cid, owner, [new + [message]], cfg.ttl,
                                                   cfg.max_turns, cfg.max_bytes),
            f"conversation {cid}: the last turn was not stored")


class ConversationsHandler(APIHandler):
    """POST /v1/conversations: a new, empty conversation for the caller."""

    async def post(self):
        self.client_token()
        cfg = self.gateway.config.conversations
        cid = conv.new_id()
        owner = conv.owner_of(self.caller, bearer(self.request.headers.get("Authorization")))
        try:
            await self.gateway.store.conversation_append(cid, owner, [], cfg.ttl,
                                                         cfg.max_turns, cfg.max_bytes)
        except StoreError as e:
            raise store_unavailable(e) from None
        self.write_json({"id": cid, "object": "conversation", "created": int(time.time()),
                         "messages": []})


class ConversationHandler(APIHandler):
    """GET / DELETE /v1/conversations/{id}, for the caller that owns it."""

    def _owner(self) -> str:
        self.client_token()
        return conv.owner_of(self.caller, bearer(self.request.headers.get("Authorization")))

    async def get(self, cid):
        owner = self._owner()
        turns = await stored_turns(self.gateway.store, cid, owner)
        self.write_json({"id": cid, "object": "conversation", "turns": len(turns),
                         "messages": conv.flatten(turns)})

    async def delete(self, cid):
        owner = self._owner()
        conv.check_id(cid)
        try:
            deleted = await self.gateway.store.conversation_delete(cid, owner)
        except StoreError as e:
            raise store_unavailable(e) from None
        if not deleted:
            raise conv.not_found(cid)
        self.write_json({"id": cid, "object": "conversation.deleted", "deleted": True})
