"""The SQLite store's money tallies (tallies.py): a mixin of SQLiteStore, which supplies
`_run` (a call on the store's thread) and `_tx` (BEGIN IMMEDIATE: several processes on one
file take turns, so a check and its add are one step for all of them)."""

from __future__ import annotations

import time

# `expires` in unix ms; NULL: never. An expired row reads as 0 and is replaced when next
# written (the sweep deletes the rest).
SCHEMA = """
CREATE TABLE IF NOT EXISTS tallies (
    key TEXT PRIMARY KEY, amount INTEGER NOT NULL, expires INTEGER) WITHOUT ROWID
"""
_UPSERT = ("INSERT INTO tallies VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
           "amount = CASE WHEN tallies.expires IS NOT NULL AND tallies.expires <= ? THEN "
           "excluded.amount ELSE tallies.amount + excluded.amount END, "
           "expires = excluded.expires")


def _value(db, key: str, now: int) -> int:
    row = db.execute("SELECT amount FROM tallies WHERE key = ? AND (expires IS NULL OR "
                     "expires > ?)", (key, now)).fetchone()
    return row[0] if row else 0


class SQLiteTallies:
    async def tally_reserve(self, items):
        return await self._run(self._tally, list(items), True)

    async def tally_add(self, items):
        return (await self._run(self._tally, list(items), False))[2]

    async def tally_read(self, keys):
        if not keys:
            return []
        now = int(time.time() * 1000)
        return await self._run(lambda db: [_value(db, k, now) for k in keys])

    def _tally(self, db, items, check: bool):
        now = int(time.time() * 1000)

        def tx():
            values = [_value(db, t.key, now) for t in items]
            if check:
                for i, (t, v) in enumerate(zip(items, values)):
                    if t.limit is not None and v + t.amount > t.limit:
                        return False, i, values
            out = []
            for t, v in zip(items, values):
                db.execute(_UPSERT, (t.key, t.amount, t.expires_at_ms, now))
                out.append(v + t.amount)
            return True, -1, out
        return self._tx(db, tx)
