"""Which models the `free` model may serve, in order (freeapi/free.py routes among them):
the providers' free offers (Provider.free_tier) ranked, then the config's `free:` section
(`add`, `models`, `remove`, `paid_fallback`). Pure: built from the providers and the
catalog, at startup and by a reload before anything is swapped in (freeapi/fleet.py), so
a `free:` entry naming a model nobody serves is a ConfigError that changes nothing."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from freeapi.configbase import ConfigError
from freeapi.errors import APIError
from freeapi.free_tier import FREE_QUOTA_ONLY, FreeOffer
from freeapi.routing import Catalog, Route


@dataclass(frozen=True)
class Candidate:
    route: Route
    kinds: frozenset  # of free.KINDS' values
    offer: FreeOffer | None  # None: the operator's own entry (`free.add` / `free.models`)

    @property
    def id(self) -> str:
        return f"{self.route.provider.name}/{self.route.upstream_model}"


@dataclass(frozen=True)
class Chosen:
    candidates: list[Candidate]
    paid: Route | None  # free.paid_fallback, resolved


def kinds(route: Route) -> frozenset:
    caps = route.provider.capabilities(route.upstream_model)
    if "embeddings" in caps:
        return frozenset({"embedding"})
    if "images" in caps:
        return frozenset({"image"})
    if "chat" not in caps:
        return frozenset()
    return frozenset({"chat", "vision"} if "vision" in caps else {"chat"})


def choose(cfg, providers: dict, catalog: Catalog) -> Chosen:
    """The candidates for the `free:` section `cfg`; ConfigError for an entry that names
    no model of an enabled provider."""
    paid = _entry(catalog, cfg.paid_fallback, "free.paid_fallback") \
        if cfg.paid_fallback else None
    return Chosen(_candidates(cfg, providers, catalog), paid)


def _entry(catalog: Catalog, name: str, where: str) -> Route:
    try:
        route = catalog.resolve(name)
    except APIError as e:
        raise ConfigError(where, e.message) from None
    return Route(route.provider, route.upstream_model, defaults=route.defaults)


def _declared(p, model: str) -> bool:
    """Whether the operator declared "Free Quota Only" for `model` of provider `p`."""
    declared = p.config.options.get(FREE_QUOTA_ONLY)
    return declared is True or (isinstance(declared, list) and model in declared)


def _offers(providers: dict) -> list[tuple[int, int, Candidate]]:
    out = []
    for order, p in enumerate(providers.values()):
        for offer in p.free_tier:
            if offer.needs == FREE_QUOTA_ONLY and not _declared(p, offer.model):
                continue  # outside "Free Quota Only" a used-up quota is billed
            route = Route(p, offer.model)
            out.append((offer.rank, order, Candidate(route, kinds(route), offer)))
    return out


def _candidates(cfg, providers: dict, catalog: Catalog) -> list[Candidate]:
    if not cfg.enabled:
        return []
    offers = {c.id: c for _, _, c in sorted(_offers(providers), key=lambda t: t[:2])}
    if cfg.models is not None:
        entries = [(e, f"free.models[{i}]") for i, e in enumerate(cfg.models)]
        chosen = []
    else:
        entries = [(e, f"free.add[{i}]") for i, e in enumerate(cfg.add)]
        chosen = list(offers.values())
    for entry, where in entries:
        route = _entry(catalog, entry, where)
        p = route.provider
        if FREE_QUOTA_ONLY in type(p).options and not _declared(p, route.upstream_model):
            # a vendor whose free quota runs into billing (Qwen): never free undeclared
            raise ConfigError(where, f"{entry!r} is free only in the vendor's \"Free "
                                     f"Quota Only\" mode: declare it under "
                                     f"providers.{p.name}.{FREE_QUOTA_ONLY}")
        found = offers.get(f"{route.provider.name}/{route.upstream_model}")
        chosen.append(found or Candidate(route, kinds(route), None))
    out, seen = [], set()
    for c in chosen:
        names = (c.id, c.route.upstream_model)
        if c.id in seen or any(fnmatch.fnmatchcase(n, pattern) for pattern in cfg.remove
                               for n in names):
            continue
        seen.add(c.id)
        out.append(c)
    return out
