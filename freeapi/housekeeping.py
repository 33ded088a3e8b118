"""Background upkeep on the event loop: the usage ledger kept to state.ledger_days, and
light periodic cleanups sharing one timer.

Per-request checks cost every request; many cleanups only need to happen every few
seconds for everything at once (the upstream pool closing connections idle past their
TTL is the first). A part of the gateway registers a plain function with `Sweeper.add`;
the gateway's server runs `Sweeper.run()` and `prune_ledger` for its lifetime
(freeapi/cli.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

from freeapi.store import StoreError

log = logging.getLogger("freeapi.store")
sweep_log = logging.getLogger("freeapi.housekeeping")

SWEEP_INTERVAL = 5.0  # seconds between two sweeps


async def prune_ledger(store, days: float, every: float = 3600.0):
    """Keep the usage ledger to `days` (state.ledger_days; 0 keeps all), checked hourly.
    Every worker does it; the deletes are idempotent."""
    while days:
        try:
            n = await store.prune_ledger(time.time() - days * 86400)
            if n:
                log.info("ledger: pruned %d entries older than %g days", n, days)
        except StoreError as e:
            log.warning("ledger: pruning failed: %s", str(e))
        await asyncio.sleep(every)


class Sweeper:
    def __init__(self, interval: float = SWEEP_INTERVAL):
        self.interval = interval
        self._jobs: list[tuple[str, Callable[[], object]]] = []

    def add(self, name: str, job: Callable[[], object]) -> None:
        """Run `job()` (synchronous and quick) at every sweep; `name` is for the log."""
        self._jobs.append((name, job))

    def sweep(self) -> None:
        for name, job in self._jobs:
            try:
                job()
            except Exception:  # one broken job must not stop the others, or later sweeps
                sweep_log.exception("housekeeping: %s failed", name)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.sweep()
