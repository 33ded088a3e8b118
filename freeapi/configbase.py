"""Config validation helpers: every error names its key path."""

from __future__ import annotations

import os
import re


class ConfigError(Exception):
    def __init__(self, path: str, message: str):
        super().__init__(f"config: {path}: {message}" if path else f"config: {message}")


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _interpolate(value, path: str):
    if isinstance(value, str):
        def sub(m):
            name, default = m.group(1), m.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise ConfigError(path, f"environment variable {name} is not set "
                                    f"(write ${{{name}:-}} to make it optional)")
        return _ENV.sub(sub, value)
    if isinstance(value, dict):
        return {k: _interpolate(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def _type_name(value) -> str:
    return "null" if value is None else type(value).__name__


def _expect(value, types, path, what):
    # bool is an int in Python; a port of `true` is a mistake, not 1.
    if isinstance(value, bool) and bool not in types:
        raise ConfigError(path, f"expected {what}, got {_type_name(value)}")
    if not isinstance(value, types):
        raise ConfigError(path, f"expected {what}, got {_type_name(value)}")
    return value


def _mapping(value, path) -> dict:
    if value is None:
        return {}
    return _expect(value, (dict,), path, "a mapping")


def _unknown(section: dict, allowed, path: str):
    for key in section:
        if key not in allowed:
            where = f"{path}.{key}" if path else str(key)
            raise ConfigError(where, f"unknown key (allowed: {', '.join(sorted(allowed))})")


def _number(value, path, minimum=0.0) -> float:
    _expect(value, (int, float), path, "a number")
    if value <= minimum:
        raise ConfigError(path, f"must be greater than {minimum}")
    return float(value)


def _non_negative(value, path) -> float:
    _expect(value, (int, float), path, "a number")
    if value < 0:
        raise ConfigError(path, "must not be negative")
    return float(value)


def _string_list(value, path) -> list[str]:
    """A list of strings, or one string of comma-separated items (handy with ${ENV})."""
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    _expect(value, (list,), path, "a list of strings")
    out = []
    for i, item in enumerate(value):
        _expect(item, (str,), f"{path}[{i}]", "a string")
        if item.strip():
            out.append(item.strip())
    return out


def _integer(value, path, minimum=1) -> int:
    _expect(value, (int,), path, "an integer")
    if value < minimum:
        raise ConfigError(path, f"must be at least {minimum}")
    return value


def _section(value, name: str, cls, *, numbers=(), integers=(), flags=()):
    """A flat config section of plain settings into a `cls` dataclass instance: unknown
    keys refused, each named key checked as a number (seconds, >= 0), a whole number
    (>= 1) or true/false; the dataclass's defaults for the rest."""
    section = _mapping(value, name)
    _unknown(section, cls.__dataclass_fields__, name)
    out = cls()
    for key in flags:
        if key in section:
            setattr(out, key, _expect(section[key], (bool,), f"{name}.{key}", "true or false"))
    for key in numbers:
        if key in section:
            setattr(out, key, _number(section[key], f"{name}.{key}"))
    for key in integers:
        if key in section:
            setattr(out, key, _integer(section[key], f"{name}.{key}"))
    return out
