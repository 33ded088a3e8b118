"""Gateway keys with limits: allowed models, rpm, tpm, daily and monthly token budgets; 429
with Retry-After naming the limit; one limit across gateways sharing a store (in process
and as real `freeapi` processes on one Redis)."""

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest

from freeapi.limits import Limits, _period_end
from tests.conftest import free_port
from tests.fakes.deepseek import GOOD
from tests.helpers import (ThreadedFake, chat_body, error_of, request, sdk, stream_raw,
                           wait_listening)

ROOT = Path(__file__).resolve().parent.parent
ALICE, BOB, CAROL = "gw-alice-0000000001", "gw-bob-00000000002", "gw-carol-0000000003"


def keys(*entries, state=None):
    cfg = {"auth": {"keys": list(entries)},
           "providers": {"deepseek": {"api_keys": [GOOD]}}}
    if state:
        cfg["state"] = state
    return cfg


async def chat(base, key, **kw):
    return await request(base + "/v1/chat/completions", "POST", chat_body(**kw), key=key)


async def settled(gw):
    """Token charges are added in the background once the vendor reported usage."""
    await gw.limits.settle()


# -- models -------------------------------------------------------------------------------

async def test_a_key_may_use_only_its_models(make_gateway):
    base, gw = make_gateway(keys({"key": ALICE, "name": "alice",
                                  "models": ["deepseek-v4-pro", "kimi/*"]}, BOB))
    for model in ("deepseek-v4-pro", "deepseek-v4-pro-fold", "deepseek/deepseek-v4-pro"):
        assert (await chat(base, ALICE, model=model)).code == 200, model
    err = error_of(await chat(base, ALICE, model="deepseek-flash"), 403)
    assert err["code"] == "model_not_allowed" and err["param"] == "model"
    assert "'alice'" in err["message"] and "deepseek-v4-pro, kimi/*" in err["message"]
    assert (await chat(base, BOB, model="deepseek-flash")).code == 200  # a plain key


async def test_patterns_match_the_served_model_too(make_gateway):
    base, _ = make_gateway(keys({"key": ALICE, "models": ["deepseek/*"]}))
    for model in ("deepseek-chat", "deepseek-r1", "deepseek/deepseek-reasoner"):
        assert (await chat(base, ALICE, model=model)).code == 200, model


# -- counters -----------------------------------------------------------------------------

async def test_rpm_refuses_with_retry_after_naming_the_limit(make_gateway):
    base, gw = make_gateway(keys({"key": ALICE, "name": "alice", "rpm": 2}, BOB))
    for _ in range(2):
        assert (await chat(base, ALICE)).code == 200
    resp = await chat(base, ALICE)
    err = error_of(resp, 429)
    assert err["code"] == "rpm_exceeded" and err["type"] == "rate_limit_error"
    assert "requests-per-minute" in err["message"] and "rpm: 2" in err["message"]
    assert 50 <= int(resp.headers["Retry-After"]) <= 60
    assert (await chat(base, BOB)).code == 200  # other keys are not affected
    with pytest.raises(openai.RateLimitError):  # what the SDK raises
        await sdk(base, ALICE).chat.completions.create(
            model="deepseek-chat", messages=[{"role": "user", "content": "hi"}])
    resp, _ = await stream_raw(base, chat_body(stream=True), key=ALICE)
    assert error_of(resp, 429)["code"] == "rpm_exceeded"  # before any stream begins


@pytest.mark.parametrize("limit, code, label", [
    ("tpm", "tpm_exceeded", "tokens-per-minute"),
    ("daily_tokens", "daily_tokens_exceeded", "daily token"),
    ("monthly_tokens", "monthly_tokens_exceeded", "monthly token"),
])
async def test_token_limits_count_the_vendors_real_usage(make_gateway, limit, code, label):
    base, gw = make_gateway(keys({"key": ALICE, "name": "alice", limit: 30}))
    assert (await chat(base, ALICE)).code == 200  # 18 tokens (the fake's usage)
    await settled(gw)
    resp, _ = await stream_raw(base, chat_body(stream=True), key=ALICE)  # 18 < 30: admitted
    assert resp.code == 200
    await settled(gw)
    resp = await chat(base, ALICE)  # 36 >= 30
    err = error_of(resp, 429)
    assert err["code"] == code and label in err["message"] and f"{limit}: 30" in err["message"]
    wait = int(resp.headers["Retry-After"])
    if limit == "tpm":
        assert 50 <= wait <= 60
    else:
        assert 1 <= wait <= _period_end(limit, time.time()) - time.time() + 1


async def test_a_refused_request_costs_no_rpm_and_writes_no_ledger_row(make_gateway):
    base, gw = make_gateway(keys({"key": ALICE, "name": "alice", "tpm": 10, "rpm": 2}))
    assert (await chat(base, ALICE)).code == 200
    await settled(gw)
    for _ in range(3):
        assert error_of(await chat(base, ALICE), 429)["code"] == "tpm_exceeded"
    caller = gw.config.gateway_keys[0]
    ok, _ = await gw.store.hit(f"{Limits.counter_id(caller)}:rpm", 0, 60, 2)
    assert ok  # 1 of 2 used: the refused requests were not counted
    await gw.store.flush()
    rows = await gw.store.ledger()
    # Only what was admitted is in the ledger: refusals must not let anyone grow it.
    assert [(r["status"], r["error"]) for r in rows] == [(200, None)]


async def test_limited_keys_fail_closed_when_the_store_is_down(make_gateway):
    base, _ = make_gateway(keys({"key": ALICE, "rpm": 5}, BOB, state={
        "redis_url": f"redis://127.0.0.1:{free_port()}", "timeout": 1}))
    resp = await chat(base, ALICE)
    err = error_of(resp, 503)
    assert err["code"] == "state_unavailable" and resp.headers["Retry-After"] == "1"
    assert (await chat(base, BOB)).code == 200  # keys without limits are served


# -- one limit across gateways --------------------------------------------------------------

async def test_two_gateways_on_one_redis_enforce_one_limit(make_gateway, redis_state):
    cfg = keys({"key": ALICE, "rpm": 3, "tpm": 100}, state=redis_state)
    (a, gw_a), (b, gw_b) = make_gateway(cfg), make_gateway(cfg)
    assert [(await chat(url, ALICE)).code for url in (a, b, a)] == [200, 200, 200]
    assert error_of(await chat(b, ALICE), 429)["code"] == "rpm_exceeded"
    assert error_of(await chat(a, ALICE), 429)["code"] == "rpm_exceeded"
    await settled(gw_a)
    await settled(gw_b)
    tpm = f"{Limits.counter_id(gw_a.config.gateway_keys[0])}:tpm"
    assert (await gw_a.store.hit(tpm, 0, 60, 55))[0]  # 3 x 18 = 54 tokens, counted once
    assert not (await gw_b.store.hit(tpm, 0, 60, 54))[0]


async def test_two_gateways_on_one_sqlite_file_enforce_one_limit(make_gateway, tmp_path):
    cfg = keys({"key": ALICE, "rpm": 4}, state={"path": str(tmp_path / "shared.db")})
    (a, _), (b, _) = make_gateway(cfg), make_gateway(cfg)
    codes = await asyncio.gather(*(chat(url, ALICE) for url in (a, b) * 5))
    assert sorted(r.code for r in codes) == [200] * 4 + [429] * 6


def test_two_freeapi_processes_on_one_redis_enforce_one_limit(tmp_path, redis_state):
    import http.client
    ports = [free_port(), free_port()]
    procs = []
    with ThreadedFake() as fake:
        try:
            for port in ports:
                cfg = tmp_path / f"config-{port}.yaml"
                cfg.write_text(json.dumps({
                    "server": {"host": "127.0.0.1", "port": port},
                    "auth": {"keys": [{"key": ALICE, "rpm": 5}]},
                    "providers": {"deepseek": {"base_url": fake.url, "api_keys": [GOOD]}},
                    "state": redis_state}))
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "freeapi", "--config", str(cfg)], cwd=ROOT,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            conns = []
            for port, proc in zip(ports, procs):
                wait_listening(port, proc)
                conns.append(http.client.HTTPConnection("127.0.0.1", port, timeout=5))
            codes = []
            for i in range(10):
                c = conns[i % 2]
                c.request("POST", "/v1/chat/completions", json.dumps(chat_body()),
                          {"Authorization": f"Bearer {ALICE}",
                           "Content-Type": "application/json"})
                r = c.getresponse()
                r.read()
                codes.append(r.status)
            assert codes == [200] * 5 + [429] * 5
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(10)
