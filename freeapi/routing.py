"""Which provider and upstream model serve the `model` a client asked for."""

from __future__ import annotations

import copy
import difflib
import fnmatch
import re
import time
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Mapping

from freeapi.errors import APIError, invalid_request
from freeapi.provider import Provider

# Display suffixes for clients that cannot show `reasoning_content`.
DISPLAY_SUFFIXES = {"-fold": "fold", "-silent": "silent"}
# No vendor's model id comes near this; chat requests with a longer `model` are refused.
MAX_MODEL_NAME = 256


def require_model(body: dict) -> str:
    """The request's `model`, or the OpenAI-shaped 400 that says what is wrong with it (the
    OpenAI-dialect doors share it; the Anthropic door words its own)."""
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise invalid_request("`model` is required and must be a non-empty string.",
                              param="model")
    if len(model) > MAX_MODEL_NAME:
        raise invalid_request(f"`model` is longer than {MAX_MODEL_NAME} characters; no "
                              "model has such a name.", param="model")
    return model
# Names resolved by a provider's `patterns` are remembered per catalog, up to this many
# (then forgotten all at once): a client cannot grow the memory without bound.
PATTERN_CACHE = 4096


def _shown(name: str) -> str:
    """A client's model name as error messages quote it: never more than a line of it."""
    return repr(name if len(name) <= 80 else name[:80] + "...")


@dataclass(frozen=True)
class Route:
    provider: Provider
    upstream_model: str
    display: str | None = None  # None, "fold" or "silent"
    #: A retired name's request-body defaults (Provider.retired / config translations).
    defaults: Mapping | None = field(default=None, compare=False)
    # The `free` model (freeapi/free.py) routes with these: the name it was asked as
    # (`free`: a caller allowed it may use every target), the name answers carry instead
    # of the requested one (the model that served), the vendor keys known to have used up
    # this model's free quota (skipped), and the targets after this one (None: the
    # `fallbacks:` table decides).
    via: str | None = field(default=None, compare=False)
    shown_as: str | None = field(default=None, compare=False)
    skip_keys: frozenset = field(default=frozenset(), compare=False)
    chain: tuple | None = field(default=None, compare=False)
    # The `free` model's paid fallback (free.paid_fallback): only a caller with a money
    # budget is served by it (pipeline/failover.py), and only within it (freeapi/budgets.py).
    paid: bool = field(default=False, compare=False)

    def body_for(self, body: dict) -> dict:
        """The request body for this route's vendor: its model id, and the translation's
        defaults for fields the client did not set (the client's own `thinking` wins)."""
        out = dict(body, model=self.upstream_model)
        for key, value in (self.defaults or {}).items():
            if body.get(key) is None:
                out[key] = copy.deepcopy(value)
        return out


class Catalog:
    """All enabled providers' model names, built at startup and rebuilt (then swapped in
    whole) once model discovery has answered.

    Resolution order: an exact listed name (a `models:` map entry, a provider's own id,
    alias or retired name, a name one provider's discovery found; discovered names never
    displace the others), then `provider/model` for a model that provider lists, then
    either of those plus a `-fold`/`-silent` suffix (`provider/NAME-fold` also for a NAME
    it does not list), then a glob key of the `models:` map (`claude-*`, first match in
    config order), then any other `provider/model`, sent to that provider as is. A bare
    name left over that several providers list (two servers' discovery) is then the
    ambiguity error, whatever patterns say; else a bare name one provider's `patterns`
    match is sent there as is (a display suffix counts when that provider reasons), and
    one that several providers' patterns match is the ambiguity error too. The `models:`
    map settles any ambiguity. Retired names (Provider.retired) resolve like aliases but
    are not listed.
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
            for old, (target, defaults) in p.retired.items():
                claims.setdefault(old, []).append(Route(p, target, defaults=defaults or None))
            for model in discovered:
                found.setdefault(model, []).append(Route(p, model))
        # A name a vendor lists at startup never takes a name another provider (or alias)
        # claims statically: DashScope listing `deepseek-r1` must not break DeepSeek's alias.
        for name, routes in found.items():
            claims.setdefault(name, routes)
        self._routes: dict[str, Route] = {}
        self._ambiguous: dict[str, list[str]] = {}
        self._retired = {old for p in providers.values() for old in p.retired}
        # One regex per provider that declares name patterns.
        self._globs = [(p, re.compile("|".join(fnmatch.translate(g) for g in p.patterns)))
                       for p in providers.values() if p.patterns]
        self._by_pattern: dict[str, Route | list[str] | None] = {}
        for name, routes in claims.items():
            if len(routes) == 1:
                self._routes[name] = routes[0]
            else:
                self._ambiguous[name] = [f"{r.provider.name}/{name}" for r in routes]
        # `models:` keys with glob characters (`claude-*-haiku-*`) route every name they
        # match, first match in config order; any exact name wins over them.
        self._map_globs: list[tuple[str, Route]] = []
        for alias, target in (model_map or {}).items():
            if any(c in alias for c in "*?["):
                self._map_globs.append((alias, self._explicit(target, f"models.{alias}")))
                continue
            self._ambiguous.pop(alias, None)
            self._routes[alias] = self._explicit(target, f"models.{alias}")

    def _explicit(self, target: str, where: str) -> Route:
        """A `models:` map target: `provider/model` or a name a single provider claims."""
        from freeapi.config import ConfigError
        route = self._split(target) or self._routes.get(target)
        if route is None and len(target) <= MAX_MODEL_NAME:
            try:
                route = self._pattern_route(target)
            except APIError as e:
                raise ConfigError(where, e.message) from None
        if route is None:
            raise ConfigError(where, f"{target!r} names no enabled provider's model "
                                     "(write provider/model)")
        return route

    def _split(self, name: str, listed_only: bool = False) -> Route | None:
        prefix, sep, rest = name.partition("/")
        provider = self.providers.get(prefix) if sep else None
        if provider is None or not rest:
            return None
        if rest in provider.retired:
            target, defaults = provider.retired[rest]
            return Route(provider, target, defaults=defaults or None)
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
                    return Route(route.provider, route.upstream_model, display,
                                 route.defaults)
        for pattern, route in self._map_globs:
            if fnmatchcase(name, pattern):
                return route
        # Any other `provider/model` goes to that provider as is: it may serve models it
        # does not list.
        route = self._split(name)
        if route is not None:
            return route
        # A bare name two providers list (discovery can find one name on two servers) is
        # theirs to settle, not a third provider's pattern: say so.
        claims = self._listed_claims(name)
        if claims:
            raise self._ambiguity(name, claims)
        route = self._pattern_route(name)
        if route is not None:
            return route
        self._refuse(name)

    def _listed_claims(self, name: str) -> list[str] | None:
        """The `provider/model` names of a bare name (or its display-suffix base) that
        several providers list, if it is one."""
        claims = self._ambiguous.get(name)
        for suffix in DISPLAY_SUFFIXES:
            if claims is None and name.endswith(suffix):
                claims = self._ambiguous.get(name[: -len(suffix)])
        return claims

    def _pattern_route(self, name: str) -> Route | None:
        """A bare name a provider's `patterns` claim (None: none does), remembered."""
        if not self._globs or len(name) > MAX_MODEL_NAME:
            return None
        try:
            hit = self._by_pattern[name]
        except KeyError:
            if len(self._by_pattern) >= PATTERN_CACHE:
                self._by_pattern.clear()
            hit = self._by_pattern[name] = self._match(name)
        if isinstance(hit, list):
            raise self._ambiguity(name, hit)
        return hit

    def _match(self, name: str) -> Route | list[str] | None:
        # `deepseek-v9-fold` is the fold display of `deepseek-v9` when the provider reasons;
        # for one that does not, the whole name goes to the vendor as is.
        for suffix, display in DISPLAY_SUFFIXES.items():
            if name.endswith(suffix):
                base = name[: -len(suffix)]
                owners = [p for p, rx in self._globs if rx.match(base)
                          and (p.reasoning_models or p.is_reasoning(base))]
                if owners:
                    return (Route(owners[0], base, display) if len(owners) == 1
                            else [f"{p.name}/{base}" for p in owners])
        owners = [p for p, rx in self._globs if rx.match(name)]
        if not owners:
            return None
        return Route(owners[0], name) if len(owners) == 1 else [f"{p.name}/{name}"
                                                                 for p in owners]

    @staticmethod
    def _ambiguity(name: str, claims: list[str]) -> APIError:
        return invalid_request(
            f"The model {_shown(name)} is served by several providers: "
            f"{', '.join(claims)}. Ask for one of those, or map the name "
            f"under `models:` in the config.", param="model", code="model_ambiguous")

    def _refuse(self, name: str):
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
            if name in self._retired:
                continue  # still served, no longer offered
            names.append(name)
            if route.display is None and route.provider.is_reasoning(route.upstream_model):
                names += [name + suffix for suffix in DISPLAY_SUFFIXES]
        return names

    def listing(self, servable=None) -> list[dict]:
        """The models list; `servable(name, route)` leaves out what a caller cannot use."""
        out = []
        for name in self.names():
            route = self.resolve(name)
            if servable is None or servable(name, route):
                out.append({"id": name, "object": "model", "created": self.created,
                            "owned_by": route.provider.owned_by})
        return out
