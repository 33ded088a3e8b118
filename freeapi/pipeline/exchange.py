"""One request's state on its way through the pipeline: what the steps learn and the
steps after them read.

Each field names the step that writes it (its module in freeapi/pipeline/); any step may
read it. The steps are made once per gateway (freeapi/pipeline/__init__.py: Steps) and
hold nothing of any request: what a step knows of one is what it is handed, this object
and its arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # types only: importing these at run time would be circular
    import asyncio

    from freeapi.budgets import Reservation
    from freeapi.keypool import Lease
    from freeapi.ledger import StreamSizes
    from freeapi.modalities import Operation
    from freeapi.pipeline.open_stream import OpenStream
    from freeapi.sse import SSEWriter


class StreamRecord(Protocol):
    """What the ledger reads of a stream (`Exchange.relay`): a StreamRelay, a native
    encoder (dialects' NativeEvents) or an operation's StreamMark."""

    @property
    def usage(self) -> dict | None: ...

    @property
    def finished(self) -> bool: ...


class NativePassThrough(Protocol):
    """A door's native pass-through (see freeapi/pipeline/native.py's docstring)."""

    body: dict

    def request(self, provider: Any, body: dict, key: Any) -> Any: ...

    def answer(self, raw: bytes, model: str) -> tuple[dict, dict | None]: ...

    def relay(self, model: str, keys: Any = ()) -> Any: ...


@dataclass(eq=False, init=False)
class Exchange:
    #: The front door the request came in by (freeapi/pipeline/door.py): Pipeline.
    door: Any

    def __init__(self, door):
        # Every other field starts as its class default: one request makes one Exchange,
        # and a generated __init__ setting 35 fields cost it 3-4 µs.
        self.door = door

    def wait_on(self, fut) -> None:
        """`on_wait` of KeyPool.acquire (Failover.lease, Documents): the future a request
        queued for a key waits on, failed when the client leaves or shutdown ends it."""
        self.queued = fut

    # -- lifecycle (Pipeline.client_left) --------------------------------------------------
    #: The client went away: nothing more is sent, nobody waits for a key.
    client_gone: bool = False

    # -- admission (admission.py: Admission.admit) ------------------------------------------
    #: (provider name, requested model, stream) once routed: the metrics count it.
    routed: tuple | None = None
    #: (requested model, stream) once the caller's limits admitted the request.
    admitted: tuple | None = None
    #: The money the request holds of its caller's budgets (freeapi/budgets.py: a
    #: Reservation), for a caller with one: made by Admission (Budgets.admit), topped up
    #: by Failover (Budgets.top_up), settled and cleared by Accounting (Budgets.settle).
    budget: Reservation | None = None

    # -- operation (Pipeline.call) --------------------------------------------------------
    #: The non-chat request (embeddings, images, speech), or None for chat.
    operation: Operation | None = None

    # -- conversation (history.py: Conversations) -----------------------------------------
    #: (id, owner, the request's new messages) when the turn belongs to a conversation
    #: (Conversations.continue_history).
    conversation: tuple | None = None
    #: The non-stream answer's assistant message (Conversations.answered).
    conversation_answer: dict | None = None
    #: The finished turn was stored, or found not to be storable (Conversations.remember).
    remembered: bool = False

    # -- documents (documents.py: Documents) ----------------------------------------------
    #: sha256 -> (filename, media type, bytes): the files this request sent or holds
    #: (Documents.read and Documents.held).
    doc_bytes: dict | None = None
    #: The messages hold placeholders bound per attempt ("reference" mode; Documents.read,
    #: or Documents.load for a conversation's history).
    doc_refs: bool = False
    #: The request's documents were read for the chat body, so the native pass-through
    #: must not serve (Documents.read).
    chat_docs: bool = False
    #: {file id: its cache name} of the attempt under way (Documents.bind).
    bound: dict | None = None
    #: Stale file ids were forgotten once already (Documents.stale).
    rebound: bool = False

    # -- native pass-through (native.py) -----------------------------------------------------
    #: The documents were left to the native endpoint (native.py: native_reads_documents).
    native_docs: bool = False
    #: The door's native pass-through this request may use (native.py: choose_native).
    native: NativePassThrough | None = None
    #: The request of the attempt under way (and so of the one that served) went to the
    #: native endpoint (native.py: request).
    served_native: bool = False

    # -- failover (failover.py: Failover) -------------------------------------------------
    #: Some target had credentials: the ledger records the request (Failover.attempts).
    credentialed: bool = False
    #: The key lease of the attempt that served, until released (Failover.attempts; the
    #: lease itself is released by Pipeline.done or a stream's error event).
    lease: Lease | None = None
    #: (route, masked vendor key, seconds until the answer began) (Failover.attempts).
    served: tuple | None = None
    #: Monotonic time the request's work must end by: the attempt's timeouts.total
    #: (Failover.send), or the document reading's (Documents.read).
    deadline: float | None = None
    #: Seconds spent waiting for vendors, for the gateway overhead metric (Failover).
    upstream_s: float = 0.0
    #: The OpenStream that served, if any (Failover.send).
    opened: OpenStream | None = None
    #: (target index, provider) of the last failed attempt, for metrics (Failover).
    failed_at: tuple | None = None
    #: The vendor call in flight, aborted when the client leaves (VendorCalls.start).
    call: Any = None
    #: The future this request waits on (a free key, a poll's pause), failed when the
    #: client leaves or shutdown ends it (Exchange.wait_on: the key pool's on_wait and
    #: VendorCalls.pause).
    queued: asyncio.Future | None = None

    # -- the response (streaming.py: ResponseWriter; search.py; operations.py) ------------
    #: The SSE writer of a streamed answer (ResponseWriter.stream, SearchRounds).
    writer: SSEWriter | None = None
    #: What the ledger reads of a stream: a StreamRelay, a native encoder, or an
    #: operation's StreamMark (ResponseWriter, OperationContext.relaying).
    relay: StreamRecord | None = None
    #: (route, what a -silent stream kept from the client) at its end (ResponseWriter).
    hidden: tuple | None = None
    #: A non-stream answer's body as sent, for its usage (ResponseWriter.complete).
    answer: bytes | None = None
    #: Or its usage object, when the answer was parsed anyway (ResponseWriter.parsed,
    #: OperationContext.report_usage).
    usage: dict | None = None
    #: The chat body as sent (history included), for a usage estimate (Pipeline.run).
    sent_body: dict | None = None
    #: StreamSizes of the relayed stream (ResponseWriter.relay).
    sizes: StreamSizes | None = None
    #: The error code the answer ended with (ResponseWriter, SearchRounds,
    #: OperationContext.failed; the door's write_error through Pipeline.failed).
    error: str | None = None

    # -- accounting (accounting.py: Accounting.account) -----------------------------------
    #: The ledger entry (or the metrics' count) is written: never twice.
    accounted: bool = False
    #: That entry (freeapi/ledger.py: entry), for the request's trace span.
    entry: dict | None = None

    # -- tracing (freeapi/telemetry.py; Pipeline.run / call) -------------------------------
    #: The request's span while it is traced (and sampled); None otherwise, and always
    #: with telemetry off: the pipeline's telemetry calls are skipped on it.
    span: object | None = None
