"""GET /v1/files, OpenAI's list files (https://platform.openai.com/docs/api-reference/files/list),
with the `openai` SDK's `files.list()`: a caller sees only their own live files, filtered by
`purpose`, in `created_at` order, paged by `limit` and `after`; two gateways sharing one
state store (an SQLite file, or Redis) lose no upload from the list."""

import asyncio
import os
import uuid

import pytest

from freeapi.modalities import files as files_mod
from freeapi.store.redis import RedisStore
from tests.helpers import client, error_of, eventually, request
REDIS_URL = os.environ.get("FREEAPI_TEST_REDIS", "redis://127.0.0.1:6379/0")
ALICE, BOB = "gw-files-alice-00001", "gw-files-bob-000002"


@pytest.fixture(params=["sqlite", "redis"])
def two(request, make_gateway, tmp_path, io_loop):
    """Two gateways on one state store, as two instances behind a load balancer."""
    if request.param == "sqlite":
        state = {"path": str(tmp_path / "state.db")}
    else:
        state = {"redis_url": REDIS_URL, "prefix": f"freeapi-test:{uuid.uuid4().hex}:"}
    # Uploads at once (below) are what these tests race, not files.max_concurrent_uploads.
    config = {"auth": {"keys": [ALICE, BOB]}, "state": state,
              "files": {"max_concurrent_uploads": 16}}
    (a, gw_a), (b, _) = make_gateway(config), make_gateway(config)
    yield a, b, gw_a
    if request.param == "redis":
        async def wipe():
            store = RedisStore(REDIS_URL, prefix=state["prefix"])
            await store.delete_all()
            store.close()
        io_loop.run_sync(wipe)


async def upload(base, key, name, purpose="user_data"):
    c = client(base, key)
    try:
        return await c.files.create(file=(name, name.encode(), "text/plain"),
                                    purpose=purpose)
    finally:
        await c.close()


async def listed(base, key, **params):
    c = client(base, key)
    try:
        return [f async for f in c.files.list(**params)]  # every page, as the SDK pages
    finally:
        await c.close()


async def test_each_caller_lists_only_their_own_files(two):
    a, b, _ = two
    mine = [await upload(a if i % 2 else b, ALICE, f"alice-{i}.txt") for i in range(3)]
    bobs = await upload(b, BOB, "bob.txt")
    got = await listed(a, ALICE)
    assert sorted(f.id for f in got) == sorted(f.id for f in mine)
    assert {f.filename for f in got} == {"alice-0.txt", "alice-1.txt", "alice-2.txt"}
    assert all(f.object == "file" and f.bytes == 11 and f.purpose == "user_data"
               for f in got)
    assert [f.id for f in await listed(b, BOB)] == [bobs.id]
    # Newest first by default; `order=asc` is the reverse (ties broken by id).
    newest = sorted(mine, key=lambda f: (f.created_at, f.id), reverse=True)
    assert [f.id for f in got] == [f.id for f in newest]
    assert [f.id for f in await listed(b, ALICE, order="asc")] == [f.id for f in newest][::-1]


async def test_purpose_filters_the_list(two):
    a, b, _ = two
    await upload(a, ALICE, "notes.txt", purpose="user_data")
    tuned = await upload(b, ALICE, "train.jsonl", purpose="fine-tune")
    assert [f.id for f in await listed(a, ALICE, purpose="fine-tune")] == [tuned.id]
    assert len(await listed(a, ALICE)) == 2
    assert await listed(a, ALICE, purpose="batch") == []


async def test_limit_and_after_page_through_without_overlap(two):
    a, b, _ = two
    ids = {(await upload(a if i % 2 else b, ALICE, f"p{i}.txt")).id for i in range(5)}
    c = client(a, ALICE)
    first = await c.files.list(limit=2)
    assert len(first.data) == 2 and first.has_more is True
    second = await c.files.list(limit=2, after=first.data[-1].id)
    assert len(second.data) == 2 and second.has_more is True
    last = await c.files.list(limit=2, after=second.data[-1].id)
    assert len(last.data) == 1 and last.has_more is False
    pages = [f.id for p in (first, second, last) for f in p.data]
    assert len(pages) == 5 and set(pages) == ids
    assert [f.id for f in await listed(b, ALICE, limit=2)] == pages  # the SDK's auto-paging
    await c.close()


async def test_deleted_and_expired_files_are_not_listed(two, monkeypatch):
    a, b, _ = two
    kept = await upload(a, ALICE, "kept.txt")
    deleted = await upload(a, ALICE, "deleted.txt")
    monkeypatch.setattr(files_mod, "FILE_TTL", 0.3)  # this one lives 0.3 s
    expired = await upload(b, ALICE, "expired.txt")
    monkeypatch.undo()
    c = client(b, ALICE)
    await c.files.delete(deleted.id)
    await c.close()

    async def only_the_kept_one():
        return [f.id for f in await listed(a, ALICE)] == [kept.id]
    await eventually(only_the_kept_one, "the brief file expired")
    assert (await request(a + f"/v1/files/{expired.id}", key=ALICE)).code == 404


async def test_uploads_at_once_through_two_gateways_are_all_listed(two):
    a, b, _ = two
    made = await asyncio.gather(*(upload(a if i % 2 else b, ALICE, f"c{i}.txt")
                                  for i in range(12)))
    assert sorted(f.id for f in await listed(b, ALICE)) == sorted(f.id for f in made)
    assert await listed(a, BOB) == []


@pytest.mark.parametrize("query,param", [
    ("limit=0", "limit"), ("limit=10001", "limit"), ("limit=ten", "limit"),
    ("order=sideways", "order"), ("after=file-nosuchfile000000000", "after"),
])
async def test_bad_list_parameters_are_a_clear_400(two, query, param):
    a, _, _ = two
    err = error_of(await request(a + f"/v1/files?{query}", key=ALICE), 400)
    assert err["param"] == param


async def test_a_file_stored_before_listing_existed_is_readable_but_not_listed(two):
    a, _, gw_a = two
    owner = "g:" + __import__("hashlib").sha256(ALICE.encode()).hexdigest()[:32]
    rec = {"owner": owner, "filename": "old.txt", "media_type": "text/plain",
           "purpose": "user_data", "bytes": 3, "created_at": 1700000000, "data": "b2xk"}
    await gw_a.store.kv_put(files_mod.NS, "file-uploadedbeforelisting1", rec, 60)
    got = await request(a + "/v1/files/file-uploadedbeforelisting1/content", key=ALICE)
    assert got.code == 200 and got.body == b"old"
    assert await listed(a, ALICE) == []


async def test_callers_without_credentials_get_no_listing(make_gateway):
    base, _ = make_gateway({"auth": {"allow_anonymous": True}})
    err = error_of(await request(base + "/v1/files", key=None), 401)
    assert err["code"] == "missing_api_key"
