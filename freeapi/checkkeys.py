"""`freeapi check-keys`: every configured vendor key, asked live, as a table."""

from __future__ import annotations

import asyncio

from freeapi.app import Gateway
from freeapi.errors import APIError
from freeapi.keys import mask
from freeapi.probes import check_key


async def _check(gateway: Gateway, provider, key) -> tuple[str, str, str]:
    try:
        live = await check_key(gateway.http, provider, key)
        return provider.name, mask(key), "live" if live else "dead"
    except APIError as e:
        return provider.name, mask(key), f"unknown ({e.status}: {e.message})"
    except Exception as e:  # e.g. a provider whose keys cannot be checked without spending
        return provider.name, mask(key), f"unknown ({type(e).__name__})"


async def check_keys(gateway: Gateway, out=print) -> int:
    """Exit code 0 when every key is live, 1 otherwise (3 when none are configured)."""
    jobs = [_check(gateway, p, key) for p in gateway.providers.values() for key in p.api_keys]
    if not jobs:
        out("no server-side keys are configured (providers.NAME.api_keys)")
        return 3
    rows = await asyncio.gather(*jobs)
    gateway.close()
    widths = [max(len(r[i]) for r in rows + [("provider", "key", "state")]) for i in range(2)]
    out(f"{'provider':<{widths[0]}}  {'key':<{widths[1]}}  state")
    for name, key, state in rows:
        out(f"{name:<{widths[0]}}  {key:<{widths[1]}}  {state}")
    return 0 if all(r[2] == "live" for r in rows) else 1
