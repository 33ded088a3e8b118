"""The native-or-chat decision, in one place: whether a request goes to a vendor's own
endpoint for the door's dialect (the door's native pass-through: the Anthropic door to
an Anthropic-compatible endpoint, the Responses door to a Responses API) or as the chat
body every door makes.

A native pass-through (the door's `native=` to Pipeline.run) has `body` (the client's
request as the native endpoint takes it), `request(provider, body, key)` (None: that
provider has no native endpoint), `answer(raw, model) -> (dict, usage)` and
`relay(model, keys)` (a stream encoder with `usage` and `finished`).

The chat body is sent instead when: a conversation carries the turn (history is kept as
chat messages), the documents were read the chat way, a `-search` model (its rounds are
chat), a non-stream request for a model the vendor only streams (assembled from chat
chunks), or the attempt's provider has no native endpoint.
"""

from __future__ import annotations

from freeapi.pipeline.exchange import Exchange
from freeapi.routing import Route


def takes(native, target: Route) -> bool:
    """Whether `target`'s native endpoint carries the request's documents itself."""
    return target.provider.native_documents and native.request(
        target.provider, target.body_for(native.body), None) is not None


def native_reads_documents(ex: Exchange, native, route: Route, body: dict, stream: bool,
                    stores_conversations: bool) -> bool:
    """Whether the door's native pass-through will carry the request, documents and all,
    in the vendor's own form (never for a conversation: those are kept as chat; nor for a
    `-search` model or a non-stream request a stream-only model assembles from chat
    chunks: both go out as chat, where an unread `file` part has no place). Fallbacks
    without the native endpoint are then skipped (`targets`). Writes `ex.native_docs`."""
    if native is None or body.get("conversation_id") is not None or stores_conversations \
            or getattr(route, "search", False) \
            or (not stream and route.provider.stream_only(route.upstream_model, body)):
        return False
    ex.native_docs = takes(native, route)
    return ex.native_docs


def choose_native(ex: Exchange, native, route: Route, body: dict, stream: bool) -> None:
    """The pass-through this request may use (`ex.native`), if any (see the module's
    docstring); each attempt still falls back to chat where its provider has none."""
    if native is None or ex.conversation is not None or ex.chat_docs:
        return
    if not stream and route.provider.stream_only(route.upstream_model, body):
        return  # the stream is assembled from chat chunks
    ex.native = native


def targets(ex: Exchange, found: list) -> list:
    """A request whose documents only the native endpoint carries goes to no fallback
    that would get the chat body with its `file` parts unread."""
    if not ex.native_docs or ex.native is None:
        return found
    return found[:1] + [t for t in found[1:] if takes(ex.native, t)]


def request(ex: Exchange, target: Route, body: dict, key):
    """The vendor request for one attempt: native when the door and provider allow (the
    client's own body, with the route's model and translation defaults), else chat.
    Writes `ex.served_native`."""
    native = ex.native
    if native is not None:
        req = native.request(target.provider, target.body_for(native.body), key)
        if req is not None:
            ex.served_native = True
            return req
    ex.served_native = False
    return target.provider.chat_request(body, key)
