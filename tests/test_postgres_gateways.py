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
from tests.helpers import REDIS_URL


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
    """freeapi_ledger_dropped_total{store="postgres"}; a labelled counter is exported once
    counted."""
    assert "# TYPE freeapi_ledger_dropped_total counter" in text
    for line in text.splitlines():
        if line.startswith('freeapi_ledger_dropped_total{store="postgres"} '):
            return float(line.split()[1])
    return 0.0


async def outage_gateway(make_gateway, cluster, buffer, redis_prefix=None):
    state = {"database_url": cluster.url, "timeout": 1, "ledger_buffer": buffer}
    if redis_prefix:
        state.update(redis_url=REDIS_URL, prefix=redis_prefix)
    base, gw = make_gateway(dict(keys({"key": ALICE, "rpm": 100},
                                      {"key": BOB, "name": "bob"}, state=state),
                                 metrics={"public": True}))
    return base, gw


@pytest.mark.parametrize("with_redis", [False, True], ids=["postgres", "postgres+redis"])
async def test_postgres_stopped_and_started_mid_traffic_loses_no_request_or_row(
        make_gateway, private_postgres, with_redis):
    prefix = f"freeapi-test:{uuid.uuid4().hex}:" if with_redis else None
    base, gw = await outage_gateway(make_gateway, private_postgres, 1000, prefix)
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
    if with_redis:  # its counters are in Redis: a key with limits is served
        assert (await chat(base, ALICE)).code == 200
    else:  # the rule for a store outage: refused, never unmetered
        assert error_of(await chat(base, ALICE), 503)["code"] == "state_unavailable"
    await private_postgres.start()
    await burst(5)
    await gw.store.flush(timeout=15)
    rows = await gw.store.ledger()
    assert sorted(r["request_id"] for r in rows if r["key"] == "bob") == sorted(ids)
    assert (await chat(base, ALICE)).code == 200  # limits are checked again
    assert dropped((await request(base + "/metrics", key=None)).body.decode()) == 0
    if with_redis:
        await gw.store.hot.delete_all()


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


def test_freeapi_processes_started_at_once_migrate_once_and_share_keys(tmp_path, pg_url,
                                                                        io_loop):
    """Three `freeapi` processes (one with --workers 2) started together on an empty
    schema; the `freeapi keys` CLI beside them."""
    import json
    import subprocess
    import sys

    import asyncpg

    from tests.conftest import free_port
    from tests.fakes.deepseek import GOOD
    from tests.helpers import ThreadedFake, wait_listening
    from tests.test_admin_keys_shared import PROPAGATION, ROOT, all_of, stop, within
    from tests.test_admin_keys_shared import admin as admin_sync
    state = {"database_url": pg_url}
    with ThreadedFake() as fake:
        procs, bases, cfgs = [], [], []
        for extra in ((), (), ("--workers", "2")):
            port = free_port()
            cfg = tmp_path / f"config-{port}.yaml"
            cfg.write_text(json.dumps({
                "server": {"host": "127.0.0.1", "port": port},
                "auth": {"keys": [{"key": ADMIN, "name": "root", "role": "admin"}]},
                "providers": {"deepseek": {"base_url": fake.url, "api_keys": [GOOD]}},
                "state": state}))
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "freeapi", "--config", str(cfg), *extra], cwd=ROOT,
                stdout=subprocess.DEVNULL, stderr=open(tmp_path / f"err-{port}", "wb")))
            bases.append(f"http://127.0.0.1:{port}")
            cfgs.append(cfg)
        try:
            for base, proc in zip(bases, procs):
                wait_listening(int(base.rsplit(":", 1)[1]), proc, 30)
            made = admin_sync(bases[0], "POST", "/admin/keys", {"name": "alice"})
            within(PROPAGATION, all_of(bases[1:], made["key"], True, times=4),
                   "another gateway never served the new key")
            out = subprocess.run([sys.executable, "-m", "freeapi", "keys", "list",
                                  "--config", str(cfgs[2])], cwd=ROOT, capture_output=True,
                                 timeout=60)
            assert out.returncode == 0, out.stderr
            assert "alice" in out.stdout.decode()
        finally:
            stop(*procs)

    async def migrations():
        con = await asyncpg.connect(pg_url)
        try:
            return [r[0] for r in await con.fetch("SELECT version FROM freeapi_migrations")]
        finally:
            await con.close()
    from freeapi.store.postgres_schema import MIGRATIONS
    assert sorted(io_loop.run_sync(migrations)) == [v for v, _, _ in MIGRATIONS]


async def test_usage_command_reads_the_postgres_ledger(tmp_path, pg_url):
    """`freeapi usage` on a config whose state is PostgreSQL (its SQLite path left in
    memory: the ledger is in the database, not in a file)."""
    import json

    from freeapi.store.postgres import PostgresStore
    from tests.test_usage import run, sample_entries
    store = PostgresStore(pg_url)
    await store.ledger_append(sample_entries())
    await store.aclose()
    cfg = tmp_path / "config.yaml"
    cfg.write_text(json.dumps({"state": {"path": ":memory:", "database_url": pg_url}}))
    p = await asyncio.get_running_loop().run_in_executor(
        None, lambda: run("usage", "--config", str(cfg), "--json"))
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["total"]["requests"] == 5


async def test_status_keys_and_request_log_read_postgres_also_with_redis_beside_it(
        make_gateway, pg_state):
    """/v1/status, GET /admin/keys and GET /admin/requests answer from PostgreSQL's
    rollups and ledger; with Redis beside it too (the rollups are records: they stay in
    PostgreSQL, written with the ledger rows)."""
    import json

    from tests.test_usage import ledger
    base, gw = make_gateway(keys({"key": ADMIN, "name": "root", "role": "admin"},
                                 {"key": ALICE, "name": "alice"}, state=pg_state))
    ids = [(await chat(base, ALICE)).headers["X-Request-Id"] for _ in range(3)]
    await ledger(gw, 3)
    resp = await request(base + "/v1/status", key=ADMIN)
    assert resp.code == 200, resp.body
    status = json.loads(resp.body)
    [m] = status["models"]["day"]
    assert m["requests"] == 3 and len(status["recent"]) == 3
    alice = next(k for k in status["gateway_keys"] if k["name"] == "alice")
    assert alice["used"]["rpm"] == 3
    code, listed = await admin(base, "GET", "/admin/keys")
    assert code == 200, listed
    [row] = [k for k in listed["data"] if k["id"] == "config:alice"]
    assert row["usage"]["today"]["requests"] == 3
    code, page = await admin(base, "GET", "/admin/requests?key=config:alice&limit=2")
    assert code == 200, page
    assert [r["request_id"] for r in page["data"]] == ids[::-1][:2]
    code, rest = await admin(base, "GET", "/admin/requests?key=config:alice&cursor="
                             + page["next_cursor"])
    assert [r["request_id"] for r in rest["data"]] == ids[:1]
