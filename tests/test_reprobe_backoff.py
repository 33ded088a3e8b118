"""A dead key's background re-probe backs off: each failed probe doubles the wait, up to
`probe_cap`. The clock is injected (the pool's sleeps are recorded, not slept), so the test
pins the schedule itself rather than racing it."""

import asyncio

import pytest

import freeapi.keypool as keypool
from freeapi.keypool import INVALID, OK, HealthStore, KeyPool

KEY = "sk-aaaaaaaaaaaa1111"


class RecordedSleeps:
    """Stands in for the asyncio module inside keypool: sleeps are recorded and return at
    once; everything else is asyncio's."""

    def __init__(self):
        self.waits = []

    async def sleep(self, seconds):
        self.waits.append(seconds)
        await asyncio.sleep(0)

    def __getattr__(self, name):
        return getattr(asyncio, name)


@pytest.fixture
def sleeps(monkeypatch):
    fake = RecordedSleeps()
    monkeypatch.setattr(keypool, "asyncio", fake)
    monkeypatch.setattr(keypool.random, "uniform", lambda a, b: 1.0)  # no jitter
    return fake


async def test_each_failed_reprobe_doubles_the_wait_up_to_the_cap(sleeps):
    probes = []

    async def prober(key):
        probes.append(key)
        return len(probes) >= 7  # dead six times, then alive

    p = KeyPool("p", HealthStore(), prober=prober, probe_interval=1.0, probe_cap=16.0)
    (await p.acquire([KEY])).release(401)
    assert p.status([KEY])[0]["state"] == INVALID
    for _ in range(200):
        if p.status([KEY])[0]["state"] == OK:
            break
        await asyncio.sleep(0)
    assert p.status([KEY])[0]["state"] == OK
    assert sleeps.waits == [1.0, 2.0, 4.0, 8.0, 16.0, 16.0, 16.0]
    assert len(probes) == 7


async def test_a_probe_that_cannot_tell_backs_off_like_a_dead_key(sleeps):
    calls = []

    async def prober(key):
        calls.append(key)
        if len(calls) >= 4:
            return True
        raise OSError("vendor unreachable")  # could not tell: keep waiting, longer

    p = KeyPool("p", HealthStore(), prober=prober, probe_interval=0.5, probe_cap=100.0)
    (await p.acquire([KEY])).release(403)
    for _ in range(200):
        if p.status([KEY])[0]["state"] == OK:
            break
        await asyncio.sleep(0)
    assert sleeps.waits == [0.5, 1.0, 2.0, 4.0]
