"""Loading and validating config.yaml: every error names its key path, never a traceback."""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import yaml

from freeapi.config_state import (ConversationsConfig, Price, StateConfig,
                                  parse_conversations, parse_prices, parse_state)
from freeapi.config_vendor import (ReasoningConfig, parse_patterns, parse_reasoning,
                                  parse_translations)
from freeapi.config_state import FilesConfig, ResponsesConfig, parse_files, parse_responses
from freeapi.config_free import FreeConfig, parse_free
from freeapi.config_keys import (AUTH_KEYS, COMMON_PROVIDER_OPTIONS, GATEWAY_KEY_FIELDS,
                                 GATEWAY_KEY_LIMITS, METRICS_KEYS, PROVIDER_KEYS,
                                 RESPONSES_URL_KEY, ROOT_KEYS, SERVER_KEYS)
from freeapi.download_policy import parse_hosts as parse_download_hosts
from freeapi.proxy import parse_setting as parse_proxy_setting
from freeapi.configbase import (ConfigError, _expect, _integer, _interpolate, _mapping,
                                _non_negative, _number, _string_list, _unknown)

# StateConfig, Price and ConfigError are defined beside, used from here.
__all__ = ["Config", "ConfigError", "ConversationsConfig", "Discovery", "Failover", "GatewayKey",
           "KeyPoolConfig", "Price", "ProviderConfig", "StateConfig", "Timeouts",
           "load_config", "parse_config"]


@dataclass
class Timeouts:
    """Seconds. `first_byte` is, for a stream, until the vendor's first data event (a vendor
    may answer 200 at once and then send only keep-alive comments while the request waits),
    otherwise until its response headers; reasoning models think before answering, so they
    get their own, longer budget."""
    connect: float = 10.0
    first_byte: float = 120.0
    first_byte_reasoning: float = 600.0
    idle: float = 120.0
    total: float = 1800.0


@dataclass
class KeyPoolConfig:
    """How a provider's keys are shared. `max_concurrency: 1` reproduces the vendors'
    one-answer-at-a-time-per-account rule; requests then wait in a bounded queue."""
    max_concurrency: int | None = None
    queue_size: int = 100
    queue_timeout: float = 30.0
    recheck_interval: float = 60.0  # first re-probe of a dead key; doubles up to 15 min


@dataclass
class ProviderConfig:
    name: str
    type: str
    enabled: bool = True
    base_url: str | None = None
    api_keys: list[str] = field(default_factory=list)
    timeouts: Timeouts = field(default_factory=Timeouts)
    key_pool: KeyPoolConfig = field(default_factory=KeyPoolConfig)
    options: dict = field(default_factory=dict)
    translations: dict = field(default_factory=dict)  # old name -> (model, body defaults)
    patterns: list[str] | None = None  # name globs; None: the provider type's own
    responses_base_url: str | None = None  # the vendor's own Responses API (/v1/responses)
    proxy: str | None = None  # a proxy URL, "none", or None: the environment decides
    # Hosts (`host` or `host:port`) the vendor's download URLs may name although they
    # resolve to internal addresses (freeapi/download_policy.py).
    download_hosts: tuple = ()


@dataclass
class Failover:
    """Before the first byte reaches the client, failed attempts move to another key, then
    to the next fallback target, within these bounds."""
    max_attempts: int = 5
    max_time: float = 60.0


@dataclass
class Discovery:
    """Model discovery (GET /models of providers that list their models): at startup, then
    every `interval` seconds (0: startup only), and when a request names a bare model
    nobody serves, at most once per `on_miss` seconds (0: never), so a local server
    started after the gateway is found without a restart."""
    interval: float = 300.0
    on_miss: float = 10.0


@dataclass
class GatewayKey:
    name: str
    key: str
    role: str = "user"  # "admin" may read GET /v1/keys when any key has a role
    models: list[str] | None = None  # allowed model names or fnmatch patterns; None: all
    rpm: int | None = None  # requests per minute
    tpm: int | None = None  # tokens (prompt + completion) per minute
    daily_tokens: int | None = None  # per UTC day
    monthly_tokens: int | None = None  # per UTC calendar month

    @property
    def limited(self) -> bool:
        return any(v is not None for v in (self.models, self.rpm, self.tpm,
                                           self.daily_tokens, self.monthly_tokens))


_KEY_LIMITS = GATEWAY_KEY_LIMITS


@dataclass
class Config:
    host: str = "0.0.0.0"
    port: int = 8000
    # DeepSeek takes request bodies up to 48 MiB (inline images,
    # https://api-docs.deepseek.com/guides/vision): the gateway must let them through.
    max_body_size: int = 48 * 1024 * 1024
    keepalive_interval: float = 5.0
    log_level: str = "info"
    log_format: str = "text"  # or "json": one object per line (freeapi/logs.py)
    shutdown_grace: float = 30.0
    # Transport limits against hostile clients and vendors (docs/security.md).
    body_timeout: float = 60.0  # seconds a client may pause while sending a request
    max_connections: int | None = None  # None: from the open-file limit (app.py)
    max_event_size: int = 4 * 1024 * 1024  # the largest event of a vendor's stream
    # JSON values one body may hold, bounded by commas and opening brackets counted over
    # its bytes (freeapi/json_limits.py). OpenAI's largest embeddings request, 300,000
    # token ids (3p copy of OpenAI's API spec: "all embedding models enforce a maximum of
    # 300,000 tokens summed across all inputs in a single request",
    # https://platform.openai.com/docs/api-reference/embeddings/create), fits.
    max_json_values: int = 500_000
    # Request-body bytes held at once across all requests (freeapi/body_budget.py); never
    # less than max_body_size, so one largest body always fits.
    max_buffered_bytes: int = 128 * 1024 * 1024
    gateway_keys: list[GatewayKey] = field(default_factory=list)
    allow_anonymous: bool = False
    providers: dict[str, ProviderConfig] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)
    fallbacks: dict[str, list[str]] = field(default_factory=dict)
    failover: Failover = field(default_factory=Failover)
    discovery: Discovery = field(default_factory=Discovery)
    state: StateConfig = field(default_factory=StateConfig)
    prices: dict[str, Price] = field(default_factory=dict)
    conversations: ConversationsConfig = field(default_factory=ConversationsConfig)
    metrics_public: bool = False  # GET /metrics without a gateway key (metrics.public)
    metrics_cache: float = 1.0  # seconds a scrape is served again (metrics.cache_seconds)
    # (endpoint, provider, model) label sets per process; past them, model="other".
    metrics_max_models: int = 200
    reasoning: ReasoningConfig = field(default_factory=ReasoningConfig)
    responses: ResponsesConfig = field(default_factory=ResponsesConfig)
    free: FreeConfig = field(default_factory=FreeConfig)  # the `free` model (freeapi/free.py)
    files: FilesConfig = field(default_factory=FilesConfig)


_LOG_LEVELS = ("debug", "info", "warning", "error")
# The accepted keys are tables in freeapi/config_keys.py (docs/ is checked against them).
_PROVIDER_KEYS = PROVIDER_KEYS
_COMMON_OPTIONS = COMMON_PROVIDER_OPTIONS


def _key_pool(value, path) -> KeyPoolConfig:
    section = _mapping(value, path)
    _unknown(section, KeyPoolConfig.__dataclass_fields__, path)
    kp = KeyPoolConfig()
    if section.get("max_concurrency") is not None:
        kp.max_concurrency = _integer(section["max_concurrency"], f"{path}.max_concurrency")
    if "queue_size" in section:
        kp.queue_size = _integer(section["queue_size"], f"{path}.queue_size", 0)
    for key in ("queue_timeout", "recheck_interval"):
        if key in section:
            setattr(kp, key, _number(section[key], f"{path}.{key}"))
    return kp


def _timeouts(value, path) -> Timeouts:
    section = _mapping(value, path)
    _unknown(section, Timeouts.__dataclass_fields__, path)
    t = Timeouts()
    for key, v in section.items():
        setattr(t, key, _number(v, f"{path}.{key}"))
    return t


def _provider(name: str, value, path: str, provider_types: dict) -> ProviderConfig:
    section = _mapping(value, path)
    # Any type may name its vendor's own Responses API, for the /v1/responses door.
    native = section.get(RESPONSES_URL_KEY)
    section = {k: v for k, v in section.items() if k != RESPONSES_URL_KEY}
    ptype = section.get("type", name)
    _expect(ptype, (str,), f"{path}.type", "a string")
    cls = provider_types.get(ptype)
    if cls is None:
        known = ", ".join(sorted(provider_types)) or "none"
        where = f"{path}.type" if "type" in section else path
        raise ConfigError(where, f"no provider plugin of type {ptype!r} is installed "
                                 f"(known: {known})")
    extra = {**_COMMON_OPTIONS, **getattr(cls, "options", {})}
    _unknown(section, _PROVIDER_KEYS | set(extra), path)
    pc = ProviderConfig(name=name, type=ptype)
    pc.enabled = _expect(section.get("enabled", True), (bool,), f"{path}.enabled", "true or false")
    if section.get("base_url") is not None:
        url = _expect(section["base_url"], (str,), f"{path}.base_url", "a URL")
        if not re.match(r"^https?://[^/\s]+", url):
            raise ConfigError(f"{path}.base_url", "expected an http:// or https:// URL")
        try:
            port = urlsplit(url).port  # raises on `:abc` and `:99999`
        except ValueError:
            port = 0
        if port == 0:  # (the URL is not quoted back: it may hold credentials)
            raise ConfigError(f"{path}.base_url", "the port must be a number from 1 to 65535")
        parts = urlsplit(url)
        if "@" in parts.netloc:
            # They would be dropped, not sent: say so rather than fail at the vendor.
            raise ConfigError(f"{path}.base_url", "credentials in the URL (user:password@) "
                                                  "are not supported; put the vendor key "
                                                  f"in {path}.api_keys")
        if parts.query or parts.fragment or url.rstrip("/").endswith(("?", "#")):
            raise ConfigError(f"{path}.base_url", "a ?query or #fragment is not supported: "
                                                  "the gateway appends paths such as "
                                                  "/chat/completions to the URL")
        pc.base_url = url.rstrip("/")
    pc.api_keys = _string_list(section.get("api_keys"), f"{path}.api_keys")
    for i, key in enumerate(pc.api_keys):
        # A key goes into a request header: a space or control character there (a
        # copy-paste accident) would corrupt the request. Name the character, never the key.
        bad = next((c for c in key if not "\x21" <= c <= "\x7e"), None)
        if bad is not None:
            raise ConfigError(f"{path}.api_keys[{i}]", f"contains U+{ord(bad):04X}; a key is "
                                                       "printable ASCII without spaces")
    pc.timeouts = _timeouts(section.get("timeouts"), f"{path}.timeouts")
    pc.key_pool = _key_pool(section.get("key_pool"), f"{path}.key_pool")
    pc.translations = parse_translations(section.get("translations"), f"{path}.translations")
    pc.patterns = parse_patterns(section.get("patterns"), f"{path}.patterns")
    try:
        pc.proxy = parse_proxy_setting(section.get("proxy"))
    except ValueError as e:
        raise ConfigError(f"{path}.proxy", str(e)) from None
    try:
        pc.download_hosts = parse_download_hosts(section.get("download_hosts"))
    except ValueError as e:
        raise ConfigError(f"{path}.download_hosts", str(e)) from None
    for key, (types, default) in extra.items():
        v = section.get(key, default)
        if v is not None:
            _expect(v, types, f"{path}.{key}", "/".join(t.__name__ for t in types))
        pc.options[key] = v
    if native is not None and native is not False:
        pc.responses_base_url = _responses_url(native, pc.base_url or cls.default_base_url,
                                               f"{path}.{RESPONSES_URL_KEY}")
    return pc


def _responses_url(value, base_url: str | None, path: str) -> str:
    """A URL, or a path on the host of `base_url` (so a region or a test server follows);
    `/responses` is appended to it."""
    value = _expect(value, (str,), path, "a URL, a path on base_url's host, or false").strip()
    if value.startswith("/") and base_url:
        parts = urlsplit(base_url)
        value = f"{parts.scheme}://{parts.netloc}{value}"
    if not re.match(r"^https?://[^/\s]+", value):
        raise ConfigError(path, "expected an http(s):// URL, a path on base_url's host, or false")
    return value.rstrip("/")


def parse_config(raw, provider_types: dict, base_dir: str | None = None) -> Config:
    """Validate an already-loaded YAML document (None is the zero config). `base_dir`: the
    config file's directory, which relative paths are relative to (None: no file)."""
    root = _interpolate(_mapping(raw, ""), "")
    _unknown(root, ROOT_KEYS, "")
    cfg = Config()

    server = _mapping(root.get("server"), "server")
    _unknown(server, SERVER_KEYS, "server")
    if "host" in server:
        cfg.host = _expect(server["host"], (str,), "server.host", "a string")
    if "port" in server:
        cfg.port = _expect(server["port"], (int,), "server.port", "an integer")
        if not 0 < cfg.port < 65536:
            raise ConfigError("server.port", "must be between 1 and 65535")
    if "max_body_size" in server:
        size = _number(server["max_body_size"], "server.max_body_size")
        if not size.is_integer():  # 0.5 must not quietly become 0
            raise ConfigError("server.max_body_size", "expected a whole number of bytes")
        cfg.max_body_size = int(size)
    if "keepalive_interval" in server:
        cfg.keepalive_interval = _number(server["keepalive_interval"], "server.keepalive_interval")
    if "shutdown_grace" in server:
        cfg.shutdown_grace = _expect(server["shutdown_grace"], (int, float),
                                     "server.shutdown_grace", "a number of seconds")
        if cfg.shutdown_grace < 0:
            raise ConfigError("server.shutdown_grace", "must not be negative")
    if "body_timeout" in server:
        cfg.body_timeout = _number(server["body_timeout"], "server.body_timeout")
    if server.get("max_connections") is not None:
        cfg.max_connections = _integer(server["max_connections"], "server.max_connections")
    if "max_event_size" in server:
        cfg.max_event_size = _integer(server["max_event_size"], "server.max_event_size", 1024)
    if "max_json_values" in server:
        cfg.max_json_values = _integer(server["max_json_values"], "server.max_json_values", 16)
    if "max_buffered_bytes" in server:
        cfg.max_buffered_bytes = _integer(server["max_buffered_bytes"],
                                          "server.max_buffered_bytes", 1024)
    if "log_level" in server:
        level = _expect(server["log_level"], (str,), "server.log_level", "a string").lower()
        if level not in _LOG_LEVELS:
            raise ConfigError("server.log_level", f"expected one of {', '.join(_LOG_LEVELS)}")
        cfg.log_level = level
    if "log_format" in server:
        cfg.log_format = _expect(server["log_format"], (str,), "server.log_format", "a string")
        if cfg.log_format not in ("text", "json"):
            raise ConfigError("server.log_format", "expected text or json")

    auth = _mapping(root.get("auth"), "auth")
    _unknown(auth, AUTH_KEYS, "auth")
    keys = auth.get("keys") or []
    _expect(keys, (list,), "auth.keys", "a list")
    for i, item in enumerate(keys):
        path = f"auth.keys[{i}]"
        limits = {}
        if isinstance(item, dict):
            _unknown(item, GATEWAY_KEY_FIELDS, path)
            key = _expect(item.get("key"), (str,), f"{path}.key", "a string")
            name = _expect(item.get("name", f"key{i}"), (str,), f"{path}.name", "a string")
            role = item.get("role", "user")
            if role not in ("user", "admin"):
                raise ConfigError(f"{path}.role", "expected user or admin")
            if item.get("models") is not None:
                limits["models"] = _string_list(item["models"], f"{path}.models")
            for limit in _KEY_LIMITS:
                if item.get(limit) is not None:
                    limits[limit] = _integer(item[limit], f"{path}.{limit}")
        else:
            key = _expect(item, (str,), path, "a string or {key, name, role, models, rpm, "
                                              "tpm, daily_tokens, monthly_tokens}")
            name, role = f"key{i}", None
        if not key.strip():
            raise ConfigError(path, "is empty (an unset ${VAR:-}?)")
        cfg.gateway_keys.append(GatewayKey(name, key.strip(), role or "user", **limits))
    names = [k.name for k in cfg.gateway_keys]
    for i, k in enumerate(cfg.gateway_keys):
        if names.index(k.name) != i:  # the ledger and `freeapi usage` tell keys by name
            raise ConfigError(f"auth.keys[{i}].name", f"{k.name!r} is used twice")
    cfg.allow_anonymous = _expect(auth.get("allow_anonymous", False), (bool,),
                                  "auth.allow_anonymous", "true or false")

    providers = _mapping(root.get("providers"), "providers")
    for name, section in providers.items():
        if not isinstance(name, str) or not re.match(r"^[a-z0-9][a-z0-9_\-]*$", name):
            raise ConfigError(f"providers.{name}", "provider names are lowercase letters, "
                                                   "digits, '-' and '_'")
        cfg.providers[name] = _provider(name, section, f"providers.{name}", provider_types)
    # Built-in types not mentioned in the config start with their defaults (zero-config);
    # a type the config already uses under another name (`moonshot: {type: kimi}`) does not
    # get a second, default instance.
    configured = {pc.type for pc in cfg.providers.values()}
    for name, cls in provider_types.items():
        if (name not in cfg.providers and name not in configured
                and getattr(cls, "enabled_by_default", True)):
            cfg.providers[name] = ProviderConfig(name=name, type=name)

    models = _mapping(root.get("models"), "models")
    for alias, target in models.items():
        _expect(target, (str,), f"models.{alias}", "a model name such as deepseek/deepseek-chat")
        cfg.models[str(alias)] = target

    fallbacks = _mapping(root.get("fallbacks"), "fallbacks")
    for model, targets in fallbacks.items():
        cfg.fallbacks[str(model)] = _string_list(targets, f"fallbacks.{model}")
    failover = _mapping(root.get("failover"), "failover")
    _unknown(failover, Failover.__dataclass_fields__, "failover")
    if "max_attempts" in failover:
        cfg.failover.max_attempts = _integer(failover["max_attempts"], "failover.max_attempts")
    if "max_time" in failover:
        cfg.failover.max_time = _number(failover["max_time"], "failover.max_time")
    discovery = _mapping(root.get("discovery"), "discovery")
    _unknown(discovery, Discovery.__dataclass_fields__, "discovery")
    for key in ("interval", "on_miss"):
        if key in discovery:
            setattr(cfg.discovery, key, _non_negative(discovery[key], f"discovery.{key}"))
    cfg.state = parse_state(root.get("state"), base_dir)
    cfg.prices = parse_prices(root.get("prices"))
    cfg.conversations = parse_conversations(root.get("conversations"))
    cfg.reasoning = parse_reasoning(root.get("reasoning"))
    cfg.responses = parse_responses(root.get("responses"))
    cfg.free = parse_free(root.get("free"))
    cfg.files = parse_files(root.get("files"))
    metrics = _mapping(root.get("metrics"), "metrics")
    _unknown(metrics, METRICS_KEYS, "metrics")
    cfg.metrics_public = _expect(metrics.get("public", False), (bool,), "metrics.public",
                                 "true or false")
    if "cache_seconds" in metrics:
        cfg.metrics_cache = _non_negative(metrics["cache_seconds"], "metrics.cache_seconds")
    if "max_models" in metrics:
        cfg.metrics_max_models = _integer(metrics["max_models"], "metrics.max_models", 1)

    if not cfg.gateway_keys and not cfg.allow_anonymous:
        for pc in cfg.providers.values():
            if pc.enabled and pc.api_keys:
                raise ConfigError(
                    f"providers.{pc.name}.api_keys",
                    "server-side keys are configured but auth.keys is empty, so anyone who "
                    "can reach the gateway would spend them; add gateway keys under auth.keys "
                    "or set auth.allow_anonymous: true")
    return cfg


# Networks that do not leave the operator's site: RFC 1918, carrier-grade NAT (Tailscale),
# IPv6 unique local. (ipaddress's is_private also counts the documentation ranges.)
_LOCAL_NETS = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12",
                                                 "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")]


def plain_http_to_remote(url: str) -> bool:
    """An http:// URL whose host is not this machine or a private network: keys and
    prompts would cross the internet unencrypted (startup logs a warning)."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        return False
    host = (parts.hostname or "").rstrip(".")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        # localhost, a compose service name or a LAN name stay local; others are public
        return "." in host and not host.endswith((".localhost", ".local", ".internal",
                                                  ".lan"))
    return not (ip.is_loopback or ip.is_link_local or any(ip in net for net in _LOCAL_NETS))


def load_config(path: str | None, provider_types: dict) -> Config:
    if path is None:
        return parse_config(None, provider_types)
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError("", f"cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ConfigError("", f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at "
                              f"offset {e.start})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or "invalid YAML"
        raise ConfigError("", f"{path}: {problem}{where}") from None
    return parse_config(raw, provider_types, os.path.dirname(os.path.abspath(path)))
