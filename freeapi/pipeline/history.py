"""The pipeline's part in conversations: the stored history goes in front of the new
messages before the request is sent, and the finished turn is stored after it. The rules
are in freeapi/conversations.py; the HTTP endpoints in freeapi/handlers/conversations.py.

It works on the chat-completions body every door hands the pipeline, so a conversation
behaves the same whichever door it is continued through.
"""

from __future__ import annotations

import json
import logging
import math

from freeapi import conversations as conv
from freeapi.errors import APIError
from freeapi.keys import bearer
from freeapi.relay import assemble
from freeapi.store import Hit, StoreError

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


def needs_credentials() -> APIError:
    return APIError(401, "Conversations belong to a caller: send credentials as "
                         "`Authorization: Bearer <key>` (a gateway key, or your vendor key "
                         "when the gateway passes them through).", code="missing_api_key")


async def may_start(store, owner: str, cfg) -> float | None:
    """Count a new conversation against the caller's `conversations.max_per_caller` (a
    sliding window as long as a conversation lives, so nobody piles up more than that
    many live ones). None when admitted, else the seconds until one is free again."""
    try:
        ok, wait, _ = await store.hits([Hit(f"cv:{owner}", 1, cfg.ttl, cfg.max_per_caller)])
    except StoreError as e:
        raise store_unavailable(e) from None
    return None if ok else wait


def too_many(cfg, wait: float) -> APIError:
    seconds = max(1, math.ceil(wait))
    return APIError(429, f"This caller has started {cfg.max_per_caller} conversations within "
                         f"{cfg.ttl:g}s (conversations.max_per_caller); retry in {seconds}s, "
                         "or continue an existing one.", code="conversation_limit",
                    retry_after=str(seconds))


class ConversationMixin:
    """Part of the Pipeline: `_converse(body)` before the request is sent,
    `_watch_relay(relay)` for streams, `_answered(data)` for a non-stream answer,
    `_remember()` once the answer has ended."""

    _conv = None  # (id, owner, the request's new messages)
    _conv_answer = None  # the non-stream answer's assistant message
    _remembered = False

    def _owner(self) -> str:
        return conv.owner_of(self.caller, bearer(
            self.handler.request.headers.get("Authorization")))

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
        if owner == conv.ANONYMOUS:
            if cid is not None:
                raise needs_credentials()
            return  # conversations.store keeps nothing for callers without credentials
        if cid is None:
            try:
                if await may_start(self.gateway.store, owner, cfg) is not None:
                    return  # over max_per_caller: answered, just not stored
            except APIError:
                return  # the store is down: answered, just not stored (as before)
            cid, turns = conv.new_id(), []
        else:
            turns = await stored_turns(self.gateway.store, cid, owner)
        body["messages"] = conv.with_history(turns, new, cfg.max_history_chars)
        self._conv = (cid, owner, new)
        self.handler.set_header(HEADER, cid)

    def _watch_relay(self, relay) -> None:
        self._stream_relay = relay
        if self._conv is not None:
            relay.collect = []
            relay.extra = {"conversation_id": self._conv[0]}
            relay.parse_all = True

    def _answered(self, data: dict) -> dict:
        """A non-stream answer (a chat.completion as the client gets it): keep its message,
        tell the client the conversation's id."""
        if self._conv is not None and "choices" in data:
            self._conv_answer = conv.answer_message(data)
            data["conversation_id"] = self._conv[0]
        return data

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
                or self.handler.get_status() != 200:
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
