"""Runtime keys and teams in the state store, as two gateways' directories see them (SQLite
file and Redis): a change reaches the other directory by reading only what changed since
its version; deleted teams and revoked or rotated keys disappear from its index; the audit
log pages newest first."""

import asyncio
import time
import uuid

import pytest

from freeapi.admin.directory import Directory
from freeapi.admin.records import new_secret, secret_hash
from freeapi.store.redis import RedisStore
from freeapi.store.sqlite import SQLiteStore
from tests.test_store import REDIS_URL


@pytest.fixture(params=["sqlite", "redis"])
def two_stores(request, tmp_path, io_loop):
    """Two store objects on one backend, as two gateway processes have."""
    if request.param == "sqlite":
        stores = [SQLiteStore(str(tmp_path / "s.db")) for _ in range(2)]
    else:
        prefix = f"freeapi-test:{uuid.uuid4().hex}:"
        stores = [RedisStore(REDIS_URL, prefix=prefix) for _ in range(2)]
    yield stores
    if request.param == "redis":
        io_loop.run_sync(stores[0].delete_all)
    for s in stores:
        s.close()
    io_loop.run_sync(lambda: asyncio.sleep(0))


def key(rid, secret, team=None, **extra):
    return {"id": rid, "name": rid, "team": team, "created_at": 0, "revoked_at": None,
            "expires_at": None, "hashes": [{"hash": secret_hash(secret), "until": None}],
            **extra}


async def write(store, kind, rid, record):
    return await store.admin_write(kind, rid, record, {"ts": time.time(), "actor": "t",
                                                       "action": f"{kind}.x"})


async def test_a_change_reaches_the_other_directory_incrementally(two_stores):
    a, b = two_stores
    da, db = Directory(a), Directory(b)
    await da.refresh()
    await db.refresh()
    s1, s2 = new_secret(), new_secret()
    await write(a, "team", "team_1", {"id": "team_1", "name": "t", "rpm": 2,
                                      "created_at": 0})
    await write(a, "key", "key_1", key("key_1", s1, team="team_1"))
    await write(a, "key", "key_2", key("key_2", s2))
    assert db.identify(s1) is None  # not polled yet
    seen = []
    real = b.admin_changes

    async def spy(since):
        seen.append(since)
        return await real(since)
    b.admin_changes = spy
    assert await db.refresh()
    assert seen == [0]  # from the version it had, not a full read
    caller = db.identify(s1)
    assert caller.name == "key_1" and caller.team.rpm == 2 and caller.limited
    assert db.identify(s2).team is None
    assert not await db.refresh()  # nothing changed: one version read, nothing else

    # The team changes: its keys see the new limits; then it is deleted.
    await write(a, "team", "team_1", {"id": "team_1", "name": "t", "rpm": 9,
                                      "created_at": 0})
    await db.refresh()
    assert db.identify(s1).team.rpm == 9
    await write(a, "key", "key_1", key("key_1", s1))  # moved out of the team
    await write(a, "team", "team_1", None)
    await db.refresh()
    assert "team_1" not in db.teams and db.identify(s1).team is None

    # Rotation without grace and revocation drop the old secret from the index.
    s3 = new_secret()
    await write(a, "key", "key_2", key("key_2", s3))
    await write(a, "key", "key_1", dict(key("key_1", s1), hashes=[], revoked_at=1.0))
    await db.refresh()
    assert db.identify(s2) is None and db.identify(s3).name == "key_2"
    assert db.identify(s1) is None
    # A fresh directory (a gateway starting now) reads the same state in full.
    fresh = Directory(b)
    await fresh.refresh()
    assert fresh.version == db.version and fresh.keys == db.keys and fresh.teams == db.teams
    assert fresh.identify(s3).name == "key_2" and fresh.identify(s1) is None


async def test_the_audit_log_pages_newest_first(two_stores):
    a, b = two_stores
    for i in range(5):
        await write(a, "key", f"key_{i}", key(f"key_{i}", new_secret()))
    page = await b.admin_audit(None, 2)
    assert [e["seq"] for e in page] == sorted((e["seq"] for e in page), reverse=True)
    rest = await b.admin_audit(page[-1]["seq"], 10)
    assert len(page) + len(rest) == 5 and rest[0]["seq"] < page[-1]["seq"]


async def test_an_older_read_never_undoes_a_newer_one(two_stores):
    a, _ = two_stores
    d = Directory(a)
    await d.refresh()
    secret = new_secret()
    await write(a, "key", "key_1", key("key_1", secret))
    stale = await a.admin_changes(d.version)  # read before the revocation ...
    await write(a, "key", "key_1", dict(key("key_1", secret), hashes=[], revoked_at=1.0))
    await d.refresh()
    assert d.identify(secret) is None
    d.apply(*stale)  # ... and applied after it, as a concurrent refresh may
    assert d.identify(secret) is None
