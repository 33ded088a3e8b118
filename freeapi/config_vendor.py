"""Config for vendor churn: per-provider model translations and name patterns, and the
`reasoning:` section (the `-silent` reasoning memory)."""

from __future__ import annotations

from dataclasses import dataclass

from freeapi.config_keys import TRANSLATION_KEYS
from freeapi.configbase import ConfigError, _expect, _mapping, _section, _unknown


@dataclass
class ReasoningConfig:
    """The reasoning a `-silent` client never sees, kept per tool call (freeapi/reasoning.py)
    so that it can go back to the vendor when the client returns the turn without it."""
    ttl: float = 86400.0  # seconds a remembered reasoning lives
    max_chars: int = 65536  # characters kept per answer; longer reasoning is cut


def parse_translations(value, path: str) -> dict[str, tuple[str, dict]]:
    """`{old: {model: new, defaults: {...}}}` (or `{old: new}`) -> {old: (new, defaults)}."""
    out: dict[str, tuple[str, dict]] = {}
    for old, spec in _mapping(value, path).items():
        where = f"{path}.{old}"
        if not isinstance(old, str) or not old.strip():
            raise ConfigError(where, "a translated name must be a non-empty string")
        if isinstance(spec, str):
            spec = {"model": spec}
        spec = _expect(spec, (dict,), where, "a model name or {model, defaults}")
        _unknown(spec, TRANSLATION_KEYS, where)
        model = spec.get("model")
        if not isinstance(model, str) or not model.strip():
            raise ConfigError(f"{where}.model", "required: the current model id to send "
                                                "instead (a string)")
        if model.strip() == old:
            raise ConfigError(f"{where}.model", "translates the name to itself")
        defaults = _mapping(spec.get("defaults"), f"{where}.defaults")
        for field in ("model", "messages", "stream"):
            if field in defaults:
                raise ConfigError(f"{where}.defaults.{field}", "the request's own field; "
                                  "it cannot have a default")
        out[old] = (model.strip(), dict(defaults))
    return out


def parse_patterns(value, path: str) -> list[str] | None:
    """A list of fnmatch globs; None (absent) keeps the provider type's own."""
    if value is None:
        return None
    _expect(value, (list,), path, "a list of name globs such as deepseek-*")
    out = []
    for i, item in enumerate(value):
        _expect(item, (str,), f"{path}[{i}]", "a string")
        glob = item.strip()
        if not glob:
            raise ConfigError(f"{path}[{i}]", "is empty")
        if glob.strip("*?") == "":
            raise ConfigError(f"{path}[{i}]", "matches every name; write a prefix such as "
                                              "deepseek-* (or use the models: map)")
        out.append(glob)
    return out


def parse_reasoning(value) -> ReasoningConfig:
    return _section(value, "reasoning", ReasoningConfig, numbers=("ttl",),
                    integers=("max_chars",))
