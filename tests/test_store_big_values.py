"""Big values in the state store, on SQLite and Redis: a big JSON record (a stored
response) is decoded off the event loop's thread, and raw bytes (a file's content) are
read back in bounded pieces, whatever their size."""

import threading

import pytest

from freeapi.store import BIG_JSON, BLOB_PIECE
from freeapi.store.redis import RedisStore
from freeapi.store.sqlite import SQLiteStore


@pytest.fixture
def store(state_backend):
    s = RedisStore(state_backend["redis_url"], prefix=state_backend["prefix"]) \
        if "redis_url" in state_backend else SQLiteStore(state_backend["path"])
    yield s
    s.close()


async def test_a_big_record_is_decoded_off_the_event_loop(store, monkeypatch):
    import json
    decoded_on = []
    real = json.loads

    def loads(raw, *a, **kw):
        decoded_on.append(threading.current_thread() is threading.main_thread())
        return real(raw, *a, **kw)
    big = {"response": "r" * (BIG_JSON + 10)}
    await store.kv_put("rs", "big", big, 60)
    await store.kv_put("rs", "small", {"n": 1}, 60)
    monkeypatch.setattr(json, "loads", loads)
    assert (await store.kv_get("rs", ["big"]))["big"] == big
    assert decoded_on == [False]
    assert (await store.kv_get("rs", ["small"]))["small"] == {"n": 1}


async def test_raw_bytes_come_back_in_bounded_pieces(store):
    data = bytes(range(256)) * (BLOB_PIECE // 256 * 3 + 7)
    await store.blob_put("fib", "f1", data, 60)
    got, at = b"", 0
    while True:
        piece = await store.blob_read("fib", "f1", at, 10 * BLOB_PIECE)
        if not piece:
            break
        assert len(piece) <= BLOB_PIECE
        got += piece
        at += len(piece)
    assert got == data
    assert await store.blob_read("fib", "f1", 5, 3) == data[5:8]
    assert await store.blob_read("fib", "nothing", 0, 10) == b""
    assert await store.blob_delete("fib", "f1")
    assert await store.blob_read("fib", "f1", 0, 10) == b""
