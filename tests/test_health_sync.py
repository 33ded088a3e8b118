"""Vendor keys' health shared by gateways on one store (freeapi/healthsync.py): the same
tests against one SQLite file and one Redis (127.0.0.1:6379, or FREEAPI_TEST_REDIS; an
unreachable Redis fails the Redis variants, never skips them).

A peer learns of a verdict at its next sync: the tests poll for it (`eventually`) rather
than sleep a fixed number of intervals. When a cooldown ends is pinned with a test clock
(`Clock`), not by sleeping through it."""

import asyncio
import json
import sqlite3
import time
import uuid

import pytest

from freeapi.healthsync import HealthSync, key_hash
from freeapi.keypool import HealthStore, KeyPool
from freeapi.store.redis import RedisStore
from freeapi.store.sqlite import SQLiteStore
from freeapi.provider import NO_BALANCE_RECHECK
from tests.fakes import qwen as fake_qwen
from tests.fakes.deepseek import BUSY, DEAD, GOOD, GOOD2
from tests.helpers import HI, chat_body, request
from tests.helpers import REDIS_URL, Clock, eventually

SYNC = 0.1


@pytest.fixture(params=["sqlite", "redis"])
def shared_state(request, tmp_path, io_loop):
    """A state section two gateways share: one SQLite file, or one Redis prefix."""
    if request.param == "sqlite":
        yield {"path": str(tmp_path / "shared.db"), "sync_interval": SYNC}
        return
    prefix = f"freeapi-test:{uuid.uuid4().hex}:"
    store = RedisStore(REDIS_URL, prefix=prefix)
    io_loop.run_sync(store.ping)  # Redis down: an error here fails the test
    yield {"redis_url": REDIS_URL, "prefix": prefix, "sync_interval": SYNC}

    async def cleanup():
        await store.delete_all()
        store.close()
        await asyncio.sleep(0)
    io_loop.run_sync(cleanup)


def gateway(make_gateway, state, keys):
    base, gw = make_gateway({"providers": {"deepseek": {"api_keys": keys}}, "state": state,
                             "auth": {"allow_anonymous": True}})
    gw.health_sync.start()
    return base, gw


async def chat(base):
    return await request(base + "/v1/chat/completions", "POST", chat_body(), key=None)


def keys_used(upstream_state, since: int) -> list[str]:
    return [r["headers"]["Authorization"][7:] for r in upstream_state.requests[since:]]


async def raw_records(gw) -> dict[str, str]:
    """Every key-health record as stored (name -> raw JSON)."""
    store = gw.store
    await store.settle()
    await store.ping()  # the SQLite file exists (with its tables) even if nothing was written
    if store.kind == "sqlite":
        with sqlite3.connect(store.path) as db:
            return dict(db.execute("SELECT name, data FROM kv WHERE ns = 'kh'").fetchall())
    names = await store.client.execute("KEYS", store.prefix + "kv:kh:*")
    values = await store.client.execute("MGET", *names) if names else []
    return {n.decode(): v.decode() for n, v in zip(names, values)}


def state_of(pool, key) -> str:
    return pool.status([key])[0]["state"]


async def test_a_429_cooldown_seen_by_one_gateway_is_respected_by_the_other(
        make_gateway, upstream_state, shared_state):
    upstream_state.retry_after = "60"  # outlasts the test: when it ends is pinned below
    a, gw_a = gateway(make_gateway, shared_state, [GOOD])
    b, gw_b = gateway(make_gateway, shared_state, [GOOD, GOOD2])
    upstream_state.keys[GOOD] = 429
    assert (await chat(a)).code == 429
    upstream_state.keys[GOOD] = "ok"  # the vendor would take it again; B must not try yet
    pool_b = gw_b.pools["deepseek"]
    await eventually(lambda: state_of(pool_b, GOOD) == "cooldown", "B learnt of it")
    seen = len(upstream_state.requests)
    assert all([(await chat(b)).code == 200 for _ in range(4)])
    assert keys_used(upstream_state, seen) == [GOOD2] * 4

    records = await raw_records(gw_a)
    assert list(records) and all(GOOD not in n and GOOD not in v for n, v in records.items())
    name = f"deepseek:{key_hash(GOOD)}"
    assert any(n.endswith(name) for n in records)
    assert json.loads(next(iter(records.values())))["state"] == "cooldown"


async def test_a_shared_cooldown_ends_everywhere_at_its_end_and_its_record_with_it(
        shared_state):
    """Two gateways' pools and syncs on one store, on one test clock: the peer keeps the
    key out until the cooldown's end and takes it back then, and the record goes with it.
    SQLite expires the record by the test clock too; Redis by its own (PEXPIRE, which no
    test can move): there the test waits for real, polling until a deadline."""
    clock = Clock()
    if "path" in shared_state:
        store = SQLiteStore(shared_state["path"], clock=clock.time)
    else:
        store = RedisStore(shared_state["redis_url"], prefix=shared_state["prefix"])

    def gateway_side():
        pools = {}
        sync = HealthSync(store, pools, {"deepseek": [GOOD, GOOD2]}, SYNC, clock=clock)
        pools["deepseek"] = KeyPool("deepseek", HealthStore(), clock=clock,
                                    on_change=lambda k, h: sync.publish("deepseek", k, h))
        return pools["deepseek"], sync

    (pool_a, sync_a), (pool_b, sync_b) = gateway_side(), gateway_side()
    sync_b.start()
    try:
        (await pool_a.acquire([GOOD])).release(429, retry_after="2")
        await eventually(lambda: state_of(pool_b, GOOD) == "cooldown", "B learnt of it")
        name = f"deepseek:{key_hash(GOOD)}"
        assert list(await store.health_get([name])) == [name]

        clock.advance(2 - 0.01)
        assert state_of(pool_b, GOOD) == "cooldown"
        assert await pool_b.acquire([GOOD]) is None  # still out, a moment before the end
        clock.advance(0.01)
        lease = await pool_b.acquire([GOOD])  # over: B takes it back by itself
        assert lease is not None and lease.key == GOOD
        lease.release(200)
        if store.kind == "sqlite":
            assert await store.health_get([name]) == {}
        else:
            async def expired():
                return await store.health_get([name]) == {}
            await eventually(expired, "the record expired", seconds=2 + 10)
            # B's syncs read the stale record meanwhile: an ended cooldown stays ended.
            assert state_of(pool_b, GOOD) == "ok"
    finally:
        sync_b.close()
        await store.settle()
        store.close()


async def test_an_invalid_key_seen_by_one_gateway_is_skipped_by_the_other(
        make_gateway, upstream_state, shared_state):
    a, gw_a = gateway(make_gateway, shared_state, [DEAD])
    b, gw_b = gateway(make_gateway, shared_state, [DEAD, GOOD])
    assert (await chat(a)).code in (401, 502, 503)
    upstream_state.keys[DEAD] = "ok"
    pool_b = gw_b.pools["deepseek"]
    await eventually(lambda: state_of(pool_b, DEAD) == "invalid", "B learnt of it")
    seen = len(upstream_state.requests)
    assert all([(await chat(b)).code == 200 for _ in range(4)])
    assert keys_used(upstream_state, seen) == [GOOD] * 4
    assert DEAD in pool_b._probes  # B re-probes the key itself, as for its own verdicts
    assert all(DEAD not in n + v for n, v in (await raw_records(gw_a)).items())

    # A's re-probe finds the key live again: B takes it back without waiting for its own.
    h = gw_a.health.get("deepseek", DEAD)
    h.state = "ok"
    gw_a.pools["deepseek"]._changed(DEAD, h)
    await eventually(lambda: state_of(pool_b, DEAD) == "ok", "B took the key back")


async def test_pass_through_keys_are_never_published(make_gateway, upstream_state,
                                                     shared_state):
    base, gw = make_gateway({"state": shared_state})  # no api_keys: clients bring theirs
    gw.health_sync.start()
    r = await request(base + "/v1/chat/completions", "POST", chat_body(), key=BUSY)
    assert r.code == 429
    assert gw.health.get("deepseek", BUSY).state == "cooldown"  # known locally
    assert await raw_records(gw) == {}


async def test_nothing_is_published_or_synced_with_an_in_memory_store(make_gateway,
                                                                      upstream_state):
    base, gw = make_gateway({"providers": {"deepseek": {"api_keys": [BUSY, GOOD]}},
                             "auth": {"allow_anonymous": True}})
    gw.health_sync.start()
    assert not gw.health_sync.enabled and gw.health_sync._task is None
    assert (await chat(base)).code == 200


async def qwen_chat(base):
    return await request(base + "/v1/chat/completions", "POST",
                         {"model": "qwen-plus", "messages": HI}, key=None)


async def record_lifetime(gw, name: str) -> float:
    """Seconds until the stored key-health record `name` expires."""
    store = gw.store
    await store.settle()
    if store.kind == "sqlite":
        with sqlite3.connect(store.path) as db:
            (expires,), = db.execute("SELECT expires FROM kv WHERE ns = 'kh' AND name = ?",
                                     (name,)).fetchall()
        return expires - time.time()
    return await store.client.execute("PTTL", store.prefix + "kv:kh:" + name) / 1000


async def test_a_no_balance_pause_is_shared_for_as_long_as_it_lasts(
        start_vendor, make_gateway, shared_state):
    """A vendor with no balance check keeps a key out of balance out for hours
    (no_balance_recheck): the shared verdict lives that long, so a gateway that starts
    in the meantime, even hours later, still skips the key instead of spending requests
    to find out again."""
    url, state = start_vendor(fake_qwen)
    config = {"state": shared_state, "auth": {"allow_anonymous": True}, "providers": {
        "qwen": {"base_url": url + "/compatible-mode/v1",
                 "api_keys": [fake_qwen.POOR, fake_qwen.GOOD]}}}
    a, gw_a = make_gateway(config)
    gw_a.health_sync.start()
    for _ in range(4):  # whichever key goes first, the poor one is found out
        assert (await qwen_chat(a)).code == 200
    assert gw_a.pools["qwen"].status([fake_qwen.POOR])[0]["state"] == "no_balance"
    lifetime = await record_lifetime(gw_a, f"qwen:{key_hash(fake_qwen.POOR)}")
    assert NO_BALANCE_RECHECK - 60 < lifetime <= NO_BALANCE_RECHECK + 1

    b, gw_b = make_gateway(config)  # starts after the verdict
    gw_b.health_sync.start()
    pool_b = gw_b.pools["qwen"]
    await eventually(lambda: state_of(pool_b, fake_qwen.POOR) == "no_balance", "B learnt of it")
    row = pool_b.status([fake_qwen.POOR])[0]
    assert row["state"] == "no_balance" and row["cooldown_remaining"] > NO_BALANCE_RECHECK - 60
    seen = len(state.requests)
    for _ in range(4):
        assert (await qwen_chat(b)).code == 200
    assert [r["headers"]["Authorization"][7:] for r in state.requests[seen:]] == \
        [fake_qwen.GOOD] * 4


async def test_a_verdict_read_for_a_key_a_reload_removed_meanwhile_is_not_applied(
        make_gateway, upstream_state, shared_state, tmp_path):
    from freeapi.reload import reload_config
    a, gw_a = gateway(make_gateway, shared_state, [DEAD])
    assert (await chat(a)).code in (401, 502, 503)  # A publishes: DEAD is invalid
    b, gw_b = make_gateway({"providers": {"deepseek": {"api_keys": [DEAD, GOOD]}},
                            "state": shared_state, "auth": {"allow_anonymous": True}})
    # B's sync is reading the shared records when a reload takes DEAD out of its config.
    reading, release = asyncio.Event(), asyncio.Event()
    health_get = gw_b.store.health_get

    async def held_read(names):
        got = await health_get(names)
        reading.set()
        await release.wait()
        return got
    gw_b.store.health_get = held_read
    gw_b.health_sync.start()
    await asyncio.wait_for(reading.wait(), 10)
    path = tmp_path / "b.yaml"
    path.write_text(json.dumps({"providers": {"deepseek": {"api_keys": [GOOD]}},
                                "state": shared_state, "auth": {"allow_anonymous": True}}))
    assert reload_config(gw_b, str(path))
    release.set()
    await asyncio.sleep(SYNC * 3)
    # The removed key is not the operator's any more: nothing re-probes it with the vendor.
    assert gw_b.pools["deepseek"].probe_at == {}
    assert state_of(gw_b.pools["deepseek"], GOOD) == "ok"
