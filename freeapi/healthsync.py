"""Server-side vendor keys' health shared between gateways on one store (Redis, or one
SQLite file): a 429 cooldown or an invalid key seen by one process is respected by all.

Requests never wait for the store: a verdict is published in the background, and each
gateway reads its keys' records every `state.sync_interval` seconds into its in-process
health (KeyPool.apply). So a peer learns of a cooldown within about one interval; until
then it may spend one more request on the key, which answers 429 again.

A record is named by provider and a hash of the key (never the key), holds the state, the
cooldown's end and the verdict's time as wall clock (monotonic clocks differ between
processes; gateways' clocks are assumed NTP-close) and expires by itself. Pass-through keys
(clients' own) are never published: they are not the operator's, and anyone can send any
number of them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time

from freeapi.keypool import COOLDOWN, INVALID, NO_BALANCE, KeyHealth
from freeapi.store import Store, StoreError

log = logging.getLogger("freeapi.store")

# An invalid / out-of-balance verdict is kept at least this long for gateways that start
# later; those that read it keep it locally and re-probe the key themselves. A pause for a
# key out of balance on a vendor with no balance check (hours: no_balance_recheck) is
# kept until it ends, so a gateway starting during it does not spend requests on the key.
VERDICT_TTL = 3600.0
# A restore lives long enough for every peer's sync to see it.
RESTORE_TTL = 300.0


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


class HealthSync:
    def __init__(self, store: Store, pools: dict, server_keys: dict[str, list[str]],
                 interval: float = 1.0, clock=time):
        self.store, self.pools, self.interval = store, pools, interval
        # Anything with monotonic() and time() (as KeyPool takes): the time module, or a
        # test's clock that it moves to a cooldown's end instead of sleeping through it.
        self._clock = clock
        self._task: asyncio.Task | None = None
        self._failing = False
        self.set_keys(server_keys)

    def set_keys(self, server_keys: dict[str, list[str]]) -> None:
        """The server-side keys to share, per provider (again after a reload)."""
        # record name -> (provider, key), for the keys of providers that hold server keys
        self._names = {f"{provider}:{key_hash(k)}": (provider, k)
                       for provider, keys in server_keys.items() for k in keys if k}
        self._server = {provider: frozenset(keys) for provider, keys in server_keys.items()}

    @property
    def enabled(self) -> bool:
        return self.store.shared and bool(self._names)

    def publish(self, provider: str, key: str, h: KeyHealth) -> None:
        """KeyPool's on_change: put the verdict in the store in the background."""
        if not self.enabled or key not in self._server.get(provider, ()):
            return
        now = self._clock.time()
        if h.state == COOLDOWN:
            until = now + max(0.0, h.until - self._clock.monotonic())
            ttl = max(0.001, until - now)  # useless once the cooldown is over
        else:
            until, ttl = 0.0, VERDICT_TTL if h.state in (INVALID, NO_BALANCE) else RESTORE_TTL
            pool = self.pools.get(provider)
            wait = pool.no_balance_wait if pool is not None else None
            if h.state == NO_BALANCE and wait is not None:
                until = h.marked_at + wait  # when requests may try the key again
                ttl = max(ttl, until - now)
        record = {"state": h.state, "until": round(until, 3),
                  "at": now if h.state == COOLDOWN else h.marked_at}
        self.store.spawn(self.store.health_put(f"{provider}:{key_hash(key)}", record, ttl),
                         "key health: publishing a verdict failed")

    def start(self) -> None:
        if self.enabled and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self):
        while True:
            names = self._names  # a reload may replace it meanwhile
            try:
                records = await self.store.health_get(list(names))
                if self._failing:
                    log.info("key health: reading shared verdicts works again")
                self._failing = False
            except StoreError as e:
                if not self._failing:  # once per outage, not once a second
                    log.warning("key health: cannot read shared verdicts: %s", str(e))
                self._failing = True
                records = {}
            for name, rec in records.items():
                if name not in self._names:
                    continue  # a reload took the key out while we read: not ours to probe
                provider, key = names[name]
                try:
                    self.pools[provider].apply(key, rec["state"], float(rec.get("until", 0)),
                                               float(rec.get("at", 0)))
                except (KeyError, TypeError, ValueError):
                    pass  # a record this version cannot read: ignore it
            await asyncio.sleep(self.interval)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
