"""Config sections for shared state (freeapi/store), usage prices and conversations."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from freeapi.configbase import (ConfigError, _expect, _mapping, _non_negative, _number,
                                _section, _unknown)


@dataclass
class StateConfig:
    """Where shared state lives (freeapi/store): an SQLite file by default, Redis when
    `redis_url` is set. `path` is relative to the config file; without a config file the
    state is in memory."""
    path: str = ":memory:"
    redis_url: str | None = None
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
    """Per million tokens, in whatever currency the operator thinks in."""
    input: float
    output: float
    cached: float | None = None  # cache-hit input tokens; None: the input price


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
            if not re.match(r"^rediss?://[^/\s]*(/\d+)?$", url.strip()):
                raise ConfigError("state.redis_url", "expected redis://[user:password@]"
                                                     "host[:port][/db] or rediss://...")
            st.redis_url = url.strip()
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
        for part in ("input", "output", "cached"):
            if entry.get(part) is not None:
                got[part] = _non_negative(entry[part], f"{path}.{part}")
            elif part != "cached":
                raise ConfigError(f"{path}.{part}", "is required (price per million tokens)")
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
