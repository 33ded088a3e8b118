"""The provider base class: an OpenAI-compatible vendor API, overridden only for quirks.

Pure: a provider describes requests and interprets responses; the core does the HTTP.
Providers never import Tornado.
"""

from __future__ import annotations

import json
import re
from fnmatch import fnmatchcase
from typing import ClassVar, Mapping
from urllib.parse import urlsplit

from freeapi.config import ConfigError, ProviderConfig
from freeapi.errors import APIError, vendor_error
from freeapi.json_text import compact
from freeapi.keys import redact
from freeapi.provider_modalities import ModalityHooks
from freeapi.vendor_request import UpstreamRequest

__all__ = ["Provider", "UpstreamRequest", "error_detail"]


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


class Provider(ModalityHooks):
    """One configured vendor. Subclass and override class attributes and quirk methods.

    The public methods play one of three roles (docs/plugins.md, "The class at a glance",
    has the table; tests/test_docs.py keeps it complete): hooks, which a plugin overrides;
    helpers, which hooks call to build requests (`json_request`, `chat_ping`, ...); and
    the gateway's, which the core calls and which follow from the declarations
    (`model_ids`, `capabilities`, `no_balance_wait`, ...). The sections below go by
    concern; each helper and gateway method says so in its docstring's first words.
    """

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
    #: (Not a ClassVar: an instance's config may extend it, see __init__.)
    retired: Mapping[str, tuple[str, Mapping]] = {}
    #: fnmatch-style globs (case-sensitive) of names this vendor may serve beyond the
    #: listed ones, so a model released tomorrow routes without a gateway release;
    #: `providers.NAME.patterns` replaces them.
    patterns: tuple[str, ...] = ()  # per instance too (__init__)
    owned_by: ClassVar[str] = "openai-compatible"
    enabled_by_default: ClassVar[bool] = True
    #: Extra config keys this type accepts: name -> ((types...), default).
    options: ClassVar[Mapping[str, tuple]] = {}
    chat_path: ClassVar[str] = "/chat/completions"
    #: True when normalize_chunk changes chunks; otherwise the relay can skip parsing them.
    rewrites_chunks: ClassVar[bool] = False
    #: Whether normalize_completion changes non-stream answers. None: it does when the type
    #: overrides it; a type whose override only acts on some option (OpenAI-compatible
    #: servers' think_tags) sets False per instance, so its answers can go out as they came.
    rewrites_completions: ClassVar[bool | None] = None
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
    #: Whether the vendor's native endpoints (Anthropic- or Responses-compatible) read the
    #: documents a request carries; False: such a request takes the chat path, where the
    #: vendor's document API reads them or a 400 says it has none (never dropped unseen).
    native_documents: ClassVar[bool] = True
    #: True when key_check_request can see the account's balance (DeepSeek /user/balance,
    #: Kimi /users/me/balance): a key out of balance (402) is then re-checked by it. Other
    #: vendors' checks (GET /models, a one-token chat) cannot tell "no balance" apart, so
    #: on types that take the `no_balance_recheck` option (NO_BALANCE_OPTION) such a key
    #: instead stays out for that many seconds.
    balance_check: ClassVar[bool] = False
    #: Models the vendor serves free of charge (declarative; see docs/plugins.md).
    free_models: ClassVar[frozenset] = frozenset()
    #: The vendor's official free offers (freeapi.free_tier.FreeOffer: model, quota kind,
    #: source URL and date read), which the `free` model routes to (freeapi/free.py).
    free_tier: ClassVar[tuple] = ()
    #: Error codes (APIError.code as this provider's error_from gives them) that mean a
    #: free quota is used up -> how it comes back (freeapi.free_tier.DAILY or GRANT).
    free_refusals: ClassVar[Mapping[str, str]] = {}

    def __init__(self, config: ProviderConfig):
        self.name = config.name
        self.config = config
        base_url = config.base_url or self.default_base_url
        if not base_url:
            raise ConfigError(f"providers.{self.name}.base_url",
                              f"required for providers of type {self.type_name}")
        self.base_url: str = base_url
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
        patterns = getattr(config, "patterns", None)
        if patterns is not None:
            self.patterns = tuple(patterns)

    # -- models ---------------------------------------------------------------------------

    def model_ids(self) -> list[str]:
        """The gateway's: every model id this instance serves: `models`, the non-chat ones, the
        discovered ones."""
        return list(self.models) + self.modality_ids() + self.discovered_ids()

    def discovered_ids(self) -> list[str]:
        """The gateway's: models the vendor listed at startup beyond the static `models`."""
        static = set(self.models) | set(self.modality_ids())
        return [m for m in self._discovered if m not in static]

    @property
    def discovered(self) -> tuple[str, ...]:
        """The gateway's: the vendor's own list as discovery last read it
        (freeapi/discovery.py)."""
        return self._discovered

    def set_discovered(self, ids) -> None:
        """The gateway's: the ids a discovery round's `parse_models` returned."""
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
        """The gateway's: seconds a key out of balance stays out before a request may try it
        again; None when the key check can see the balance (it then decides, see
        `balance_check`)."""
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
        """The gateway's: the first-byte budget of one attempt (longer while a model
        thinks)."""
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
        payload = compact(self.prepare_body(body)).encode()
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
        payload = compact(body).encode()
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
        """Helper: a key check by the smallest chat request, for vendors with no free
        authenticated GET; aim it at a free model so the check costs nothing."""
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
        try:
            raise err
        finally:
            err = None  # raising without a cycle (freeapi/pipeline/failover.py)


#: Add to a type's `options` to let its config turn startup model discovery on or off.
DISCOVER_OPTION = {"discover": ((bool,), True)}

#: How long a key out of balance stays out on vendors with no balance check: someone has to
#: top the account up, which a retry every minute would not notice any sooner.
NO_BALANCE_RECHECK = 6 * 3600.0
#: Add to a type's `options` to make that wait configurable (seconds).
NO_BALANCE_OPTION = {"no_balance_recheck": ((int, float), NO_BALANCE_RECHECK)}
