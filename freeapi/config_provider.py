"""The `providers.NAME` sections of config.yaml: each provider's settings, timeouts and key
pool, checked against its plugin type's own options (freeapi/config.py calls _provider)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from freeapi.config_keys import COMMON_PROVIDER_OPTIONS, PROVIDER_KEYS, RESPONSES_URL_KEY
from freeapi.config_vendor import parse_patterns, parse_translations
from freeapi.configbase import (ConfigError, _expect, _integer, _mapping, _number,
                                _string_list, _unknown)
from freeapi.download_policy import parse_hosts as parse_download_hosts
from freeapi.proxy import parse_setting as parse_proxy_setting

# The accepted keys are tables in freeapi/config_keys.py (docs/ is checked against them).
_PROVIDER_KEYS = PROVIDER_KEYS
_COMMON_OPTIONS = COMMON_PROVIDER_OPTIONS


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
