"""The base of every front door (chat completions, messages, responses): Tornado's request
lifecycle wired to the request's Pipeline, and the door's own wire details (error shape,
keep-alive, the end of a failed stream, the stream encoder) as overridable defaults,
which are the OpenAI chat-completions ones. See freeapi/pipeline/__init__.py."""

from __future__ import annotations

import json

from freeapi import sse
from freeapi.errors import APIError
from freeapi.handlers.base import APIHandler
from freeapi.pipeline import Pipeline, shutdown_error


class ChatEvents:
    """The chat door's encoder: the relay's bytes, then `[DONE]`."""

    __slots__ = ("feed", "block", "relay")

    def __init__(self, relay):
        self.relay = relay
        self.feed = relay.feed  # bound once: the per-event path stays one call
        # a run of events passed on whole (ResponseWriter._relay); none for a relay that
        # changes every chunk (the reads are then not checked for runs at all)
        self.block = relay.block if relay.passes_runs else None

    def finish(self) -> bytes:
        return self.relay.finish() + sse.DONE


class DoorHandler(APIHandler):
    endpoint = "chat"  # the ledger's name for this door
    keepalive = sse.KEEPALIVE
    #: The door's clients may drop the reasoning of tool-call turns (Anthropic clients drop
    #: thinking blocks they cannot verify, Responses clients reasoning items): the pipeline
    #: then keeps it by caller and tool call (id, name, arguments) and puts it back
    #: (freeapi/reasoning.py). The encoder then has `on_finish(answer)`.
    remembers_reasoning = False
    pipeline: Pipeline | None = None

    @classmethod
    def before_body(cls, arrival, request) -> None:
        if arrival.gateway.draining:
            # Refused before the body (and before the body budget is asked for room, which
            # would otherwise answer a full budget's 503 instead): a client is not made to
            # send its body for a 503.
            raise shutdown_error()
        super().before_body(arrival, request)

    def prepare(self):
        super().prepare()
        self.pipeline = Pipeline(self, self.gateway)
        if self.gateway.draining:  # (draining began while the body was on its way)
            raise shutdown_error()
        self.gateway.active.add(self)

    def on_finish(self):
        super().on_finish()
        if self.pipeline is not None:
            self.pipeline.finished()
            # The request is over: the handler, its pipeline and exchange (which points back
            # at the handler as its door) are freed by reference counting now, rather than
            # left as a cycle for the collector with the request's whole graph behind it.
            self.pipeline = None

    def on_connection_close(self):
        super().on_connection_close()  # ends a wait for the rest of the body
        if self.pipeline is not None:
            self.pipeline.client_left()

    def ended_unanswered(self):
        super().ended_unanswered()
        if self.pipeline is not None and self.pipeline.ex.client_gone:
            # The client left (client_left accounted for the request) and no on_finish
            # will come to drop the pipeline, whose exchange points back at the handler.
            self.pipeline = None

    def shutdown(self):
        """Graceful shutdown's grace period ran out: end this request with an error."""
        if self.pipeline is not None:
            self.pipeline.shutdown()

    def write_error(self, status_code: int, **kwargs):
        if self.pipeline is not None:
            self.pipeline.failed(kwargs.get("exc_info", (None, None, None))[1], status_code)
        super().write_error(status_code, **kwargs)

    # -- what the pipeline reads of the request (freeapi/pipeline/door.py) -------------------

    def authorization(self) -> str | None:
        return self.request.headers.get("Authorization")

    def header(self, name: str) -> str | None:
        return self.request.headers.get(name)

    def elapsed(self) -> float:
        return self.request.request_time()

    def request_id(self) -> str | None:
        return self._rlog.request_id if self._rlog is not None else None

    def logged(self, entry: dict) -> None:
        if self._rlog is not None:
            self._rlog.update_from_entry(entry)

    def cut(self) -> None:
        self.request.connection.close()

    # -- the door's wire details ------------------------------------------------------------

    def stream_error(self, err: APIError) -> bytes:
        """The end of a stream that failed after its first byte."""
        return sse.event(json.dumps(err.to_dict())) + sse.DONE

    def chat_encoder(self, relay):
        return ChatEvents(relay)
