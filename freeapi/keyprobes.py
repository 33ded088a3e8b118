"""Background re-probes of a key pool's invalid and out-of-balance keys, and of a keyless
provider's host while it cannot be reached: the mixin of KeyPool (freeapi/keypool.py).

A key the vendor refused is re-checked in the background, with a growing pause
(`probe_interval` doubling up to `probe_cap`); a keyless host, every HOST_PROBE_INTERVAL
seconds, where any HTTP answer brings traffic back. A pool closed by a reload starts no
probe any more and hands the re-checks on (`close(handoff)`).
"""

from __future__ import annotations

import asyncio
import random

from freeapi.keyhealth import COOLDOWN, INVALID, NO_BALANCE, OK

HOST_PROBE_INTERVAL = 1.0


class KeyProbes:
    """For KeyPool (uses its name, store, _clock, no_balance_wait, _changed and _wake)."""

    def __init__(self, prober, probe_interval: float, probe_cap: float, host_prober):
        self._prober = prober  # async (key) -> bool | None (None: could not tell)
        self._probes: dict[str, asyncio.Task] = {}
        self.probe_at: dict[str, float] = {}  # key -> wall clock of its next re-probe
        self.probe_interval, self.probe_cap = probe_interval, probe_cap
        self._host_prober = host_prober  # async () -> bool: the keyless host answered
        self._host_probe: asyncio.Task | None = None
        # Closed by a reload that removed or replaced its provider: requests in flight still
        # release their leases here, but no background probe starts any more; a re-check
        # one of them makes necessary goes to `_handoff(key)` (the pool serving now).
        self._closed = False
        self._handoff = None

    def resume(self, keys) -> None:
        """A pool made by a reload for keys whose health is already known (the records
        are kept per provider name and key): re-probe those a probe must bring back."""
        for key in keys:
            h = self.store.get(self.name, key)
            if key is None and h.down is not None and h.state == COOLDOWN:
                self._schedule_host_probe()
            elif key is not None and h.state in (INVALID, NO_BALANCE) and self._probing(key):
                self._schedule_probe(key)

    def _schedule_probe(self, key: str):
        if self._closed and self._handoff is not None:
            self._handoff(key)
            return
        if self._prober is None or self._closed or key in self._probes:
            return
        try:
            self._probes[key] = asyncio.get_running_loop().create_task(self._probe(key))
        except RuntimeError:
            pass

    async def _probe(self, key: str):
        delay = self.probe_interval
        try:
            while self._probing(key):
                wait = delay * random.uniform(0.9, 1.1)
                self.probe_at[key] = self._clock.time() + wait
                await asyncio.sleep(wait)
                if not self._probing(key):
                    return
                try:
                    live = await self._prober(key)
                except Exception:
                    live = None
                if live:
                    h = self.store.get(self.name, key)
                    h.state, h.strikes = OK, 0
                    self._changed(key, h)
                    self._wake()
                    return
                delay = min(self.probe_cap, delay * 2)
        finally:
            self._probes.pop(key, None)
            self.probe_at.pop(key, None)

    def _schedule_host_probe(self):
        if self._closed and self._handoff is not None:
            self._handoff(None)
            return
        if self._host_prober is None or self._closed or self._host_probe is not None:
            return
        try:
            self._host_probe = asyncio.get_running_loop().create_task(self._probe_host())
        except RuntimeError:
            pass

    async def _probe_host(self):
        try:
            while True:
                h = self.store.get(self.name, None)
                if h.down is None or h.state != COOLDOWN:
                    return
                await asyncio.sleep(HOST_PROBE_INTERVAL)
                try:
                    up = await self._host_prober()
                except Exception:
                    up = False
                if up and h.down is not None:
                    h.state, h.until, h.down = OK, 0.0, None
                    self._wake()
                    return
        finally:
            self._host_probe = None

    def _probing(self, key) -> bool:
        # Out of balance on a vendor whose check cannot see balances: only the pause ends it.
        h = self.store.get(self.name, key)
        return h.state == INVALID or (h.state == NO_BALANCE and (
            self.no_balance_wait is None or key is None))

    def close(self, handoff=None):
        """No more background probes. `handoff(key)`: who re-checks a key that a request
        still using this pool finds dead (a replaced provider's pool hands it on to the
        new one)."""
        self._closed, self._handoff = True, handoff
        for task in self._probes.values():
            task.cancel()
        if self._host_probe is not None:
            self._host_probe.cancel()
