"""What is PostgreSQL's own in the state store (the shared interface is in test_store.py):
migrations applied once however many gateways start at once, a newer schema refused, the
ledger pruned in short batches, and the ledger buffer's bound while the database is
unreachable, its losses counted; rollups written in the ledger batch's transaction,
without deadlocks between gateways, and the raw log's key filter on its index."""

import asyncio
import random
import time

import asyncpg
import pytest

from freeapi.store import StoreError
from freeapi.store import postgres as pg_module
from freeapi.store.postgres import PostgresStore
from freeapi.store.postgres_schema import LATEST, MIGRATIONS
from tests.conftest import free_port
from tests.test_store import entry


async def test_concurrent_startups_migrate_once(pg_url):
    stores = [PostgresStore(pg_url) for _ in range(6)]
    try:
        await asyncio.gather(*(s.ping() for s in stores))  # every one of them succeeds
        applied = [v for s in stores for v in s.migrated]
        assert sorted(applied) == [v for v, _, _ in MIGRATIONS]  # each by one gateway
        con = await asyncpg.connect(pg_url)
        try:
            rows = await con.fetch("SELECT version FROM freeapi_migrations")
        finally:
            await con.close()
        assert sorted(r[0] for r in rows) == [v for v, _, _ in MIGRATIONS]
        # A later start finds nothing to do.
        again = PostgresStore(pg_url)
        await again.ping()
        assert again.migrated == []
        again.close()
    finally:
        for s in stores:
            s.close()


async def test_a_database_migrated_by_a_newer_freeapi_is_refused(pg_url):
    first = PostgresStore(pg_url)
    await first.ping()
    first.close()
    con = await asyncpg.connect(pg_url)
    await con.execute("INSERT INTO freeapi_migrations (version, name) VALUES ($1, 'future')",
                      LATEST + 1)
    await con.close()
    later = PostgresStore(pg_url)
    with pytest.raises(StoreError, match="newer freeapi"):
        await later.ping()
    later.close()


async def test_pruning_deletes_in_short_batches(pg_url, monkeypatch):
    monkeypatch.setattr(pg_module, "_PRUNE_BATCH", 4)
    store = PostgresStore(pg_url)
    t = 1_800_000_000.0
    await store.ledger_append([entry(t + i) for i in range(11)] + [entry(t + 100)])
    deletes = []
    real = store._run

    async def counting(fn, retry=True):
        deletes.append(fn)
        return await real(fn, retry)
    store._run = counting
    assert await store.prune_ledger(t + 50) == 11
    assert len(deletes) == 3  # 4 + 4 + 3 rows: three short transactions, not one long
    store._run = real
    assert [r["ts"] for r in await store.ledger()] == [t + 100]
    store.close()


async def test_ledger_rows_wait_within_the_buffer_and_the_loss_beyond_is_counted(caplog):
    """The database is unreachable; rows recorded while a write attempt is in flight join
    the ones it carried when it fails: the buffer keeps the newest `ledger_buffer` and
    counts every one dropped."""
    store = PostgresStore(f"postgresql://postgres@127.0.0.1:{free_port()}/x", timeout=1,
                          ledger_buffer=3)
    dropped = []
    store.on_ledger_dropped = dropped.append
    attempt, failed = asyncio.Event(), asyncio.Event()
    real = store._append

    async def gated(entries):
        await attempt.wait()
        try:
            await real(entries)  # the real driver against a closed port
        finally:
            failed.set()
    store._append = gated
    t = 1_800_000_000.0
    for i in range(3):
        store.record(entry(t + i))
    await asyncio.sleep(0)  # the writer takes these three and waits on the database
    store.record(entry(t + 3))
    store.record(entry(t + 4))
    attempt.set()
    await failed.wait()
    await asyncio.sleep(0)
    assert [e["ts"] for e in store._pending] == [t + 2, t + 3, t + 4]
    assert sum(dropped) == 2
    assert "state.ledger_buffer" in caplog.text
    with pytest.raises(StoreError, match="cannot reach"):
        await store.hit("k", 1, 60, 5)
    store.close()


async def test_expired_records_are_swept_also_with_redis_beside_it(pg_url, monkeypatch):
    """With Redis beside PostgreSQL the counters (whose checks used to trigger the sweep)
    never come to PostgreSQL: expired records, files and conversations are swept all the
    same."""
    from freeapi.store.redis import RedisStore
    from tests.helpers import REDIS_URL
    hot = RedisStore(REDIS_URL, prefix=f"freeapi-test:{free_port()}:{id(pg_url)}:")
    store = PostgresStore(pg_url, hot=hot)
    await store.kv_put("rs", "old", {"n": 1}, 0.01)
    await store.blob_put("fib", "old", b"x" * 10, 0.01)
    assert await store.conversation_append("c", "o", ["t"], 0.01, 10, 1000)
    await store.rollup_add([entry(time.time() - 200 * 86400)])  # buckets long expired
    await asyncio.sleep(0.05)
    monkeypatch.setattr(pg_module, "_SWEEP_EVERY", 0.0)
    await store.hit("k", 1, 60, 5)  # to Redis
    await store.kv_put("rs", "new", {"n": 2}, 60)
    await store.settle()
    con = await asyncpg.connect(pg_url)
    try:
        counts = [await con.fetchval(f"SELECT count(*) FROM {t}") for t in
                  ("kv", "blobs", "conversations", "conversation_turns", "counters",
                   "rollups")]
    finally:
        await con.close()
    assert counts == [1, 0, 0, 0, 0, 0]
    await hot.delete_all()
    store.close()


async def test_a_ledger_batch_and_its_rollups_are_one_transaction(pg_url, monkeypatch):
    """When the rollups' write fails the batch's rows are not written either: the
    aggregates never disagree with the log."""
    from freeapi import rollups as R
    from freeapi.store import postgres_rollups
    store = PostgresStore(pg_url)
    t = time.time()
    monkeypatch.setattr(postgres_rollups, "_ROLLUP_ADD", "SELECT no_such_column")
    with pytest.raises(StoreError):
        await store.ledger_append([entry(t)])
    assert await store.ledger() == []
    monkeypatch.undo()
    await store.ledger_append([entry(t)])
    [day] = await store.rollup_read("d", "all", R.last("d", 1, t))
    assert R.merge([day])[""]["n"] == 1 and len(await store.ledger()) == 1
    store.close()


async def test_gateways_adding_to_the_same_buckets_at_once_never_deadlock(pg_url):
    """Every batch adds to the same "all" buckets and to many key buckets, in whatever
    order its entries came: rows are locked in one order, so concurrent writers wait for
    each other instead of one of them failing with a deadlock."""
    from freeapi import rollups as R
    stores = [PostgresStore(pg_url) for _ in range(4)]
    t = time.time()
    batches = []
    for i in range(24):
        keys = [f"k{j}" for j in range(60)]
        random.Random(i).shuffle(keys)
        batches.append([entry(t, key_id=k) for k in keys])
    await asyncio.gather(*(stores[i % 4].ledger_append(b) for i, b in enumerate(batches)))
    [day] = await stores[0].rollup_read("d", "key", R.last("d", 1, t))
    assert {v: f["n"] for v, f in R.merge([day]).items()} == {f"k{j}": 24 for j in range(60)}
    for s in stores:
        s.close()


async def test_admin_requests_filter_by_key_id_reads_its_index(pg_url):
    """GET /admin/requests?key= filters by the key id (as on SQLite and Redis): the plan
    reads that column's index, not the whole log."""
    store = PostgresStore(pg_url)
    await store.ledger_append([entry(time.time() - i, key_id=f"k{i % 50}")
                               for i in range(2000)])
    con = await asyncpg.connect(pg_url)
    try:
        await con.execute("ANALYZE ledger")
        plan = "\n".join(r[0] for r in await con.fetch(
            "EXPLAIN SELECT * FROM ledger WHERE key_id = 'k7' ORDER BY ts DESC, id DESC "
            "LIMIT 101"))
    finally:
        await con.close()
    assert "ledger_key_id_ts" in plan, plan
    rows, _ = await store.ledger_page(key="k7", limit=500)
    assert len(rows) == 40 and {r["key_id"] for r in rows} == {"k7"}
    store.close()
