"""Which provider and upstream model serve the `model` a client asked for."""

from __future__ import annotations

import difflib
import time
from dataclasses import dataclass

from freeapi.errors import APIError, invalid_request
from freeapi.provider import Provider

# Display suffixes for clients that cannot show `reasoning_content`.
DISPLAY_SUFFIXES = {"-fold": "fold", "-silent": "silent"}


@dataclass(frozen=True)
class Route:
    provider: Provider
    upstream_model: str
    display: str | None = None  # None, "fold" or "silent"


class Catalog:
    """All enabled providers' model names, built once at startup.

    Resolution order: an exact listed name (a provider's own id or alias, or a `models:`
    map entry), then `provider/model`, then the name without a `-fold`/`-silent` suffix.
    A bare name two providers both claim is an error unless the `models:` map settles it.
    """

    def __init__(self, providers: dict[str, Provider], model_map: dict[str, str] | None = None):
        self.providers = providers
        self.created = int(time.time())
        claims: dict[str, list[Route]] = {}
        for p in providers.values():
            for model in p.model_ids():
                claims.setdefault(model, []).append(Route(p, model))
            for alias, target in p.aliases.items():
                claims.setdefault(alias, []).append(Route(p, target))
        self._routes: dict[str, Route] = {}
        self._ambiguous: dict[str, list[str]] = {}
        for name, routes in claims.items():
            if len(routes) == 1:
                self._routes[name] = routes[0]
            else:
                self._ambiguous[name] = [f"{r.provider.name}/{name}" for r in routes]
        for alias, target in (model_map or {}).items():
            self._ambiguous.pop(alias, None)
            self._routes[alias] = self._explicit(target, f"models.{alias}")

    def _explicit(self, target: str, where: str) -> Route:
        """A `models:` map target: `provider/model` or a name a single provider claims."""
        route = self._split(target) or self._routes.get(target)
        if route is None:
            from freeapi.config import ConfigError
            raise ConfigError(where, f"{target!r} names no enabled provider's model "
                                     "(write provider/model)")
        return route

    def _split(self, name: str) -> Route | None:
        prefix, sep, rest = name.partition("/")
        provider = self.providers.get(prefix) if sep else None
        if provider is None or not rest:
            return None
        return Route(provider, provider.aliases.get(rest, rest))

    def resolve(self, name: str) -> Route:
        route = self._routes.get(name) or self._split(name)
        if route is not None:
            return route
        for suffix, display in DISPLAY_SUFFIXES.items():
            if name.endswith(suffix):
                base = name[: -len(suffix)]
                route = self._routes.get(base) or self._split(base)
                if route is not None:
                    return Route(route.provider, route.upstream_model, display)
        self._refuse(name)

    def _refuse(self, name: str):
        base = name
        for suffix in DISPLAY_SUFFIXES:
            base = base.removesuffix(suffix)
        if base in self._ambiguous:
            raise invalid_request(
                f"The model {name!r} is served by several providers: "
                f"{', '.join(self._ambiguous[base])}. Ask for one of those, or map the name "
                f"under `models:` in the config.", param="model", code="model_ambiguous")
        names = self.names()
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise APIError(404, f"The model {name!r} does not exist.{hint} Available models: "
                            f"{', '.join(names) or 'none'} (also provider/model).",
                       param="model", code="model_not_found")

    def names(self) -> list[str]:
        names = list(self._routes)
        for name, route in self._routes.items():
            if route.display is None and route.provider.is_reasoning(route.upstream_model):
                names += [name + suffix for suffix in DISPLAY_SUFFIXES]
        return names

    def listing(self) -> list[dict]:
        return [{"id": name, "object": "model", "created": self.created,
                 "owned_by": self.resolve(name).provider.owned_by} for name in self.names()]
