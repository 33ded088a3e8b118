"""Light periodic cleanups on the event loop, one timer for all of them.

Per-request checks cost every request; many cleanups only need to happen every few
seconds for everything at once (the upstream pool closing connections idle past their
TTL is the first). A part of the gateway registers a plain function with `Sweeper.add`;
the gateway's server runs `Sweeper.run()` for its lifetime (freeapi/cli.py).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

log = logging.getLogger("freeapi.housekeeping")

SWEEP_INTERVAL = 5.0  # seconds between two sweeps


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
                log.exception("housekeeping: %s failed", name)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.sweep()
