"""The base handler: OpenAI-shaped JSON errors, gateway auth, bounded JSON bodies."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import re
import time
from http.client import responses

from tornado import httputil, web

from freeapi import access_log, logs
from freeapi.errors import Answered, APIError, ClientGone, invalid_request
from freeapi.json_limits import deeper_than, value_bound
from freeapi.keys import bearer
from freeapi.server import answer_and_close

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


@web.stream_request_body
class APIHandler(web.RequestHandler):
    """Bodies are streamed in so an oversized one is refused with 413 as soon as its size
    is known, instead of after buffering it."""

    caller = None  # the config.GatewayKey that authenticated this request
    # With gateway keys configured, the key is checked from the headers in prepare(),
    # before any of the body is read: a caller without one cannot make the gateway hold
    # 16 MB bodies (Tornado closes a connection whose body was left unread).
    auth_required = True
    _rlog = None  # logs.RequestLog: this request's id and log fields
    _reserved = 0  # bytes of the gateway's body budget this request holds
    _over_budget = False  # a chunked body outgrew the budget: answered 503, not buffered
    _token: str | None = None  # client_token()'s answer, once checked
    _token_checked = False

    def initialize(self):
        self.gateway = self.settings["freeapi"]
        self._chunks: list[bytes] = []
        self._size = 0

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

    def prepare(self):
        headers = self.request.headers
        length = _header(headers, "Content-Length")
        body_coming = length not in (None, "0") or bool(headers.get_list("Transfer-Encoding"))
        try:
            if self.auth_required and self.gateway.auth.enabled:
                self.client_token()
            if length and length.isdigit() and int(length) > self.gateway.config.max_body_size:
                raise self._too_large()
            if length and length.isdigit() and int(length) > 0:
                self._reserve(int(length))
        except APIError as e:
            if body_coming:
                # A 503 for want of room is retried: the client, which may only read once
                # it has sent everything, must get to read it (its body is read and
                # dropped, costing no memory). Other refusals read 1 MB at most.
                full = e.code == "body_buffer_full"
                self._refuse_unread(e, (int(length) + 4096) if full else 1 << 20,
                                    10.0 if full else 1.0)
            raise
        # Pauses in the body are bounded by its connection's watch (connection_watch.py).
        self._body_coming = body_coming

    def refuse(self, err: APIError):
        """Raise `err`; when the body is still to come, answer it before reading the body
        (a subclass's own checks in prepare, e.g. quotas, then cost no buffering)."""
        if getattr(self, "_body_coming", False):
            self._release()  # the connection is taken over: no on_finish will give it back
            self._refuse_unread(err)
        raise err

    def _refuse_unread(self, err: APIError, drain: int = 1 << 20, seconds: float = 1.0):
        """Answer `err` before the body is read, on a connection taken over from Tornado
        (which would close it with the body unread, resetting it before the client reads
        the answer), and close it cleanly; the handler does nothing more."""
        body = json.dumps(self.error_body(err)).encode()
        retry = f"Retry-After: {err.retry_after}\r\n" if err.retry_after else ""
        head = (f"HTTP/1.1 {err.status} {responses.get(err.status, 'Error')}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                f"X-Request-Id: {self._rlog.request_id}\r\n{retry}"  # checked: no CRLF
                "Connection: close\r\n\r\n").encode()
        log.debug("%s %s -> %d before the body (%s)", self.request.method, self.request.path,
                  err.status, err.code)
        self._rlog.error = err.code
        self._access_line(err.status)
        answer_and_close(self.request.connection.detach(), head + body, seconds, drain)
        raise Answered()

    def on_connection_close(self):
        # Tornado's own fails the body's future, so a request waiting for its body ends;
        # subclasses that override this must call it.
        super().on_connection_close()
        self._release()
        self._access_line(gone=True)

    def on_finish(self):
        # Subclasses that override this must call it.
        self._release()
        self._access_line()

    #: Whether this route's requests get an access line (off for /ping, /healthz,
    #: /metrics: probes and scrapers would drown the rest).
    access_logged = True

    def _access_line(self, status: int | None = None, gone: bool = False):
        """The request's access line (freeapi/access_log.py), once, one loop turn later:
        by then a door's pipeline has made the ledger entry the line is written from."""
        rlog = self._rlog
        if (rlog is None or rlog.access_logged or not self.access_logged
                or not self.gateway.config.access_log or not access_log.enabled()):
            return
        rlog.access_logged = True
        caller = self.caller
        asyncio.get_running_loop().call_soon(
            access_log.write, rlog, self.request.method, self.request.path,
            status or self.get_status(), round(self.request.request_time() * 1000),
            caller.name if caller is not None else None, gone and status is None)

    # -- the gateway-wide budget of buffered body bytes (freeapi/body_budget.py) ------------

    def _reserve(self, size: int):
        if not self.gateway.body_budget.take(size):
            raise self._no_room()
        self._reserved += size

    def _release(self):
        if self._reserved:
            self.gateway.body_budget.give_back(self._reserved)
            self._reserved = 0
        self._chunks = []

    def _no_room(self) -> APIError:
        return APIError(503, "The gateway is holding as many request bodies as it may at "
                             f"once ({self.gateway.body_budget.limit} bytes, "
                             "server.max_buffered_bytes); retry shortly.",
                        code="body_buffer_full", retry_after="1")

    def _too_large(self) -> APIError:
        return APIError(413, f"Request body is larger than the gateway's limit of "
                             f"{self.gateway.config.max_body_size} bytes "
                             "(server.max_body_size).", code="request_too_large")

    def data_received(self, chunk: bytes):
        self._size += len(chunk)
        if self._over_budget or self._size > self.gateway.config.max_body_size:
            self._release()  # nothing more is kept: the answer is a 503 or a 413
            return
        if self._size > self._reserved:  # a chunked body: reserved as it comes
            if not self.gateway.body_budget.take(self._size - self._reserved):
                self._over_budget = True
                self._release()
                return
            self._reserved = self._size
        self._chunks.append(chunk)

    def raw_body(self) -> bytes:
        """The request body, its size checked against the gateway's limits."""
        if self._size > self.gateway.config.max_body_size:
            raise self._too_large()
        if self._over_budget:
            raise self._no_room()
        raw = b"".join(self._chunks)
        self._chunks = [raw]  # the joined copy is the only one kept
        return raw

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

    def client_token(self) -> str | None:
        """The caller's bearer token after gateway auth.

        With gateway keys configured, the token must be one of them (and is not a vendor
        key); otherwise it is whatever the client sent, for pass-through. Checked once:
        prepare() checks it before the body is read, the door's post() asks again.
        """
        if self._token_checked:
            return self._token
        token = bearer(_header(self.request.headers, "Authorization"))
        auth = self.gateway.auth
        if auth.enabled:
            self.caller = auth.identify(token)
            if self.caller is None:
                raise APIError(401, "Invalid or missing gateway key: send "
                                    "`Authorization: Bearer <key>` with a key from the "
                                    "gateway's auth.keys.", code="invalid_api_key")
        self._token, self._token_checked = token, True
        return token

    def write_json(self, obj, status: int = 200):
        try:
            data = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
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

    def error_body(self, err: APIError) -> dict:
        """An error in this door's JSON shape (OpenAI's here; the Anthropic door's own)."""
        return err.to_dict()

    def log_exception(self, typ, value, tb):
        if isinstance(value, APIError):
            if value.status >= 500:
                log.warning("%s %s -> %d %s", self.request.method, self.request.path,
                            value.status, value.message)
            return
        super().log_exception(typ, value, tb)

    def _handle_request_exception(self, e):
        if isinstance(e, (ClientGone, Answered)):
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
    def prepare(self):
        raise APIError(404, f"Unknown route {self.request.method} {self.request.path}. "
                            "The gateway serves /v1/chat/completions, /v1/messages, "
                            "/v1/messages/count_tokens, /v1/models, "
                            "/v1/models/{id}, /v1/keys, /token/check, /ping and /healthz "
                            "(operators: /metrics, /status, /v1/status).",
                       code="unknown_route")
