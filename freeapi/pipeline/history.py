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
from freeapi.pipeline.exchange import Exchange
from freeapi.relay import assemble
from freeapi.store import Hit, StoreError

log = logging.getLogger("freeapi.conversations")
HEADER = "x-freeapi-conversation-id"


def store_unavailable(e: StoreError) -> APIError:
    log.error("conversations: %s", str(e))
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


def owner(door) -> str:
    """Whose conversations, documents and kept reasoning the request's are: the gateway
    key's caller, or a hash of the vendor key it passed through (freeapi/conversations.py)."""
    return conv.owner_of(door.caller, bearer(door.authorization()))


class Conversations:
    """`continue_history(ex, body)` before the request is sent, `watch(ex, relay)` for
    streams, `answered(ex, data)` for a non-stream answer, `remember(ex)` once the answer
    has ended."""

    def __init__(self, store, config):
        self.store, self.config = store, config  # config.conversations

    async def continue_history(self, ex: Exchange, body: dict) -> None:
        """Put the stored history in front of the new messages (or start a conversation
        when the operator stores all); the vendor never sees `conversation_id`. Writes
        `ex.conversation`."""
        cfg = self.config
        cid = body.pop("conversation_id", None)
        if cid is None and not cfg.store:
            return
        new = [conv.clean(m) if m.get("role") == "assistant" else m for m in body["messages"]]
        if conv.size(new) > cfg.max_bytes:
            raise APIError(413, f"These messages are larger than a stored conversation may "
                                f"be ({cfg.max_bytes} bytes, conversations.max_bytes).",
                           code="conversation_too_large")
        who = owner(ex.door)
        if who == conv.ANONYMOUS:
            if cid is not None:
                raise needs_credentials()
            return  # conversations.store keeps nothing for callers without credentials
        if cid is None:
            try:
                if await may_start(self.store, who, cfg) is not None:
                    return  # over max_per_caller: answered, just not stored
            except APIError:
                return  # the store is down: answered, just not stored (as before)
            cid, turns = conv.new_id(), []
        else:
            turns = await stored_turns(self.store, cid, who)
        body["messages"] = conv.with_history(turns, new, cfg.max_history_chars)
        ex.conversation = (cid, who, new)
        ex.door.set_header(HEADER, cid)

    @staticmethod
    def watch(ex: Exchange, relay) -> None:
        """A stream's relay collects the answer for the conversation (and tells the
        client its id)."""
        if ex.conversation is not None:
            relay.collect = []
            relay.extra = {"conversation_id": ex.conversation[0]}
            relay.parse_all = True

    @staticmethod
    def answered(ex: Exchange, data: dict) -> dict:
        """A non-stream answer (a chat.completion as the client gets it): keep its message
        (`ex.conversation_answer`), tell the client the conversation's id."""
        if ex.conversation is not None and "choices" in data:
            ex.conversation_answer = conv.answer_message(data)
            data["conversation_id"] = ex.conversation[0]
        return data

    @staticmethod
    def _stream_answer(relay) -> dict | None:
        normalize, chunks = relay.provider.chunk_normalizer(), []
        for data in relay.collect or ():
            try:
                chunk = normalize(json.loads(data))
            except (ValueError, AttributeError, RecursionError):
                continue
            if isinstance(chunk, dict) and "choices" in chunk:
                chunks.append(chunk)
        return conv.answer_message(assemble(chunks))

    def remember(self, ex: Exchange) -> None:
        """Store the finished turn (a failed, cut or abandoned answer stores nothing). The
        write is queued on the store's one connection/thread before the client could send
        its next turn, so that turn's read sees it."""
        if ex.conversation is None or ex.remembered or ex.error is not None \
                or ex.door.get_status() != 200:
            return
        ex.remembered = True
        relay = ex.relay
        if relay is not None:
            message = self._stream_answer(relay) if relay.finished else None
        else:
            message = ex.conversation_answer
        if message is None:
            return
        cid, who, new = ex.conversation
        cfg = self.config
        self.store.spawn(
            self.store.conversation_append(cid, who, [new + [message]], cfg.ttl,
                                           cfg.max_turns, cfg.max_bytes),
            f"conversation {cid}: the last turn was not stored")
