"""The PostgreSQL store's rollups and its raw log's reads (freeapi/rollups.py, Store's
"rollups and the paged raw log" section): a mixin of PostgresStore, which supplies `_run`.
The ledger's own write (PostgresStore._append) calls `add_rollups` in the transaction of
its INSERT, so the aggregates never disagree with the raw log.

With Redis beside PostgreSQL (`state.redis_url` and `state.database_url`) the rollups stay
here, with the ledger they summarize: they are records (spend per key and team, reports of
past months), must outlast a Redis restart, and can only agree with the raw log when both
are written in one transaction.
"""

from __future__ import annotations

from freeapi.rollups import DETAIL_PREFIXES, PERIODS, fold, increments
from freeapi.store import LEDGER_FIELDS, PAGE_MAX

_NOW = "extract(epoch FROM clock_timestamp())"
# One statement per batch, whatever its size. Rows are added in primary-key order, so two
# gateways adding to the same buckets (the "all" ones: every batch does) lock them in the
# same order and wait for each other rather than deadlock. increments() sums each bucket
# field once per batch, as ON CONFLICT DO UPDATE requires.
_ROLLUP_ADD = (
    "INSERT INTO rollups (period, dim, start, field, amount, expires) SELECT * FROM "
    "unnest($1::text[], $2::text[], $3::int8[], $4::text[], $5::float8[], $6::int8[]) AS "
    "r(p, d, s, f, a, e) ORDER BY p, d, s, f ON CONFLICT (period, dim, start, field) DO "
    "UPDATE SET amount = rollups.amount + excluded.amount")
# GET /admin/requests' filters and the columns (each with a (column, ts) index) they read.
_FILTER_COLUMNS = {"key": "key_id", "team": "team", "model": "model", "status": "status",
                   "request_id": "request_id"}
_INT8 = (-(1 << 63), (1 << 63) - 1)
REBUILD_PAGE = 5000  # ledger rows a rebuild holds at once
REBUILD_TIMEOUT = 600.0  # seconds one day's rebuild may take


def rollup_columns(incs: dict) -> tuple[list, ...]:
    """The six arrays of _ROLLUP_ADD for rollups.increments(...)."""
    cols: tuple[list, ...] = ([], [], [], [], [], [])
    for (period, dim, start), fields in incs.items():
        expires = start + PERIODS[period][0] + PERIODS[period][2]
        for f, v in fields.items():
            for col, value in zip(cols, (period, dim, start, f, float(v), expires)):
                col.append(value)
    return cols


async def add_rollups(con, entries: list[dict]) -> None:
    """Apply the entries' rollup increments on `con` (inside the caller's transaction)."""
    cols = rollup_columns(increments(entries))
    if cols[0]:
        await con.execute(_ROLLUP_ADD, *cols)


class PostgresRollups:
    """For PostgresStore (uses its _run)."""

    async def rollup_add(self, entries):
        async def add(con):
            async with con.transaction():
                await add_rollups(con, entries)
        # Not retried on a stale connection: the increments may have been applied.
        await self._run(add, retry=False)

    async def rollup_read(self, period, dim, starts):
        if not starts:
            return []
        rows = await self._run(lambda con: con.fetch(
            "SELECT start, field, amount FROM rollups WHERE period = $1 AND dim = $2 AND "
            f"start = ANY($3::int8[]) AND expires > {_NOW}", period, dim,
            [int(s) for s in starts]))
        got: dict[int, dict] = {int(s): {} for s in starts}
        for start, field, amount in rows:
            got[start][field] = amount
        return [got[int(s)] for s in starts]

    async def rollup_read_counts(self, period, dim, starts):
        if not starts:
            return []
        rows = await self._run(lambda con: con.fetch(
            "SELECT start, field, amount FROM rollups WHERE period = $1 AND dim = $2 AND "
            f"start = ANY($3::int8[]) AND expires > {_NOW} AND "
            "NOT (split_part(field, chr(31), -1) LIKE ANY($4::text[]))", period, dim,
            [int(s) for s in starts], [p + "%" for p in DETAIL_PREFIXES]))
        got: dict[int, dict] = {int(s): {} for s in starts}
        for start, field, amount in rows:
            got[start][field] = amount
        return [got[int(s)] for s in starts]

    async def rollup_sum(self, period, dim, starts):
        if not starts:
            return {}
        rows = await self._run(lambda con: con.fetch(
            "SELECT field, sum(amount) FROM rollups WHERE period = $1 AND dim = $2 AND "
            f"start = ANY($3::int8[]) AND expires > {_NOW} GROUP BY field", period, dim,
            [int(s) for s in starts]))
        return {field: amount for field, amount in rows}

    async def rollup_rebuild(self, since, until, now):
        async def rebuild(con):
            async with con.transaction():
                # New ledger rows wait until this commits: none adds increments to a
                # bucket between its clearing and its rebuilding (SHARE lets reads on).
                await con.execute("LOCK TABLE ledger IN SHARE MODE")
                total: dict = {}
                rows, page = 0, []
                async for r in con.cursor(
                        f"SELECT {', '.join(LEDGER_FIELDS)} FROM ledger WHERE ts >= $1 "
                        "AND ts < $2", float(since), float(until), prefetch=REBUILD_PAGE):
                    page.append(dict(zip(LEDGER_FIELDS, r)))
                    if len(page) == REBUILD_PAGE:
                        fold(total, page, now)
                        rows, page = rows + len(page), []
                fold(total, page, now)
                await con.execute("DELETE FROM rollups WHERE start >= $1 AND start < $2",
                                  int(since), int(until))
                cols = rollup_columns(total)
                if cols[0]:
                    await con.execute(_ROLLUP_ADD, *cols)
                return rows + len(page)
        # A day of ledger can take longer than state.timeout to read; not retried: the
        # transaction either committed or changed nothing, and the caller may run it again.
        return await self._run(rebuild, retry=False, timeout=REBUILD_TIMEOUT)

    async def ledger_page(self, *, since=None, until=None, key=None, team=None, model=None,
                          status=None, request_id=None, cursor=None, limit=100):
        limit = max(1, min(int(limit), PAGE_MAX))
        where, args = [], []

        def arg(value) -> str:
            args.append(value)
            return f"${len(args)}"
        for name, value in (("key", key), ("team", team), ("model", model),
                            ("request_id", request_id)):
            if value is not None:
                where.append(f"{_FILTER_COLUMNS[name]} = {arg(str(value))}")
        if status is not None:
            where.append(f"status = {arg(int(status))}")
        if since is not None:
            where.append(f"ts >= {arg(float(since))}")
        if until is not None:
            where.append(f"ts < {arg(float(until))}")
        if cursor:
            ts, _, rid = cursor.partition(":")
            # Clamped: a made-up cursor beyond int8 is "before everything", not an error.
            rid = min(max(int(rid), _INT8[0]), _INT8[1])
            where.append(f"(ts, id) < ({arg(float(ts))}, {arg(rid)})")
        sql = (f"SELECT id, {', '.join(LEDGER_FIELDS)} FROM ledger "
               f"{'WHERE ' + ' AND '.join(where) if where else ''} "
               f"ORDER BY ts DESC, id DESC LIMIT {arg(limit + 1)}")
        got = await self._run(lambda con: con.fetch(sql, *args))
        rows = [dict(zip(LEDGER_FIELDS, r[1:])) for r in got[:limit]]
        nxt = f"{got[limit - 1][1]!r}:{got[limit - 1][0]}" if len(got) > limit else None
        return rows, nxt
