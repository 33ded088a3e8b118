"""Shared state behind one small async interface: SQLite by default, Redis for several
gateway instances.

What lives here is what must survive a restart or be shared between processes: windowed
counters for gateway-key limits, money tallies for budgets (tallies.py), the usage
ledger, and conversations. A request waits for the store only when it needs an answer
from it (a key with limits or a budget: one call; a conversation: one read); the ledger,
token charges, settlements and new turns are written in the background.

Counters are sliding windows kept in BUCKETS buckets of `window/BUCKETS` each: a hit
counts for between 90% and 100% of the window, memory stays bounded however busy a key
is, and `retry_after` is the time until enough of the oldest buckets have expired.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from freeapi.rollups import is_detail
from freeapi.store.ledger_queue import MAX_PENDING, LedgerQueue
from freeapi.store.tallies import Tallies, Tally  # noqa: F401  (Store's base; re-exported)

log = logging.getLogger("freeapi.store")

BUCKETS = 10
# The largest piece of a blob one store call moves (see Store.blob_put).
BLOB_PIECE = 256 << 10
# JSON records longer than this are decoded on a worker thread, not the event loop.
BIG_JSON = 256 << 10

# The ledger's columns (SQLite) / JSON fields (Redis), in the order `freeapi usage` reads.
# Fields added after the first release go at the end (SQLite adds them as columns to an
# existing file; see sqlite.py).
LEDGER_FIELDS = ("ts", "key", "vendor_key", "provider", "model", "upstream_model", "status",
                 "error", "stream", "latency_ms", "ttfb_ms", "prompt_tokens",
                 "completion_tokens", "cached_tokens", "reasoning_tokens", "total_tokens",
                 "endpoint", "request_id", "estimated", "key_id", "team", "cost", "currency",
                 "unpriced")
# What GET /admin/requests may filter the raw log by (each backed by an index on SQLite).
LEDGER_FILTERS = ("key", "team", "model", "status", "request_id")
PAGE_MAX = 500  # raw log rows one page may hold


class StoreError(Exception):
    """The state backend could not answer (unreachable, timed out, refused)."""


@dataclass(frozen=True)
class Hit:
    """Add `amount` to the sliding window counter `key` of `window` seconds, if the total
    stays within `limit` (None: no limit, always added). amount 0 asks whether any room
    is left (total < limit) without adding anything."""
    key: str
    amount: int
    window: float
    limit: int | None = None


def bucket_width_ms(window: float) -> int:
    return max(1, int(window * 1000) // BUCKETS)


def check_window(buckets: list[tuple[int, int]], now_ms: int, hit: Hit) -> float | None:
    """Seconds to wait before `hit` fits in a window holding `buckets` [(index, amount)]
    (None: it fits now). Shared by both backends; Redis runs the same rule in Lua."""
    if hit.limit is None:
        return None
    w = bucket_width_ms(hit.window)
    first = now_ms // w - BUCKETS + 1
    live = sorted((b, v) for b, v in buckets if b >= first)
    total = sum(v for _, v in live)
    need = total + hit.amount - hit.limit if hit.amount > 0 else total - hit.limit + 1
    if need <= 0:
        return None
    freed = 0
    for b, v in live:
        freed += v
        if freed >= need:
            return max(0.001, ((b + BUCKETS) * w - now_ms) / 1000)
    return hit.window  # more than the limit at once: never fits; say "a whole window"


class Store(LedgerQueue, Tallies):
    """The interface. Subclasses implement the underscored methods; the ledger's background
    writing is LedgerQueue's (ledger_queue.py) so every backend batches the same way."""

    kind = "?"

    def __init__(self):
        super().__init__()
        self._tasks: set[asyncio.Task] = set()

    # -- counters -----------------------------------------------------------------------

    async def hit(self, key: str, amount: int, window_s: float,
                  limit: int | None) -> tuple[bool, float]:
        """One windowed counter: (allowed, seconds to wait when not)."""
        ok, wait, _ = await self.hits([Hit(key, amount, window_s, limit)])
        return ok, wait

    async def hits(self, hits: list[Hit]) -> tuple[bool, float, int]:
        """Several counters, all or nothing and atomically (across processes sharing the
        backend): when one is over its limit nothing is added. Returns (allowed, seconds to
        wait, index of the first hit over its limit or -1)."""
        raise NotImplementedError

    def spawn(self, coro, failure: str) -> None:
        """Run a store call in the background; a StoreError is logged as `failure: ...`."""
        async def run():
            try:
                await coro
            except StoreError as e:
                log.error("%s: %s", failure, str(e))
        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settle(self) -> None:
        """Wait for the background calls in flight (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- the usage ledger ---------------------------------------------------------------

    async def ledger_append(self, entries: list[dict]) -> None:
        """Write entries now and wait for it (tests, imports); see record()."""
        await self._append(entries)

    async def ledger(self, since: float | None = None, until: float | None = None) -> list[dict]:
        """Entries with since <= ts < until (unix seconds), oldest first."""
        raise NotImplementedError

    async def prune_ledger(self, before: float) -> int:
        """Delete entries older than `before`; returns how many (approximate on Redis)."""
        raise NotImplementedError

    async def _append(self, entries: list[dict]) -> None:
        """Write the entries AND apply their rollup increments (freeapi.rollups.increments)
        in one transaction / script: the aggregates never disagree with the raw log."""
        raise NotImplementedError

    # -- rollups and the paged raw log (freeapi/rollups.py) -------------------------------
    # Every figure the status page, the admin API and reports show is read here, never by
    # scanning the raw log: a backend keeps the buckets of rollups.PERIODS, each
    # {value SEP field: amount}, updated by _append, expiring `keep` seconds after their end.

    async def rollup_read(self, period: str, dim: str, starts: list[int]) -> list[dict]:
        """The buckets of (`period`, `dim`) starting at `starts` (unix s, aligned), in that
        order, each {value SEP field: amount} ({} where there is none). One round trip."""
        raise NotImplementedError

    async def rollup_read_counts(self, period: str, dim: str, starts: list[int]) -> list[dict]:
        """rollup_read without the fields of rollups.DETAIL_PREFIXES (the model
        dimension's latency histograms and error classes, most of its buckets' size): what
        counts and spend over time need (GET /admin/spend). Backends filter in their query."""
        return [{k: v for k, v in b.items() if not is_detail(k)}
                for b in await self.rollup_read(period, dim, starts)]

    async def rollup_sum(self, period: str, dim: str, starts: list[int]) -> dict:
        """The buckets of (`period`, `dim`) at `starts` summed into one {value SEP field:
        amount}, by the backend (SQL GROUP BY, a Lua loop): the caller gets one small
        answer however many buckets and fields were read."""
        total: dict = {}
        for bucket in await self.rollup_read(period, dim, starts):
            for k, v in bucket.items():
                total[k] = total.get(k, 0) + v
        return total

    async def rollup_add(self, entries: list[dict]) -> None:
        """Apply entries' rollup increments without writing them to the raw log (backfills
        from an older file, benchmarks)."""
        raise NotImplementedError

    async def rollup_rebuild(self, since: float, until: float, now: float) -> int:
        """Replace the rollup buckets that start in [since, until) (whole days, so every
        period's buckets fall wholly inside) with those of the ledger rows in that range,
        read a page at a time (memory does not grow with the rows), leaving out buckets
        already expired at `now`. Atomic against ledger writes of other processes: a row
        written meanwhile is counted once, never twice. Returns the rows read.
        freeapi/rollups_rebuild.py calls it a day at a time."""
        raise NotImplementedError

    async def ledger_page(self, *, since: float | None = None, until: float | None = None,
                          key: str | None = None, team: str | None = None,
                          model: str | None = None, status: int | None = None,
                          request_id: str | None = None, cursor: str | None = None,
                          limit: int = 100) -> tuple[list[dict], str | None]:
        """Raw entries, newest first, filtered (key = the key id, team = the team id; all
        given filters must match), at most `limit` (<= PAGE_MAX), and the cursor of the
        next page (None: no more). `cursor` is what the previous page returned. Reads an
        index, never the whole log (Redis: see its docstring for the bound)."""
        raise NotImplementedError

    # -- conversations ------------------------------------------------------------------

    async def conversation_get(self, cid: str, owner: str) -> list | None:
        """The stored turns (oldest first; each whatever JSON value was appended), or None
        when there is no such live conversation for this owner."""
        raise NotImplementedError

    async def conversation_append(self, cid: str, owner: str, turns: list, ttl_s: float,
                                  max_turns: int, max_bytes: int) -> bool:
        """Append turns (creating the conversation), renew its TTL and drop the oldest turns
        beyond `max_turns` or `max_bytes` of JSON (the newest turn always stays). False,
        and nothing changed, when the id belongs to another owner."""
        raise NotImplementedError

    async def conversation_delete(self, cid: str, owner: str) -> bool:
        raise NotImplementedError

    # -- vendor key health (freeapi/healthsync.py) ---------------------------------------

    @property
    def shared(self) -> bool:
        """Whether other processes can see this store (Redis, an SQLite file)."""
        return False

    async def health_put(self, name: str, record: dict, ttl_s: float) -> None:
        """Store one key's health `record` (JSON) under `name`, replacing any, gone by
        itself after `ttl_s` seconds."""
        await self.kv_put("kh", name, record, ttl_s)

    async def health_get(self, names: list[str]) -> dict[str, dict]:
        """The live records among `names`."""
        return await self.kv_get("kh", names)

    # -- small expiring records (key health, reasoning memory, stored responses) ---------

    async def kv_put(self, ns: str, name: str, value, ttl_s: float,
                     group: str | None = None) -> None:
        """Store the JSON `value` under (`ns`, `name`), replacing any; it is gone by itself
        after `ttl_s` seconds. `ns` is a short namespace of the feature that owns it.
        `group` (e.g. one caller's files) makes the record one of those `kv_group` lists;
        record and group entry are written in one step, so writers racing on one group
        (two gateways) never lose an entry. A name keeps the group it was put with."""
        raise NotImplementedError

    async def kv_group(self, ns: str, group: str) -> dict:
        """{name: value} for the live records put with `group` in `ns` (deleted and
        expired ones are not there)."""
        raise NotImplementedError

    async def kv_get(self, ns: str, names: list[str]) -> dict:
        """{name: value} for the live records among `names` in `ns`."""
        raise NotImplementedError

    async def kv_delete(self, ns: str, name: str) -> bool:
        """Delete one record; True when a live one was there."""
        raise NotImplementedError

    # -- file contents (freeapi/modalities/files.py) -------------------------------------
    # Bytes kept apart from their JSON record, so reading a file's metadata never loads its
    # content, and read in bounded pieces, so one caller's big file never holds the
    # backend's one connection (Redis) or thread (SQLite) for long.

    async def blob_put(self, ns: str, name: str, data: bytes, ttl_s: float) -> None:
        """Store raw bytes under (`ns`, `name`), replacing any, gone after `ttl_s`
        seconds (Redis: in pieces of at most BLOB_PIECE bytes, one command each)."""
        raise NotImplementedError

    async def blob_read(self, ns: str, name: str, offset: int, size: int) -> bytes:
        """Up to `size` bytes of the live blob from `offset` (callers ask for at most
        BLOB_PIECE); b"" when there is no such blob or `offset` is at its end."""
        raise NotImplementedError

    async def blob_delete(self, ns: str, name: str) -> bool:
        raise NotImplementedError

    # -- lifecycle ----------------------------------------------------------------------

    async def ping(self) -> None:
        """Raise StoreError unless the backend answers."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Write what is queued, then close."""
        try:
            await asyncio.wait_for(self.settle(), 5)
        except asyncio.TimeoutError:
            pass
        await self.flush()
        self.close()

    def close(self) -> None:
        """Close now (what is still queued is lost: see aclose)."""
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


def open_store(state) -> Store:
    """The backend config `state` asks for (config.StateConfig); nothing is opened or
    connected until first used, so a parent process can build it before forking workers."""
    buffer = getattr(state, "ledger_buffer", MAX_PENDING)
    hot = None
    if state.redis_url:
        from freeapi.store.redis import RedisStore
        hot = RedisStore(state.redis_url, prefix=state.prefix, timeout=state.timeout)
        hot.max_pending = buffer
    if getattr(state, "database_url", None):
        try:
            import asyncpg  # noqa: F401  (an optional extra)
        except ImportError:
            from freeapi.configbase import ConfigError
            raise ConfigError("state.database_url", "needs the PostgreSQL driver: pip "
                                                    "install 'freeapi[postgres]'") from None
        from freeapi.store.postgres import PostgresStore
        return PostgresStore(state.database_url, timeout=state.timeout,
                             pool_size=state.pool_size, ledger_buffer=buffer, hot=hot)
    if hot is not None:
        return hot
    from freeapi.store.sqlite import SQLiteStore
    store = SQLiteStore(state.path, timeout=state.timeout)
    store.max_pending = buffer
    return store
