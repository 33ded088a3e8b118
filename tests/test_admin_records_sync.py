"""Runtime keys and teams in the state store, as two gateways' directories see them (SQLite
file, Redis, PostgreSQL): a change reaches the other directory by reading only what changed since
its version; deleted teams and revoked or rotated keys disappear from its index; the audit
log pages newest first."""

import asyncio
import time
import uuid

import pytest

from freeapi.admin.directory import Directory
from freeapi.admin.service import Admin
from freeapi.admin.records import new_secret, secret_hash
from freeapi.store.redis import RedisStore
from freeapi.errors import APIError
from freeapi.store.sqlite import SQLiteStore
from tests.helpers import REDIS_URL


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def two_stores(request, tmp_path, io_loop):
    """Two store objects on one backend, as two gateway processes have."""
    if request.param == "sqlite":
        stores = [SQLiteStore(str(tmp_path / "s.db")) for _ in range(2)]
    elif request.param == "postgres":
        from freeapi.store.postgres import PostgresStore
        url = request.getfixturevalue("pg_url")
        stores = [PostgresStore(url) for _ in range(2)]
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


async def test_a_write_checked_against_an_overtaken_version_is_not_made(two_stores):
    a, b = two_stores
    read_at = await a.admin_version()
    assert await a.admin_write("key", "key_a", key("key_a", new_secret()),
                               {"ts": 1.0, "actor": "a"}, expect=read_at) == read_at + 1
    assert await b.admin_write("key", "key_b", key("key_b", new_secret()),
                               {"ts": 2.0, "actor": "b"}, expect=read_at) is None
    version, changes = await b.admin_changes(read_at)
    assert version == read_at + 1 and [rid for _, rid, _ in changes] == ["key_a"]
    assert [e["actor"] for e in await b.admin_audit(None, 10)] == ["a"]


class ChecksBeforeWrites:
    """A store whose first admin writes wait until `n` have arrived: every admin has made
    its checks before any of them writes (the race two admins clicking at once run)."""

    def __init__(self, store, arrived: list, all_in: asyncio.Event, n: int):
        self.store, self.arrived, self.all_in, self.n = store, arrived, all_in, n

    def __getattr__(self, name):
        return getattr(self.store, name)

    async def admin_write(self, *args, **kw):
        self.arrived.append(1)
        if len(self.arrived) >= self.n:
            self.all_in.set()
        await self.all_in.wait()
        return await self.store.admin_write(*args, **kw)


@pytest.mark.parametrize("kind", ["key", "team"])
async def test_two_admins_creating_one_name_at_once_make_one_record(two_stores, kind):
    arrived, all_in = [], asyncio.Event()
    admins = []
    for store in two_stores:
        raced = ChecksBeforeWrites(store, arrived, all_in, len(two_stores))
        admins.append(Admin(raced, Directory(raced), lambda: ()))
    create = (lambda admin: admin.create_key({"name": "shared"}, "admin")) if kind == "key" \
        else (lambda admin: admin.create_team({"name": "shared"}, "admin"))
    got = await asyncio.gather(*(create(admin) for admin in admins), return_exceptions=True)
    refused = [g for g in got if isinstance(g, APIError)]
    assert len(refused) == 1 and (refused[0].status, refused[0].code) == (409, "name_taken")
    assert len(arrived) == 2  # both had checked; the overtaken one, reading again, stopped
    _, keys, teams = await two_stores[0].admin_load()
    assert [r["name"] for r in (keys if kind == "key" else teams).values()] == ["shared"]
