"""A dead key's background re-probe backs off: each failed probe doubles the wait, up to
`probe_cap`. The clock is injected (the pool's sleeps are recorded, not slept), so the test
pins the schedule itself rather than racing it."""

import asyncio

import pytest

import freeapi.keyprobes as keyprobes
from freeapi.keypool import INVALID, OK, HealthStore, KeyPool

KEY = "sk-aaaaaaaaaaaa1111"


class RecordedSleeps:
    """Stands in for the asyncio module inside keyprobes: sleeps are recorded and return at
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
    monkeypatch.setattr(keyprobes, "asyncio", fake)
    monkeypatch.setattr(keyprobes.random, "uniform", lambda a, b: 1.0)  # no jitter
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


async def test_a_reprobe_waits_its_jittered_interval_and_is_announced(sleeps, monkeypatch):
    class Clock:
        def monotonic(self):
            return 1000.0

        def time(self):
            return 1_800_000_000.0

    monkeypatch.setattr(keyprobes.random, "uniform", lambda a, b: a * 0.25 + b * 0.75)
    seen, answers = [], [False, True, True]

    async def prober(key):
        assert p.probe_at == {KEY: 1_800_000_000.0 + sleeps.waits[-1]}
        return answers.pop(0)

    p = KeyPool("p", HealthStore(), prober=prober, probe_interval=100.0, clock=Clock(),
                on_change=lambda key, h: seen.append((key, h.state)))
    for _ in range(2):  # the key dies, is restored by its probe, and dies again
        (await p.acquire([KEY])).release(401)
        for _ in range(50):
            if p.status([KEY])[0]["state"] == OK:
                break
            await asyncio.sleep(0)
        assert p.status([KEY])[0]["state"] == OK and p.probe_at == {}
    assert sleeps.waits == [105.0, 210.0, 105.0]  # 0.9..1.1 times the interval, doubling
    assert seen == [(KEY, INVALID), (KEY, OK)] * 2
    (await p.acquire([KEY])).release(429)  # a restored key's backoff starts afresh
    assert p.store.get("p", KEY).strikes == 1


async def test_a_keyless_hosts_probe_brings_it_back_only_on_an_answer(sleeps):
    answers = [OSError("connection refused"), False, True]

    async def host_prober():
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    p = KeyPool("p", HealthStore(), host_prober=host_prober)
    (await p.acquire([None])).release(None, error="connect")
    for _ in range(50):
        if p.status([None])[0]["state"] == OK:
            break
        await asyncio.sleep(0)
    assert answers == [] and p.status([None])[0]["state"] == OK
    assert sleeps.waits == [keyprobes.HOST_PROBE_INTERVAL] * 3


async def test_a_dead_key_is_reprobed_at_least_every_15_minutes_by_default(sleeps):
    probes = []

    async def prober(key):
        probes.append(key)
        return len(probes) >= 3

    p = KeyPool("p", HealthStore(), prober=prober, probe_interval=600.0)  # the app sets no cap
    (await p.acquire([KEY])).release(401)
    for _ in range(200):
        if p.status([KEY])[0]["state"] == OK:
            break
        await asyncio.sleep(0)
    assert sleeps.waits == [600.0, 900.0, 900.0]
