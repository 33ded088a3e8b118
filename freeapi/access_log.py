"""One access line per request, at `info` on the `freeapi.access` logger
(`server.access_log: false` turns it off).

A served request's line carries what its ledger entry holds (freeapi/ledger.py: provider,
model, upstream model, status, latency, time to first byte, tokens, the masked vendor key,
the gateway key's name); a request that never reached a vendor (401, 404, a limit's 429)
carries what the handler knows. The line is written one turn of the event loop after the
response ended, so the ledger entry (made as the door's pipeline finishes) is there,
whichever way the request ended, and the client's answer never waits for it.

Never a secret: the vendor key is the ledger's masked id (`sk-...abcd`), the path is
logged without its query string (some clients put a key there), and the text a client
chose (path, model names) goes through keys.redact. The text format escapes control
characters (freeapi/logs.py); values with spaces, quotes or `=` are quoted as JSON
strings, so a line splits into fields unambiguously.
"""

from __future__ import annotations

import functools
import json
import logging
import re

from freeapi import logs
from freeapi.keys import redact

log = logging.getLogger("freeapi.access")

CLIENT_GONE = 499  # the client left before the answer ended (as the ledger says it)
_NEEDS_QUOTES = re.compile(r'[ "=\\]|^$')


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False) if _NEEDS_QUOTES.search(text) else text


_quote_short = functools.lru_cache(maxsize=512)(_quote)  # door, provider, model names repeat


def _quoted(value) -> str:
    if value.__class__ is not str:  # numbers, booleans
        return str(value)
    return _quote_short(value) if len(value) <= 200 else _quote(value)


def fields(rlog: logs.RequestLog, method: str, path: str, status: int, latency_ms: int,
           gateway_key: str | None, gone: bool = False) -> dict:
    """The line's fields (None: unknown for this request), the ledger entry's first."""
    e = rlog.entry
    if e is not None:
        status, latency_ms, gateway_key = e["status"], e["latency_ms"], e["key"]
    elif gone:
        status = CLIENT_GONE
    out = {"method": method, "path": _redacted(path), "status": status,
           "door": rlog.endpoint, "latency_ms": latency_ms, "gateway_key": gateway_key,
           "error": rlog.error}
    if e is not None:
        out.update(provider=e["provider"], model=_redacted(e["model"]),
                   upstream_model=_redacted(e["upstream_model"]), ttfb_ms=e["ttfb_ms"],
                   prompt_tokens=e["prompt_tokens"], completion_tokens=e["completion_tokens"],
                   total_tokens=e["total_tokens"], vendor_key=e["vendor_key"],
                   error=e["error"] or rlog.error)
        if e.get("estimated"):
            out["estimated"] = True
    return out


@functools.lru_cache(maxsize=512)
def _redact_short(text: str) -> str:
    return redact(text)


def _redacted(text):
    # Paths and model names repeat from request to request: a short one is scanned once.
    if not isinstance(text, str):
        return text
    return _redact_short(text) if len(text) <= 200 else redact(text)


_HEAD = ("method", "path", "status")  # the line's start, not key=value


def text_of(f: dict) -> str:
    """`POST /v1/chat/completions 200 door=chat provider=... key=value ...`."""
    parts = [f"{f['method']} {_quoted(f['path'])} {f['status']}"]
    for k, v in f.items():
        if v is not None and k not in _HEAD:
            parts.append(f"{k}={_quoted(v)}")
    return " ".join(parts)


def enabled() -> bool:
    """Whether a line would be written (the logger's level): the handler schedules none
    otherwise."""
    return log.isEnabledFor(logging.INFO)


def write(rlog: logs.RequestLog, method: str, path: str, status: int, latency_ms: int,
          gateway_key: str | None, gone: bool = False) -> None:
    """Emit the line (the caller checked the switch and that it is not yet written)."""
    if not log.isEnabledFor(logging.INFO):
        return
    f = fields(rlog, method, path, status, latency_ms, gateway_key, gone)
    # The record belongs to this request wherever it is emitted from: its id and fields
    # come from the request's log context, set around the call.
    token = logs.current.set(rlog)
    try:
        # Logger.info without its findCaller (a walk up the stack for the calling line,
        # which no format shows): the record made and handed to the handlers directly.
        log.handle(log.makeRecord(log.name, logging.INFO, __file__, 0, text_of(f), None, None,
                                  "write", {"access": f}))
    finally:
        logs.current.reset(token)
