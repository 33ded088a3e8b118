"""Money tallies (freeapi/store/tallies.py), the same tests against SQLite, Redis,
PostgreSQL and PostgreSQL with Redis beside it: a reservation fits while value + amount
<= limit, all or nothing; additions (settlements) may be negative; an expired tally reads
as 0; many reservations at once through two stores never pass the limit."""

import asyncio
import time

import pytest

from freeapi.store import Tally
from tests.test_store import Backend


@pytest.fixture(params=["sqlite", "redis", "postgres", "postgres+redis"])
def backend(request, tmp_path, io_loop):
    pg = request.getfixturevalue("pg_url") if request.param.startswith("postgres") else None
    b = Backend(request.param, tmp_path, io_loop, pg)
    io_loop.run_sync(b.open().ping)  # a server down fails the test, never skips it
    yield b
    b.cleanup()


@pytest.fixture
def store(backend):
    return backend.opened[0]


def later_ms(seconds: float) -> int:
    return int((time.time() + seconds) * 1000)


async def test_a_reservation_fits_up_to_exactly_the_limit(store):
    day = later_ms(3600)
    for i in range(3):
        ok, failed, values = await store.tally_reserve([Tally("b:k:d", 250, 750, day)])
        assert (ok, failed, values) == (True, -1, [250 * (i + 1)])
    ok, failed, values = await store.tally_reserve([Tally("b:k:d", 1, 750, day)])
    assert (ok, failed, values) == (False, 0, [750])  # unchanged
    assert await store.tally_read(["b:k:d", "b:nobody"]) == [750, 0]


async def test_reservations_are_all_or_nothing(store):
    ok, failed, values = await store.tally_reserve([Tally("b:k:total", 5, 100),
                                                   Tally("b:t:total", 5, 4)])
    assert (ok, failed, values) == (False, 1, [0, 0])
    assert await store.tally_read(["b:k:total", "b:t:total"]) == [0, 0]
    ok, _, values = await store.tally_reserve([Tally("b:k:total", 5, 100),
                                              Tally("b:t:total", 4, None)])
    assert ok and values == [5, 4]  # no limit: never refused


async def test_additions_may_be_negative_and_ignore_limits(store):
    await store.tally_reserve([Tally("b:k:m", 900, 1000)])
    assert await store.tally_add([Tally("b:k:m", -300, 1000)]) == [600]  # a settlement
    assert await store.tally_add([Tally("b:k:m", 700, 10)]) == [1300]  # the real cost
    ok, failed, _ = await store.tally_reserve([Tally("b:k:m", 1, 2000), Tally("b:k:m2", 0, 0)])
    assert ok and failed == -1  # 0 more fits a tally at its limit
    assert (await store.tally_reserve([Tally("b:k:m", 701, 2000)]))[0] is False


async def test_an_expired_tally_reads_as_zero_and_starts_afresh(store):
    await store.tally_add([Tally("b:k:d1", 500, None, later_ms(0.3))])
    assert await store.tally_read(["b:k:d1"]) == [500]
    await asyncio.sleep(0.45)
    assert await store.tally_read(["b:k:d1"]) == [0]
    ok, _, values = await store.tally_reserve([Tally("b:k:d1", 100, 100, later_ms(60))])
    assert ok and values == [100]


async def test_many_reservations_at_once_through_two_stores_never_pass_the_limit(backend):
    a, b = backend.opened[0], backend.open()
    items = [Tally("b:shared:d", 3, 30, later_ms(3600)), Tally("b:team:d", 3, None)]
    got = await asyncio.gather(*(s.tally_reserve(items) for _ in range(20) for s in (a, b)))
    assert sum(ok for ok, _, _ in got) == 10
    assert await a.tally_read(["b:shared:d", "b:team:d"]) == [30, 30]
