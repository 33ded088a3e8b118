"""The base handler: OpenAI-shaped JSON errors, gateway auth, bounded JSON bodies."""

from __future__ import annotations

import functools
import json
import logging
import math
import re
import time

from tornado import httputil, web

from freeapi import logs
from freeapi.errors import Answered, APIError, ClientGone, invalid_request
from freeapi.handlers.gate import Arrival, access_line, answer_unread
from freeapi.json_limits import deeper_than, value_bound
from freeapi.json_text import compact
from freeapi.keys import bearer

log = logging.getLogger("freeapi")

# A `\uD800`-`\uDFFF` escape that is not half of a pair: the only way a body decoded from
# UTF-8 can hold a lone surrogate, which Python keeps in the str but cannot encode when the
# body is forwarded. Most bodies have none (emoji escaped as pairs are fine), so the walk
# over the parsed body, to name where it is, runs only when this matches. (An escaped
# backslash before `u` matches too: the walk then finds nothing.)
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F])"
                               rb"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F]")


def _no_constants(name: str):
    # json.loads takes NaN and Infinity, which are not JSON: forwarded, they would make the
    # vendor's request body invalid.
    raise invalid_request(f"Request body is not valid JSON: {name} is not a JSON value.",
                          code="invalid_json")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # 1e400 overflows to Infinity, which json.dumps writes as such
        raise invalid_request(f"Request body has a number out of range: {text[:40]}.",
                              code="invalid_json")
    return value


# Far deeper than any real request (tool schemas nest a dozen levels), far below the ~950
# levels at which Python's json gives up: every later encoding of the body is safe.
MAX_DEPTH = 128


def _lone_surrogate(body) -> str | None:
    """The path of the first string or object key holding a lone surrogate, or None.
    Iterative, as the body may be nested as deeply as json.loads allows; a path is only
    spelled out (from (parent, step) links) once something is found."""
    stack = [(body, None)]
    while stack:
        value, trail = stack.pop()
        if isinstance(value, str):
            if not value.isascii() and not _encodes(value):
                return _spell(trail)
        elif isinstance(value, dict):
            for k, v in reversed(value.items()):
                if not k.isascii() and not _encodes(k):
                    return _spell((trail, k))
                if isinstance(v, (str, dict, list)):
                    stack.append((v, (trail, k)))
        elif isinstance(value, list):
            for i in range(len(value) - 1, -1, -1):
                if isinstance(value[i], (str, dict, list)):
                    stack.append((value[i], (trail, i)))
    return None


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _spell(trail) -> str:
    steps = []
    while trail is not None:
        trail, step = trail
        steps.append(f"[{step}]" if isinstance(step, int) else f".{step}")
    return "".join(reversed(steps)).lstrip(".")


@functools.lru_cache(maxsize=2)
def _http_date(second: int) -> str:
    """The Date header for a second (RFC 9110's IMF-fixdate), formatted once per second."""
    return httputil.format_timestamp(second)


def _header(headers, name: str) -> str | None:
    """headers.get(name) without its cost for an absent header: HTTPHeaders inherits
    Mapping.get, which raises and catches a KeyError (a few per request, measurable)."""
    values = headers.get_list(name)
    if not values:
        return None
    return values[0] if len(values) == 1 else ",".join(values)


def streamed_body(cls):
    """For a handler whose checks before the body must wait for something (an upload's
    quota): its prepare() runs before the body is read and may `refuse()` it unread; the
    gate keeps the body's pieces, as for every handler. Costs two turns of the event
    loop."""
    cls.streams_body = True
    return web.stream_request_body(cls)


class APIHandler(web.RequestHandler):
    """The base of every route: OpenAI-shaped JSON errors, the gateway key, bounded JSON
    bodies. The checks before the body (`before_body`) run in the BodyGate in front of
    the handler (freeapi/handlers/gate.py), which answers a refused body unread."""

    # With gateway keys configured, the key is checked from the headers before any of the
    # body is read: a caller without one cannot make the gateway hold 16 MB bodies.
    auth_required = True
    streams_body = False  # set by @streamed_body
    _rlog = None  # logs.RequestLog: this request's id and log fields
    arrival: Arrival

    def initialize(self, arrival: Arrival):
        self.gateway = self.settings["freeapi"]
        self.arrival = arrival

    @property
    def caller(self):
        """The config.GatewayKey that authenticated this request (None: anonymous)."""
        return self.arrival.caller

    @classmethod
    def before_body(cls, arrival: Arrival, request) -> None:
        """The route's checks before the body is read (raise an APIError to refuse);
        subclasses extend them. Run by the BodyGate, in the connection's turn: nothing
        here may wait."""
        headers = request.headers
        length = _header(headers, "Content-Length")
        gateway = arrival.gateway
        if cls.auth_required and gateway.auth.enabled:
            cls.check_token(arrival, headers)
        if length and length.isascii() and length.isdigit():  # "²" is a digit to isdigit()
            size = int(length)
            if size > gateway.config.max_body_size:
                raise arrival.too_large_error()
            if size > 0:
                arrival.take(size)

    @classmethod
    def check_token(cls, arrival: Arrival, headers) -> None:
        """Gateway auth: with gateway keys configured, the bearer token must be one of them
        (and is not a vendor key); otherwise it is whatever the client sent, for
        pass-through."""
        token = bearer(_header(headers, "Authorization"))
        auth = arrival.gateway.auth
        if auth.enabled:
            arrival.caller = auth.identify(token)
            if arrival.caller is None:
                raise APIError(401, "Invalid or missing gateway key: send "
                                    "`Authorization: Bearer <key>` with a key from the "
                                    "gateway's auth.keys.", code="invalid_api_key")
        arrival.token, arrival.checked = token, True

    def client_token(self) -> str | None:
        """The caller's bearer token after gateway auth (checked once: by the gate when the
        route requires it, else here)."""
        arrival = self.arrival
        if not arrival.checked:
            self.check_token(arrival, self.request.headers)
        return arrival.token

    def clear(self):
        """Tornado's clear() (the headers every response starts with, again after an
        error), without what it costs per response: the Date header formatted through
        email.utils each time (here once a second), a Server header that says nothing
        useful and is then removed, and a second round of set_header checks for ours."""
        # First called while the handler is built, before Tornado starts the task that runs
        # it, so the request's log context is inherited by everything the request does;
        # called again when an error clears the headers.
        if self._rlog is None:
            self._rlog = logs.begin(_header(self.request.headers, "X-Request-Id"),
                                    getattr(self, "endpoint", None))
        headers = self._headers = httputil.HTTPHeaders()
        headers["Content-Type"] = "application/json"
        headers["Date"] = _http_date(int(time.time()))
        headers["X-Request-Id"] = self._rlog.request_id  # logs.begin: a sane id, no CR/LF
        self._write_buffer = []
        self._status_code = 200
        self._reason = "OK"

    def event_stream_headers(self):
        """An event stream's headers (sse.SSEWriter.commit): constants, set as clear()
        sets its own, without set_header's check of each value (21k instructions a
        stream, bench/instructions.py)."""
        headers = self._headers
        headers["Content-Type"] = "text/event-stream; charset=utf-8"
        headers["Cache-Control"] = "no-cache"
        headers["X-Accel-Buffering"] = "no"  # nginx: do not buffer the stream

    def prepare(self):
        refusal = self.arrival.refusal
        if refusal is not None:  # the gate's, for a request without a body
            # Raised without a cycle: its traceback holds this frame, which holds the
            # handler, which would hold the error through its Arrival and this local.
            self.arrival.refusal = None
            try:
                raise refusal
            finally:
                refusal = None

    def refuse(self, err: APIError):
        """Raise `err`; in a @streamed_body handler's prepare(), with the body still to
        come, answer it before reading the body (the handler does nothing more)."""
        if self.streams_body and self.arrival.body_coming and not self.arrival.size:
            self.arrival.release()  # the connection is taken over: no on_finish gives back
            self._rlog.error = err.code
            self._access_line(err.status)
            answer_unread(self.request, self._rlog, err, self.error_body(err))
            raise Answered()
        try:
            raise err
        finally:
            err = None  # raising without a cycle (see prepare)

    def on_connection_close(self):
        # Tornado's own fails the body's future, so a request waiting for its body ends;
        # subclasses that override this must call it.
        super().on_connection_close()
        self.arrival.release()
        self._access_line(gone=True)

    def on_finish(self):
        # Subclasses that override this must call it.
        self.arrival.release()
        self._access_line()

    #: Whether this route's requests get an access line (off for /ping, /healthz,
    #: /metrics: probes and scrapers would drown the rest).
    access_logged = True

    def _access_line(self, status: int | None = None, gone: bool = False):
        if self.access_logged:
            access_line(self.gateway, self._rlog, self.request, status or self.get_status(),
                        self.caller, gone and status is None)

    def raw_body(self) -> bytes:
        """The request body, its size checked against the gateway's limits."""
        err = self.arrival.body_error()
        if err is not None:
            try:
                raise err
            finally:
                err = None  # raising without a cycle (see prepare)
        return self.arrival.body()  # the gate kept what it counted

    def json_body(self) -> dict:
        raw = self.raw_body()
        if not raw.strip():
            raise invalid_request("Request body is empty; expected a JSON object.")
        cap = self.gateway.config.max_json_values
        if value_bound(raw) > cap:
            # Before json.loads, whose time and memory grow with the values, not the bytes.
            raise invalid_request(f"Request body has more than {cap} JSON values (counted "
                                  "as commas and opening brackets; server.max_json_values).",
                                  code="too_many_json_values")
        try:
            body = json.loads(raw, parse_constant=_no_constants, parse_float=_finite)
        except (ValueError, UnicodeDecodeError) as e:
            raise invalid_request(f"Request body is not valid JSON: {e}.",
                                  code="invalid_json") from None
        except RecursionError:  # a small body of nested brackets must not be a 500
            raise invalid_request("Request body is nested too deeply.",
                                  code="invalid_json") from None
        if not isinstance(body, dict):
            raise invalid_request("Request body must be a JSON object.")
        if deeper_than(raw, MAX_DEPTH):
            # json.loads takes ~950 levels; encoding the body again for the vendor fails
            # a little earlier, which was a 500 (after the request had been admitted).
            raise invalid_request(f"Request body is nested more than {MAX_DEPTH} levels "
                                  "deep.", code="invalid_json")
        if _SURROGATE_ESCAPE.search(raw):
            path = _lone_surrogate(body)
            if path is not None:
                # The path may hold the bad key itself and be long: show it safely, briefly.
                path = path.encode("utf-8", "backslashreplace").decode()[:200]
                raise invalid_request(
                    f"Request body has a lone UTF-16 surrogate (an unpaired \\uD800-\\uDFFF "
                    f"escape) in `{path}`; that is not valid Unicode text.",
                    param=path, code="invalid_unicode")
        return body

    def write_json(self, obj, status: int = 200):
        try:
            data = compact(obj).encode()
        except UnicodeEncodeError:
            # A lone surrogate (a vendor's `\ud800` escape, parsed) has no UTF-8: written
            # as the same escape, the JSON is what the vendor sent.
            data = json.dumps(obj, separators=(",", ":")).encode()
        except RecursionError:  # only a vendor's answer can be this deep (see MAX_DEPTH)
            raise APIError(502, "The vendor's answer is nested too deeply to relay.",
                           code="upstream_invalid") from None
        self.set_status(status)
        self.finish(data)

    def write_error(self, status_code: int, **kwargs):
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, APIError):
            err = exc
        elif isinstance(exc, web.HTTPError) and status_code < 500:
            err = APIError(status_code, exc.log_message or self._reason)
        else:
            err = APIError(500, "Internal gateway error; see the gateway's log.",
                           code="internal_error")
        if err.retry_after:
            self.set_header("Retry-After", err.retry_after)
        if self._rlog is not None:
            self._rlog.error = err.code
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(self.error_body(err)))

    @classmethod
    def error_body(cls, err: APIError) -> dict:
        """An error in this door's JSON shape (OpenAI's here; the Anthropic door's own)."""
        return err.to_dict()

    def log_exception(self, typ, value, tb):
        if isinstance(value, APIError):
            if value.status >= 500:
                log.warning("%s %s -> %d %s", self.request.method, self.request.path,
                            value.status, value.message)
            return
        super().log_exception(typ, value, tb)

    def ended_unanswered(self):
        """The request ended without Tornado answering it (the client left, or the
        connection was answered outside Tornado's flow): no finish(), so no on_finish.
        Subclasses that override this must call it."""
        # What finish() does (RequestHandler._break_cycles): `ui` holds a namespace that
        # holds the handler, a cycle only the garbage collector would otherwise free.
        self.ui = None

    def _handle_request_exception(self, e):
        if isinstance(e, (ClientGone, Answered)):
            self.ended_unanswered()
            return
        # APIError carries its own status; Tornado would otherwise turn it into a 500.
        if isinstance(e, APIError):
            self.log_exception(type(e), e, None)
            if self._finished:
                return
            self.send_error(e.status, exc_info=(type(e), e, None))
            return
        super()._handle_request_exception(e)


class NotFoundHandler(APIHandler):
    @classmethod
    def before_body(cls, arrival: Arrival, request) -> None:
        raise APIError(404, f"Unknown route {request.method} {request.path}. "
                            "The gateway serves /v1/chat/completions, /v1/messages, "
                            "/v1/messages/count_tokens, /v1/models, "
                            "/v1/models/{id}, /v1/keys, /token/check, /ping and /healthz "
                            "(operators: /metrics, /status, /v1/status).",
                       code="unknown_route")
