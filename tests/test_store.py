"""The state store: the SAME conformance tests against SQLite, Redis (127.0.0.1:6379, or
FREEAPI_TEST_REDIS), PostgreSQL (127.0.0.1:5432/test, or FREEAPI_TEST_POSTGRES) and
PostgreSQL with Redis beside it. An unreachable server fails its variants; it never skips
them. Each Redis test uses its own key prefix and deletes its keys afterwards; each
PostgreSQL test its own schema, dropped afterwards."""

import asyncio
import sqlite3
import time
import uuid

import pytest

from freeapi.store import Hit, StoreError
from freeapi.store.postgres import PostgresStore
from freeapi.store.redis import RedisStore
from freeapi.store.resp import ReplyError, RespClient, _Incomplete, encode, parse
from freeapi.store.sqlite import SQLiteStore
from tests.helpers import REDIS_URL, Clock, eventually



class Backend:
    """Opens stores of one kind that share state (one file, or one Redis prefix), as two
    gateway processes would."""

    def __init__(self, kind, tmp_path, io_loop, pg_url=None):
        self.kind, self.io_loop, self.opened = kind, io_loop, []
        self.path = str(tmp_path / "state.db")
        self.prefix = f"freeapi-test:{uuid.uuid4().hex}:"
        self.pg_url = pg_url
        # SQLite reads the wall clock in the process: these tests move it. Redis and
        # PostgreSQL read their server's (TIME, clock_timestamp()), which no test can move.
        self.clock = Clock()

    def open(self, **kw):
        if self.kind == "sqlite":
            store = SQLiteStore(self.path, clock=self.clock.time, **kw)
        elif self.kind == "postgres":
            store = PostgresStore(self.pg_url, **kw)
        elif self.kind == "postgres+redis":
            store = PostgresStore(self.pg_url, hot=RedisStore(REDIS_URL, prefix=self.prefix),
                                  **kw)
        else:
            store = RedisStore(REDIS_URL, prefix=self.prefix, **kw)
        self.opened.append(store)
        return store

    def cleanup(self):
        async def run():
            if self.kind in ("redis", "postgres+redis"):
                first = self.opened[0]
                await getattr(first, "hot", first).delete_all()
            for store in self.opened:
                store.close()
            await asyncio.sleep(0)  # Redis reader tasks end
        self.io_loop.run_sync(run)

    async def expires(self, after: float, gone, what: str):
        """`gone()` (async) turns true `after` seconds from now on the store's clock.
        SQLite: the test's clock is moved to a millisecond before that (not yet), then a
        microsecond past it (at once; the microsecond absorbs float rounding of a wall
        clock near 1.8e9). Redis and PostgreSQL expire by their server's clock: the test
        waits `after` for real, then polls until a deadline rather than trusting a fixed
        margin, which a loaded machine can overrun."""
        if self.kind == "sqlite":
            start = self.clock.now
            self.clock.now = start + after - 0.001
            assert not await gone(), f"{what}: already so before {after}s"
            self.clock.now = start + after + 1e-6
            assert await gone(), f"{what}: not so after {after}s"
            return
        await asyncio.sleep(after)
        await eventually(gone, what)

    async def elapse(self, seconds: float):
        """Let `seconds` pass on the store's clock (for real on a server's)."""
        if self.kind == "sqlite":
            self.clock.advance(seconds)
        else:
            await asyncio.sleep(seconds)


@pytest.fixture(params=["sqlite", "redis", "postgres", "postgres+redis"])
def backend(request, tmp_path, io_loop):
    pg = request.getfixturevalue("pg_url") if request.param.startswith("postgres") else None
    b = Backend(request.param, tmp_path, io_loop, pg)
    first = b.open()
    io_loop.run_sync(first.ping)  # Redis down: an error here fails the test
    yield b
    b.cleanup()


@pytest.fixture
def store(backend):
    return backend.opened[0]


# -- counters ---------------------------------------------------------------------------

async def test_hit_allows_up_to_the_limit_then_says_how_long_to_wait(store):
    for _ in range(3):
        assert await store.hit("alice:rpm", 1, 60, 3) == (True, 0.0)
    ok, wait = await store.hit("alice:rpm", 1, 60, 3)
    assert not ok and 54 <= wait <= 60  # the first hits expire with their bucket
    assert (await store.hit("bob:rpm", 1, 60, 3))[0]  # keys are independent


async def test_amounts_unlimited_adds_and_zero_amount_checks(store):
    assert await store.hit("t", 700, 60, None) == (True, 0.0)  # no limit: always added
    assert (await store.hit("t", 300, 60, 1000))[0]  # exactly at the limit fits
    ok, wait = await store.hit("t", 0, 60, 1000)  # amount 0: is any room left?
    assert not ok and wait > 0
    assert (await store.hit("t", 0, 60, 1001))[0]
    assert (await store.hit("t", 0, 60, 1001))[0]  # asking adds nothing
    assert not (await store.hit("u", 5, 60, 4))[0]  # more than the limit at once


async def test_hits_are_all_or_nothing(store):
    ok, wait, failed = await store.hits([Hit("a", 1, 60, 5), Hit("b", 1, 60, 0)])
    assert (ok, failed) == (False, 1) and wait > 0
    ok, _, failed = await store.hits([Hit("a", 5, 60, 5), Hit("b", 0, 60, 1)])
    assert (ok, failed) == (True, -1)  # nothing was added to "a" by the refused call
    assert (await store.hits([Hit("a", 1, 60, 5)]))[2] == 0


async def test_a_window_slides(backend, store):
    assert (await store.hit("w", 1, 0.5, 1))[0]
    ok, wait = await store.hit("w", 1, 0.5, 1)
    assert not ok and 0.4 <= wait <= 0.5

    async def admitted():
        return (await store.hit("w", 1, 0.5, 1))[0]  # refused, it adds nothing
    await backend.expires(wait, admitted, "the window slid past the first hit")


async def test_retry_after_waits_only_for_what_must_expire(backend, store):
    if backend.kind == "sqlite":
        assert (await store.hit("s", 2, 1.0, 3))[0]
        backend.clock.advance(0.3)
        assert (await store.hit("s", 1, 1.0, 3))[0]
        ok, wait = await store.hit("s", 1, 1.0, 3)  # the two old units free enough
        # The first hit's bucket (a tenth of the window; the clock starts on one) ends
        # 1.0 s after it: 0.7 s after now, not when the second hit's does.
        assert not ok and wait == pytest.approx(0.7)
        return
    # A server's clock: its bucket ends 0.9 to 1.0 s after the first hit, and the local
    # clock bounds how long after it the third was counted. An attempt the machine
    # delayed past the first bucket's end proves nothing: try again with a fresh key.
    for attempt in range(5):
        key = f"s{attempt}"
        t0 = time.monotonic()
        assert (await store.hit(key, 2, 1.0, 3))[0]
        t1 = time.monotonic()
        await asyncio.sleep(0.3)
        assert (await store.hit(key, 1, 1.0, 3))[0]
        t2 = time.monotonic()
        ok, wait = await store.hit(key, 1, 1.0, 3)
        t3 = time.monotonic()
        if t3 - t0 < 0.85:
            assert not ok and 0.9 - (t3 - t0) - 0.002 <= wait <= 1.0 - (t2 - t1) + 0.002, (
                wait, t1 - t0, t2 - t1, t3 - t2)
            return
    pytest.fail("five attempts in a row took longer than the window's first bucket")


async def test_concurrent_hits_from_two_stores_never_exceed_one_limit(backend):
    a, b = backend.opened[0], backend.open()
    got = await asyncio.gather(*(s.hit("shared", 1, 60, 20) for _ in range(30)
                                 for s in (a, b)))
    assert sum(ok for ok, _ in got) == 20


# -- ledger -----------------------------------------------------------------------------

def entry(ts, **kw):
    e = {"ts": ts, "key": "alice", "vendor_key": "sk-...0001", "provider": "deepseek",
         "model": "deepseek-chat", "upstream_model": "deepseek-chat", "status": 200,
         "error": None, "stream": True, "latency_ms": 12, "ttfb_ms": 5, "prompt_tokens": 11,
         "completion_tokens": 7, "cached_tokens": 8, "reasoning_tokens": None,
         "total_tokens": 18, "endpoint": "chat", "request_id": None, "estimated": False,
         "key_id": "config:alice", "team": None, "cost": 0.25, "currency": "USD",
         "unpriced": False}
    e.update(kw)
    return e


async def test_ledger_append_and_query_by_time(store):
    t = 1_800_000_000.0
    await store.ledger_append([entry(t), entry(t + 10, key=None, stream=False)])
    await store.ledger_append([entry(t + 10, key=None, stream=False)])  # twins both count
    rows = await store.ledger()
    assert rows == [entry(t), entry(t + 10, key=None, stream=False),
                    entry(t + 10, key=None, stream=False)]
    assert await store.ledger(since=t + 1) == rows[1:]
    assert await store.ledger(until=t + 10) == rows[:1]  # until is exclusive
    assert await store.ledger(since=t + 11) == []
    assert await store.prune_ledger(t + 5) == 1
    assert len(await store.ledger()) == 2


async def test_record_writes_in_the_background_and_flush_waits(store):
    t = time.time()
    for i in range(50):
        store.record(entry(t + i / 1000, latency_ms=i))
    await store.flush()
    rows = await store.ledger(since=t)
    assert [r["latency_ms"] for r in rows] == list(range(50))


async def test_entries_recorded_apart_are_written_together(store, monkeypatch):
    """One write per request cost a thread hand-off and a transaction each: entries wait
    up to LEDGER_DELAY and go in one batch, and flush() (graceful shutdown) writes them
    all at once."""
    from freeapi.store import ledger_queue
    monkeypatch.setattr(ledger_queue, "LEDGER_DELAY", 30.0)
    writes = []
    append = store._append

    async def counting(entries):
        writes.append(len(entries))
        await append(entries)
    store._append = counting
    t = time.time()
    for i in range(20):
        store.record(entry(t + i / 1000, latency_ms=i))
        await asyncio.sleep(0.002)
    assert writes == []  # still within the delay
    await store.flush()
    assert writes == [20]
    assert [r["latency_ms"] for r in await store.ledger(since=t)] == list(range(20))


async def test_a_recorded_entry_is_written_without_a_flush(store):
    t = time.time()
    store.record(entry(t, latency_ms=7))
    for _ in range(300):
        rows = await store.ledger(since=t)
        if rows:
            break
        await asyncio.sleep(0.01)
    assert [r["latency_ms"] for r in rows] == [7]


async def test_state_survives_reopening(backend):
    store = backend.opened[0]
    await store.ledger_append([entry(1_800_000_000.0)])
    assert (await store.hit("k", 2, 60, None))[0]
    assert await store.conversation_append("c1", "alice", [{"n": 1}], 60, 10, 10000)
    store.close()
    again = backend.open()
    assert len(await again.ledger()) == 1
    assert not (await again.hit("k", 0, 60, 2))[0]
    assert await again.conversation_get("c1", "alice") == [{"n": 1}]


async def test_rollups_come_with_the_ledger_and_every_gateway_reads_them(backend):
    """The day's buckets count what ledger_append wrote (and rollup_add, which writes no
    row) as another gateway sees them; with Redis beside PostgreSQL they are records kept
    in PostgreSQL, with the ledger: a store without Redis reads them, Redis holds none."""
    from freeapi import rollups as R
    store, t = backend.opened[0], time.time()
    await store.ledger_append([entry(t), entry(t + 0.5, status=500, team="t_1")])
    await store.rollup_add([entry(t + 1)])
    day = R.last("d", 1, t + 1)
    readers = [store, backend.open()]
    if backend.kind == "postgres+redis":
        readers.append(PostgresStore(backend.pg_url))
    for reader in readers:
        [bucket] = await reader.rollup_read("d", "key", day)
        alice = R.merge([bucket])["config:alice"]
        assert (alice["n"], alice["err"], alice["ot"]) == (3, 1, 21)
        assert R.costs(alice) == pytest.approx({"USD": 0.75})
        teams = R.merge([await reader.rollup_sum("d", "team", day)])
        assert (teams["t_1"]["n"], teams["-"]["n"]) == (1, 2)
        assert len(await reader.ledger()) == 2
    if backend.kind == "postgres+redis":
        readers[-1].close()
        _, names = await store.hot.client.execute("SCAN", 0, "MATCH",
                                                  store.hot.prefix + "*", "COUNT", 10000)
        assert not [n for n in names if b":r:" in n or b"ledger" in n]


async def test_batched_entries_reach_the_rollups_with_the_ledger(backend, monkeypatch):
    """record()'s batches go through the backend's rollup-aware write: one batch of many
    entries counts each of them in the day's buckets, as ledger_append would."""
    from freeapi.store import ledger_queue
    from freeapi import rollups as R
    monkeypatch.setattr(ledger_queue, "LEDGER_DELAY", 30.0)
    store, t = backend.opened[0], time.time()
    for i in range(5):
        store.record(entry(t + i / 1000, status=500 if i == 0 else 200))
    await store.flush()
    [bucket] = await store.rollup_read("d", "key", R.last("d", 1, t))
    alice = R.merge([bucket])["config:alice"]
    assert (alice["n"], alice["err"], alice["ot"]) == (5, 1, 35)
    assert len(await store.ledger(since=t)) == 5


async def test_ledger_pages_newest_first_filtered_with_a_cursor(store):
    t = 1_800_000_000.0
    await store.ledger_append([entry(t + i, request_id=f"r{i}", key_id=f"k{i % 2}",
                                     status=200 if i % 3 else 429) for i in range(7)])
    await store.ledger_append([entry(t + 6, request_id="r6b", key_id="k0")])  # a twin ts
    got, cursor = [], None
    while True:
        # One a page: the cursor falls between the twins, neither is lost or repeated.
        rows, cursor = await store.ledger_page(key="k0", cursor=cursor, limit=1)
        got += [r["request_id"] for r in rows]
        if cursor is None:
            break
    assert sorted(got[:2]) == ["r6", "r6b"] and got[2:] == ["r4", "r2", "r0"]
    rows, _ = await store.ledger_page(status=429, since=t + 1, until=t + 6)
    assert [r["request_id"] for r in rows] == ["r3"]
    assert rows[0] == entry(t + 3, request_id="r3", key_id="k1", status=429)


# -- conversations ----------------------------------------------------------------------

async def test_conversations_belong_to_their_owner(store):
    assert await store.conversation_get("c", "alice") is None
    turn = [{"role": "user", "content": "hi ✓"}, {"role": "assistant", "content": "hello"}]
    assert await store.conversation_append("c", "alice", [turn], 60, 10, 10000)
    assert await store.conversation_append("c", "alice", [[{"role": "user", "content": "2"}]],
                                           60, 10, 10000)
    assert await store.conversation_get("c", "alice") == [turn, [{"role": "user",
                                                                  "content": "2"}]]
    assert await store.conversation_get("c", "bob") is None
    assert not await store.conversation_append("c", "bob", [turn], 60, 10, 10000)
    assert not await store.conversation_delete("c", "bob")
    assert len(await store.conversation_get("c", "alice")) == 2  # bob changed nothing
    assert await store.conversation_delete("c", "alice")
    assert await store.conversation_get("c", "alice") is None
    assert not await store.conversation_delete("c", "alice")


async def test_conversations_expire_and_the_id_starts_afresh(backend, store):
    assert await store.conversation_append("e", "alice", ["one"], 0.2, 10, 10000)
    backend.clock.advance(0.15)  # (only SQLite reads it: there, the renewal is pinned)
    assert await store.conversation_append("e", "alice", ["two"], 0.2, 10, 10000)  # renews
    assert await store.conversation_get("e", "alice") == ["one", "two"]

    async def gone():
        return await store.conversation_get("e", "alice") is None
    await backend.expires(0.2, gone, "the conversation expired")
    assert not await store.conversation_delete("e", "alice")
    assert await store.conversation_append("e", "bob", ["new"], 60, 10, 10000)
    assert await store.conversation_get("e", "bob") == ["new"]


async def test_conversations_drop_the_oldest_turns_beyond_the_limits(store):
    for i in range(5):
        assert await store.conversation_append("t", "o", [f"turn{i}"], 60, 3, 10000)
    assert await store.conversation_get("t", "o") == ["turn2", "turn3", "turn4"]
    # max_bytes counts each turn's JSON ("turnN" is 7 bytes); the newest always stays.
    assert await store.conversation_append("t", "o", ["x" * 5], 60, 10, 16)
    assert await store.conversation_get("t", "o") == ["turn4", "xxxxx"]
    assert await store.conversation_append("t", "o", ["y" * 50], 60, 10, 16)
    assert await store.conversation_get("t", "o") == ["y" * 50]
    assert await store.conversation_append("t", "o", ["a", "b", "c"], 60, 2, 10000)
    assert await store.conversation_get("t", "o") == ["b", "c"]


async def test_kv_records_replace_expire_and_stay_in_their_namespace(backend, store):
    await store.kv_put("a", "k1", {"v": 1}, 60)
    await store.kv_put("a", "k1", {"v": 2}, 60)
    await store.kv_put("b", "k1", ["other"], 60)
    await store.kv_put("a", "short", 1, 0.05)
    assert await store.kv_get("a", ["k1", "missing"]) == {"k1": {"v": 2}}
    assert await store.kv_get("b", ["k1"]) == {"k1": ["other"]}

    async def gone():
        return await store.kv_get("a", ["short"]) == {}
    await backend.expires(0.05, gone, "the short record expired")
    assert await store.kv_delete("a", "k1") is True
    assert await store.kv_delete("a", "k1") is False
    assert await store.kv_get("a", ["k1"]) == {}
    assert await store.kv_get("b", ["k1"]) == {"k1": ["other"]}


async def test_kv_group_lists_its_live_records_only(backend, store):
    await store.kv_put("f", "a1", {"n": 1}, 60, group="g:alice")
    await store.kv_put("f", "a2", {"n": 2}, 60, group="g:alice")
    await store.kv_put("f", "gone", {"n": 3}, 60, group="g:alice")
    await store.kv_put("f", "brief", {"n": 4}, 0.05, group="g:alice")
    await store.kv_put("f", "b1", {"n": 5}, 60, group="g:bob")
    await store.kv_put("f", "loose", {"n": 6}, 60)  # in no group
    await store.kv_put("x", "a9", {"n": 7}, 60, group="g:alice")  # another namespace
    assert await store.kv_delete("f", "gone") is True

    async def listed_live():
        return await store.kv_group("f", "g:alice") == {"a1": {"n": 1}, "a2": {"n": 2}}
    await backend.expires(0.05, listed_live, "the brief record left its group")
    assert await store.kv_group("f", "g:bob") == {"b1": {"n": 5}}
    assert await store.kv_group("x", "g:alice") == {"a9": {"n": 7}}
    assert await store.kv_group("f", "g:nobody") == {}
    assert await store.kv_get("f", ["a1", "loose"]) == {"a1": {"n": 1}, "loose": {"n": 6}}


async def test_kv_group_loses_no_entry_to_two_stores_writing_at_once(backend):
    a, b = backend.opened[0], backend.open()
    await asyncio.gather(*(s.kv_put("f", f"{i}-{j}", i, 60, group="g:carol")
                           for i in range(25) for j, s in enumerate((a, b))))
    got = await b.kv_group("f", "g:carol")
    assert sorted(got) == sorted(f"{i}-{j}" for i in range(25) for j in range(2))
    assert await a.kv_group("f", "g:carol") == got


# -- backend specifics ------------------------------------------------------------------

async def test_sqlite_never_blocks_the_event_loop(tmp_path):
    """Another process holds the write lock for 0.3s: the store's call waits for it on its
    own thread while the loop keeps running (here: the timer that releases the lock)."""
    path = str(tmp_path / "locked.db")
    store = SQLiteStore(path, timeout=3)
    await store.ping()
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    asyncio.get_running_loop().call_later(0.3, other.execute, "COMMIT")
    start = time.monotonic()
    ticks = 0

    async def tick():
        nonlocal ticks
        while time.monotonic() - start < 0.25:
            await asyncio.sleep(0.01)
            ticks += 1
    ok, _ = (await asyncio.gather(store.hit("k", 1, 60, 5), tick()))[0]
    assert ok and 0.25 <= time.monotonic() - start < 1.5
    assert ticks >= 10
    store.close()
    other.close()


async def test_sqlite_file_from_an_older_version_gets_the_new_ledger_fields(tmp_path):
    path = str(tmp_path / "old.db")
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE ledger (id INTEGER PRIMARY KEY, ts, key, vendor_key, provider, "
                "model, upstream_model, status, error, stream, latency_ms, ttfb_ms, "
                "prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, "
                "total_tokens)")
    old.execute("INSERT INTO ledger (ts, model, status) VALUES (1800000000.0, 'm', 200)")
    old.commit()
    old.close()
    store = SQLiteStore(path)
    try:
        await store.ledger_append([entry(1_800_000_001.0, endpoint="messages",
                                         request_id="r1", estimated=True)])
        rows = await store.ledger()
        assert [(r["model"], r["endpoint"], r["request_id"]) for r in rows] == [
            ("m", None, None), (rows[1]["model"], "messages", "r1")]
        assert rows[1]["estimated"] == 1
    finally:
        store.close()


async def test_sqlite_errors_are_store_errors(tmp_path):
    store = SQLiteStore(str(tmp_path))  # a directory, not a database file
    with pytest.raises(StoreError, match="SQLite"):
        await store.ping()
    store.close()


async def test_redis_unreachable_is_a_quick_store_error():
    from tests.conftest import free_port
    store = RedisStore(f"redis://127.0.0.1:{free_port()}", timeout=2)
    start = time.monotonic()
    for _ in range(3):
        with pytest.raises(StoreError, match="cannot reach"):
            await store.hit("k", 1, 60, 1)
    assert time.monotonic() - start < 1
    store.close()


async def test_redis_reconnects_after_the_server_drops_the_connection():
    client, killer = RespClient(REDIS_URL, 2), RespClient(REDIS_URL, 2)
    assert await client.execute("PING") == "PONG"
    my_id = await client.execute("CLIENT", "ID")
    assert await killer.execute("CLIENT", "KILL", "ID", my_id) == 1
    await asyncio.sleep(0.05)
    assert await client.execute("PING") == "PONG"
    assert await client.execute("CLIENT", "ID") != my_id
    with pytest.raises(ReplyError, match="ERR"):
        await client.execute("NOSUCHCOMMAND")
    assert await client.execute("PING") == "PONG"  # an error reply keeps the connection
    client.close()
    killer.close()


async def test_redis_pipelines_many_concurrent_commands_on_one_connection():
    client = RespClient(REDIS_URL, 2)
    got = await asyncio.gather(*(client.execute("ECHO", str(i)) for i in range(500)))
    assert got == [str(i).encode() for i in range(500)]
    client.close()


def test_resp_parser():
    raw = b"*4\r\n+OK\r\n:-3\r\n$-1\r\n*2\r\n$3\r\nab\n\r\n-ERR no\r\n"
    value, end = parse(raw, 0)
    assert end == len(raw)
    assert value[:3] == ["OK", -3, None] and value[3][0] == b"ab\n"
    assert isinstance(value[3][1], ReplyError) and str(value[3][1]) == "ERR no"
    for cut in range(len(raw)):
        with pytest.raises(_Incomplete):
            parse(raw[:cut], 0)
    assert encode(["SET", "k", 1.5, b"\x00"]) == \
        b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\n1.5\r\n$1\r\n\x00\r\n"
