"""Request ids and log formats.

Each request gets an id (the client's own `x-request-id` when it is sane, else a new one)
that goes back in the response, into the ledger entry and into every log line written
while the request is handled. The id travels in a context variable: the handler sets it
once, and a logging *handler* filter reads it only for records that are actually emitted,
so a request that logs nothing pays for one ContextVar.set and one random id.

`server.log_format: json` writes one JSON object per line; the text format (the default)
appends ` request_id=...` to the lines that belong to a request. Messages carry vendors'
and clients' text (a vendor's error body, a model name): in the text format their control
characters are escaped (`\n` as `\\n`, others as `\\xNN`), so one record is one line and
nobody can write a line that looks like another record. A traceback keeps its lines, each
indented, so none starts where a record does.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from contextvars import ContextVar

# A client's id is kept when it is short and plain: it is echoed in a response header and
# written to logs and the ledger, so nothing that could break a header or a log line.
_SANE_ID = re.compile(r"[A-Za-z0-9._:@/+=\-]{1,128}")


class RequestLog:
    """What the log lines of one request carry. The handler fills in the rest as it learns
    it (the ledger entry, once built, brings provider, model, status, latency, key)."""

    __slots__ = ("request_id", "endpoint", "provider", "model", "status", "latency_ms", "key",
                 "entry", "error", "access_logged")

    def __init__(self, request_id: str):
        self.request_id = request_id
        self.endpoint = self.provider = self.model = self.status = None
        self.latency_ms = self.key = None
        self.entry = None  # the request's ledger entry, once made (freeapi/access_log.py)
        self.error = None  # the error code it was answered with, if any
        self.access_logged = False

    def update_from_entry(self, e: dict):
        self.entry = e
        self.endpoint, self.provider, self.model = e["endpoint"], e["provider"], e["model"]
        self.status, self.latency_ms, self.key = e["status"], e["latency_ms"], e["vendor_key"]


current: ContextVar[RequestLog | None] = ContextVar("freeapi_request", default=None)


def new_id() -> str:
    # 96 random bits. An id only needs to be unique, not unguessable, so the fast
    # Mersenne Twister (reseeded in each forked worker by the random module itself), not
    # a system call per request.
    return f"{random.getrandbits(96):024x}"


def begin(client_id: str | None, endpoint: str | None = None) -> RequestLog:
    """Start a request's log context: the client's id if sane, else a fresh one."""
    rid = client_id if client_id and _SANE_ID.fullmatch(client_id) else new_id()
    ctx = RequestLog(rid)
    ctx.endpoint = endpoint
    current.set(ctx)
    return ctx


_FIELDS = ("endpoint", "provider", "model", "status", "latency_ms", "key")


class ContextFilter(logging.Filter):
    """Adds the current request's fields to a record (a handler filter: emitted records
    only)."""

    def filter(self, record):
        ctx = current.get()
        record.request_id = ctx.request_id if ctx is not None else None
        for name in _FIELDS:
            setattr(record, name, getattr(ctx, name) if ctx is not None else None)
        return True


# C0 and C1 controls, DEL, and the Unicode line and paragraph separators (which some log
# viewers break lines at).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(m) -> str:
    c = m.group()
    return _NAMED.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")


def escape_controls(text: str) -> str:
    return _CONTROL.sub(_escape_char, text) if _CONTROL.search(text) else text


class TextFormatter(logging.Formatter):
    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._stamp = (None, "")  # (second, its `YYYY-mm-dd HH:MM:SS`)

    def formatTime(self, record, datefmt=None):
        # logging's own asctime (local time, `YYYY-mm-dd HH:MM:SS,mmm`), with the seconds
        # formatted once per second instead of per line.
        second = int(record.created)
        stamp = self._stamp
        if stamp[0] != second:
            self._stamp = stamp = (second, time.strftime(self.default_time_format,
                                                         self.converter(second)))
        return f"{stamp[1]},{int(record.msecs):03d}"

    def formatMessage(self, record):
        return escape_controls(super().formatMessage(record))

    def formatException(self, ei):
        return self._indented(super().formatException(ei))

    def formatStack(self, stack_info):
        return self._indented(super().formatStack(stack_info))

    @staticmethod
    def _indented(text: str) -> str:
        return "\n".join("    " + escape_controls(line) for line in text.splitlines())

    def format(self, record):
        line = super().format(record)
        rid = getattr(record, "request_id", None)
        return f"{line} request_id={rid}" if rid else line


class JSONFormatter(logging.Formatter):
    """One object per line; fields that are unknown for a line are left out."""

    def format(self, record):
        out = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
               + f".{int(record.msecs):03d}Z",
               "level": record.levelname.lower(), "logger": record.name,
               "message": record.getMessage()}
        rid = getattr(record, "request_id", None)
        if rid:
            out["request_id"] = rid
        for name in _FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        access = getattr(record, "access", None)  # an access line's fields (access_log.py)
        if access:
            out.update((k, v) for k, v in access.items() if v is not None)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


FORMATS = ("text", "json")


def install(fmt: str, redactor: logging.Filter | None = None) -> None:
    """Put the chosen format and the request context on the root logger's handlers. The
    key redactor (given, or already there) runs first, so both formats see the redacted
    message."""
    formatter = JSONFormatter() if fmt == "json" else TextFormatter()
    for handler in logging.getLogger().handlers:
        if redactor is not None and redactor not in handler.filters:
            handler.addFilter(redactor)
        if not any(isinstance(f, ContextFilter) for f in handler.filters):
            handler.addFilter(ContextFilter())
        handler.setFormatter(formatter)
