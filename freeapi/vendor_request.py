"""A request to a vendor as a provider describes it; the upstream client sends it. Its own
module so that the provider base class and its mixins share it without importing each
other (`freeapi.provider` re-exports it for providers and plugins)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class UpstreamRequest:
    method: str
    url: str
    headers: dict
    body: bytes | None = None
