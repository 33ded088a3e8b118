"""Fixed-period money tallies (freeapi/budgets.py): integers, one per name, that a call
adds to all together or not at all, atomically across every gateway sharing the store.

They are apart from the sliding-window counters (Store.hits) because a money budget is
per calendar period (a UTC day, a UTC month, or for ever), not per window, and because
settlement subtracts: a reservation is added before a request is sent and corrected to
the real cost afterwards. Amounts are integers (freeapi/budgets.py counts nano-units of
billing.currency), so a budget worth exactly N requests compares exactly.

Each backend implements the three calls in one transaction or one script: SQLite a table
(sqlite_tallies.py), Redis one Lua script (redis_tallies.py), PostgreSQL a function
(postgres_tallies.py; delegated to Redis when `state.redis_url` sits beside it, as
counters are). A tally whose `expires_at_ms` has passed reads as 0.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tally:
    """Add `amount` to the tally `key`. `limit`: the call fails unless the tally's value
    plus `amount` stays <= limit (None: not checked). `expires_at_ms`: unix ms after which
    the tally is gone (None: never; the `total` period)."""
    key: str
    amount: int
    limit: int | None = None
    expires_at_ms: int | None = None


class Tallies:
    """The interface, a base of Store."""

    async def tally_reserve(self, items: list[Tally]) -> tuple[bool, int, list[int]]:
        """All or nothing: when every item fits (value + amount <= limit, for those with a
        limit), add every amount. Returns (ok, index of the first item that did not fit or
        -1, the tallies' values after the call: unchanged when it failed)."""
        raise NotImplementedError

    async def tally_add(self, items: list[Tally]) -> list[int]:
        """Add every amount unconditionally (it may be negative: a settlement, a release);
        limits are ignored. Returns the values after the call."""
        raise NotImplementedError

    async def tally_read(self, keys: list[str]) -> list[int]:
        """The live values of `keys` (0 for a missing or expired one), in that order."""
        raise NotImplementedError
