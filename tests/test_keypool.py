"""Key pool health rules, without HTTP."""

import asyncio
import time

import pytest

from freeapi.errors import APIError
from freeapi.keypool import COOLDOWN, INVALID, NO_BALANCE, OK, HealthStore, KeyPool, \
    retry_after_seconds

A, B, C = "sk-aaaaaaaaaaaa1111", "sk-bbbbbbbbbbbb2222", "sk-cccccccccccc3333"


def pool(**kw):
    return KeyPool("p", HealthStore(), **kw)


class Clock:
    """A clock the test moves forward instead of sleeping through a cooldown."""

    def __init__(self):
        self.now = 1_000.0

    def monotonic(self):
        return self.now

    def time(self):
        return 1_800_000_000.0 + self.now

    def advance(self, seconds: float):
        self.now += seconds


async def test_least_in_flight_spreads_load():
    p = pool()
    leases = [await p.acquire([A, B, C]) for _ in range(6)]
    assert sorted(p.in_flight.values()) == [2, 2, 2]
    for lease in leases:
        lease.release(200)
    assert p.in_flight == {}


async def test_429_cools_down_for_retry_after_then_returns():
    clock = Clock()
    p = pool(clock=clock)
    lease = await p.acquire([A])
    lease.release(429, retry_after="30")
    assert p.status([A])[0]["state"] == COOLDOWN
    assert await p.acquire([A]) is None
    assert p.wait_hint([A]) == 30
    clock.advance(29.9)
    assert await p.acquire([A]) is None  # not a moment before the vendor said
    clock.advance(0.2)
    lease = await p.acquire([A])
    assert lease and lease.key == A
    lease.release(200)
    assert p.status([A])[0]["state"] == OK


async def test_429_without_retry_after_backs_off_exponentially():
    clock = Clock()
    p = pool(clock=clock)
    waits = []
    for _ in range(3):
        h = p.store.get("p", A)
        h.state, h.until = OK, 0
        (await p.acquire([A])).release(429)
        waits.append(h.until - clock.monotonic())
    assert waits[0] < waits[1] < waits[2]
    assert 0.7 < waits[0] < 1.3 and 3.0 < waits[2] < 5.0


@pytest.mark.parametrize("status,state", [(401, INVALID), (403, INVALID), (402, NO_BALANCE)])
async def test_dead_key_is_skipped_then_reprobed_and_restored(status, state):
    live = {A: False}

    async def prober(key):
        return live[key]

    p = pool(prober=prober, probe_interval=0.1)
    (await p.acquire([A, B], exclude={B})).release(status)
    assert p.status([A])[0]["state"] == state
    for _ in range(3):
        lease = await p.acquire([A, B])
        assert lease.key == B
        lease.release(200)
    await asyncio.sleep(0.25)
    assert p.status([A])[0]["state"] == state  # probe said still dead
    live[A] = True
    await asyncio.sleep(0.5)  # the probe backs off 0.1 -> 0.2 -> 0.4
    assert p.status([A])[0]["state"] == OK
    p.close()


async def test_one_5xx_is_not_a_strike_but_a_run_is():
    p = pool()
    (await p.acquire([A])).release(503)
    assert p.status([A])[0]["state"] == OK
    for _ in range(3):
        (await p.acquire([A])).release(None, error="timeout")
    assert p.status([A])[0]["state"] == OK  # 4 failures: below ERROR_MIN
    (await p.acquire([A])).release(None, error="timeout")
    assert p.status([A])[0]["state"] == COOLDOWN


async def test_max_concurrency_one_never_shares_a_key():
    p = pool(max_concurrency=1, queue_timeout=5)
    busy, peak, served = set(), [0], []

    async def request(i):
        lease = await p.acquire([A, B])
        assert lease.key not in busy
        busy.add(lease.key)
        peak[0] = max(peak[0], len(busy))
        await asyncio.sleep(0.01)
        busy.discard(lease.key)
        lease.release(200)
        served.append(i)

    await asyncio.gather(*(request(i) for i in range(20)))
    assert len(served) == 20 and peak[0] == 2


async def test_queue_full_and_queue_timeout_are_clear_429s():
    p = pool(max_concurrency=1, max_queue=1, queue_timeout=0.2)
    held = await p.acquire([A])
    waiter = asyncio.ensure_future(p.acquire([A]))
    await asyncio.sleep(0.01)
    with pytest.raises(APIError) as full:
        await p.acquire([A])
    assert full.value.status == 429 and full.value.code == "queue_full"
    with pytest.raises(APIError) as slow:
        await waiter
    assert slow.value.status == 429 and slow.value.code == "queue_timeout"
    held.release(200)


async def test_last_resort_tries_a_known_invalid_passthrough_key():
    p = pool()
    (await p.acquire([A])).release(401)
    assert await p.acquire([A]) is None
    lease = await p.acquire([A], last_resort=True)
    assert lease.key == A
    lease.release(200)


def test_retry_after_forms():
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


async def test_status_masks_keys():
    p = pool()
    (await p.acquire([A])).release(429, retry_after="10")
    row = p.status([A])[0]
    assert row["id"] == "sk-...1111" and A not in str(row)
    assert row["last_error"] == "HTTP 429" and 9 < row["cooldown_remaining"] <= 10


async def test_a_freed_key_wakes_the_oldest_waiter_that_can_use_it():
    p = pool(max_concurrency=1, queue_timeout=2)
    on_a, on_b = await p.acquire([A]), await p.acquire([B])
    wants_a = asyncio.ensure_future(p.acquire([A, B], exclude={B}))  # queued first
    wants_b = asyncio.ensure_future(p.acquire([A, B], exclude={A}))
    await asyncio.sleep(0.01)
    start = time.monotonic()
    on_b.release(200)
    lease = await asyncio.wait_for(wants_b, 0.5)
    assert lease.key == B and time.monotonic() - start < 0.1
    assert not wants_a.done()
    on_a.release(200)
    assert (await asyncio.wait_for(wants_a, 0.5)).key == A


# -- out of balance on vendors whose key check cannot see a balance -----------------------

async def test_out_of_balance_key_waits_its_pause_and_is_never_probed():
    probed = []

    async def prober(key):
        probed.append(key)
        return True  # a GET /models or a 1-token chat would say "live"

    clock = Clock()
    p = pool(prober=prober, probe_interval=0.01, no_balance_wait=300, clock=clock)
    lease = await p.acquire([A, B])
    first = lease.key
    lease.release(402)
    row = p.status([first])[0]
    assert row["state"] == NO_BALANCE and row["cooldown_remaining"] == 300
    clock.advance(299)
    await asyncio.sleep(0.05)  # a background probe, were one scheduled, would run now
    assert probed == [] and p.status([first])[0]["state"] == NO_BALANCE
    assert await p.acquire([first]) is None  # still out
    clock.advance(2)
    lease = await p.acquire([first])  # the pause is over: a request tries it again
    assert lease is not None and lease.key == first
    lease.release(402)  # still no money: another full pause
    assert p.status([first])[0]["state"] == NO_BALANCE
    assert await p.acquire([first]) is None
    assert probed == []


async def test_out_of_balance_key_with_a_balance_check_is_probed():
    answers = [False, True]

    async def prober(key):
        return answers.pop(0)

    p = pool(prober=prober, probe_interval=0.01)  # no_balance_wait None: the check decides
    lease = await p.acquire([A])
    lease.release(402)
    assert p.status([A])[0]["state"] == NO_BALANCE
    for _ in range(100):
        if p.status([A])[0]["state"] == OK:
            break
        await asyncio.sleep(0.01)
    assert p.status([A])[0]["state"] == OK and answers == []


async def test_a_peers_out_of_balance_verdict_pauses_from_its_time():
    probed = []

    async def prober(key):
        probed.append(key)
        return True

    p = pool(prober=prober, probe_interval=0.01, no_balance_wait=100.0)
    p.apply(A, NO_BALANCE, 0.0, time.time() - 40)  # seen by another gateway 40 s ago
    row = p.status([A])[0]
    assert row["state"] == NO_BALANCE and 55 < row["cooldown_remaining"] <= 60
    await asyncio.sleep(0.05)
    assert probed == []


async def test_keyless_server_answering_402_is_rechecked_not_paused():
    answers = [True]

    async def prober(key):
        return answers.pop(0)

    p = pool(prober=prober, probe_interval=0.01, no_balance_wait=3600.0)
    lease = await p.acquire([None])
    lease.release(402)
    for _ in range(100):
        if p.status([None])[0]["state"] == OK:
            break
        await asyncio.sleep(0.01)
    assert p.status([None])[0]["state"] == OK and answers == []
