"""Key pool health rules, without HTTP."""

import asyncio
import time

import pytest

from freeapi.errors import APIError
from freeapi.keypool import COOLDOWN, HOST_RETRY_MAX, INVALID, NO_BALANCE, OK, HealthStore, \
    KeyPool, retry_after_seconds
from tests.helpers import Clock, eventually

A, B, C = "sk-aaaaaaaaaaaa1111", "sk-bbbbbbbbbbbb2222", "sk-cccccccccccc3333"


def pool(**kw):
    return KeyPool("p", HealthStore(), **kw)


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
    live[A] = True  # the probe backs off 0.1 -> 0.2 -> 0.4: one of them sees it
    await eventually(lambda: p.status([A])[0]["state"] == OK, "a re-probe restored it")
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
    assert (full.value.status, full.value.code, full.value.retry_after) == (429, "queue_full", "1")
    assert full.value.message == ("p: all keys are busy and the queue is full (1 waiting); "
                                  "retry shortly.")
    with pytest.raises(APIError) as slow:
        await waiter
    assert (slow.value.status, slow.value.code, slow.value.retry_after) == (
        429, "queue_timeout", "1")
    assert slow.value.message == "p: all keys stayed busy for 0.2s; retry later."
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
    assert retry_after_seconds("0") == 0.0 and retry_after_seconds("-5") == 0.0


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


async def test_cancel_frees_the_slot_without_a_verdict_on_the_key():
    p = pool(max_concurrency=1)
    (await p.acquire([A])).release(429, retry_after="0")  # one strike on record
    lease = await p.acquire([A])
    assert p.in_flight == {A: 1}
    lease.cancel()
    lease.cancel()  # a second cancel, or a release after it, changes nothing
    lease.release(401)
    assert p.in_flight == {}
    h = p.store.get("p", A)
    assert (h.state, h.strikes, h.last_error) == (OK, 1, "HTTP 429")
    again = await p.acquire([A])
    assert again.key == A
    again.release(200)


async def test_a_cooldown_ending_now_is_over():
    clock = Clock()
    p = pool(clock=clock)
    (await p.acquire([A])).release(429, retry_after="30")
    clock.advance(30)
    assert p.wait_hint([A]) is None and p.status([A])[0]["state"] == OK


async def test_an_out_of_balance_pause_is_no_cooldown_in_the_refusal():
    clock = Clock()
    p = pool(clock=clock, no_balance_wait=600.0)
    (await p.acquire([A])).release(402)
    assert await p.acquire([A]) is None
    assert p.wait_hint([A]) is None
    err = p.refusal([A])
    assert err.status == 503 and err.code == "no_usable_key"


# -- verdicts from other gateways (apply) ---------------------------------------------------

async def test_a_peers_cooldown_pauses_the_key_until_the_peers_end():
    clock = Clock()
    p = pool(clock=clock)
    p.apply(A, COOLDOWN, clock.time() + 30, clock.time())
    assert p.status([A])[0]["state"] == COOLDOWN and p.wait_hint([A]) == 30
    p.apply(B, COOLDOWN, clock.time() - 1, clock.time() - 31)  # already over: ignored
    assert p.store.get("p", B).state == OK


async def test_a_peers_cooldown_only_ever_lengthens_ours():
    clock = Clock()
    p = pool(clock=clock)
    (await p.acquire([A])).release(429, retry_after="30")
    p.apply(A, COOLDOWN, clock.time() + 10, clock.time())  # shorter: ours stands
    assert p.wait_hint([A]) == 30
    p.apply(A, COOLDOWN, clock.time() + 30.03, clock.time())  # our own, echoed back
    assert p.wait_hint([A]) == 30
    p.apply(A, COOLDOWN, clock.time() + 31, clock.time())
    assert p.wait_hint([A]) == 31


async def test_a_peers_cooldown_does_not_revive_an_invalid_key():
    clock = Clock()
    p = pool(clock=clock)
    (await p.acquire([A])).release(401)
    p.apply(A, COOLDOWN, clock.time() + 30, clock.time())
    assert p.status([A])[0]["state"] == INVALID
    clock.advance(31)
    assert await p.acquire([A]) is None


async def test_a_peers_restore_does_not_end_our_cooldown():
    clock = Clock()
    p = pool(clock=clock)
    (await p.acquire([A])).release(429, retry_after="30")
    p.apply(A, OK, 0.0, clock.time())
    assert p.status([A])[0]["state"] == COOLDOWN and p.wait_hint([A]) == 30


async def test_only_a_newer_peer_verdict_changes_a_key():
    clock = Clock()
    p = pool(clock=clock)
    (await p.acquire([A])).release(401)
    t = clock.time()  # our invalid verdict's time
    p.apply(A, NO_BALANCE, 0.0, t + 5)  # a peer's later verdict on an invalid key
    assert p.status([A])[0]["state"] == INVALID
    p.apply(A, OK, 0.0, t)  # a restore no newer than our verdict
    assert p.status([A])[0]["state"] == INVALID
    p.apply(A, OK, 0.0, t + 1)
    assert p.status([A])[0]["state"] == OK
    p.apply(A, INVALID, 0.0, t + 1)  # a verdict no newer than that restore
    assert p.status([A])[0]["state"] == OK
    p.apply(A, INVALID, 0.0, t + 2)
    row = p.status([A])[0]
    assert row["state"] == INVALID and row["last_error"] == "invalid (seen by another gateway)"


async def test_a_peers_invalid_verdict_starts_a_reprobe_of_that_key():
    clock = Clock()
    p = pool(clock=clock, prober=lambda key: asyncio.sleep(0, result=False),
             probe_interval=60.0, no_balance_wait=600.0)
    p.apply(A, INVALID, 0.0, clock.time())
    await asyncio.sleep(0)
    assert list(p.probe_at) == [A]
    p.close()


async def test_a_key_restored_by_a_peer_starts_its_backoff_afresh():
    clock = Clock()
    p = pool(clock=clock)
    p.apply(A, INVALID, 0.0, clock.time() - 5)
    p.apply(A, OK, 0.0, clock.time() - 1)
    assert p.status([A])[0]["state"] == OK
    p.apply(A, COOLDOWN, clock.time() + 30, clock.time())  # a restored key cools down again
    assert p.wait_hint([A]) == 30
    clock.advance(30)
    (await p.acquire([A])).release(429)  # no Retry-After: the first step of the backoff
    assert 0.8 <= p.wait_hint([A]) <= 1.2


# -- why no key was found (refusal) ---------------------------------------------------------

@pytest.mark.parametrize("error,status,type_,code,what", [
    ("timeout", 504, "timeout_error", "upstream_timeout", "did not answer in time"),
    ("connect", 502, "server_error", "upstream_unreachable", "could not be reached"),
    ("closed", 502, "server_error", "upstream_unreachable", "dropped the connection")])
async def test_a_keyless_host_that_failed_is_refused_with_the_real_error(error, status, type_,
                                                                       code, what):
    clock = Clock()
    p = pool(clock=clock)
    (await p.acquire([None])).release(None, error=error)
    assert await p.acquire([None]) is None
    err = p.refusal([None])
    assert (err.status, err.type, err.code, err.retry_after) == (status, type_, code, "1")
    assert err.message == (f"p: the server {what} moments ago; the gateway checks it every "
                           "1s and lets requests through as soon as it answers.")
    clock.advance(HOST_RETRY_MAX)  # then requests try the host themselves
    lease = await p.acquire([None])
    assert lease is not None
    lease.cancel()


async def test_a_keyless_host_answering_429_is_cooling_down_not_unreachable():
    clock = Clock()
    p = pool(clock=clock)
    (await p.acquire([None])).release(429, retry_after="20")
    err = p.refusal([None])
    assert (err.status, err.code, err.retry_after) == (429, "keys_cooling_down", "20")


async def test_keys_all_cooling_down_are_refused_with_the_earliest_end():
    clock = Clock()
    p = pool(clock=clock)
    (await p.acquire([A])).release(429, retry_after="30")
    (await p.acquire([B])).release(429, retry_after="10.4")
    err = p.refusal([A, B])
    assert (err.status, err.type, err.code, err.retry_after) == (
        429, "rate_limit_error", "keys_cooling_down", "10")
    assert err.message == "p: every key is cooling down after rate limits; retry in 10s."
    clock.advance(9.0)  # 1.4 s left: Retry-After 1
    assert p.refusal([A, B]).retry_after == "1"
    clock.advance(1.0)  # 0.4 s left: still at least 1
    assert p.refusal([A, B]).retry_after == "1"


async def test_keys_all_invalid_are_refused_as_unusable():
    p = pool()
    (await p.acquire([A])).release(401)
    err = p.refusal([A])
    assert (err.status, err.code, err.retry_after) == (503, "no_usable_key", None)
    assert err.message == ("p: no usable API key (all are invalid or out of balance; they "
                           "are re-checked in the background).")


# -- leases, rotation, announcements, the status page ---------------------------------------

async def test_a_lease_shows_its_key_masked_and_counts_only_its_first_verdict():
    p = pool()
    lease = await p.acquire([A])
    assert lease.id == "sk-...1111"
    lease.release(200)
    lease.release(401)
    assert p.status([A])[0]["state"] == OK and p.in_flight == {}


async def test_a_keyless_hosts_transport_error_is_kept_as_its_last_error():
    p = pool()
    (await p.acquire([None])).release(None, error="connect")
    assert p.status([None])[0]["last_error"] == "connect"


async def test_a_last_resort_lease_is_not_reprobed_when_it_fails_again():
    p = pool(prober=lambda key: asyncio.sleep(0, result=False), probe_interval=60.0)
    (await p.acquire([A], last_resort=True)).release(401)
    await asyncio.sleep(0)
    assert p.status([A])[0]["state"] == INVALID and p.probe_at == {}


async def test_without_a_prober_an_invalid_key_is_not_reprobed():
    p = pool()
    (await p.acquire([A])).release(401)
    await asyncio.sleep(0)
    assert p.probe_at == {}


async def test_a_key_at_its_concurrency_limit_never_hides_the_free_ones():
    p = pool(max_concurrency=1, queue_timeout=0.05)
    held = await p.acquire([A, B])
    other = B if held.key == A else A
    for _ in range(4):  # whichever key the rotation starts from
        lease = await p.acquire([A, B])
        assert lease.key == other
        lease.release(200)
    held.release(200)


async def test_ties_rotate_over_every_key():
    p = pool()
    keys = [A, B, C, "sk-dddddddddddd4444"]
    used = []
    for _ in range(4):
        lease = await p.acquire(keys)
        used.append(lease.key)
        lease.release(200)
    assert sorted(used) == sorted(keys)


async def test_each_verdict_is_announced_with_its_key():
    seen = []
    p = pool(on_change=lambda key, h: seen.append((key, h.state)))
    (await p.acquire([A])).release(429, retry_after="5")
    (await p.acquire([B])).release(401)
    (await p.acquire([B], last_resort=True)).release(200)
    assert seen == [(A, COOLDOWN), (B, INVALID), (B, OK)]


async def test_status_reports_state_load_last_error_and_remaining_pause():
    clock = Clock()
    p = pool(clock=clock)
    lease = await p.acquire([A])
    (await p.acquire([B])).release(429, retry_after="12.34")
    assert p.status([A, B]) == [
        {"id": "sk-...1111", "state": OK, "in_flight": 1, "last_error": None,
         "last_error_at": None, "cooldown_remaining": 0},
        {"id": "sk-...2222", "state": COOLDOWN, "in_flight": 0, "last_error": "HTTP 429",
         "last_error_at": clock.time(), "cooldown_remaining": 12.3}]
    clock.advance(12.3)
    assert p.status([B])[0]["cooldown_remaining"] == 0.0
    lease.release(200)


async def test_a_key_restored_by_a_peer_shows_no_pause_left():
    clock = Clock()
    p = pool(clock=clock, no_balance_wait=600.0)
    (await p.acquire([A])).release(402)
    assert p.status([A])[0]["cooldown_remaining"] == 600
    p.apply(A, OK, 0.0, clock.time() + 1)
    row = p.status([A])[0]
    assert row["state"] == OK and row["cooldown_remaining"] == 0



# -- acquiring and releasing ----------------------------------------------------------------

async def test_a_queued_request_ends_when_its_wait_is_ended_from_outside():
    p = pool(max_concurrency=1, queue_timeout=30)
    held = await p.acquire([A])
    waits = []
    waiter = asyncio.ensure_future(p.acquire([A], on_wait=waits.append))
    await asyncio.sleep(0)
    waits[0].set_exception(APIError(499, "client gone"))
    with pytest.raises(APIError) as info:
        await waiter
    assert info.value.status == 499 and p.waiting == 0
    held.release(200)


async def test_a_key_out_of_balance_is_fully_back_once_its_pause_is_over():
    clock = Clock()
    p = pool(clock=clock, no_balance_wait=60.0)
    (await p.acquire([A])).release(402)
    clock.advance(60)
    lease = await p.acquire([A])
    assert lease.key == A and p.status([A])[0]["state"] == OK
    lease.release(200)


async def test_last_resort_counts_its_lease_never_takes_an_excluded_key_nor_reprobes():
    p = pool(prober=lambda key: asyncio.sleep(0, result=False), probe_interval=60.0)
    (await p.acquire([A], last_resort=True)).release(401)
    assert await p.acquire([A], exclude={A}, last_resort=True) is None
    lease = await p.acquire([A], last_resort=True)
    assert lease.key == A and p.in_flight == {A: 1}
    lease.release(401)
    await asyncio.sleep(0)
    assert p.in_flight == {} and p.probe_at == {}


async def test_a_request_error_says_nothing_about_the_key():
    p = pool()
    (await p.acquire([A], last_resort=True)).release(401)
    (await p.acquire([A], last_resort=True)).release(400)  # the request's fault, not the key's
    assert p.status([A])[0]["state"] == INVALID


async def test_releasing_one_of_two_leases_on_a_key_leaves_the_other_counted():
    p = pool()
    first, second = await p.acquire([A]), await p.acquire([A])
    first.release(200)
    assert p.in_flight == {A: 1}
    second.release(200)
    assert p.in_flight == {}


async def test_successes_dilute_the_5xx_ratio_and_reset_the_429_backoff():
    clock = Clock()
    p = pool(clock=clock)
    for status in [200] * 6 + [503] * 5:  # 5 failures of 11: under half
        (await p.acquire([A])).release(status)
    assert p.status([A])[0]["state"] == OK
    for _ in range(2):
        (await p.acquire([B])).release(429)
        clock.advance(10)
    (await p.acquire([B])).release(200)
    (await p.acquire([B])).release(429)  # the first step of the backoff again
    assert 0.8 <= p.wait_hint([B]) <= 1.2


@pytest.mark.parametrize("status", [500, 501])
async def test_a_run_of_any_5xx_cools_the_key_and_is_announced(status):
    seen = []
    p = pool(on_change=lambda key, h: seen.append((key, h.state)))
    for _ in range(5):
        (await p.acquire([A])).release(status)
    assert p.status([A])[0]["state"] == COOLDOWN and seen == [(A, COOLDOWN)]


async def test_the_5xx_rule_counts_exactly_half_and_exactly_the_window():
    clock = Clock()
    p = pool(clock=clock)
    for status in [200] * 5 + [503] * 5:  # exactly half failed
        (await p.acquire([A])).release(status)
    assert p.status([A])[0]["state"] == COOLDOWN
    for _ in range(4):
        (await p.acquire([B])).release(503)
    clock.advance(60)  # the first four are exactly ERROR_WINDOW old: still counted
    (await p.acquire([B])).release(503)
    assert p.status([B])[0]["state"] == COOLDOWN


async def test_a_transport_failure_without_detail_is_recorded_as_error():
    p = pool()
    (await p.acquire([A])).release(None)
    assert p.status([A])[0]["last_error"] == "error"


async def test_a_keyless_host_back_from_a_failure_that_answers_429_is_cooling_down():
    clock = Clock()
    p = pool(clock=clock)
    (await p.acquire([None])).release(None, error="connect")
    clock.advance(HOST_RETRY_MAX)
    (await p.acquire([None])).release(429, retry_after="20")
    assert p.refusal([None]).status == 429


async def test_the_429_backoff_jitters_the_wait_by_multiplying(monkeypatch):
    clock = Clock()
    p = pool(clock=clock)
    monkeypatch.setattr("freeapi.keypool.random.uniform", lambda a, b: b)
    (await p.acquire([A])).release(429)
    assert p.wait_hint([A]) == pytest.approx(1.2)


async def test_two_last_resort_leases_on_one_key_are_both_counted():
    p = pool()
    (await p.acquire([A])).release(401)
    first = await p.acquire([A], last_resort=True)
    second = await p.acquire([A], last_resort=True)
    assert p.in_flight == {A: 2}
    first.release(401)
    second.release(401)
    assert p.in_flight == {}
