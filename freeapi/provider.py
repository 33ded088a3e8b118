"""The provider base class: an OpenAI-compatible vendor API, overridden only for quirks.

Pure: a provider describes requests and interprets responses; the core does the HTTP.
Providers never import Tornado.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import ClassVar, Mapping
from urllib.parse import urlsplit

from freeapi.config import ConfigError, ProviderConfig
from freeapi.errors import APIError, vendor_error
from freeapi.keys import redact


@dataclass
class UpstreamRequest:
    method: str
    url: str
    headers: dict
    body: bytes | None = None


def error_detail(body: bytes) -> tuple[str, str | None]:
    """(message, code) from the usual vendor error bodies; raw text when not JSON."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return body[:300].decode("utf-8", "replace").strip(), None
    err = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(err, dict):
        message = (err.get("message") or err.get("msg") or err.get("error_msg")
                   or err.get("errMsg") or "")
        code = err.get("code") or err.get("type") or err.get("errCode")
        return str(message)[:500], (str(code) if code is not None else None)
    return str(err)[:500], None


def _chained(retired: dict, name: str) -> dict:
    """Translations whose target is itself retired (`my-old: deepseek-chat`) followed to a
    current id, the nearer name's defaults winning; a circle is a config error."""
    out = {}
    for old, (target, defaults) in retired.items():
        seen, defaults = {old}, dict(defaults or {})
        while target in retired:
            if target in seen:
                raise ConfigError(f"providers.{name}.translations.{old}",
                                  "the translations go round in a circle")
            seen.add(target)
            target, more = retired[target]
            defaults = {**(more or {}), **defaults}
        out[old] = (target, defaults)
    return out


class Provider:
    """One configured vendor. Subclass and override class attributes and quirk methods."""

    #: Config `type:`; for built-ins also the default section name under `providers:`.
    type_name: ClassVar[str] = "openai"
    default_base_url: ClassVar[str | None] = None
    #: Model ids the vendor serves, as `/v1/models` lists them.
    models: ClassVar[tuple[str, ...]] = ()
    #: Extra names clients may type -> a model id above.
    aliases: ClassVar[Mapping[str, str]] = {}
    #: Models that return `reasoning_content`; they get `-fold`/`-silent` variants.
    reasoning_models: ClassVar[frozenset] = frozenset()
    #: Names the vendor retired or renamed: old name -> (current model id, request-body
    #: defaults). The defaults fill only fields the client did not set; the answer keeps
    #: the old name as its `model`. The config adds more (`providers.NAME.translations`).
    retired: ClassVar[Mapping[str, tuple[str, Mapping]]] = {}
    #: fnmatch-style globs (case-sensitive) of names this vendor may serve beyond the
    #: listed ones, so a model released tomorrow routes without a gateway release;
    #: `providers.NAME.patterns` replaces them.
    patterns: ClassVar[tuple[str, ...]] = ()
    owned_by: ClassVar[str] = "openai-compatible"
    enabled_by_default: ClassVar[bool] = True
    #: Extra config keys this type accepts: name -> ((types...), default).
    options: ClassVar[Mapping[str, tuple]] = {}
    chat_path: ClassVar[str] = "/chat/completions"
    #: True when normalize_chunk changes chunks; otherwise the relay can skip parsing them.
    rewrites_chunks: ClassVar[bool] = False
    #: True when the vendor reports a stream's usage only if asked (include_usage): the
    #: gateway then always asks, for the ledger and token limits, and hides the extra
    #: usage chunk from clients that did not ask.
    usage_on_request: ClassVar[bool] = False
    #: False for servers that take no key (a local Ollama): requests then go out without one.
    key_required: ClassVar[bool] = True
    #: The vendor's documented Anthropic-compatible endpoint (the base the Anthropic SDK
    #: takes, before /v1/messages): the /v1/messages door passes requests through to it
    #: instead of translating them. A path ("/anthropic") is on the host of `base_url`, so
    #: it follows a region or a test server. Config `anthropic_base_url` overrides it (a
    #: URL or path; false or "none": always translate).
    anthropic_base_url: ClassVar[str | None] = None
    #: Globs of the upstream models that endpoint serves; others are translated.
    anthropic_models: ClassVar[tuple[str, ...]] = ("*",)
    #: Whether that endpoint also serves /v1/messages/count_tokens (config
    #: `anthropic_count_tokens`); otherwise the gateway estimates.
    anthropic_count_tokens: ClassVar[bool] = False
    #: True when key_check_request can see the account's balance (DeepSeek /user/balance,
    #: Kimi /users/me/balance): a key out of balance (402) is then re-checked by it. Other
    #: vendors' checks (GET /models, a one-token chat) cannot tell "no balance" apart, so
    #: on types that take the `no_balance_recheck` option (NO_BALANCE_OPTION) such a key
    #: instead stays out for that many seconds.
    balance_check: ClassVar[bool] = False
    #: Models the vendor serves free of charge (README, /v1/models listing).
    free_models: ClassVar[frozenset] = frozenset()

    def __init__(self, config: ProviderConfig):
        self.name = config.name
        self.config = config
        self.base_url = config.base_url or self.default_base_url
        if not self.base_url:
            raise ConfigError(f"providers.{self.name}.base_url",
                              f"required for providers of type {self.type_name}")
        self.api_keys = list(config.api_keys)
        self.responses_url = config.responses_base_url  # /v1/responses passes through there
        self.timeouts = config.timeouts
        # Types that declare DISCOVER_OPTION ask GET /models at startup (freeapi.app).
        self.discover_enabled = bool(config.options.get("discover"))
        self.anthropic_url = self._anthropic_url(config.options.get("anthropic_base_url"))
        counts = config.options.get("anthropic_count_tokens")
        self.anthropic_counts = bool(self.anthropic_url) and (
            self.anthropic_count_tokens if counts is None else bool(counts))
        self._discovered: tuple[str, ...] = ()
        # Per instance: the class's own, then the operator's (which win).
        translations = getattr(config, "translations", None) or {}
        if translations:
            self.retired = _chained({**type(self).retired, **translations}, self.name)
        if getattr(config, "patterns", None) is not None:
            self.patterns = tuple(config.patterns)

    # -- models ---------------------------------------------------------------------------

    def model_ids(self) -> list[str]:
        return list(self.models) + self.modality_ids() + self.discovered_ids()

    def discovered_ids(self) -> list[str]:
        """Models the vendor listed at startup beyond the static `models`."""
        static = set(self.models) | set(self.modality_ids())
        return [m for m in self._discovered if m not in static]

    def set_discovered(self, ids) -> None:
        self._discovered = tuple(ids)

    def models_request(self, key: str | None) -> UpstreamRequest:
        return UpstreamRequest("GET", self.base_url + "/models", self.auth_headers(key))

    def parse_models(self, status: int, body: bytes) -> list[str] | None:
        """Model ids from an OpenAI-style `{"data": [{"id": ...}]}` list; None if unusable."""
        if status != 200:
            return None
        try:
            data = json.loads(body)["data"]
        except (ValueError, KeyError, TypeError):
            return None
        if not isinstance(data, list):
            return None
        return [m["id"] for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]

    def _anthropic_url(self, option) -> str | None:
        native = self.anthropic_base_url if option is None or option is True else option
        if native is False or not native or native.strip().lower() in ("none", "false", "off"):
            return None
        native = native.strip().rstrip("/")
        if native.startswith("/"):
            parts = urlsplit(self.base_url)
            native = f"{parts.scheme}://{parts.netloc}{native}"
        if not re.match(r"^https?://[^/\s]+", native):
            raise ConfigError(f"providers.{self.name}.anthropic_base_url",
                              "expected an http(s):// URL, a path on base_url's host, or false")
        return native

    def no_balance_wait(self) -> float | None:
        """Seconds a key out of balance stays out before a request may try it again; None
        when the key check can see the balance (it then decides, see `balance_check`)."""
        # Types that do not take the option (third-party plugins written before it) keep
        # re-checking with their key check, as all types once did.
        if self.balance_check or "no_balance_recheck" not in type(self).options:
            return None
        value = self.config.options.get("no_balance_recheck")
        return float(value) if value is not None else NO_BALANCE_RECHECK

    def is_reasoning(self, model: str) -> bool:
        return model in self.reasoning_models

    def thinks(self, body: Mapping | None) -> bool:
        """Whether a request for a reasoning model leaves its thinking on (vendors with a
        `thinking` switch override this)."""
        return True

    def first_byte_timeout(self, model: str, body: Mapping | None = None) -> float:
        if self.is_reasoning(model) and self.thinks(body):
            return max(self.timeouts.first_byte, self.timeouts.first_byte_reasoning)
        return self.timeouts.first_byte

    # -- requests -------------------------------------------------------------------------

    def auth_headers(self, key: str | None) -> dict:
        return {"Authorization": f"Bearer {key}"} if key else {}

    def stream_only(self, model: str, body: Mapping | None = None) -> bool:
        """True when the vendor serves this request only as a stream (the model, or an
        option in `body`, asks for it); a `stream: false` request is then streamed from the
        vendor and assembled into one completion."""
        return False

    def prepare_body(self, body: dict) -> dict:
        """The request body as the vendor wants it (body is the client's, model replaced)."""
        return body

    def reasoning_for_history(self, message: dict, body: Mapping) -> dict:
        """An assistant turn of the history, carrying the gateway's `reasoning_content`, as
        this vendor wants its own reasoning back (pure; `body` is the request, for vendors
        whose form depends on a request flag). The default is the field itself, as
        DeepSeek and Kimi document it."""
        return message

    def _history_reasoning(self, body: dict) -> dict:
        messages = body.get("messages")
        if not isinstance(messages, list):
            return body
        out, changed = [], False
        for m in messages:
            if isinstance(m, dict) and m.get("role") == "assistant" and (
                    "reasoning_content" in m or "reasoning_details" in m):
                new = self.reasoning_for_history(m, body)
                changed = changed or new is not m
                m = new
            out.append(m)
        return dict(body, messages=out) if changed else body

    def chat_request(self, body: dict, key: str | None) -> UpstreamRequest:
        if type(self).reasoning_for_history is not Provider.reasoning_for_history:
            body = self._history_reasoning(body)
        if self.usage_on_request and body.get("stream"):
            opts = body.get("stream_options") or {}
            if opts.get("include_usage") is not True:
                body = dict(body, stream_options={**opts, "include_usage": True})
        payload = json.dumps(self.prepare_body(body), ensure_ascii=False,
                             separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", **self.auth_headers(key)}
        if body.get("stream"):
            headers["Accept"] = "text/event-stream"
        return UpstreamRequest("POST", self.base_url + self.chat_path, headers, payload)

    def messages_request(self, body: dict, key: str | None,
                         path: str = "/v1/messages") -> UpstreamRequest | None:
        """The client's Anthropic Messages request (model already replaced) for the vendor's
        own Anthropic endpoint, or None when it has none (the door then translates)."""
        if not self.anthropic_url or (path.endswith("/count_tokens")
                                      and not self.anthropic_counts):
            return None
        model = body.get("model")
        if not isinstance(model, str) or not any(fnmatchcase(model, p)
                                                 for p in self.anthropic_models):
            return None
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        # The Anthropic SDK's headers (https://docs.anthropic.com/en/api/versioning);
        # vendors take the key as x-api-key, as the SDK sends it.
        headers = {"Content-Type": "application/json", "anthropic-version": "2023-06-01"}
        if key:
            headers["x-api-key"] = key
        if body.get("stream"):
            headers["Accept"] = "text/event-stream"
        return UpstreamRequest("POST", self.anthropic_url + path, headers, payload)

    # -- responses ------------------------------------------------------------------------

    def error_from(self, status: int, headers: Mapping[str, str], body: bytes,
                   keys=()) -> APIError | None:
        """The error this response means, or None when it is a success."""
        if 200 <= status < 300:
            if type(self).body_error is Provider.body_error or body.lstrip()[:1] != b"{":
                return None
            try:
                data = json.loads(body)
            except (ValueError, UnicodeDecodeError, RecursionError):
                return None  # not an error report; the caller judges the answer itself
            return self.body_error(data, keys) if isinstance(data, dict) else None
        message, code = error_detail(body)
        return vendor_error(self.name, status, redact(message, keys), code=code,
                            retry_after=headers.get("Retry-After"))

    def chunk_error(self, chunk: dict, keys=()) -> APIError | None:
        """The error a stream event reports instead of an answer: the vendor's own form
        (body_error) or OpenAI's `{"error": {...}}` event, as sent by OpenRouter or vLLM."""
        err = self.body_error(chunk, keys)
        if err is not None or "error" not in chunk or "choices" in chunk:
            return err
        detail = chunk["error"] if isinstance(chunk["error"], dict) else {}
        message = str(detail.get("message") or chunk["error"])[:500]
        code = str(detail.get("code") or detail.get("type") or "")
        status = detail.get("status") or detail.get("code")
        if not (isinstance(status, int) and 400 <= status <= 599):
            lowered = code.lower()
            status = (429 if "rate" in lowered else 401 if "auth" in lowered or
                      "api_key" in lowered else 402 if "quota" in lowered or
                      "balance" in lowered else 502)
        return vendor_error(self.name, status, redact(message, keys), code=code or None)

    def body_error(self, data: dict, keys=()) -> APIError | None:
        """The error a vendor reports inside an HTTP 200 JSON body or stream chunk, if any.

        Override for vendors that do this; error_from then applies it to 2xx answers.
        """
        return None

    def normalize_chunk(self, chunk: dict) -> dict:
        """One parsed stream chunk into OpenAI's shape (set `rewrites_chunks` if used).

        Return `{"error": {...}}` for a chunk that reports a failure.
        """
        return chunk

    def chunk_normalizer(self):
        """The chunk normalizer for one stream. The provider serves many streams at once, so
        a quirk that needs state across chunks (a tag split over two of them) returns a
        fresh callable here instead of keeping that state on the provider."""
        return self.normalize_chunk

    def normalize_completion(self, data: dict) -> dict:
        return data

    # -- key check ------------------------------------------------------------------------

    def key_check_request(self, key: str) -> UpstreamRequest:
        return self.models_request(key)

    def chat_ping(self, key: str, model: str) -> UpstreamRequest:
        """A key check by the smallest chat request, for vendors with no free authenticated
        GET; aim it at a free model so the check costs nothing."""
        return self.chat_request({"model": model, "max_tokens": 1,
                                  "messages": [{"role": "user", "content": "hi"}]}, key)

    def key_check_result(self, status: int, headers: Mapping[str, str], body: bytes,
                         keys=()) -> bool:
        """True when the key can be used now, False when the vendor says it cannot.

        Raise an APIError when the answer says nothing about the key (outage, rate limit).
        """
        if status in (401, 403):
            return False
        err = self.error_from(status, headers, body, keys)
        if err is None:
            return True
        # Vendors that map business codes (GLM, MiniMax, Spark) say "bad key" or "no
        # balance" this way, whatever their HTTP status was.
        if err.status in (401, 402, 403):
            return False
        # The check could not be done: that is the gateway's upstream failing (502), and a
        # vendor 503 relayed as-is would read as the gateway itself being unavailable.
        err.status = 502
        raise err


    # -- beyond chat: embeddings, images, speech, vision (README "Beyond chat") ----------
    # Pure like the rest: a hook builds the vendor request for one attempt (the gateway
    # sends it with the key pool, failover, timeouts and the ledger of chat), or returns
    # None when this vendor does not offer the operation; the matching `*_answer` reads
    # the vendor's body into OpenAI's shape. A plugin adds a modality for its vendor by
    # overriding these, and declares the models in the class attributes below (they are
    # routed and listed in GET /v1/models with their `capabilities`).

    #: Models served by `embeddings_request`, `images_request`, `speech_request`.
    embedding_models: ClassVar[tuple[str, ...]] = ()
    image_models: ClassVar[tuple[str, ...]] = ()
    speech_models: ClassVar[tuple[str, ...]] = ()
    transcription_models: ClassVar[tuple[str, ...]] = ()
    #: Chat models that take `image_url` parts. None: not declared (nothing is refused);
    #: a set: a chat request with images to any other model is refused with a 400 naming
    #: one of these.
    vision_models: ClassVar[frozenset | None] = None

    def modality_ids(self) -> list[str]:
        """The non-chat models this provider declares (routed like chat models)."""
        return [m for m in (*self.embedding_models, *self.image_models,
                            *self.speech_models, *self.transcription_models)
                if m not in self.models]

    def capabilities(self, model: str) -> list[str]:
        """What `model` can do, for GET /v1/models: chat, vision, embeddings, images,
        speech, search."""
        if model in self.embedding_models:
            return ["embeddings"]
        if model in self.image_models:
            return ["images"]
        if model in self.speech_models:
            return ["speech"]
        if model in self.transcription_models:
            return ["transcription"]
        caps = ["chat"]
        if self.vision_models is not None and model in self.vision_models:
            caps.append("vision")
        if self.search_body({"model": model, "messages": []}) is not None:
            caps.append("search")
        return caps

    def json_request(self, path: str, body: dict, key: str | None,
                     headers: dict | None = None) -> UpstreamRequest:
        """A JSON POST to `base_url + path` with the key: what OpenAI-shaped hooks send."""
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        return UpstreamRequest("POST", self.base_url + path, {
            "Content-Type": "application/json", **self.auth_headers(key), **(headers or {})},
            payload)

    def embeddings_request(self, body: dict, key: str | None) -> UpstreamRequest | None:
        """POST /v1/embeddings. `body` is OpenAI's (model is the upstream model; `input` a
        string, a list of strings, or token arrays; `encoding_format` already removed: the
        gateway asks for floats and encodes base64 itself). Raise an APIError 400 for
        input the vendor documents it refuses. None: not offered."""
        return None

    def embeddings_answer(self, raw: bytes) -> dict:
        """OpenAI's `{"object": "list", "data": [{"index", "embedding": [floats]}],
        "usage"}` from the vendor's body (ValueError if unusable)."""
        data = json.loads(raw)
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise ValueError("no `data` list")
        return data

    def images_request(self, body: dict, key: str | None) -> UpstreamRequest | None:
        """POST /v1/images/generations (`prompt`, `n`, `size`, `quality`, ...;
        `response_format` is left to `images_url_only`). None: not offered."""
        return None

    #: True when the vendor answers only with image URLs: the gateway then downloads them
    #: for `response_format: b64_json` (and sends the vendor no response_format).
    images_url_only: ClassVar[bool] = True

    def images_answer(self, raw: bytes, key: str | None):
        """OpenAI's `{"created", "data": [{"url" | "b64_json"}]}`, or an UpstreamRequest
        to send (with the same key) before asking again: a poll of an asynchronous task.
        Raise an APIError for a task that failed."""
        data = json.loads(raw)
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise ValueError("no `data` list")
        return data

    def images_poll_delay(self, polls: int) -> float:
        """Seconds to wait before the next poll of an asynchronous image task."""
        return min(0.5 * 2 ** polls, 5.0)

    def speech_request(self, body: dict, key: str | None) -> UpstreamRequest | None:
        """POST /v1/audio/speech (`input`, `voice`, `response_format`, `speed`). None: not
        offered. Raise an APIError 400 for a voice or format the vendor does not take."""
        return None

    #: How the vendor's speech answer arrives: "bytes" (the audio itself, relayed as it
    #: arrives), "sse" (events that `speech_decoder` decodes) or "json" (`speech_answer`).
    speech_transport: ClassVar[str] = "bytes"

    def transcriptions_request(self, body: dict, key: str | None) -> UpstreamRequest | None:
        """POST /v1/audio/transcriptions. `body` has `model`, `file` ((filename, media
        type, bytes)) and OpenAI's other form fields as strings. The vendor's answer goes
        to the client as it is (JSON, or text for text/srt/vtt). None: not offered."""
        return None

    def search_body(self, body: dict) -> dict | None:
        """The chat body with the vendor's own web search turned on (the `-search` model
        suffix), or None when the vendor offers none. Pure: return a new dict."""
        return None

    #: True when the vendor's search is a builtin tool whose calls the caller must hand
    #: back (Kimi's `$web_search`): the gateway then completes those rounds itself.
    search_round_trip: ClassVar[bool] = False

    #: Chat messages' `file` content parts: "refuse" (a 400, unless the provider extracts
    #: documents with the hooks below) or "pass" (sent to the vendor as they are).
    file_parts: ClassVar[str] = "refuse"

    def document_upload(self, filename: str, media_type: str, data: bytes,
                        key: str | None) -> UpstreamRequest | None:
        """The upload of a document for text extraction, or None: no document API. Then
        `document_id(raw)` reads the upload's answer, `document_text_request(file_id, key)`
        asks for the text, `document_text(raw)` is what goes into the chat (a system
        message), and `document_delete(file_id, key)` (optional) removes the vendor's
        copy."""
        return None

    def document_id(self, raw: bytes) -> str:
        file_id = json.loads(raw)["id"]
        if not isinstance(file_id, str) or not file_id or "/" in file_id:
            raise ValueError("no file id")
        return file_id

    def document_text_request(self, file_id: str, key: str | None) -> UpstreamRequest:
        raise NotImplementedError

    def document_text(self, raw: bytes) -> str:
        return raw.decode("utf-8", "replace")

    def document_delete(self, file_id: str, key: str | None) -> UpstreamRequest | None:
        return None

    def multipart_request(self, path: str, fields: dict, file_field: str, filename: str,
                          media_type: str, data: bytes, key: str | None) -> UpstreamRequest:
        """A multipart/form-data POST (RFC 7578) of `fields` and one file."""
        # Random: a client who could predict it could smuggle parts in through a field.
        boundary = "freeapi-" + secrets.token_hex(16)

        def safe(text):
            return "".join("_" if c in '"\\\r\n' else c for c in str(text))
        parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{safe(k)}"'
                 f"\r\n\r\n{v}\r\n".encode() for k, v in fields.items()]
        head = (f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; '
                f'filename="{safe(filename)}"\r\nContent-Type: {safe(media_type)}\r\n\r\n')
        parts.append(head.encode() + data + b"\r\n")
        parts.append(f"--{boundary}--\r\n".encode())
        return UpstreamRequest("POST", self.base_url + path, {
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            **self.auth_headers(key)}, b"".join(parts))

    def speech_decoder(self):
        """For the "sse" transport: a fresh callable (one per stream, so it may keep
        state) from one event's data to the audio bytes in it; it raises an APIError for
        an event that reports a failure."""
        return lambda data: b""

    def speech_answer(self, raw: bytes) -> bytes:
        """The audio in a whole speech answer ("json" transport)."""
        return raw


#: Add to a type's `options` to let its config turn startup model discovery on or off.
DISCOVER_OPTION = {"discover": ((bool,), True)}

#: How long a key out of balance stays out on vendors with no balance check: someone has to
#: top the account up, which a retry every minute would not notice any sooner.
NO_BALANCE_RECHECK = 6 * 3600.0
#: Add to a type's `options` to make that wait configurable (seconds).
NO_BALANCE_OPTION = {"no_balance_recheck": ((int, float), NO_BALANCE_RECHECK)}
