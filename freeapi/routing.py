"""Which provider and upstream model serve the `model` a client asked for."""

from __future__ import annotations

import difflib
import time
from dataclasses import dataclass
from fnmatch import fnmatchcase

from freeapi.errors import APIError, invalid_request
from freeapi.provider import Provider

# Display suffixes for clients that cannot show `reasoning_content`.
DISPLAY_SUFFIXES = {"-fold": "fold", "-silent": "silent"}
# No vendor's model id comes near this; chat requests with a longer `model` are refused.
MAX_MODEL_NAME = 256


def _shown(name: str) -> str:
    """A client's model name as error messages quote it: never more than a line of it."""
    return repr(name if len(name) <= 80 else name[:80] + "...")


@dataclass(frozen=True)
class Route:
    provider: Provider
    upstream_model: str
    display: str | None = None  # None, "fold" or "silent"


class Catalog:
    """All enabled providers' model names, built at startup and rebuilt (then swapped in
    whole) once model discovery has answered.

    Resolution order: an exact listed name (a `models:` map entry, a provider's own id or
    alias; names found by discovery never displace those), then `provider/model` for a
    model that provider lists, then either of those plus a `-fold`/`-silent` suffix, then
    a glob key of the `models:` map, then any other `provider/model`, sent to that
    provider as is. A bare name two providers both
    claim is an error unless the `models:` map settles it.
    """

    def __init__(self, providers: dict[str, Provider], model_map: dict[str, str] | None = None):
        self.providers = providers
        self.created = int(time.time())
        claims: dict[str, list[Route]] = {}
        found: dict[str, list[Route]] = {}
        for p in providers.values():
            discovered = p.discovered_ids()
            for model in p.model_ids():
                if model not in discovered:
                    claims.setdefault(model, []).append(Route(p, model))
            for alias, target in p.aliases.items():
                claims.setdefault(alias, []).append(Route(p, target))
            for model in discovered:
                found.setdefault(model, []).append(Route(p, model))
        # A name a vendor lists at startup never takes a name another provider (or alias)
        # claims statically: DashScope listing `deepseek-r1` must not break DeepSeek's alias.
        for name, routes in found.items():
            claims.setdefault(name, routes)
        self._routes: dict[str, Route] = {}
        self._ambiguous: dict[str, list[str]] = {}
        for name, routes in claims.items():
            if len(routes) == 1:
                self._routes[name] = routes[0]
            else:
                self._ambiguous[name] = [f"{r.provider.name}/{name}" for r in routes]
        # `models:` keys with glob characters (`claude-*-haiku-*`) route every name they
        # match, first match in config order; any exact name wins over them.
        self._globs: list[tuple[str, Route]] = []
        for alias, target in (model_map or {}).items():
            if any(c in alias for c in "*?["):
                self._globs.append((alias, self._explicit(target, f"models.{alias}")))
                continue
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

    def _split(self, name: str, listed_only: bool = False) -> Route | None:
        prefix, sep, rest = name.partition("/")
        provider = self.providers.get(prefix) if sep else None
        if provider is None or not rest:
            return None
        if listed_only and rest not in provider.aliases and rest not in provider.model_ids():
            return None
        return Route(provider, provider.aliases.get(rest, rest))

    def resolve(self, name: str) -> Route:
        route = self._routes.get(name) or self._split(name, listed_only=True)
        if route is not None:
            return route
        # `kimi/kimi-k2-thinking-fold` is a display mode of a model, unless the provider
        # lists a model by that very name (checked above).
        for suffix, display in DISPLAY_SUFFIXES.items():
            if name.endswith(suffix):
                base = name[: -len(suffix)]
                route = self._routes.get(base) or self._split(base)
                if route is not None:
                    return Route(route.provider, route.upstream_model, display)
        for pattern, route in self._globs:
            if fnmatchcase(name, pattern):
                return route
        # Any other `provider/model` goes to that provider as is: it may serve models it
        # does not list.
        route = self._split(name)
        if route is not None:
            return route
        self._refuse(name)

    def _refuse(self, name: str):
        base = name
        for suffix in DISPLAY_SUFFIXES:
            base = base.removesuffix(suffix)
        if base in self._ambiguous:
            raise invalid_request(
                f"The model {_shown(name)} is served by several providers: "
                f"{', '.join(self._ambiguous[base])}. Ask for one of those, or map the name "
                f"under `models:` in the config.", param="model", code="model_ambiguous")
        names = self.names()
        # difflib's cost grows with the name's length; a name this long has no near miss.
        close = (difflib.get_close_matches(name, names, n=5, cutoff=0.5)
                 if len(name) <= MAX_MODEL_NAME else [])
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        listed = ", ".join(names[:40]) or "none"
        if len(names) > 40:
            listed += f", ... ({len(names)} in all: GET /v1/models)"
        raise APIError(404, f"The model {_shown(name)} does not exist.{hint} Available "
                            f"models: {listed} (also provider/model).",
                       param="model", code="model_not_found")

    def names(self) -> list[str]:
        names = []
        for name, route in self._routes.items():
            names.append(name)
            if route.display is None and route.provider.is_reasoning(route.upstream_model):
                names += [name + suffix for suffix in DISPLAY_SUFFIXES]
        return names

    def listing(self) -> list[dict]:
        return [{"id": name, "object": "model", "created": self.created,
                 "owned_by": self.resolve(name).provider.owned_by} for name in self.names()]
