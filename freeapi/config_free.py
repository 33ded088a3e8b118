"""The `free:` config section: which models the `free` model routes to, in what order,
and what it may do when none of them can serve (freeapi/free.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from freeapi.configbase import (ConfigError, _expect, _mapping, _number, _string_list,
                                _unknown)


@dataclass
class FreeConfig:
    """`models`: the whole ordered list of `provider/model` entries (replaces the built-in
    offers and their order); `add`: entries after the built-in ones (a local server's
    model); `remove`: entries (or globs) left out; `paid_fallback`: a paid model served when
    no free one can (None: never); `quota_recheck`: seconds a once-granted quota that was
    used up (Qwen's) stays skipped before one request asks again."""
    enabled: bool = True
    models: list[str] | None = None
    add: list[str] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    paid_fallback: str | None = None
    quota_recheck: float = 86400.0


def _entries(value, path: str) -> list[str]:
    entries = _string_list(value, path)
    for i, entry in enumerate(entries):
        if not entry.strip():
            raise ConfigError(f"{path}[{i}]", "is empty")
    return [e.strip() for e in entries]


def parse_free(value) -> FreeConfig:
    section = _mapping(value, "free")
    _unknown(section, FreeConfig.__dataclass_fields__, "free")
    fc = FreeConfig()
    fc.enabled = _expect(section.get("enabled", True), (bool,), "free.enabled",
                         "true or false")
    if section.get("models") is not None:
        fc.models = _entries(section["models"], "free.models")
        if "add" in section:
            raise ConfigError("free.add", "free.models is the whole list already; put these "
                                          "entries in it")
    fc.add = _entries(section.get("add"), "free.add")
    fc.remove = _entries(section.get("remove"), "free.remove")
    if section.get("paid_fallback") is not None:
        fc.paid_fallback = _expect(section["paid_fallback"], (str,), "free.paid_fallback",
                                   "a model name such as deepseek/deepseek-flash").strip()
        if not fc.paid_fallback:
            raise ConfigError("free.paid_fallback", "is empty (leave it out for none)")
    if "quota_recheck" in section:
        fc.quota_recheck = _number(section["quota_recheck"], "free.quota_recheck")
    return fc
