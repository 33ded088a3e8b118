"""Plugin discovery: entry points in the `freeapi` group, each loaded in isolation."""

from __future__ import annotations

import logging
from importlib.metadata import entry_points

import pluggy

from freeapi import hookimpl, hookspecs
from freeapi.provider import Provider

log = logging.getLogger("freeapi.plugins")
GROUP = "freeapi"


class _Core:
    """freeapi's own hook implementations; plugins can run before them."""

    @hookimpl(trylast=True)
    def resolve_model(self, model, catalog):
        return catalog.resolve(model)


def make_plugin_manager(load_entry_points: bool = True) -> pluggy.PluginManager:
    pm = pluggy.PluginManager("freeapi")
    pm.add_hookspecs(hookspecs)
    pm.register(_Core(), name="freeapi.core")
    from freeapi.modalities.search import SearchSuffix  # the `-search` model suffix
    pm.register(SearchSuffix(), name="freeapi.search")
    if load_entry_points:
        for ep in entry_points(group=GROUP):
            if pm.has_plugin(ep.name):
                log.error("plugin %s: another plugin already uses this name; skipped", ep.name)
                continue
            try:
                pm.register(ep.load(), name=ep.name)
            except Exception as e:  # a broken plugin must not take the gateway down
                log.error("plugin %s (%s) failed to load, skipped: %s: %s",
                          ep.name, ep.value, type(e).__name__, str(e))
    return pm


def provider_types(pm: pluggy.PluginManager) -> dict[str, type[Provider]]:
    """Every registered provider class by type name. A plugin whose hook raises is skipped."""
    types: dict[str, type[Provider]] = {}
    for impl in pm.hook.register_providers.get_hookimpls():
        found: list[type[Provider]] = []
        try:
            impl.function(register=found.append)
        except Exception as e:
            log.error("plugin %s failed in register_providers, skipped: %s: %s",
                      impl.plugin_name, type(e).__name__, str(e))
            continue
        for cls in found:
            if not (isinstance(cls, type) and issubclass(cls, Provider)):
                log.error("plugin %s registered %r, which is not a freeapi.provider.Provider "
                          "subclass; skipped", impl.plugin_name, cls)
            elif cls.type_name in types:
                log.error("plugin %s registered provider type %r, which %s already has; "
                          "skipped", impl.plugin_name, cls.type_name,
                          types[cls.type_name].__module__)
            else:
                types[cls.type_name] = cls
    return types
