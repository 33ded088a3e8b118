"""Conversations over HTTP: `POST /v1/conversations`, `GET` and `DELETE
/v1/conversations/{id}`. The rules are in freeapi/conversations.py; the pipeline's part
(history in, the new turn stored) in freeapi/pipeline/history.py."""

from __future__ import annotations

import time

from freeapi import conversations as conv
from freeapi.handlers.base import APIHandler
from freeapi.keys import bearer
from freeapi.pipeline.history import (may_start, needs_credentials, store_unavailable,
                                     stored_turns, too_many)
from freeapi.store import StoreError


class ConversationsHandler(APIHandler):
    """POST /v1/conversations: a new, empty conversation for the caller."""

    async def post(self):
        self.client_token()
        cfg = self.gateway.config.conversations
        cid = conv.new_id()
        owner = conv.owner_of(self.caller, bearer(self.request.headers.get("Authorization")))
        if owner == conv.ANONYMOUS:
            raise needs_credentials()
        wait = await may_start(self.gateway.store, owner, cfg)
        if wait is not None:
            raise too_many(cfg, wait)
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
        owner = conv.owner_of(self.caller, bearer(self.request.headers.get("Authorization")))
        if owner == conv.ANONYMOUS:
            raise needs_credentials()
        return owner

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
