"""Background upkeep of the gateway's state: the usage ledger kept to state.ledger_days."""

from __future__ import annotations

import asyncio
import logging
import time

from freeapi.store import StoreError

log = logging.getLogger("freeapi.store")


async def prune_ledger(store, days: float, every: float = 3600.0):
    """Keep the usage ledger to `days` (state.ledger_days; 0 keeps all), checked hourly.
    Every worker does it; the deletes are idempotent."""
    while days:
        try:
            n = await store.prune_ledger(time.time() - days * 86400)
            if n:
                log.info("ledger: pruned %d entries older than %g days", n, days)
        except StoreError as e:
            log.warning("ledger: pruning failed: %s", e)
        await asyncio.sleep(every)
