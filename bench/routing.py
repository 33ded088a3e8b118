"""Model-name resolution cost (Catalog.resolve) with the built-in providers, zero config.

    .venv/bin/python bench/routing.py            # this tree
    PYTHONPATH=/path/to/other/checkout .venv/bin/python bench/routing.py   # compare

Prints nanoseconds per call (best of 5 runs) for each kind of name; names a tree does not
know print "-". Timing figures belong here, not in unit tests.
"""

from __future__ import annotations

import timeit

from freeapi.config import parse_config
from freeapi.errors import APIError
from freeapi.plugins import make_plugin_manager, provider_types
from freeapi.routing import Catalog

NAMES = {
    "exact id": "deepseek-v4-pro",
    "exact id, other vendor": "moonshot-v1-8k",
    "display suffix": "kimi-k2-thinking-fold",
    "provider/model": "kimi/moonshot-v1-8k",
    "retired (translated)": "deepseek-reasoner",
    "pattern (cached)": "deepseek-v9-preview",
    "pattern + suffix (cached)": "deepseek-v9-preview-silent",
}


def main():
    types = provider_types(make_plugin_manager())
    cfg = parse_config(None, types)
    catalog = Catalog({n: types[pc.type](pc) for n, pc in cfg.providers.items()})
    print(f"{'name kind':28} {'example':30} ns/call")
    for kind, name in NAMES.items():
        try:
            catalog.resolve(name)
        except APIError:
            print(f"{kind:28} {name:30} -")
            continue
        n = 200_000
        best = min(timeit.repeat(lambda: catalog.resolve(name), number=n, repeat=5))
        print(f"{kind:28} {name:30} {best / n * 1e9:7.0f}")


if __name__ == "__main__":
    main()
