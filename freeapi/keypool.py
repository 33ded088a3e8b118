"""Key pools that heal: selection, per-key concurrency, cooldowns, invalidation, re-probes.

Health lives in-process (`HealthStore` in freeapi/keyhealth.py); gateways sharing a store
exchange changes of their server-side keys' health through it (freeapi/healthsync.py,
`on_change` and `apply`), so one process's 429 cools the key down in all of them. In-flight
counts and waiting are per process.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
import time
from collections import deque

from freeapi.errors import APIError
# Re-exported: the states and the health store are part of the pool's interface.
from freeapi.keyhealth import (COOLDOWN, INVALID, NO_BALANCE, OK,  # noqa: F401
                               HealthStore, KeyHealth)
from freeapi import keyprobes
from freeapi.keyprobes import KeyProbes
from freeapi.keys import mask

# Error-ratio rule for 5xx/timeouts: one failure is noise, a run of them is a bad key/route.
ERROR_WINDOW = 60.0
ERROR_MIN = 5
ERROR_RATIO = 0.5
ERROR_COOLDOWN = 30.0
BACKOFF_BASE, BACKOFF_CAP = 1.0, 120.0
# A keyless provider (a local llama.cpp, Ollama) is one pseudo-key, None: its health is its
# host's. A host that cannot be reached is probed every HOST_PROBE_INTERVAL seconds
# (freeapi/keyprobes.py), and requests meanwhile fail at once with the real error; after
# HOST_RETRY_MAX seconds requests try the host themselves even without a probe's answer.
HOST_RETRY_MAX = 10.0
_NOTHING = object()


def retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None


class Lease:
    """One request's hold on one key; `release()` exactly once with what happened."""

    def __init__(self, pool: "KeyPool", key: str, probe: bool = True):
        self.pool, self.key = pool, key
        self.id = mask(key)
        self.probe = probe  # re-probe in the background if the vendor says the key is dead
        self._released = False

    def release(self, status: int | None = None, *, error: str | None = None,
                retry_after: str | None = None):
        """status: the vendor's HTTP status (None with `error` for a transport failure)."""
        if self._released:
            return
        self._released = True
        self.pool._release(self.key, status, error, retry_after, self.probe)

    def cancel(self):
        """Free the slot without a verdict on the key: the client left or the gateway is
        shutting down, which says nothing about the key (counted as failures, a few
        impatient clients would cool a healthy key down)."""
        if not self._released:
            self._released = True
            self.pool._free(self.key)


class KeyPool(KeyProbes):
    """The keys of one provider (server-side) or the key lists clients pass through; the
    background re-probes of its dead keys are KeyProbes' (freeapi/keyprobes.py)."""

    def __init__(self, name: str, store: HealthStore, *, max_concurrency: int | None = None,
                 max_queue: int = 100, queue_timeout: float = 30.0, prober=None,
                 probe_interval: float = 60.0, probe_cap: float = 900.0, on_change=None,
                 host_prober=None, no_balance_wait: float | None = None, clock=time):
        self.name = name
        # Anything with monotonic() and time(): the time module, or a test's clock that it
        # moves forward instead of sleeping through cooldowns.
        self._clock = clock
        # (key, KeyHealth) after a verdict other processes should hear of: a cooldown, an
        # invalid / out-of-balance key, or such a key restored.
        self._on_change = on_change
        self.store = store
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self.queue_timeout = queue_timeout
        self.in_flight: dict[str, int] = {}
        self._turn = 0
        # (future, the keys it can use), oldest first: a freed key wakes the oldest waiter
        # that can use it, not merely the oldest.
        self._waiters: deque[tuple[asyncio.Future, set]] = deque()
        super().__init__(prober, probe_interval, probe_cap, host_prober)
        # Seconds an out-of-balance key stays out when the vendor's key check cannot see a
        # balance (a GET /models or one-token chat would restore it at once, to fail again);
        # None: the key check sees the balance and is what restores the key.
        self.no_balance_wait = no_balance_wait

    def _pick(self, keys: list, exclude, now: float):
        """The least-loaded usable key (ties rotate), or _NOTHING. A key may be None: a
        keyless provider's requests still count for concurrency."""
        best, best_load = _NOTHING, None
        n = len(keys)
        self._turn = (self._turn + 1) % max(n, 1)
        for i in range(n):
            key = keys[(self._turn + i) % n]
            if key in exclude or not self.store.get(self.name, key).usable(now):
                continue
            load = self.in_flight.get(key, 0)
            if self.max_concurrency and load >= self.max_concurrency:
                continue
            if best_load is None or load < best_load:
                best, best_load = key, load
        return best

    async def acquire(self, keys: list[str], exclude=frozenset(), *,
                      last_resort: bool = False, on_wait=None) -> Lease | None:
        """A lease on the best usable key not in `exclude`, waiting for a free slot when
        every usable key is at max_concurrency. None when no untried usable key is left.

        `last_resort` (pass-through lists): a key known to be invalid is still tried when
        nothing better is left, since the client asked for it and may have fixed it. Such
        keys are not re-probed in the background: anyone can send made-up keys, and each
        probe would live on; a pass-through key that works again is restored by the request
        that uses it.
        `on_wait(future)` is called when the request has to queue: setting an exception on
        that future (a client gone, a shutdown) ends the wait with it.
        """
        deadline = None
        while True:
            now = self._clock.monotonic()
            key = self._pick(keys, exclude, now)
            if key is not _NOTHING:
                h = self.store.get(self.name, key)
                if h.state in (COOLDOWN, NO_BALANCE):  # its pause is over: try it again
                    h.state, h.until = OK, 0.0
                self.in_flight[key] = self.in_flight.get(key, 0) + 1
                return Lease(self, key, probe=not last_resort)
            usable = [k for k in keys if k not in exclude
                      and self.store.get(self.name, k).usable(now)]
            if not usable:
                if last_resort:
                    rest = [k for k in keys if k not in exclude
                            and self.store.get(self.name, k).state in (INVALID, NO_BALANCE)]
                    if rest:
                        self.in_flight[rest[0]] = self.in_flight.get(rest[0], 0) + 1
                        return Lease(self, rest[0], probe=False)
                return None
            # Every usable key is busy: wait for a slot, boundedly.
            if len(self._waiters) >= self.max_queue:
                raise APIError(429, f"{self.name}: all keys are busy and the queue is full "
                                    f"({self.max_queue} waiting); retry shortly.",
                               code="queue_full", retry_after="1")
            if deadline is None:
                deadline = now + self.queue_timeout
            fut = asyncio.get_running_loop().create_future()
            waiter = (fut, set(usable))
            self._waiters.append(waiter)
            if on_wait is not None:
                on_wait(fut)
            try:
                await asyncio.wait_for(fut, max(deadline - now, 0))
            except asyncio.TimeoutError:
                raise APIError(429, f"{self.name}: all keys stayed busy for "
                                    f"{self.queue_timeout:g}s; retry later.",
                               code="queue_timeout", retry_after="1") from None
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    @property
    def waiting(self) -> int:
        """Requests queued for a free key (the status page shows it)."""
        return len(self._waiters)

    def refusal(self, keys: list) -> APIError:
        """Why `acquire(keys)` found no key: the keyless host is down (the real 502/504,
        with a short Retry-After), every key cools down (429), or none is usable (503)."""
        now = self._clock.monotonic()
        if None in keys:
            h = self.store.get(self.name, None)
            if h.down is not None and h.state == COOLDOWN and h.until > now:
                timeout = h.down == "timeout"
                what = "did not answer in time" if timeout else (
                    "could not be reached" if h.down == "connect" else "dropped the connection")
                return APIError(504 if timeout else 502,
                                f"{self.name}: the server {what} moments ago; the gateway "
                                f"checks it every {keyprobes.HOST_PROBE_INTERVAL:g}s and lets "
                                "requests through as soon as it answers.",
                                type="timeout_error" if timeout else None,
                                code="upstream_timeout" if timeout else "upstream_unreachable",
                                retry_after=str(max(1, math.ceil(
                                    keyprobes.HOST_PROBE_INTERVAL))))
        wait = self.wait_hint(keys)
        if wait is not None:
            return APIError(429, f"{self.name}: every key is cooling down after rate limits; "
                                 f"retry in {wait:.0f}s.", code="keys_cooling_down",
                            retry_after=str(max(1, round(wait))))
        return APIError(503, f"{self.name}: no usable API key (all are invalid or out of "
                             "balance; they are re-checked in the background).",
                        code="no_usable_key")

    def wait_hint(self, keys: list[str]) -> float | None:
        """Seconds until the first cooling key in `keys` is usable again."""
        now = self._clock.monotonic()
        ends = [h.until - now for h in (self.store.get(self.name, k) for k in keys)
                if h.state == COOLDOWN and h.until > now]
        return min(ends) if ends else None

    def _wake(self, key=_NOTHING):
        """Wake the oldest waiter that can use `key`; every waiter when a key came back."""
        for waiter in list(self._waiters):
            fut, wanted = waiter
            if fut.done():
                self._waiters.remove(waiter)
            elif key is _NOTHING or key in wanted:
                self._waiters.remove(waiter)
                fut.set_result(None)
                if key is not _NOTHING:
                    return

    def _free(self, key):
        left = self.in_flight.get(key, 1) - 1
        if left:
            self.in_flight[key] = left
        else:
            self.in_flight.pop(key, None)
        self._wake(key)

    def _release(self, key, status, error, retry_after, probe=True):
        self._free(key)
        h = self.store.get(self.name, key)
        now = self._clock.monotonic()
        if status is not None and status < 400:
            h.outcomes.append((now, True))
            h.strikes = 0
            h.down = None
            if h.state in (INVALID, NO_BALANCE):  # the vendor just took it: live again
                h.state = OK
                self._changed(key, h)
            return
        h.last_error = f"HTTP {status}" if status else (error or "error")
        h.last_error_at = self._clock.time()
        if status is not None:
            h.down = None  # whatever it said, the host answered
        if key is None and (status is None or status >= 500):
            # A keyless provider's pseudo-key is its host. A 5xx is an answer (often to one
            # client's bad request): the caller gets it, nobody else is locked out. A host
            # that cannot be reached fails fast until a probe sees it answer again.
            if status is None:
                h.state, h.until, h.down = COOLDOWN, now + HOST_RETRY_MAX, error or "error"
                self._schedule_host_probe()
            return
        if status == 429:
            h.strikes += 1
            wait = retry_after_seconds(retry_after)
            if wait is None:
                wait = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (h.strikes - 1))
                wait *= random.uniform(0.8, 1.2)
            h.state, h.until = COOLDOWN, now + wait
            self._changed(key, h)
        elif status in (401, 403, 402):
            h.state = NO_BALANCE if status == 402 else INVALID
            # (a keyless server has no balance to wait for: its check decides as before)
            waits = (h.state == NO_BALANCE and self.no_balance_wait is not None
                     and key is not None)
            h.until = now + self.no_balance_wait if waits else 0.0
            self._changed(key, h)
            if probe and not waits:
                self._schedule_probe(key)
        elif status is None or status >= 500:
            h.outcomes.append((now, False))
            recent = [ok for t, ok in h.outcomes if now - t <= ERROR_WINDOW]
            failures = recent.count(False)
            if failures >= ERROR_MIN and failures / len(recent) >= ERROR_RATIO:
                h.state, h.until = COOLDOWN, now + ERROR_COOLDOWN
                h.outcomes.clear()
                self._changed(key, h)

    def _changed(self, key, h: KeyHealth):
        # A cooldown says nothing about whether the key is valid: it must not make an
        # older "invalid" from another gateway look outdated.
        if h.state != COOLDOWN:
            h.marked_at = self._clock.time()
        if self._on_change is not None:
            self._on_change(key, h)

    def apply(self, key: str, state: str, until: float, at: float):
        """Another process's verdict on `key` (`until`, `at`: wall clock). It only ever
        lengthens what this process knows: a cooldown ending later, an invalid key; and a
        restore only undoes a verdict older than itself."""
        h = self.store.get(self.name, key)
        now, mono = self._clock.time(), self._clock.monotonic()
        if state == COOLDOWN:
            ends = mono + (until - now)
            if h.state in (OK, COOLDOWN) and until > now and ends > h.until + 0.05:
                h.state, h.until = COOLDOWN, ends
        elif state in (INVALID, NO_BALANCE):
            if h.state in (OK, COOLDOWN) and at > h.marked_at:
                h.state, h.marked_at = state, at
                h.last_error, h.last_error_at = f"{state} (seen by another gateway)", at
                if state == NO_BALANCE and self.no_balance_wait is not None:
                    h.until = mono + (at + self.no_balance_wait - now)  # from the verdict
                else:
                    h.until = 0.0
                    self._schedule_probe(key)
        elif state == OK and h.state in (INVALID, NO_BALANCE) and at > h.marked_at:
            h.state, h.strikes, h.marked_at = OK, 0, at
            self._wake()

    def status(self, keys: list[str]) -> list[dict]:
        now = self._clock.monotonic()
        out = []
        for key in keys:
            h = self.store.get(self.name, key)
            state = h.state if not (h.state == COOLDOWN and now >= h.until) else OK
            out.append({"id": mask(key), "state": state,
                        "in_flight": self.in_flight.get(key, 0),
                        "last_error": h.last_error, "last_error_at": h.last_error_at,
                        "cooldown_remaining": round(max(0.0, h.until - now), 1)
                        if state in (COOLDOWN, NO_BALANCE) else 0})
        return out
