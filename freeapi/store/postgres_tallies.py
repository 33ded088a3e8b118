"""The PostgreSQL store's money tallies (tallies.py): a mixin of PostgresStore, which
supplies `_run` and `hot`. One call of the freeapi_tally function (postgres_schema.py,
migration 5) per operation: one round trip, one transaction. With Redis beside PostgreSQL
(`hot`) the tallies live in Redis, as the limits' counters do: they are hot state, read
and written by every budgeted request."""

from __future__ import annotations

_CALL = ("SELECT * FROM freeapi_tally($1::text[], $2::int8[], $3::int8[], $4::int8[], "
         "$5::bool)")


class PostgresTallies:
    async def _tally(self, items, check: bool):
        args = ([t.key for t in items], [int(t.amount) for t in items],
                [-1 if t.limit is None else int(t.limit) for t in items],
                [int(t.expires_at_ms or 0) for t in items], check)
        row = await self._run(lambda con: con.fetchrow(_CALL, *args))
        return bool(row[0]), int(row[1]), [int(v) for v in row[2]]

    async def tally_reserve(self, items):
        if self.hot is not None:
            return await self.hot.tally_reserve(items)
        return await self._tally(list(items), True)

    async def tally_add(self, items):
        if self.hot is not None:
            return await self.hot.tally_add(items)
        return (await self._tally(list(items), False))[2]

    async def tally_read(self, keys):
        if self.hot is not None:
            return await self.hot.tally_read(keys)
        if not keys:
            return []
        rows = await self._run(lambda con: con.fetch(
            "SELECT key, amount FROM tallies WHERE key = ANY($1::text[]) AND (expires IS "
            "NULL OR expires > (extract(epoch FROM clock_timestamp()) * 1000)::int8)",
            list(keys)))
        got = {r[0]: r[1] for r in rows}
        return [int(got.get(k, 0)) for k in keys]
