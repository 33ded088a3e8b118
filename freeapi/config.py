"""Loading and validating config.yaml: every error names its key path, never a traceback."""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import yaml

from freeapi.config_state import (BillingConfig, ConversationsConfig, Price, StateConfig,
                                  parse_billing, parse_conversations, parse_prices,
                                  parse_state)
from freeapi.config_vendor import ReasoningConfig, parse_reasoning
from freeapi.config_state import FilesConfig, ResponsesConfig, parse_files, parse_responses
from freeapi.config_free import FreeConfig, parse_free
from freeapi.config_keys import (AUTH_KEYS, BUDGET_MAX, BUDGET_PERIODS, GATEWAY_KEY_FIELDS,
                                 GATEWAY_KEY_LIMITS, METRICS_KEYS, ROOT_KEYS, SERVER_KEYS,
                                 TELEMETRY_KEYS)
from freeapi.config_provider import KeyPoolConfig, ProviderConfig, Timeouts, _provider
from freeapi.configbase import (ConfigError, _expect, _integer, _interpolate, _mapping,
                                _non_negative, _number, _string_list, _unknown)

# StateConfig, Price and ConfigError are defined beside, used from here.
__all__ = ["Config", "ConfigError", "ConversationsConfig", "Discovery", "Failover", "GatewayKey",
           "KeyPoolConfig", "Price", "ProviderConfig", "StateConfig", "Timeouts",
           "load_config", "parse_config"]


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
class Telemetry:
    """OpenTelemetry traces (freeapi/telemetry.py): on when `otlp_endpoint` is set, or the
    standard OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT variable, and the `otel` extra installed."""
    otlp_endpoint: str | None = None  # the collector's OTLP/HTTP base URL (:4318)
    sample_ratio: float = 1.0  # of the traces a client did not decide (parent-based)
    capture_content: bool = False  # prompts and answers in spans: off, they are the callers'
    service_name: str | None = None  # None: OTEL_SERVICE_NAME, else "freeapi"


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
    # {daily, monthly, total}: amounts of billing.currency (freeapi/budgets.py)
    budget: dict | None = None

    @property
    def limited(self) -> bool:
        # (asked twice per request: a plain expression, not a generator)
        return not (self.models is None and self.rpm is None and self.tpm is None
                    and self.daily_tokens is None and self.monthly_tokens is None)

    @property
    def budgeted(self) -> bool:
        """It has a money budget (freeapi/budgets.py); a config key is in no team."""
        return self.budget is not None


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
    access_log: bool = True  # one `freeapi.access` line per request, at info
    shutdown_grace: float = 30.0
    # Transport limits against hostile clients and vendors (docs/security.md).
    body_timeout: float = 60.0  # seconds a client may pause while sending a request
    max_connections: int | None = None  # None: from the open-file limit (app.py)
    http_core: str = "httptools"  # or "tornado": who reads client connections (server.py)
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
    billing: BillingConfig = field(default_factory=BillingConfig)
    conversations: ConversationsConfig = field(default_factory=ConversationsConfig)
    metrics_public: bool = False  # GET /metrics without a gateway key (metrics.public)
    metrics_cache: float = 1.0  # seconds a scrape is served again (metrics.cache_seconds)
    # (endpoint, provider, model) label sets per process; past them, model="other".
    metrics_max_models: int = 200
    reasoning: ReasoningConfig = field(default_factory=ReasoningConfig)
    responses: ResponsesConfig = field(default_factory=ResponsesConfig)
    free: FreeConfig = field(default_factory=FreeConfig)  # the `free` model (freeapi/free.py)
    files: FilesConfig = field(default_factory=FilesConfig)
    telemetry: Telemetry = field(default_factory=Telemetry)


_LOG_LEVELS = ("debug", "info", "warning", "error")


def parse_config(raw, provider_types: dict, base_dir: str | None = None) -> Config:
    """Validate an already-loaded YAML document (None is the zero config). `base_dir`: the
    config file's directory, which relative paths are relative to (None: no file). One
    function per section, in the order their errors are reported."""
    root = _interpolate(_mapping(raw, ""), "")
    _unknown(root, ROOT_KEYS, "")
    cfg = Config()
    _server(cfg, _mapping(root.get("server"), "server"))
    _auth(cfg, _mapping(root.get("auth"), "auth"))
    _providers(cfg, _mapping(root.get("providers"), "providers"), provider_types)
    _models(cfg, _mapping(root.get("models"), "models"))
    _fallbacks(cfg, _mapping(root.get("fallbacks"), "fallbacks"))
    _failover(cfg.failover, _mapping(root.get("failover"), "failover"))
    _discovery(cfg.discovery, _mapping(root.get("discovery"), "discovery"))
    cfg.state = parse_state(root.get("state"), base_dir)
    cfg.prices = parse_prices(root.get("prices"))
    cfg.billing = parse_billing(root.get("billing"))
    cfg.conversations = parse_conversations(root.get("conversations"))
    cfg.reasoning = parse_reasoning(root.get("reasoning"))
    cfg.responses = parse_responses(root.get("responses"))
    cfg.free = parse_free(root.get("free"))
    cfg.files = parse_files(root.get("files"))
    _metrics(cfg, _mapping(root.get("metrics"), "metrics"))
    _telemetry(cfg.telemetry, _mapping(root.get("telemetry"), "telemetry"))
    _no_open_server_keys(cfg)
    return cfg


def _server(cfg: Config, server: dict) -> None:
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
    if "http_core" in server:
        cfg.http_core = server["http_core"]
        if cfg.http_core not in ("httptools", "tornado"):
            raise ConfigError("server.http_core",
                              f"expected httptools or tornado, got {cfg.http_core!r}")
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
    if "access_log" in server:
        cfg.access_log = _expect(server["access_log"], (bool,), "server.access_log",
                                 "true or false")
    if "log_format" in server:
        cfg.log_format = _expect(server["log_format"], (str,), "server.log_format", "a string")
        if cfg.log_format not in ("text", "json"):
            raise ConfigError("server.log_format", "expected text or json")


def _auth(cfg: Config, auth: dict) -> None:
    _unknown(auth, AUTH_KEYS, "auth")
    keys = auth.get("keys") or []
    _expect(keys, (list,), "auth.keys", "a list")
    for i, item in enumerate(keys):
        cfg.gateway_keys.append(_gateway_key(i, item))
    names = [k.name for k in cfg.gateway_keys]
    for i, k in enumerate(cfg.gateway_keys):
        if names.index(k.name) != i:  # the ledger and `freeapi usage` tell keys by name
            raise ConfigError(f"auth.keys[{i}].name", f"{k.name!r} is used twice")
    cfg.allow_anonymous = _expect(auth.get("allow_anonymous", False), (bool,),
                                  "auth.allow_anonymous", "true or false")


def _gateway_key(i: int, item) -> GatewayKey:
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
        if item.get("budget") is not None:
            limits["budget"] = _budget(item["budget"], f"{path}.budget")
    else:
        key = _expect(item, (str,), path, "a string or {key, name, role, models, rpm, "
                                          "tpm, daily_tokens, monthly_tokens, budget}")
        name, role = f"key{i}", None
    if not key.strip():
        raise ConfigError(path, "is empty (an unset ${VAR:-}?)")
    return GatewayKey(name, key.strip(), role or "user", **limits)


def _budget(value, path: str) -> dict | None:
    """{daily, monthly, total}: non-negative amounts of billing.currency (null: none)."""
    out = {}
    for period, amount in _mapping(value, path).items():
        if period not in BUDGET_PERIODS:
            raise ConfigError(f"{path}.{period}", f"is not a budget period (allowed: "
                                                  f"{', '.join(BUDGET_PERIODS)})")
        if amount is not None:
            out[period] = _non_negative(amount, f"{path}.{period}")
            if out[period] > BUDGET_MAX:
                raise ConfigError(f"{path}.{period}", f"must be at most {BUDGET_MAX:,}")
    return out or None


def _providers(cfg: Config, providers: dict, provider_types: dict) -> None:
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


def _models(cfg: Config, models: dict) -> None:
    for alias, target in models.items():
        _expect(target, (str,), f"models.{alias}", "a model name such as deepseek/deepseek-chat")
        cfg.models[str(alias)] = target


def _fallbacks(cfg: Config, fallbacks: dict) -> None:
    for model, targets in fallbacks.items():
        cfg.fallbacks[str(model)] = _string_list(targets, f"fallbacks.{model}")


def _failover(out: Failover, failover: dict) -> None:
    _unknown(failover, Failover.__dataclass_fields__, "failover")
    if "max_attempts" in failover:
        out.max_attempts = _integer(failover["max_attempts"], "failover.max_attempts")
    if "max_time" in failover:
        out.max_time = _number(failover["max_time"], "failover.max_time")


def _discovery(out: Discovery, discovery: dict) -> None:
    _unknown(discovery, Discovery.__dataclass_fields__, "discovery")
    for key in ("interval", "on_miss"):
        if key in discovery:
            setattr(out, key, _non_negative(discovery[key], f"discovery.{key}"))


def _metrics(cfg: Config, metrics: dict) -> None:
    _unknown(metrics, METRICS_KEYS, "metrics")
    cfg.metrics_public = _expect(metrics.get("public", False), (bool,), "metrics.public",
                                 "true or false")
    if "cache_seconds" in metrics:
        cfg.metrics_cache = _non_negative(metrics["cache_seconds"], "metrics.cache_seconds")
    if "max_models" in metrics:
        cfg.metrics_max_models = _integer(metrics["max_models"], "metrics.max_models", 1)


def _telemetry(out: Telemetry, telemetry: dict) -> None:
    _unknown(telemetry, TELEMETRY_KEYS, "telemetry")
    if telemetry.get("otlp_endpoint") is not None:
        url = _expect(telemetry["otlp_endpoint"], (str,), "telemetry.otlp_endpoint", "a URL")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError("telemetry.otlp_endpoint", "must be an http:// or https:// "
                              f"URL (the collector's OTLP/HTTP port, 4318), not {url!r}")
        out.otlp_endpoint = url
    if "sample_ratio" in telemetry:
        out.sample_ratio = _non_negative(telemetry["sample_ratio"], "telemetry.sample_ratio")
        if out.sample_ratio > 1:
            raise ConfigError("telemetry.sample_ratio", "must be between 0 and 1")
    if "capture_content" in telemetry:
        out.capture_content = _expect(telemetry["capture_content"], (bool,),
                                      "telemetry.capture_content", "true or false")
    if telemetry.get("service_name") is not None:
        out.service_name = _expect(telemetry["service_name"], (str,),
                                   "telemetry.service_name", "a name")


def _no_open_server_keys(cfg: Config) -> None:
    """Server-side keys with nobody required to authenticate would be anyone's to spend."""
    if not cfg.gateway_keys and not cfg.allow_anonymous:
        for pc in cfg.providers.values():
            if pc.enabled and pc.api_keys:
                raise ConfigError(
                    f"providers.{pc.name}.api_keys",
                    "server-side keys are configured but auth.keys is empty, so anyone who "
                    "can reach the gateway would spend them; add gateway keys under auth.keys "
                    "or set auth.allow_anonymous: true")


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
