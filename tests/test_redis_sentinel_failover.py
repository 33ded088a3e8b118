"""`state.redis_url: redis+sentinel://...`: gateways find the Redis primary through the
sentinels, and when the primary stops they carry on with the replica Sentinel promotes.

Real processes: a primary, a replica and three sentinels (Debian's redis-server; a
sentinel is `redis-server CONF --sentinel`), on free ports in the test's own directory."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from tests.fakes.deepseek import GOOD
from tests.helpers import chat_body, error_of, request
from tests.redis_procs import RedisProc, wait_for


ALICE = "fa-sentinel-alice-0123456789"
MASTER = "mymaster"


def _sentinel_view(s: RedisProc) -> dict:
    out = s.cli("SENTINEL", "master", MASTER).splitlines()
    return dict(zip(out[::2], out[1::2]))


@pytest.fixture
def sentinel_group(tmp_path):
    procs = []
    try:
        primary = RedisProc(tmp_path, "primary", [])
        procs.append(primary)
        replica = RedisProc(tmp_path, "replica", [f"replicaof 127.0.0.1 {primary.port}"])
        procs.append(replica)
        sentinels = []
        for i in range(3):
            sentinels.append(RedisProc(tmp_path, f"sentinel{i}", [
                f"sentinel monitor {MASTER} 127.0.0.1 {primary.port} 2",
                f"sentinel down-after-milliseconds {MASTER} 1000",
                f"sentinel failover-timeout {MASTER} 10000",
                f"sentinel parallel-syncs {MASTER} 1"], sentinel=True))
            procs.append(sentinels[-1])
        # Ready for a failover: the replica is in sync and every sentinel knows the other
        # two and the replica (they find each other through the primary's hello channel).
        wait_for(lambda: "master_link_status:up" in replica.cli("INFO", "replication"),
                 30, "the replica to sync")
        for s in sentinels:
            wait_for(lambda: (_sentinel_view(s).get("num-other-sentinels") == "2"
                              and _sentinel_view(s).get("num-slaves") == "1"),
                     60, "the sentinels to find each other and the replica")
        yield primary, replica, sentinels
    finally:
        for p in reversed(procs):
            p.stop()


async def _chat(base):
    return await request(base + "/v1/chat/completions", "POST", chat_body(), key=ALICE,
                         timeout=10)


async def test_gateways_keep_serving_limited_keys_through_a_sentinel_failover(
        make_gateway, sentinel_group):
    primary, replica, sentinels = sentinel_group
    hosts = ",".join(f"127.0.0.1:{s.port}" for s in sentinels)
    prefix = f"freeapi-test:{os.urandom(6).hex()}:"
    cfg = {"auth": {"keys": [{"key": ALICE, "name": "alice", "rpm": 100000}]},
           "providers": {"deepseek": {"api_keys": [GOOD]}},
           "state": {"redis_url": f"redis+sentinel://{hosts}/{MASTER}/0", "prefix": prefix,
                     "timeout": 1}}
    gateways = [make_gateway(cfg) for _ in range(2)]
    for base, gw in gateways:
        assert (await _chat(base)).code == 200
        assert gw.store.describe().endswith(f"(primary 127.0.0.1:{primary.port}) "
                                            f"(keys {prefix}*)")
    assert primary.cli("KEYS", f"{prefix}c:*")  # the rpm counter is on the primary

    primary.stop()
    # During the failover today's store-outage rule holds (a key with limits gets 503
    # state_unavailable, never another error); once the replica is promoted, both
    # gateways serve again without being restarted or reconfigured.
    promoted, during = False, []
    deadline = time.monotonic() + 90  # a bound for a broken setup, not a timing check
    while time.monotonic() < deadline:
        codes = []
        for base, _ in gateways:
            resp = await _chat(base)
            codes.append(resp.code)
            if resp.code != 200:
                assert error_of(resp, 503)["code"] == "state_unavailable"
        during += codes
        if codes == [200, 200] and replica.cli("ROLE").startswith("master"):
            promoted = True
            break
        await asyncio.sleep(0.2)
    assert promoted, f"no failover served (codes {during[-6:]})"
    for _ in range(5):
        for base, _ in gateways:
            assert (await _chat(base)).code == 200
    for _, gw in gateways:
        assert gw.store.describe().endswith(f"(primary 127.0.0.1:{replica.port}) "
                                            f"(keys {prefix}*)")
    assert replica.cli("KEYS", f"{prefix}c:*")  # counters now kept by the new primary
    for _, gw in gateways:
        await gw.store.flush()
    assert replica.cli("ZCARD", f"{prefix}ledger") != "0"
