"""Config sections for shared state (freeapi/store), usage prices and conversations."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from freeapi.configbase import (ConfigError, _expect, _integer, _mapping, _non_negative,
                                _number, _section, _unknown)
from freeapi.store.redis_url import parse_redis_url


@dataclass
class StateConfig:
    """Where shared state lives (freeapi/store): an SQLite file by default, Redis when
    `redis_url` is set, PostgreSQL when `database_url` is (with Redis beside it for the
    hot state when both are). `path` is relative to the config file; without a config
    file the state is in memory."""
    path: str = ":memory:"
    redis_url: str | None = None
    database_url: str | None = None  # postgresql://user:password@host:port/db[?...]
    pool_size: int = 10  # PostgreSQL connections per gateway process, at most
    # Ledger entries one process keeps in memory while the store cannot take them; the
    # oldest beyond are dropped (freeapi_ledger_dropped_total).
    ledger_buffer: int = 10000
    prefix: str = "freeapi:"  # Redis key prefix
    timeout: float = 5.0  # seconds one store call may take
    ledger_days: float = 90.0  # usage ledger retention; 0 keeps it forever
    sync_interval: float = 1.0  # seconds between reads of other gateways' key verdicts


@dataclass
class ConversationsConfig:
    """Stored conversations (freeapi/conversations.py)."""
    store: bool = False  # every answered request starts a stored conversation
    ttl: float = 7 * 86400.0  # seconds a conversation lives after its last turn
    max_turns: int = 100  # stored turns; the oldest are dropped beyond
    max_bytes: int = 1 << 20  # stored JSON per conversation; the oldest turns dropped beyond
    max_history_chars: int = 200_000  # history sent to the vendor (about 50k tokens)
    # conversations one caller may start within `ttl` (so at most this many live at once)
    max_per_caller: int = 1000


@dataclass
class ResponsesConfig:
    """Responses kept for GET /v1/responses/{id} and `previous_response_id`
    (freeapi/handlers/responses.py)."""
    ttl: float = 7 * 86400.0  # seconds a stored response lives
    max_bytes: int = 4 << 20  # JSON per stored response; a larger one is not kept
    # What one caller may have stored within `ttl` (sliding windows, so at most this many
    # live at once): responses, and their JSON bytes. Over it, store: true is a 429.
    max_per_caller: int = 1000
    max_bytes_per_caller: int = 64 << 20
    # An input_file's data kept with a stored response for previous_response_id, at most
    # (its base64 text); a larger one is replaced by a note naming it (see responses.py).
    max_file_bytes: int = 16 << 10


@dataclass
class FilesConfig:
    """The gateway's file store behind POST /v1/files (freeapi/modalities/files.py).
    Quotas are sliding windows as long as a file lives (24 hours): a deleted file's share
    comes back when its window passes, not at once."""
    max_file_bytes: int = 20 << 20  # one file
    max_per_caller: int = 100  # files one caller may upload within 24 hours
    max_bytes_per_caller: int = 256 << 20  # their bytes
    max_total_bytes: int = 1 << 30  # every caller's uploads within 24 hours, together
    max_downloads_per_caller: int = 4  # GET /v1/files/{id}/content at once, per caller
    # Uploads one gateway process receives at once (each holds its body in memory until
    # stored); more are a 429 before their body is read.
    max_concurrent_uploads: int = 4
    write_timeout: float = 300.0  # seconds one content download may take in all


@dataclass
class Price:
    """A `prices:` row: per million tokens (and per image / speech character / audio
    second), in `currency` (default billing.currency). Overrides the built-in row."""
    input: float | None = None
    output: float | None = None
    cached: float | None = None  # cache-hit input tokens; None: the input price
    currency: str | None = None
    image: float | None = None  # per image made
    character: float | None = None  # per speech character
    second: float | None = None  # per audio second


@dataclass
class BillingConfig:
    """The currency sums and budgets are shown in, and the exchange rates into it:
    `rates: {CNY: 0.14}` means 1 CNY = 0.14 of `currency`. A cost in a currency without a
    rate is summed apart, never converted at a guessed rate. `reserve_output_tokens`: the
    output a money budget reserves for a request that names no max_tokens
    (freeapi/budgets.py)."""
    currency: str = "USD"
    rates: dict = field(default_factory=dict)
    reserve_output_tokens: int = 4096


_CURRENCY = re.compile(r"^[A-Z]{3}$")


def _currency(value, path: str) -> str:
    if not isinstance(value, str) or not _CURRENCY.match(value):
        raise ConfigError(path, "expected an ISO 4217 currency code such as USD or CNY")
    return value


def parse_billing(value) -> BillingConfig:
    section = _mapping(value, "billing")
    _unknown(section, BillingConfig.__dataclass_fields__, "billing")
    b = BillingConfig()
    if section.get("currency") is not None:
        b.currency = _currency(section["currency"], "billing.currency")
    for cur, rate in _mapping(section.get("rates"), "billing.rates").items():
        path = f"billing.rates.{cur}"
        _currency(cur, path)
        b.rates[cur] = _non_negative(rate, path)
    if section.get("reserve_output_tokens") is not None:
        b.reserve_output_tokens = _integer(section["reserve_output_tokens"],
                                           "billing.reserve_output_tokens", 0)
    return b


def parse_state(value, base_dir: str | None) -> StateConfig:
    section = _mapping(value, "state")
    _unknown(section, StateConfig.__dataclass_fields__, "state")
    st = StateConfig()
    if base_dir is not None:
        st.path = "freeapi.db"
    if section.get("path") is not None:
        st.path = _expect(section["path"], (str,), "state.path", "a file path or :memory:")
        if not st.path.strip():
            raise ConfigError("state.path", "is empty")
    if st.path != ":memory:" and base_dir is not None:
        st.path = os.path.join(base_dir, os.path.expanduser(st.path))
    if section.get("redis_url") is not None:
        url = _expect(section["redis_url"], (str,), "state.redis_url", "a redis:// URL")
        if url.strip():  # "${REDIS_URL:-}" left empty means: no Redis
            try:
                parse_redis_url(url)
            except ValueError as e:
                raise ConfigError("state.redis_url", str(e)) from None
            st.redis_url = url.strip()
    if section.get("database_url") is not None:
        url = _expect(section["database_url"], (str,), "state.database_url",
                      "a postgresql:// URL")
        if url.strip():  # "${DATABASE_URL:-}" left empty means: no PostgreSQL
            if not re.match(r"^postgres(ql)?://\S*$", url.strip()):
                raise ConfigError("state.database_url", "expected postgresql://[user[:"
                                                        "password]@]host[:port]/database")
            st.database_url = url.strip()
    for name in ("pool_size", "ledger_buffer"):
        if name in section:
            value = section[name]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"state.{name}", "expected a whole number of at least 1")
            setattr(st, name, value)
    if "prefix" in section:
        st.prefix = _expect(section["prefix"], (str,), "state.prefix", "a string")
    if "timeout" in section:
        st.timeout = _number(section["timeout"], "state.timeout")
    if "sync_interval" in section:
        st.sync_interval = _number(section["sync_interval"], "state.sync_interval")
    if "ledger_days" in section:
        st.ledger_days = _non_negative(section["ledger_days"], "state.ledger_days")
    return st


def parse_prices(value) -> dict[str, Price]:
    out = {}
    for model, entry in _mapping(value, "prices").items():
        path = f"prices.{model}"
        entry = _mapping(entry, path)
        _unknown(entry, Price.__dataclass_fields__, path)
        got = {}
        for part in ("input", "output", "cached", "image", "character", "second"):
            if entry.get(part) is not None:
                got[part] = _non_negative(entry[part], f"{path}.{part}")
        if entry.get("currency") is not None:
            got["currency"] = _currency(entry["currency"], f"{path}.currency")
        if not any(got.get(p) is not None for p in ("image", "character", "second")):
            for part in ("input", "output"):
                if part not in got:
                    raise ConfigError(f"{path}.{part}",
                                      "is required (price per million tokens)")
        out[str(model)] = Price(**got)
    return out


def parse_conversations(value) -> ConversationsConfig:
    return _section(value, "conversations", ConversationsConfig, flags=("store",),
                    numbers=("ttl",), integers=("max_turns", "max_bytes",
                                                "max_history_chars", "max_per_caller"))


def parse_responses(value) -> ResponsesConfig:
    return _section(value, "responses", ResponsesConfig, numbers=("ttl",),
                    integers=("max_bytes", "max_per_caller", "max_bytes_per_caller",
                              "max_file_bytes"))


def parse_files(value) -> FilesConfig:
    return _section(value, "files", FilesConfig, numbers=("write_timeout",),
                    integers=("max_file_bytes", "max_per_caller", "max_bytes_per_caller",
                              "max_total_bytes", "max_downloads_per_caller",
                              "max_concurrent_uploads"))
