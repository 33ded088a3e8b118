"""Gateways on PostgreSQL (alone, and with Redis beside it for the hot state): two share
the ledger, runtime keys and one limit; the database stopped and started mid-traffic
costs no request and, within state.ledger_buffer, no ledger row, and what is dropped
beyond it is counted in freeapi_ledger_dropped_total. The outage tests stop a private
cluster of their own (tests/conftest.py private_postgres), never the shared server."""

import asyncio
import time
import uuid

import pytest

from freeapi.store.redis import RedisStore
from tests.helpers import error_of, request
from tests.test_admin_keys_api import ADMIN, admin, served
from tests.test_limits import ALICE, BOB, chat, keys
from tests.test_store import REDIS_URL


@pytest.fixture(params=["postgres", "postgres+redis"])
def pg_state(request, pg_url, io_loop):
    state = {"database_url": pg_url, "sync_interval": 0.1}
    if request.param == "postgres":
        yield state
        return
    state.update(redis_url=REDIS_URL, prefix=f"freeapi-test:{uuid.uuid4().hex}:")
    yield state
    store = RedisStore(REDIS_URL, prefix=state["prefix"])

    async def wipe():
        await store.delete_all()
        store.close()
    io_loop.run_sync(wipe)


async def eventually(check, seconds=5.0):
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)


async def test_two_gateways_share_the_ledger_keys_and_one_limit(make_gateway, pg_state):
    cfg = keys({"key": ADMIN, "name": "root", "role": "admin"}, {"key": ALICE, "name": "alice", "rpm": 3},
               state=pg_state)
    (a, gw_a), (b, gw_b) = make_gateway(cfg), make_gateway(cfg)
    for gw in (gw_a, gw_b):
        gw.directory.start()  # as `freeapi serve` does: follows other gateways' changes
    # A key made on one gateway is served by the other.
    code, made = await admin(a, "POST", "/admin/keys", {"name": "shared-key"})
    assert code == 201, made
    await eventually(lambda: served(b, made["key"]))
    # One rpm limit across both: counted atomically in SQL (or in Redis beside it).
    codes = await asyncio.gather(*(chat(url, ALICE) for url in (a, b) * 3))
    assert sorted(r.code for r in codes) == [200] * 3 + [429] * 3
    # Each gateway's ledger rows are visible from the other.
    assert (await chat(a, made["key"])).code == 200
    await gw_a.store.flush()
    await gw_b.store.flush()
    for gw in (gw_a, gw_b):
        rows = await gw.store.ledger()
        assert sorted(r["key"] for r in rows if r["status"] == 200) == \
            ["alice"] * 3 + ["shared-key"] * 2
    code, audit = await admin(b, "GET", "/admin/audit")
    assert code == 200 and audit["data"][0]["action"] == "key.create"


def dropped(text: str) -> float:
    for line in text.splitlines():
        if line.startswith("freeapi_ledger_dropped_total "):
            return float(line.split()[1])
    raise AssertionError("freeapi_ledger_dropped_total not exported")


async def outage_gateway(make_gateway, cluster, buffer):
    base, gw = make_gateway(dict(keys({"key": ALICE, "rpm": 100}, {"key": BOB, "name": "bob"}, state={
        "database_url": cluster.url, "timeout": 1, "ledger_buffer": buffer}),
        metrics={"public": True}))
    return base, gw


async def test_postgres_stopped_and_started_mid_traffic_loses_no_request_or_row(
        make_gateway, private_postgres):
    base, gw = await outage_gateway(make_gateway, private_postgres, 1000)
    ids = []

    async def burst(n):
        for _ in range(n):
            resp = await chat(base, BOB)
            assert resp.code == 200  # the database is never a reason to fail a request
            ids.append(resp.headers["x-request-id"])
    await burst(5)
    await gw.store.flush()
    stopping = asyncio.ensure_future(private_postgres.stop())
    await burst(5)  # while it goes down
    await stopping
    await burst(10)  # while it is down
    # A key with limits follows the rule for a store outage: refused, never unmetered.
    assert error_of(await chat(base, ALICE), 503)["code"] == "state_unavailable"
    await private_postgres.start()
    await burst(5)
    await gw.store.flush(timeout=15)
    rows = await gw.store.ledger()
    assert sorted(r["request_id"] for r in rows if r["key"] == "bob") == sorted(ids)
    assert (await chat(base, ALICE)).code == 200  # limits are checked again
    assert dropped((await request(base + "/metrics", key=None)).body.decode()) == 0


async def test_beyond_the_buffer_the_oldest_rows_are_dropped_and_counted(
        make_gateway, private_postgres):
    base, gw = await outage_gateway(make_gateway, private_postgres, 3)
    await private_postgres.stop()
    ids = []
    for _ in range(8):
        resp = await chat(base, BOB)
        assert resp.code == 200
        ids.append(resp.headers["x-request-id"])
    await private_postgres.start()
    await gw.store.flush(timeout=15)
    rows = await gw.store.ledger()
    assert [r["request_id"] for r in rows] == ids[-3:]  # the newest kept, in order
    assert dropped((await request(base + "/metrics", key=None)).body.decode()) == 5
