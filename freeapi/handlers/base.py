"""The base handler: OpenAI-shaped JSON errors, gateway auth, bounded JSON bodies."""

from __future__ import annotations

import json
import logging
import math
import re

from tornado import web

from freeapi.errors import APIError, invalid_request
from freeapi.keys import bearer

log = logging.getLogger("freeapi")

# A `\uD800`-`\uDFFF` escape: the only way a body decoded from UTF-8 can hold a lone
# surrogate, which Python keeps in the str but cannot encode when the body is forwarded.
# Most bodies have none, so the walk over the parsed body runs only when this matches.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


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


class ClientGone(Exception):
    """The client disconnected; there is nobody to answer."""


@web.stream_request_body
class APIHandler(web.RequestHandler):
    """Bodies are streamed in so an oversized one is refused with 413 as soon as its size
    is known, instead of after buffering it."""

    caller = None  # the config.GatewayKey that authenticated this request

    def initialize(self):
        self.gateway = self.settings["freeapi"]
        self._chunks: list[bytes] = []
        self._size = 0

    def set_default_headers(self):
        self.set_header("Content-Type", "application/json")
        # Tornado's default server header says nothing useful and costs bytes.
        self.clear_header("Server")

    def prepare(self):
        length = self.request.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > self.gateway.config.max_body_size:
            raise self._too_large()

    def _too_large(self) -> APIError:
        return APIError(413, f"Request body is larger than the gateway's limit of "
                             f"{self.gateway.config.max_body_size} bytes "
                             "(server.max_body_size).", code="request_too_large")

    def data_received(self, chunk: bytes):
        self._size += len(chunk)
        if self._size <= self.gateway.config.max_body_size:
            self._chunks.append(chunk)
        else:
            self._chunks.clear()

    def json_body(self) -> dict:
        if self._size > self.gateway.config.max_body_size:
            raise self._too_large()
        raw = b"".join(self._chunks)
        if not raw.strip():
            raise invalid_request("Request body is empty; expected a JSON object.")
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
        key); otherwise it is whatever the client sent, for pass-through.
        """
        token = bearer(self.request.headers.get("Authorization"))
        auth = self.gateway.auth
        if auth.enabled:
            self.caller = auth.identify(token)
            if self.caller is None:
                raise APIError(401, "Invalid or missing gateway key: send "
                                    "`Authorization: Bearer <key>` with a key from the "
                                    "gateway's auth.keys.", code="invalid_api_key")
        return token

    def write_json(self, obj, status: int = 200):
        self.set_status(status)
        self.finish(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))

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
        if isinstance(e, ClientGone):
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
                            "/v1/models/{id}, /v1/keys, /token/check, /ping and /healthz.",
                       code="unknown_route")
