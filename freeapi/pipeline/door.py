"""What the pipeline needs from a front door: the `Door` protocol a handler implements
(freeapi/handlers/door.py's DoorHandler implements it with the OpenAI chat defaults;
the Anthropic and Responses doors override their wire details)."""

from __future__ import annotations

from typing import Any, Protocol


class Door(Protocol):
    # -- who the door is --------------------------------------------------------------------
    #: The ledger's name for the door ("chat", "messages", "responses", "embeddings", ...).
    endpoint: str
    #: The bytes sent while the vendor is silent (`sse.KEEPALIVE`; Anthropic: `ping`).
    keepalive: bytes
    #: The door's clients may drop the reasoning of tool-call turns: the pipeline keeps it
    #: and puts it back (freeapi/reasoning.py); its encoder then has `on_finish(answer)`.
    remembers_reasoning: bool
    #: The caller the door authenticated (keys.Caller), None for an anonymous one.
    caller: Any

    # -- the door's dialect -------------------------------------------------------------
    def error_body(self, err) -> dict:
        """An APIError in the door's JSON shape (its HTTP errors)."""

    def stream_error(self, err) -> bytes:
        """The last bytes of a stream that failed after its first byte."""

    def chat_encoder(self, relay) -> Any:
        """The vendor's chat-completions events as the door's events: `feed(data) ->
        bytes`, `finish() -> bytes` (see freeapi/pipeline/__init__.py); optionally
        `block(raw) -> int`: how many bytes (whole events) at the start of a read of whole
        one-line events (sse.Run) go to the client as they are; the rest are fed one by
        one (`[DONE]` always is)."""

    # -- the request ------------------------------------------------------------------------
    def authorization(self) -> str | None:
        """The request's Authorization header (the caller's bearer: conversations,
        documents and kept reasoning belong to it)."""

    def header(self, name: str) -> str | None:
        """A request header (the trace context: freeapi/telemetry.py)."""

    def elapsed(self) -> float:
        """Seconds since the request arrived."""

    def request_id(self) -> str | None:
        """The request's X-Request-Id."""

    def logged(self, entry: dict) -> None:
        """The ledger entry's fields go into the request's log line."""

    # -- writing ----------------------------------------------------------------------------
    def set_header(self, name: str, value) -> None: ...

    def event_stream_headers(self) -> None:
        """Make the answer a `text/event-stream` (sse.SSEWriter.commit)."""

    def get_status(self) -> int: ...

    def write(self, chunk) -> None: ...

    def flush(self) -> Any: ...

    def finish(self, chunk=None) -> Any: ...

    def cut(self) -> None:
        """Close the connection mid-body: the client sees the answer incomplete."""
