"""The durable backend: PostgreSQL (asyncpg, a connection pool), for several gateways that
keep what must last — the usage ledger, keys, teams and the audit log, stored responses,
files, conversations — in a relational database.

The schema is freeapi's own, migrated at first use under an advisory lock
(postgres_schema.py). Every decision is one transaction: a counter check is one call of
the function freeapi_hits (transaction-scoped advisory locks on the keys in hash order, so
two gateways never deadlock, and the server's clock, so gateways whose clocks disagree
share one window); expiry uses the server's clock too. The ledger is written by the
Store base class's background queue, one multi-row INSERT per batch with its rollup
increments in the same transaction (postgres_rollups.py); while the database is down those
entries wait in memory, up to `state.ledger_buffer`.

With `state.redis_url` beside `database_url` (`hot`), the hot shared state — limit
counters, vendor key health, free-quota marks and reasoning memory — goes to Redis, and
PostgreSQL keeps the records, the usage rollups among them.

asyncpg was measured against psycopg 3 (bench/postgres_driver.py): equal single-statement
latency here, twice the batch-insert throughput.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time

from freeapi.store import BIG_JSON, BLOB_PIECE, BUCKETS, LEDGER_FIELDS, Store, StoreError
from freeapi.store.postgres_admin import PostgresAdmin
from freeapi.store.postgres_rollups import PostgresRollups, add_rollups
from freeapi.store.postgres_schema import LEDGER_TYPES, NewerSchema, migrate
from freeapi.store.postgres_tallies import PostgresTallies

log = logging.getLogger("freeapi.store")

# The kv namespaces that are hot shared state rather than records: with Redis beside
# PostgreSQL they live in Redis (kh: key health, fq: used-up free quotas, rz: reasoning).
HOT_NAMESPACES = frozenset({"kh", "fq", "rz"})
_NOW = "extract(epoch FROM clock_timestamp())"
_SWEEP_EVERY = 60.0
_PRUNE_BATCH = 5000  # ledger rows per DELETE: each one a short transaction
_INSERT_BATCH = 2000  # ledger rows per INSERT
_INSERT = (f"INSERT INTO ledger ({', '.join(LEDGER_FIELDS)}) SELECT * FROM unnest("
           + ", ".join(f"${i + 1}::{t}[]" for i, t in enumerate(LEDGER_TYPES.values()))
           + ")")


def _dumps(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


async def _loads(raw: str):
    if len(raw) < BIG_JSON:
        return json.loads(raw)
    return await asyncio.get_running_loop().run_in_executor(None, json.loads, raw)


def _coerce(value, kind: str):
    # A ledger value of an unexpected type must not fail the whole batch forever.
    if value is None:
        return None
    try:
        if kind == "text":
            return value if isinstance(value, str) else _dumps(value)
        if kind == "bool":
            return bool(value)
        if kind == "float8":
            return float(value)
        return int(round(value)) if not isinstance(value, bool) else int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _masked(url: str) -> str:
    """The URL as logs and errors show it: a password (in the authority or a `password=`
    query parameter) replaced by ***."""
    url = re.sub(r"://([^:/@]*):[^@/]*@", r"://\1:***@", url)
    return re.sub(r"([?&]password=)[^&]*", r"\1***", url, flags=re.I)


class PostgresStore(PostgresAdmin, PostgresRollups, PostgresTallies, Store):
    kind = "postgres"
    shared = True

    def __init__(self, url: str, timeout: float = 5.0, pool_size: int = 10,
                 ledger_buffer: int | None = None, hot: Store | None = None):
        super().__init__()
        if ledger_buffer is not None:
            self.max_pending = ledger_buffer
        self.url, self.timeout, self.pool_size, self.hot = url, timeout, pool_size, hot
        self._pool = None
        self._opening: asyncio.Lock | None = None
        self.migrated: list[int] = []  # the migrations this process applied (tests)
        self._swept = time.monotonic()

    def describe(self) -> str:
        also = f", hot state in {self.hot.describe()}" if self.hot else ""
        return f"PostgreSQL {_masked(self.url)}{also}"

    # -- the pool -----------------------------------------------------------------------

    async def _open(self):
        import asyncpg
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._pool is None:
                pool = await asyncpg.create_pool(self.url, min_size=1,
                                                 max_size=self.pool_size,
                                                 timeout=self.timeout,
                                                 command_timeout=self.timeout)
                try:
                    async with pool.acquire() as con:
                        self.migrated = await migrate(con)
                except BaseException:
                    pool.terminate()  # at once: this may be a cancellation (the timeout)
                    raise
                self._pool = pool
        return self._pool

    async def _run(self, fn, retry: bool = True, timeout: float | None = None):
        """fn(connection) on a pooled connection, within state.timeout (or `timeout`);
        every failure is a StoreError. A connection the server closed (it restarted) is
        noticed when used: that first use is tried once more on a fresh one."""
        import asyncpg
        stale = (asyncpg.ConnectionDoesNotExistError, asyncpg.InterfaceError,
                 ConnectionResetError)
        for attempt in (0, 1) if retry else (1,):
            try:
                pool = self._pool or await asyncio.wait_for(self._open(), self.timeout)
                return await asyncio.wait_for(self._use(pool, fn), timeout or self.timeout)
            except stale as e:
                if attempt == 0:
                    continue
                raise StoreError(f"PostgreSQL {_masked(self.url)}: {e}") from None
            except NewerSchema as e:
                raise StoreError(f"PostgreSQL {_masked(self.url)}: {e}") from None
            except (asyncpg.PostgresError, OSError, asyncio.TimeoutError) as e:
                raise StoreError(f"PostgreSQL {_masked(self.url)}: cannot reach or "
                                 f"refused: {e or type(e).__name__}") from None

    @staticmethod
    async def _use(pool, fn):
        async with pool.acquire() as con:
            return await fn(con)

    def _maybe_sweep(self):
        # Expired counters, records and conversations go in one background sweep a minute.
        if time.monotonic() - self._swept < _SWEEP_EVERY:
            return
        self._swept = time.monotonic()

        async def sweep(con):
            async with con.transaction():
                await con.execute(f"DELETE FROM counters WHERE expires <= ({_NOW} * 1000)")
                await con.execute(f"DELETE FROM tallies WHERE expires <= ({_NOW} * 1000)")
                await con.execute(f"DELETE FROM kv WHERE expires <= {_NOW}")
                await con.execute(f"DELETE FROM blobs WHERE expires <= {_NOW}")
                await con.execute(f"DELETE FROM conversation_turns WHERE conv IN (SELECT id "
                                  f"FROM conversations WHERE expires <= {_NOW})")
                await con.execute(f"DELETE FROM conversations WHERE expires <= {_NOW}")
                await con.execute(f"DELETE FROM rollups WHERE expires <= {_NOW}")
        self.spawn(self._run(sweep), "state: sweeping expired records failed")

    # -- counters -----------------------------------------------------------------------

    async def hits(self, hits):
        if self.hot is not None:
            return await self.hot.hits(hits)
        hits = list(hits)
        args = ([h.key for h in hits], [max(0, int(h.amount)) for h in hits],
                [max(1, int(h.window * 1000)) for h in hits],
                [-1 if h.limit is None else int(h.limit) for h in hits], BUCKETS)
        # One call (postgres_schema.py freeapi_hits): one round trip, one transaction.
        row = await self._run(lambda con: con.fetchrow(
            "SELECT * FROM freeapi_hits($1::text[], $2::int8[], $3::int8[], $4::int8[], "
            "$5)", *args))
        self._maybe_sweep()
        return bool(row[0]), row[1] / 1000, int(row[2])

    # -- ledger -------------------------------------------------------------------------

    async def _append(self, entries):
        for at in range(0, len(entries), _INSERT_BATCH):
            part = entries[at:at + _INSERT_BATCH]
            columns = [[_coerce(e.get(f), t) for e in part] for f, t in LEDGER_TYPES.items()]

            async def write(con, part=part, columns=columns):
                async with con.transaction():  # the rows and their rollups, or neither
                    await con.execute(_INSERT, *columns)
                    await add_rollups(con, part)
            # Not retried on a stale connection: the rows may have been written.
            await self._run(write, retry=False)
        self._maybe_sweep()  # here too: with Redis beside it, hits() never comes here

    async def ledger(self, since=None, until=None):
        rows = await self._run(lambda con: con.fetch(
            f"SELECT {', '.join(LEDGER_FIELDS)} FROM ledger WHERE ts >= $1 AND ts < $2 "
            "ORDER BY ts, id", float("-inf") if since is None else float(since),
            float("inf") if until is None else float(until)))
        return [dict(zip(LEDGER_FIELDS, r)) for r in rows]

    async def prune_ledger(self, before):
        """In batches of _PRUNE_BATCH rows by the ts index: each DELETE is its own short
        transaction, so writers of new rows never wait long."""
        total = 0
        while True:
            n = await self._run(lambda con: con.execute(
                "DELETE FROM ledger WHERE id IN (SELECT id FROM ledger WHERE ts < $1 "
                "ORDER BY ts LIMIT $2)", float(before), _PRUNE_BATCH))
            n = int(n.split()[-1])
            total += n
            if n < _PRUNE_BATCH:
                return total

    # -- conversations ------------------------------------------------------------------

    async def conversation_get(self, cid, owner):
        async def get(con):
            async with con.transaction(isolation="repeatable_read", readonly=True):
                ok = await con.fetchval(f"SELECT owner = $2 FROM conversations WHERE id = $1 "
                                        f"AND expires > {_NOW}", cid, owner)
                if not ok:
                    return None
                return [r[0] for r in await con.fetch(
                    "SELECT data FROM conversation_turns WHERE conv = $1 ORDER BY seq", cid)]
        datas = await self._run(get)
        return None if datas is None else [json.loads(d) for d in datas]

    async def conversation_append(self, cid, owner, turns, ttl_s, max_turns, max_bytes):
        datas = [_dumps(t) for t in turns]

        async def append(con):
            async with con.transaction():
                await con.execute("INSERT INTO conversations VALUES ($1, $2, 0) ON CONFLICT "
                                  "(id) DO NOTHING", cid, owner)
                row = await con.fetchrow(f"SELECT owner, expires <= {_NOW} FROM "
                                         "conversations WHERE id = $1 FOR UPDATE", cid)
                if row[1]:  # expired (or just made): the id starts afresh
                    await con.execute("DELETE FROM conversation_turns WHERE conv = $1", cid)
                elif row[0] != owner:
                    return False
                await con.execute(f"UPDATE conversations SET owner = $2, expires = {_NOW} + "
                                  "$3 WHERE id = $1", cid, owner, float(ttl_s))
                seq = await con.fetchval("SELECT COALESCE(MAX(seq), 0) FROM "
                                         "conversation_turns WHERE conv = $1", cid)
                await con.execute("INSERT INTO conversation_turns SELECT $1, $2 + n, d FROM "
                                  "unnest($3::text[]) WITH ORDINALITY AS t(d, n)",
                                  cid, seq, datas)
                sizes = await con.fetch("SELECT seq, octet_length(data) FROM "
                                        "conversation_turns WHERE conv = $1 ORDER BY seq "
                                        "DESC", cid)
                total = 0
                for n, (s, size) in enumerate(sizes):  # newest first; the newest stays
                    if n > 0 and (n >= max_turns or total + size > max_bytes):
                        await con.execute("DELETE FROM conversation_turns WHERE conv = $1 "
                                          "AND seq <= $2", cid, s)
                        break
                    total += size
                return True
        return await self._run(append)

    async def conversation_delete(self, cid, owner):
        async def delete(con):
            async with con.transaction():
                gone = await con.fetchval(f"DELETE FROM conversations WHERE id = $1 AND "
                                          f"owner = $2 AND expires > {_NOW} RETURNING 1",
                                          cid, owner)
                if gone:
                    await con.execute("DELETE FROM conversation_turns WHERE conv = $1", cid)
                return bool(gone)
        return await self._run(delete)

    # -- small expiring records ---------------------------------------------------------

    def _hot(self, ns: str) -> bool:
        return self.hot is not None and ns in HOT_NAMESPACES

    async def kv_put(self, ns, name, value, ttl_s, group=None):
        if self._hot(ns):
            return await self.hot.kv_put(ns, name, value, ttl_s, group)
        self._maybe_sweep()
        data = _dumps(value)
        # A name keeps the group it was put with while it lives.
        await self._run(lambda con: con.execute(
            f"INSERT INTO kv VALUES ($1, $2, $3, {_NOW} + $4, $5) ON CONFLICT (ns, name) DO "
            "UPDATE SET data = excluded.data, grp = CASE WHEN kv.expires > "
            f"{_NOW} THEN COALESCE(kv.grp, excluded.grp) ELSE excluded.grp END, "
            "expires = excluded.expires", ns, name, data, float(ttl_s), group))

    async def kv_group(self, ns, group):
        if self._hot(ns):
            return await self.hot.kv_group(ns, group)
        rows = await self._run(lambda con: con.fetch(
            f"SELECT name, data FROM kv WHERE ns = $1 AND grp = $2 AND expires > {_NOW}",
            ns, group))
        return {r[0]: await _loads(r[1]) for r in rows}

    async def kv_get(self, ns, names):
        if self._hot(ns):
            return await self.hot.kv_get(ns, names)
        if not names:
            return {}
        rows = await self._run(lambda con: con.fetch(
            f"SELECT name, data FROM kv WHERE ns = $1 AND name = ANY($2::text[]) AND "
            f"expires > {_NOW}", ns, list(names)))
        return {r[0]: await _loads(r[1]) for r in rows}

    async def kv_delete(self, ns, name):
        if self._hot(ns):
            return await self.hot.kv_delete(ns, name)
        return bool(await self._run(lambda con: con.fetchval(
            f"DELETE FROM kv WHERE ns = $1 AND name = $2 RETURNING expires > {_NOW}",
            ns, name)))

    # -- file contents: substring() of an uncompressed (EXTERNAL) bytea reads only the
    # TOAST chunks of that piece.

    async def blob_put(self, ns, name, data, ttl_s):
        await self._run(lambda con: con.execute(
            f"INSERT INTO blobs VALUES ($1, $2, $3, {_NOW} + $4) ON CONFLICT (ns, name) DO "
            "UPDATE SET data = excluded.data, expires = excluded.expires",
            ns, name, bytes(data), float(ttl_s)))

    async def blob_read(self, ns, name, offset, size):
        size = min(size, BLOB_PIECE)
        if size <= 0:
            return b""
        got = await self._run(lambda con: con.fetchval(
            f"SELECT substring(data FROM $3 FOR $4) FROM blobs WHERE ns = $1 AND name = $2 "
            f"AND expires > {_NOW}", ns, name, int(offset) + 1, int(size)))
        return got or b""

    async def blob_delete(self, ns, name):
        return bool(await self._run(lambda con: con.fetchval(
            "DELETE FROM blobs WHERE ns = $1 AND name = $2 RETURNING 1", ns, name)))

    # -- lifecycle ----------------------------------------------------------------------

    async def ping(self):
        await self._run(lambda con: con.fetchval("SELECT 1"))
        if self.hot is not None:
            await self.hot.ping()

    async def aclose(self):
        """Write what is queued, then close the pool (waiting for calls in flight)."""
        try:
            await asyncio.wait_for(self.settle(), 5)
        except asyncio.TimeoutError:
            pass
        await self.flush()
        self._stop_flusher()
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), self.timeout)
            except (asyncio.TimeoutError, OSError):
                pool.terminate()
        if self.hot is not None:
            self.hot.close()

    def close(self):
        """Close now: connections in use are cut (see aclose)."""
        self._stop_flusher()
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.terminate()
        if self.hot is not None:
            self.hot.close()
