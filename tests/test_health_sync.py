"""Vendor keys' health shared by gateways on one store (freeapi/healthsync.py): the same
tests against one SQLite file and one Redis (127.0.0.1:6379, or FREEAPI_TEST_REDIS; an
unreachable Redis fails the Redis variants, never skips them)."""

import asyncio
import json
import sqlite3
import time
import uuid

import pytest

from freeapi.healthsync import key_hash
from freeapi.store.redis import RedisStore
from freeapi.provider import NO_BALANCE_RECHECK
from tests.fakes import qwen as fake_qwen
from tests.fakes.deepseek import BUSY, DEAD, GOOD, GOOD2
from tests.helpers import HI, chat_body, request
from tests.helpers import REDIS_URL

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


async def test_a_429_cooldown_seen_by_one_gateway_is_respected_by_the_other(
        make_gateway, upstream_state, shared_state):
    upstream_state.retry_after = "2"
    a, gw_a = gateway(make_gateway, shared_state, [GOOD])
    b, gw_b = gateway(make_gateway, shared_state, [GOOD, GOOD2])
    upstream_state.keys[GOOD] = 429
    t0 = time.monotonic()
    assert (await chat(a)).code == 429
    upstream_state.keys[GOOD] = "ok"  # the vendor would take it again; B must not try yet
    await asyncio.sleep(3 * SYNC)
    seen = len(upstream_state.requests)
    assert all([(await chat(b)).code == 200 for _ in range(4)])
    assert keys_used(upstream_state, seen) == [GOOD2] * 4
    assert gw_b.pools["deepseek"].status([GOOD])[0]["state"] == "cooldown"

    records = await raw_records(gw_a)
    assert list(records) and all(GOOD not in n and GOOD not in v for n, v in records.items())
    name = f"deepseek:{key_hash(GOOD)}"
    assert any(n.endswith(name) for n in records)
    assert json.loads(next(iter(records.values())))["state"] == "cooldown"

    await asyncio.sleep(max(0.0, 2.2 - (time.monotonic() - t0)))  # the cooldown is over
    seen = len(upstream_state.requests)
    assert all([(await chat(b)).code == 200 for _ in range(4)])
    assert GOOD in keys_used(upstream_state, seen)
    assert await gw_b.store.health_get([name]) == {}  # the record expired with it


async def test_an_invalid_key_seen_by_one_gateway_is_skipped_by_the_other(
        make_gateway, upstream_state, shared_state):
    a, gw_a = gateway(make_gateway, shared_state, [DEAD])
    b, gw_b = gateway(make_gateway, shared_state, [DEAD, GOOD])
    assert (await chat(a)).code in (401, 502, 503)
    upstream_state.keys[DEAD] = "ok"
    await asyncio.sleep(3 * SYNC)
    seen = len(upstream_state.requests)
    assert all([(await chat(b)).code == 200 for _ in range(4)])
    assert keys_used(upstream_state, seen) == [GOOD] * 4
    pool_b = gw_b.pools["deepseek"]
    assert pool_b.status([DEAD])[0]["state"] == "invalid"
    assert DEAD in pool_b._probes  # B re-probes the key itself, as for its own verdicts
    assert all(DEAD not in n + v for n, v in (await raw_records(gw_a)).items())

    # A's re-probe finds the key live again: B takes it back without waiting for its own.
    h = gw_a.health.get("deepseek", DEAD)
    h.state = "ok"
    gw_a.pools["deepseek"]._changed(DEAD, h)
    await asyncio.sleep(3 * SYNC)
    assert pool_b.status([DEAD])[0]["state"] == "ok"


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
    await asyncio.sleep(3 * SYNC)
    row = gw_b.pools["qwen"].status([fake_qwen.POOR])[0]
    assert row["state"] == "no_balance" and row["cooldown_remaining"] > NO_BALANCE_RECHECK - 60
    seen = len(state.requests)
    for _ in range(4):
        assert (await qwen_chat(b)).code == 200
    assert [r["headers"]["Authorization"][7:] for r in state.requests[seen:]] == \
        [fake_qwen.GOOD] * 4
