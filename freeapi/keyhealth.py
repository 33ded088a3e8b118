"""What the gateway knows of each vendor key's health, in this process: one `KeyHealth`
record per (pool, key) in a `HealthStore` whose size a flood of made-up keys cannot grow
or flush. The key pool (freeapi/keypool.py) decides with them; healthsync shares the
server-side keys' records between gateways."""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

OK, COOLDOWN, INVALID, NO_BALANCE = "ok", "cooldown", "invalid", "no_balance"

# Pass-through keys remembered per process (least recently used first out).
PASSTHROUGH_MEMORY = 10000


@dataclass
class KeyHealth:
    state: str = OK
    until: float = 0.0           # cooldown end; no_balance: when a request may retry (monotonic)
    strikes: int = 0             # consecutive 429s, for backoff
    last_error: str | None = None
    last_error_at: float | None = None  # wall clock, for humans
    marked_at: float = 0.0       # wall clock of the last invalid/no_balance/restore verdict
    down: str | None = None      # keyless host: the failure kind that made it unreachable
    outcomes: deque = field(default_factory=lambda: deque(maxlen=50))  # (t, ok)

    def usable(self, now: float) -> bool:
        # An out-of-balance key with `until` set (a vendor with no balance check) waits out
        # that long pause; one whose balance check decides (until 0) waits for the check.
        return (self.state == OK or (self.state == COOLDOWN and now >= self.until)
                or (self.state == NO_BALANCE and 0 < self.until <= now))


class HealthStore:
    """In-process key health. Methods are the whole interface a shared backend implements.

    Server-side keys (and a keyless provider's pseudo-key) are `pin`ned: their records are
    never evicted. Every other key is a client's pass-through key, which anyone can send
    any number of: those records form a least-recently-used cache of `limit` entries whose
    eviction is O(1) (a flood of made-up keys costs a dict operation each, and can never
    push out what the gateway knows about its own keys).
    """

    def __init__(self, limit: int = PASSTHROUGH_MEMORY):
        self._pinned: dict[tuple, KeyHealth] = {}
        self._h: OrderedDict[tuple, KeyHealth] = OrderedDict()  # pass-through keys, LRU
        self._limit = limit

    def pin(self, pool: str, keys) -> None:
        for key in keys:
            k = (pool, key)
            if k not in self._pinned:
                self._pinned[k] = self._h.pop(k, None) or KeyHealth()

    def unpin(self, pool: str, keys) -> None:
        """Keys a reload took out of the config: their records join the pass-through
        keys' (kept while used, evicted in time), so removed keys cannot pile up."""
        for key in keys:
            h = self._pinned.pop((pool, key), None)
            if h is not None:
                self._h[(pool, key)] = h
                if len(self._h) > self._limit:
                    self._h.popitem(last=False)

    def get(self, pool: str, key) -> KeyHealth:
        k = (pool, key)
        h = self._pinned.get(k)
        if h is not None:
            return h
        h = self._h.get(k)
        if h is None:
            h = self._h[k] = KeyHealth()
            if len(self._h) > self._limit:
                # The least recently used client key goes: a key a client keeps sending is
                # touched by every request and stays known.
                self._h.popitem(last=False)
        else:
            self._h.move_to_end(k)
        return h

    def items(self, pool: str):
        return [(k[1], h) for d in (self._pinned, self._h) for k, h in d.items()
                if k[0] == pool]
