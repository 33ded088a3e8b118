"""The SQLite store's rollups and its raw log's reads (freeapi/rollups.py, Store's "rollups and
the paged raw log" section): a mixin of SQLiteStore, which supplies `_run` (a call on the
store's thread) and `_tx`. The ledger's own write (rows + rollup increments in one
transaction) is SQLiteStore._append."""

from __future__ import annotations

import functools
import time

from freeapi.rollups import DETAIL_PREFIXES, PERIODS, SEP, fold, increments
from freeapi.store import LEDGER_FIELDS, PAGE_MAX

_ROLLUP_ADD = ("INSERT INTO rollups VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (period, dim, "
               "start, field) DO UPDATE SET amount = amount + excluded.amount")
REBUILD_PAGE = 5000  # ledger rows a rebuild holds at once
_FILTER_COLUMNS = {"key": "key_id", "team": "team", "model": "model", "status": "status",
                   "request_id": "request_id"}


class SQLiteRollups:
    async def rollup_add(self, entries):
        adds = rollup_rows(increments(entries))
        await self._run(lambda db: self._tx(db, lambda: _each_batched(db, _ROLLUP_ADD, adds)))

    async def rollup_read(self, period, dim, starts):
        if not starts:
            return []

        def query(db):
            got: dict[int, dict] = {s: {} for s in starts}
            for start, field, amount in db.execute(
                    "SELECT start, field, amount FROM rollups WHERE period = ? AND dim = ? "
                    "AND start >= ? AND start <= ? AND expires > ?",
                    (period, dim, min(starts), max(starts), int(time.time()))):
                if start in got:
                    got[start][field] = amount
            return [got[s] for s in starts]
        return await self._run(query)

    async def rollup_read_counts(self, period, dim, starts):
        if not starts:
            return []
        # Left out by SQLite itself: no Python row is made for a histogram field.
        skip = " ".join("AND instr(field, ?) = 0" for _ in DETAIL_PREFIXES)
        marks = [SEP + p for p in DETAIL_PREFIXES]

        def query(db):
            got: dict[int, dict] = {s: {} for s in starts}
            for start, field, amount in db.execute(
                    "SELECT start, field, amount FROM rollups WHERE period = ? AND dim = ? "
                    f"AND start >= ? AND start <= ? AND expires > ? {skip}",
                    (period, dim, min(starts), max(starts), int(time.time()), *marks)):
                if start in got:
                    got[start][field] = amount
            return [got[s] for s in starts]
        return await self._run(query)

    async def rollup_sum(self, period, dim, starts):
        if not starts:
            return {}

        def query(db):
            # The buckets are consecutive: one range of the primary key, summed in SQLite.
            marks = ", ".join("?" * len(starts))
            return dict(db.execute(
                f"SELECT field, SUM(amount) FROM rollups WHERE period = ? AND dim = ? AND "
                f"start IN ({marks}) AND expires > ? GROUP BY field",
                (period, dim, *starts, int(time.time()))).fetchall())
        return await self._run(query)

    async def rollup_rebuild(self, since, until, now):
        def rebuild(db):
            # The write lock for the whole day: another process's ledger batch waits (and
            # is retried if it waits past its busy timeout) instead of adding increments
            # to a bucket between its clearing and its rebuilding.
            def tx():
                total: dict = {}
                rows = 0
                cur = db.execute(f"SELECT {', '.join(LEDGER_FIELDS)} FROM ledger WHERE "
                                 "ts >= ? AND ts < ?", (since, until))
                while page := cur.fetchmany(REBUILD_PAGE):
                    fold(total, (dict(zip(LEDGER_FIELDS, r)) for r in page), now)
                    rows += len(page)
                db.execute("DELETE FROM rollups WHERE start >= ? AND start < ?",
                           (int(since), int(until)))
                _each(db, _ROLLUP_ADD, rollup_rows(total))
                return rows
            return self._tx(db, tx)
        return await self._run(rebuild)

    async def ledger_page(self, *, since=None, until=None, key=None, team=None, model=None,
                          status=None, request_id=None, cursor=None, limit=100):
        limit = max(1, min(int(limit), PAGE_MAX))
        where, args = [], []
        for name, value in (("key", key), ("team", team), ("model", model),
                            ("status", status), ("request_id", request_id)):
            if value is not None:
                where.append(f"{_FILTER_COLUMNS[name]} = ?")
                args.append(value)
        if since is not None:
            where.append("ts >= ?")
            args.append(since)
        if until is not None:
            where.append("ts < ?")
            args.append(until)
        if cursor:
            ts, _, rid = cursor.partition(":")
            where.append("(ts < ? OR (ts = ? AND id < ?))")
            args += [float(ts), float(ts), int(rid)]
        sql = (f"SELECT id, {', '.join(LEDGER_FIELDS)} FROM ledger "
               f"{'WHERE ' + ' AND '.join(where) if where else ''} "
               "ORDER BY ts DESC, id DESC LIMIT ?")

        def query(db):
            return db.execute(sql, (*args, limit + 1)).fetchall()
        got = await self._run(query)
        rows = [_row(r[1:]) for r in got[:limit]]
        nxt = f"{got[limit - 1][1]!r}:{got[limit - 1][0]}" if len(got) > limit else None
        return rows, nxt

    async def ledger(self, since=None, until=None):
        def query(db):
            cur = db.execute(f"SELECT {', '.join(LEDGER_FIELDS)} FROM ledger WHERE ts >= ? "
                             "AND ts < ? ORDER BY ts, id",
                             (since if since is not None else float("-inf"),
                              until if until is not None else float("inf")))
            return cur.fetchall()
        return [_row(r) for r in await self._run(query)]


def _each(db, sql: str, rows):
    # Not executemany: CPython's executemany fails with "bad parameter or other API misuse"
    # when another process changed the schema since the statement was cached (seen with
    # two gateways creating one file at once); execute() re-prepares as SQLite intends.
    for row in rows:
        db.execute(sql, row)


_ROWS_PER_STATEMENT = 32  # x 24 ledger columns: below SQLite's oldest limit of 999 variables


@functools.lru_cache(maxsize=32)
def _multi_row(sql: str, n: int) -> str:
    """`sql`, an INSERT of one `VALUES (?, ...)` row, for `n` rows."""
    head, values, tail = sql.partition("VALUES ")
    end = tail.index(")") + 1
    return head + values + ", ".join([tail[:end]] * n) + tail[end:]


def _each_batched(db, sql: str, rows):
    """_each with up to 32 rows per statement (32, 16, ..., 1: a few statement texts, each
    prepared once in sqlite3's cache): a statement's own cost was most of a ledger row's
    (bench: 16.6 -> 11.3 us a row in batches of 50)."""
    i, n, size = 0, len(rows), _ROWS_PER_STATEMENT
    while i < n:
        while size > n - i:
            size //= 2
        if size == 1:
            db.execute(sql, rows[i])
        else:
            db.execute(_multi_row(sql, size), [v for row in rows[i:i + size] for v in row])
        i += size


def _row(values) -> dict:
    row = dict(zip(LEDGER_FIELDS, values))
    for flag in ("stream", "estimated", "unpriced"):
        if row.get(flag) is not None:
            row[flag] = bool(row[flag])
    return row


def rollup_rows(incs: dict) -> list[tuple]:
    """Rows of _ROLLUP_ADD for rollups.increments(...) (also used by bench/rollups.py)."""
    out = []
    for (period, dim, start), fields in incs.items():
        expires = start + PERIODS[period][0] + PERIODS[period][2]
        out += [(period, dim, start, f, v, expires) for f, v in fields.items()]
    return out
