"""What the gateway builds from the config's `providers:`, `models:`, `fallbacks:` and
`free:` sections: the provider instances, the model catalog, the fallback chains, the
proxy for each vendor host and the `free` model's candidates.

Built at startup, and again by a reload (freeapi/reload.py) complete before anything is
swapped in, so a section that does not hold together (a `models:` target nobody serves,
a fallback naming a removed provider) is a ConfigError that changes nothing. A reload
passes the running providers: one whose config did not change is kept as it is (its
discovered models with it, and the gateway keeps its key pool), a changed one is made
anew.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from freeapi.configbase import ConfigError
from freeapi.errors import APIError
from freeapi.free_choice import Chosen, choose
from freeapi.provider import Provider
from freeapi.proxy import Resolver as ProxyResolver
from freeapi.routing import Catalog, Route


@dataclass
class Fleet:
    providers: dict[str, Provider]
    catalog: Catalog
    fallbacks: dict[str, list[Route]]
    proxy: ProxyResolver
    free: Chosen
    # Against the running providers (a reload): names added, changed, removed.
    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()

    def replaced(self, name: str) -> bool:
        """Whether the provider of that name is a new object (added or changed)."""
        return name in self.added or name in self.changed


def build(config, types: dict[str, type[Provider]],
          running: dict[str, Provider] | None = None, environ=None) -> Fleet:
    """The fleet for `config`; ConfigError when it does not hold together."""
    running = running or {}
    providers: dict[str, Provider] = {}
    added, changed = [], []
    for name, pc in config.providers.items():
        if not pc.enabled:
            continue
        old = running.get(name)
        if old is not None and type(old) is types[pc.type] and old.config == pc:
            providers[name] = old
            continue
        p = providers[name] = types[pc.type](pc)
        if old is None:
            added.append(name)
            continue
        changed.append(name)
        if type(old) is type(p) and old.base_url == p.base_url:
            # The same server lists the same models: no gap until discovery asks again.
            p.set_discovered(old.discovered)
    removed = tuple(n for n in running if n not in providers)
    catalog = Catalog(providers, config.models)
    try:  # providers.NAME.proxy, else HTTPS_PROXY / HTTP_PROXY / NO_PROXY
        proxy = ProxyResolver(providers, os.environ if environ is None else environ)
    except ValueError as e:
        raise ConfigError("", str(e)) from None
    return Fleet(providers, catalog, fallbacks(catalog, config.fallbacks), proxy,
                 choose(config.free, providers, catalog), tuple(added), tuple(changed),
                 removed)


def fallbacks(catalog: Catalog, table: dict[str, list[str]]) -> dict[str, list[Route]]:
    out = {}
    for model, targets in table.items():
        routes = []
        for i, target in enumerate(targets):
            try:
                routes.append(catalog.resolve(target))
            except APIError as e:
                raise ConfigError(f"fallbacks.{model}[{i}]", e.message) from None
        out[model] = routes
    return out
