"""The keys config.yaml accepts, as the tables the parser refuses unknown keys against
(freeapi/config.py), so that the list of accepted keys can be read from the code itself:
tests/test_docs.py checks that docs/ documents every one of them. The sections backed by a
dataclass (timeouts, key_pool, failover, discovery, state, conversations, reasoning,
responses, files, prices, free, billing) take its fields, which the parser checks against in the
same way."""

from __future__ import annotations

import dataclasses

ROOT_KEYS = frozenset({"server", "auth", "providers", "models", "fallbacks", "failover",
                       "state", "prices", "conversations", "reasoning", "discovery",
                       "responses", "metrics", "free", "files", "billing", "telemetry"})
SERVER_KEYS = frozenset({"host", "port", "max_body_size", "keepalive_interval", "log_level",
                         "shutdown_grace", "log_format", "body_timeout", "max_connections",
                         "max_event_size", "max_json_values", "max_buffered_bytes",
                         "access_log", "http_core"})
AUTH_KEYS = frozenset({"keys", "allow_anonymous"})
GATEWAY_KEY_LIMITS = ("rpm", "tpm", "daily_tokens", "monthly_tokens")
GATEWAY_KEY_FIELDS = frozenset({"key", "name", "role", "models", "budget",
                                *GATEWAY_KEY_LIMITS})
#: A money budget's periods (auth.keys[].budget, and keys and teams made at runtime).
BUDGET_PERIODS = ("daily", "monthly", "total")
# The largest budget amount: tallies count nano-units in 64-bit integers (PostgreSQL's
# int8, Redis's INCRBY), which hold up to 9.2e18, i.e. 9.2e9 of a currency.
BUDGET_MAX = 1_000_000_000
METRICS_KEYS = frozenset({"public", "cache_seconds", "max_models"})
#: OpenTelemetry traces (freeapi/telemetry.py).
TELEMETRY_KEYS = frozenset({"otlp_endpoint", "sample_ratio", "capture_content",
                            "service_name"})
PROVIDER_KEYS = frozenset({"enabled", "type", "base_url", "api_keys", "timeouts",
                           "key_pool", "translations", "patterns", "proxy",
                           "download_hosts"})
#: Taken by every provider type, beside PROVIDER_KEYS and the type's own `options`: the
#: vendor's own Responses API for the /v1/responses door (parsed on its own, as a URL
#: relative to base_url).
RESPONSES_URL_KEY = "responses_base_url"
#: Options every provider type takes (freeapi/provider.py reads them): its native Anthropic
#: endpoint for /v1/messages (a URL, or false / "none" to always translate).
COMMON_PROVIDER_OPTIONS = {"anthropic_base_url": ((str, bool), None),
                           "anthropic_count_tokens": ((bool,), None)}
TRANSLATION_KEYS = frozenset({"model", "defaults"})


def _fields(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def accepted_keys(provider_types: dict) -> list[str]:
    """Every key path the parser accepts, as the configuration reference names them:
    `NAME` for a provider section, `MODEL` for a model name, `OLD` for a retired name,
    `keys[]` for an entry of the `auth.keys` list."""
    # Imported here: config.py imports this module for its tables.
    from freeapi.config import Discovery, Failover, KeyPoolConfig, Timeouts
    from freeapi.config_state import (BillingConfig, ConversationsConfig, FilesConfig, Price,
                                      ResponsesConfig, StateConfig)
    from freeapi.config_free import FreeConfig
    from freeapi.config_vendor import ReasoningConfig

    keys = set(ROOT_KEYS)
    keys |= {f"server.{k}" for k in SERVER_KEYS}
    keys |= {f"auth.{k}" for k in AUTH_KEYS}
    keys |= {f"auth.keys[].{k}" for k in GATEWAY_KEY_FIELDS}
    keys |= {f"metrics.{k}" for k in METRICS_KEYS}
    keys |= {f"telemetry.{k}" for k in TELEMETRY_KEYS}
    provider = "providers.NAME"
    options = set(COMMON_PROVIDER_OPTIONS) | {RESPONSES_URL_KEY}
    for cls in provider_types.values():
        options |= set(getattr(cls, "options", {}))
    keys |= {f"{provider}.{k}" for k in PROVIDER_KEYS | options}
    keys |= {f"{provider}.timeouts.{k}" for k in _fields(Timeouts)}
    keys |= {f"{provider}.key_pool.{k}" for k in _fields(KeyPoolConfig)}
    keys |= {f"{provider}.translations.OLD.{k}" for k in TRANSLATION_KEYS}
    for section, cls in (("failover", Failover), ("discovery", Discovery),
                         ("state", StateConfig), ("conversations", ConversationsConfig),
                         ("reasoning", ReasoningConfig), ("responses", ResponsesConfig),
                         ("files", FilesConfig), ("prices.MODEL", Price), ("free", FreeConfig),
                         ("billing", BillingConfig)):
        keys |= {f"{section}.{k}" for k in _fields(cls)}
    return sorted(keys)
