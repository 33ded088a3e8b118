"""Reading JSON from clients and vendors, where any field may hold anything: small typed
accessors, so the code (and the type checker) knows what it holds after one look."""

from __future__ import annotations

from typing import Any


def obj(value: Any) -> dict:
    """`value` if it is a JSON object, else an empty one (read-only use: a fresh dict)."""
    return value if isinstance(value, dict) else {}


def obj_at(parent: Any, name: str) -> dict:
    """The JSON object at `parent[name]`, or an empty one when absent or of another type."""
    return obj(parent.get(name)) if isinstance(parent, dict) else {}
