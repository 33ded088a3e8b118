"""Fault injection end to end: keys that rate-limit, die and come back, overload bursts,
vendors that never answer or stop mid-way, unreachable hosts, fallbacks and their bounds,
and per-key concurrency. Whatever fails, a client gets one whole answer or a clean error."""

import asyncio
import json
import time

import openai
import pytest
from tornado.httpclient import AsyncHTTPClient
from tornado.tcpclient import TCPClient

from freeapi.keypool import ERROR_MIN
from freeapi.keys import mask
from tests.conftest import free_port
from tests.fakes import deepseek as fake_deepseek
from tests.fakes import openai_compat as fake_local
from tests.fakes.common import serve
from tests.fakes.deepseek import ANSWER, BUSY, DEAD, GOOD, GOOD2, POOR
from tests.helpers import check_stream, chat_body, error_of, request, sse_events, stream_raw

TEXT = "".join(ANSWER)
PREFIX = "".join(ANSWER[:3])  # what the fake sends before a `!cut` or `!stall`
ADMIN, USER = "gw-admin-key-0001", "gw-user-key-0002"
AUTH = {"keys": [{"key": ADMIN, "role": "admin"}, {"key": USER}]}


@pytest.fixture
def backup(io_loop):
    """A second, independent DeepSeek-compatible vendor: (base_url, state)."""
    state = fake_deepseek.State()
    url, server = serve(fake_deepseek.make_app(state))
    yield url, state
    server.stop()


def config(keys, *, backup=None, fallbacks=None, failover=None, **deepseek) -> dict:
    """Server-side `keys` for deepseek; with `backup`, a second provider (key GOOD2 on its
    own fake) that deepseek-chat falls back to."""
    cfg = {"auth": AUTH, "providers": {"deepseek": {"api_keys": list(keys), **deepseek}}}
    if backup:
        cfg["providers"]["backup"] = {"type": "deepseek", "base_url": backup,
                                      "api_keys": [GOOD2]}
        # Both providers list the same ids: the bare names go to deepseek.
        cfg["models"] = {"deepseek-chat": "deepseek/deepseek-chat",
                         "deepseek-reasoner": "deepseek/deepseek-reasoner"}
        cfg["fallbacks"] = fallbacks or {"deepseek-chat": ["backup/deepseek-chat"]}
    if failover:
        cfg["failover"] = failover
    return cfg


def used_keys(state) -> list[str]:
    return [r["headers"]["Authorization"].removeprefix("Bearer ") for r in state.requests]


async def ask(base, content="hi", stream=False, model="deepseek-chat", key=USER):
    """One chat request; a success is checked whole. Returns (response, text or None)."""
    body = chat_body(content, model=model, stream=stream)
    if stream:
        resp, raw = await stream_raw(base, body, key=key)
        if resp.code != 200:
            return resp, None
        text, err = check_stream(raw, TEXT)
        assert err is None, err
        for ev in sse_events(raw)[:-1]:
            assert json.loads(ev)["model"] == model
        return resp, text
    resp = await request(base + "/v1/chat/completions", "POST", body, key=key)
    if resp.code != 200:
        return resp, None
    data = json.loads(resp.body)
    assert data["model"] == model
    assert data["choices"][0]["message"]["content"] == TEXT
    return resp, TEXT


async def key_rows(base) -> dict:
    resp = await request(base + "/v1/keys", key=ADMIN)
    assert resp.code == 200, resp.body
    return {r["id"]: r for r in json.loads(resp.body)["data"] if r["provider"] == "deepseek"}


async def eventually(cond, timeout=5.0):
    """Wait, boundedly, until `cond()` (sync or async) is true."""
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if asyncio.iscoroutine(got):
            got = await got
        if got:
            return
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def until_used(base, state, key, stream=False):
    """Requests (each served by another key) until the pool has tried `key` once; the
    selection rotates, so this takes one or two. Returns the response that tried it."""
    for _ in range(4):
        resp, text = await ask(base, stream=stream)
        assert resp.code == 200 and text == TEXT, resp.body
        if key in used_keys(state):
            assert resp.headers["x-freeapi-attempts"] == "2"
            return resp
    raise AssertionError(f"{mask(key)} was never tried")


# -- keys that heal -------------------------------------------------------------------------

async def test_429_cools_the_key_down_for_retry_after_then_uses_it_again(make_gateway,
                                                                        upstream_state,
                                                                        gateway_clock):
    upstream_state.retry_after = "2"
    base, _ = make_gateway(config([BUSY, GOOD]))
    resp = await until_used(base, upstream_state, BUSY)
    assert resp.headers["x-freeapi-key"] == mask(GOOD)
    upstream_state.keys[BUSY] = "ok"  # the vendor's limit is over; the gateway must wait
    before = len(upstream_state.requests)
    for i in range(6):
        resp, _ = await ask(base, stream=i % 2 == 1)
        assert resp.headers["x-freeapi-key"] == mask(GOOD)
        assert "x-freeapi-attempts" not in resp.headers  # skipped, not tried and failed
    assert BUSY not in used_keys(upstream_state)[before:]
    row = (await key_rows(base))[mask(BUSY)]
    assert row["state"] == "cooldown" and row["last_error"] == "HTTP 429"
    assert row["cooldown_remaining"] == 2  # still cooling: the skips above were needed
    gateway_clock.advance(2 - 0.01)
    assert [(await ask(base))[0].headers["x-freeapi-key"] for _ in range(2)] == [mask(GOOD)] * 2
    gateway_clock.advance(0.01)  # the cooldown is over
    served = [(await ask(base))[0].headers["x-freeapi-key"] for _ in range(4)]
    assert mask(BUSY) in served
    assert (await key_rows(base))[mask(BUSY)]["state"] == "ok"


async def test_every_key_cooling_down_is_a_429_with_retry_after(make_gateway, upstream_state):
    upstream_state.retry_after = "30"
    base, _ = make_gateway(config([BUSY]))
    resp = await request(base + "/v1/chat/completions", "POST", chat_body(), key=USER)
    assert error_of(resp, 429)["code"] == "rate_limit_error"  # the vendor's own answer
    assert resp.headers["Retry-After"] == "30"
    resp = await request(base + "/v1/chat/completions", "POST", chat_body(), key=USER)
    err = error_of(resp, 429)
    assert err["code"] == "keys_cooling_down" and "cooling down" in err["message"]
    assert 28 <= int(resp.headers["Retry-After"]) <= 30
    assert len(upstream_state.requests) == 1  # the gateway answered without asking


@pytest.mark.parametrize("bad,state,error", [(DEAD, "invalid", "HTTP 401"),
                                             (POOR, "no_balance", "HTTP 402")])
async def test_dead_key_is_skipped_reprobed_and_restored(make_gateway, upstream_state, bad,
                                                         state, error):
    base, _ = make_gateway(config([bad, GOOD], key_pool={"recheck_interval": 0.1}))
    await until_used(base, upstream_state, bad)
    row = (await key_rows(base))[mask(bad)]
    assert row["state"] == state and row["last_error"] == error
    # Re-checked in the background with the free balance call, never with chat requests.
    await eventually(lambda: upstream_state.balance_checks.count(bad) >= 1)
    before = len(upstream_state.requests)
    for i in range(4):
        resp, _ = await ask(base, stream=i % 2 == 1)
        assert resp.headers["x-freeapi-key"] == mask(GOOD)
    assert bad not in used_keys(upstream_state)[before:]
    assert (await key_rows(base))[mask(bad)]["state"] == state  # the probe said: still dead
    upstream_state.keys[bad] = "ok"  # topped up / re-enabled at the vendor

    async def restored():
        return (await key_rows(base))[mask(bad)]["state"] == "ok"

    await eventually(restored)
    served = [(await ask(base))[0].headers["x-freeapi-key"] for _ in range(4)]
    assert mask(bad) in served


@pytest.mark.parametrize("stream", [False, True])
async def test_503_burst_is_retried_on_another_key_without_disabling_it(make_gateway,
                                                                       upstream_state, stream):
    base, _ = make_gateway(config([GOOD, GOOD2]))
    upstream_state.fail_next = 1
    resp, text = await ask(base, stream=stream)
    assert resp.code == 200 and text == TEXT and resp.headers["x-freeapi-attempts"] == "2"
    # A burst longer than the pool: the client gets the vendor's 503, nothing else.
    upstream_state.fail_next = 2
    resp, _ = await ask(base, stream=stream)
    err = error_of(resp, 503)
    assert err["message"].startswith("deepseek: server error (HTTP 503)")
    assert len(upstream_state.requests) == 4
    rows = await key_rows(base)
    assert rows[mask(GOOD)]["state"] == rows[mask(GOOD2)]["state"] == "ok"
    assert {rows[mask(GOOD)]["last_error"], rows[mask(GOOD2)]["last_error"]} == {"HTTP 503"}
    resp, text = await ask(base, stream=stream)  # the burst is over
    assert resp.code == 200 and "x-freeapi-attempts" not in resp.headers


async def test_a_run_of_5xx_cools_the_key_down(make_gateway, upstream_state):
    upstream_state.keys[GOOD2] = 500  # this account is broken at the vendor's end
    base, _ = make_gateway(config([GOOD2, GOOD]))
    for _ in range(3 * ERROR_MIN):
        resp, text = await ask(base)
        assert resp.code == 200 and resp.headers["x-freeapi-key"] == mask(GOOD)
    assert used_keys(upstream_state).count(GOOD2) == ERROR_MIN
    row = (await key_rows(base))[mask(GOOD2)]
    assert row["state"] == "cooldown" and row["last_error"] == "HTTP 500"


# -- vendors that do not answer -------------------------------------------------------------

FAST = {"first_byte": 0.3}


@pytest.mark.parametrize("stream", [False, True])
async def test_no_first_byte_moves_to_the_next_key(make_gateway, upstream_state, stream):
    upstream_state.hang_keys = {GOOD2}
    base, _ = make_gateway(config([GOOD2, GOOD], timeouts=FAST))
    resp = await until_used(base, upstream_state, GOOD2, stream=stream)
    assert resp.headers["x-freeapi-key"] == mask(GOOD) and resp.request_time >= 0.3
    row = (await key_rows(base))[mask(GOOD2)]
    assert row["state"] == "ok" and row["last_error"] == "timeout"  # one timeout: no strike


@pytest.mark.parametrize("stream", [False, True])
async def test_no_first_byte_from_any_key_is_a_504(make_gateway, upstream_state, stream):
    upstream_state.hang_keys = {GOOD, GOOD2}
    base, _ = make_gateway(config([GOOD, GOOD2], timeouts=FAST))
    start = time.monotonic()
    resp, _ = await ask(base, stream=stream)
    err = error_of(resp, 504)
    assert err["code"] == "upstream_timeout" and "0.3s" in err["message"]
    assert 0.6 <= time.monotonic() - start < 3  # both keys were given their 0.3 s
    assert len(upstream_state.requests) == 2


async def test_reasoning_models_get_their_own_first_byte_budget(make_gateway, upstream_state):
    base, _ = make_gateway(config([GOOD], timeouts={"first_byte": 0.3,
                                                    "first_byte_reasoning": 3}))
    resp, text = await ask(base, "!slow 0.8", model="deepseek-reasoner")
    assert resp.code == 200 and text == TEXT
    resp, _ = await ask(base, "!slow 0.8")
    assert error_of(resp, 504)["code"] == "upstream_timeout"


async def test_the_first_byte_budget_is_the_served_models(make_gateway, start_vendor):
    # A local server's reasoning models are named in its config: the budget depends on
    # the model the attempt sends, not on the provider alone.
    url, _ = start_vendor(fake_local)
    base, _ = make_gateway({"auth": AUTH, "providers": {"local": {
        "type": "openai", "base_url": url + "/v1", "reasoning_models": ["deepseek-r1:1.5b"],
        "timeouts": {"first_byte": 0.3, "first_byte_reasoning": 3}}}})
    chat = base + "/v1/chat/completions"
    resp = await request(chat, "POST", chat_body("!slow 0.8", model="local/deepseek-r1:1.5b"),
                         key=USER)
    assert resp.code == 200
    resp = await request(chat, "POST", chat_body("!slow 0.8", model="local/llama3.2:1b"),
                         key=USER)
    assert error_of(resp, 504)["code"] == "upstream_timeout"


@pytest.mark.parametrize("stream", [False, True])
async def test_no_first_byte_falls_back_to_the_second_provider(make_gateway, upstream_state,
                                                               backup, stream):
    url, backup_state = backup
    upstream_state.hang_keys = {GOOD}
    base, _ = make_gateway(config([GOOD], backup=url, timeouts=FAST))
    resp, text = await ask(base, stream=stream)
    assert resp.code == 200 and text == TEXT
    assert resp.headers["x-freeapi-provider"] == "backup"
    assert resp.headers["x-freeapi-key"] == mask(GOOD2)
    assert resp.headers["x-freeapi-attempts"] == "2"
    assert len(upstream_state.requests) == len(backup_state.requests) == 1


async def test_a_stream_queued_by_the_vendor_moves_to_the_next_key(make_gateway,
                                                                   upstream_state):
    """DeepSeek answers 200 at once and then only sends `: keep-alive` while a request
    waits in its queue: the first data event, not the headers, is the first byte."""
    upstream_state.queued_keys = {GOOD}
    base, _ = make_gateway(config([GOOD, GOOD2], timeouts=FAST))
    resp = await until_used(base, upstream_state, GOOD, stream=True)
    assert resp.headers["x-freeapi-key"] == mask(GOOD2)
    assert resp.headers["x-freeapi-attempts"] == "2"
    assert upstream_state.cancelled.is_set()  # the queued request was given up
    upstream_state.queued_keys = {GOOD, GOOD2}
    start = time.monotonic()
    resp, _ = await ask(make_gateway(config([GOOD], timeouts=FAST))[0], stream=True)
    assert error_of(resp, 504)["code"] == "upstream_timeout"
    assert time.monotonic() - start < 3


async def test_keepalives_before_the_first_byte_do_not_stop_failover(make_gateway,
                                                                    upstream_state, backup):
    """Comments already committed the 200: failover still happens (no answer byte was
    sent), and when nothing serves, the error comes as an event."""
    url, backup_state = backup
    upstream_state.hang_keys = {GOOD, GOOD2}
    base, _ = make_gateway(dict(config([GOOD, GOOD2], backup=url, timeouts=FAST),
                                server={"keepalive_interval": 0.1}))
    resp, raw = await stream_raw(base, chat_body(stream=True), key=USER)
    assert resp.code == 200 and raw.startswith(b": keep-alive\n\n")
    text, err = check_stream(raw, TEXT)
    assert err is None and text == TEXT
    assert len(upstream_state.requests) == 2 and len(backup_state.requests) == 1
    base, _ = make_gateway(dict(config([GOOD, GOOD2], timeouts=FAST),
                                server={"keepalive_interval": 0.1}))
    resp, raw = await stream_raw(base, chat_body(stream=True), key=USER)
    text, err = check_stream(raw, TEXT)
    assert resp.code == 200 and text == "" and err["code"] == "upstream_timeout"


@pytest.mark.parametrize("stream", [False, True])
async def test_fallback_keeps_the_model_name_the_client_asked_for(make_gateway, upstream_state,
                                                                  backup, stream):
    url, backup_state = backup
    upstream_state.keys[GOOD] = 503  # deepseek is down for this account
    cfg = config([GOOD], backup=url, fallbacks={"chat": ["backup/deepseek-reasoner"]})
    cfg["models"]["chat"] = "deepseek/deepseek-chat"
    base, _ = make_gateway(cfg)
    resp, text = await ask(base, stream=stream, model="chat")  # checks `model` == "chat"
    assert resp.code == 200 and text == TEXT
    assert resp.headers["x-freeapi-provider"] == "backup"
    assert resp.headers["x-freeapi-upstream-model"] == "deepseek-flash"
    # Both names are retired ones: each target gets its own translation's defaults.
    assert [(r["body"]["model"], r["body"]["thinking"]) for r in upstream_state.requests] \
        == [("deepseek-flash", {"type": "disabled"})]
    assert [(r["body"]["model"], r["body"]["thinking"]) for r in backup_state.requests] \
        == [("deepseek-flash", {"type": "enabled"})]


@pytest.fixture
def unaccepting_host():
    """A port whose accept queue is full: a connection attempt gets no answer, as from a
    host whose firewall drops it. Returns its base URL."""
    import socket
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    filler = socket.create_connection(listener.getsockname(), timeout=2)  # fills the queue
    yield "http://127.0.0.1:%d" % listener.getsockname()[1]
    filler.close()
    listener.close()


async def test_a_host_that_never_accepts_is_a_connect_timeout(make_gateway, unaccepting_host):
    base, _ = make_gateway(config([GOOD], base_url=unaccepting_host,
                                  timeouts={"connect": 0.3, "first_byte": 30, "total": 60}))
    err = error_of((await ask(base))[0], 504)
    assert err["code"] == "upstream_timeout" and "connect within 0.3s" in err["message"]


@pytest.mark.parametrize("stream", [False, True])
async def test_connection_refused_falls_back_at_once(make_gateway, backup, stream):
    """An unreachable host is no key's fault: the other keys of that provider would meet
    the same closed port, so the next fallback target is tried, not the next key."""
    url, backup_state = backup
    keys = [f"sk-unreachable-00000000000{i}" for i in range(6)]
    base, _ = make_gateway(config(keys, backup=url, base_url=f"http://127.0.0.1:{free_port()}"))
    resp, text = await ask(base, stream=stream)
    assert resp.code == 200 and text == TEXT, resp.body
    assert resp.headers["x-freeapi-provider"] == "backup"
    assert resp.headers["x-freeapi-attempts"] == "2"
    # Without a fallback: a 502 that says so.
    base, _ = make_gateway(config(keys, base_url=f"http://127.0.0.1:{free_port()}"))
    err = error_of((await ask(base, stream=stream))[0], 502)
    assert "cannot connect" in err["message"] and err["code"] == "upstream_unreachable"


async def test_max_attempts_bounds_keys_and_fallbacks(make_gateway, upstream_state, backup):
    url, backup_state = backup
    upstream_state.fail_next = 100
    base, _ = make_gateway(config([GOOD, GOOD2], backup=url, failover={"max_attempts": 2}))
    resp, _ = await ask(base)
    error_of(resp, 503)
    assert len(upstream_state.requests) == 2 and backup_state.requests == []
    base, _ = make_gateway(config([GOOD, GOOD2], backup=url, failover={"max_attempts": 3}))
    resp, text = await ask(base, stream=True)
    assert resp.code == 200 and resp.headers["x-freeapi-provider"] == "backup"
    assert resp.headers["x-freeapi-attempts"] == "3"


async def test_max_time_stops_new_attempts(make_gateway, upstream_state, backup):
    url, backup_state = backup
    upstream_state.hang_keys = {GOOD, GOOD2}
    base, _ = make_gateway(config([GOOD, GOOD2], backup=url, timeouts=FAST,
                                  failover={"max_time": 0.2}))
    start = time.monotonic()
    resp, _ = await ask(base)
    assert error_of(resp, 504)["code"] == "upstream_timeout"
    assert time.monotonic() - start < 2
    assert len(upstream_state.requests) == 1 and backup_state.requests == []


@pytest.mark.parametrize("status", [400, 422])
@pytest.mark.parametrize("stream", [False, True])
async def test_request_errors_are_returned_at_once(make_gateway, upstream_state, backup,
                                                   status, stream):
    url, backup_state = backup
    base, _ = make_gateway(config([GOOD, GOOD2], backup=url))
    resp, _ = await ask(base, f"!status {status}", stream=stream)
    err = error_of(resp, status)
    assert err["message"].startswith("deepseek: ")
    assert len(upstream_state.requests) == 1 and backup_state.requests == []
    assert {r["state"] for r in (await key_rows(base)).values()} == {"ok"}


@pytest.mark.parametrize("stream", [False, True])
async def test_a_404_is_returned_not_taken_to_a_fallback(make_gateway, upstream_state, backup,
                                                        stream):
    # Only a `free` target's 404 (a model this account cannot reach) moves on: from a
    # configured route it is the request's, and no fallback should see it.
    url, backup_state = backup
    upstream_state.fail_next = 1
    upstream_state.fail_status = (404, "The model `deepseek-chat` does not exist",
                                  "invalid_request_error")
    base, _ = make_gateway(config([GOOD], backup=url))
    resp, _ = await ask(base, stream=stream)
    assert "does not exist" in error_of(resp, 404)["message"]
    assert len(upstream_state.requests) == 1 and backup_state.requests == []


async def test_context_too_long_moves_on_only_to_a_configured_fallback(make_gateway,
                                                                       upstream_state, backup):
    url, backup_state = backup
    upstream_state.context_limit = 200  # the primary's model has the shorter context
    long = "x" * 300
    base, _ = make_gateway(config([GOOD, GOOD2], backup=url))
    resp = await request(base + "/v1/chat/completions", "POST", chat_body(long), key=USER)
    assert resp.code == 200 and resp.headers["x-freeapi-provider"] == "backup"
    assert len(upstream_state.requests) == 1  # not retried on the other deepseek key
    base, _ = make_gateway(config([GOOD, GOOD2]))
    resp = await request(base + "/v1/chat/completions", "POST", chat_body(long), key=USER)
    assert "maximum context length" in error_of(resp, 400)["message"]
    assert len(upstream_state.requests) == 2


@pytest.mark.parametrize("status,message,moves_on", [
    (400, "Input is too long for this model.", True),
    (400, "The request exceeds the model's context window.", True),
    (400, "You asked for 9000 tokens, over the maximum of 8192.", True),
    (413, "Request too long.", True),
    (400, "The maximum temperature is 2.", False),  # a maximum, but not of tokens
    (414, "The context is too long.", False),  # not a status about the request's body
])
async def test_the_ways_vendors_say_the_context_is_too_long(make_gateway, upstream_state,
                                                             backup, status, message, moves_on):
    url, backup_state = backup
    upstream_state.fail_next = 1
    upstream_state.fail_status = (status, message, "invalid_request_error")
    base, _ = make_gateway(config([GOOD], backup=url))
    resp = await request(base + "/v1/chat/completions", "POST", chat_body(), key=USER)
    if moves_on:
        assert resp.code == 200 and resp.headers["x-freeapi-provider"] == "backup"
    else:
        assert resp.code == status and backup_state.requests == []


# -- failures after the first byte ----------------------------------------------------------

@pytest.mark.parametrize("cmd,code", [("!stall 30", "upstream_timeout"),
                                      ("!cut", "upstream_unreachable")])
async def test_mid_stream_failure_ends_with_an_error_event_and_is_not_retried(
        make_gateway, upstream_state, backup, cmd, code):
    url, backup_state = backup
    base, _ = make_gateway(config([GOOD, GOOD2], backup=url, timeouts={"idle": 0.4}))
    resp, raw = await stream_raw(base, chat_body(cmd, stream=True), key=USER)
    assert resp.code == 200
    text, err = check_stream(raw, TEXT)
    assert text == PREFIX  # exactly what was sent once: no retry, no repeated prefix
    assert err["code"] == code and "incomplete" in err["message"]
    assert len(upstream_state.requests) == 1 and backup_state.requests == []

    s = await openai.AsyncOpenAI(base_url=base + "/v1", api_key=USER, max_retries=0) \
        .chat.completions.create(model="deepseek-chat", stream=True,
                                 messages=[{"role": "user", "content": cmd}])
    got = ""
    with pytest.raises(openai.APIError) as info:
        async for c in s:
            got += (c.choices[0].delta.content or "") if c.choices else ""
    assert got == PREFIX and "incomplete" in info.value.message
    resp, text = await ask(base, stream=True)  # one broken stream disables nothing
    assert resp.code == 200 and text == TEXT


# -- per-key concurrency --------------------------------------------------------------------

async def parallel(base, n, content):
    """n requests at once, half streamed: [(status, completion id or error code)]."""
    client = AsyncHTTPClient(force_instance=True, max_clients=n)  # all n really at once

    async def one(i):
        stream = i % 2 == 1
        body = chat_body(content, stream=stream)
        if stream:
            resp, raw = await stream_raw(base, body, key=USER, client=client)
        else:
            resp = await request(base + "/v1/chat/completions", "POST", body, key=USER,
                                 client=client)
            raw = resp.body
        if resp.code != 200:
            err = error_of(resp, 429)
            assert resp.headers["Retry-After"] == "1"
            return resp.code, err["code"]
        if stream:
            text, err = check_stream(raw, TEXT)
            assert err is None
            return 200, json.loads(sse_events(raw)[0])["id"]
        data = json.loads(raw)
        assert data["choices"][0]["message"]["content"] == TEXT
        return 200, data["id"]

    try:
        return await asyncio.gather(*(one(i) for i in range(n)))
    finally:
        client.close()


async def test_one_answer_per_key_under_20_parallel_requests(make_gateway, upstream_state):
    base, gw = make_gateway(config([GOOD, GOOD2], key_pool={"max_concurrency": 1}))
    pool, queued = gw.pools["deepseek"], [0]

    async def watch():  # how many waited for a key at once: the 20 were parallel
        while True:
            queued[0] = max(queued[0], len(pool._waiters))
            await asyncio.sleep(0.005)

    watcher = asyncio.ensure_future(watch())
    results = await parallel(base, 20, "!slow 0.05")
    watcher.cancel()
    assert queued[0] >= 10
    assert [code for code, _ in results] == [200] * 20
    assert len({cid for _, cid in results}) == 20  # each client got its own answer
    assert upstream_state.peak == {GOOD: 1, GOOD2: 1}  # never two at once on one key


async def test_a_full_queue_refuses_cleanly(make_gateway, upstream_state):
    base, _ = make_gateway(config([GOOD, GOOD2], key_pool={"max_concurrency": 1,
                                                          "queue_size": 3}))
    results = await parallel(base, 20, "!slow 0.3")
    served = [cid for code, cid in results if code == 200]
    refused = [cid for code, cid in results if code == 429]
    assert len(served) + len(refused) == 20
    assert len(served) >= 5 and refused and set(refused) == {"queue_full"}
    assert len(set(served)) == len(served) == len(upstream_state.requests)
    assert upstream_state.peak == {GOOD: 1, GOOD2: 1}


async def test_queue_full_and_queue_timeout_are_clear_429s(make_gateway, upstream_state):
    base, gw = make_gateway(config([GOOD], key_pool={
        "max_concurrency": 1, "queue_size": 1, "queue_timeout": 0.5}))
    pool = gw.pools["deepseek"]
    holder = asyncio.ensure_future(ask(base, "!slow 1.5"))
    await eventually(lambda: upstream_state.active.get(GOOD) == 1)
    waiter = asyncio.ensure_future(ask(base))
    await eventually(lambda: len(pool._waiters) == 1)
    resp, _ = await ask(base, stream=True)
    err = error_of(resp, 429)
    assert err["code"] == "queue_full" and "queue is full" in err["message"]
    assert resp.headers["Retry-After"] == "1"
    resp, _ = await waiter
    err = error_of(resp, 429)
    assert err["code"] == "queue_timeout" and "busy for 0.5s" in err["message"]
    resp, text = await holder
    assert resp.code == 200 and text == TEXT
    assert len(upstream_state.requests) == 1


async def test_a_busy_pool_moves_to_the_fallback(make_gateway, upstream_state, backup):
    url, backup_state = backup
    base, _ = make_gateway(config([GOOD], backup=url, key_pool={
        "max_concurrency": 1, "queue_size": 0}))
    holder = asyncio.ensure_future(ask(base, "!slow 1"))
    await eventually(lambda: upstream_state.active.get(GOOD) == 1)
    resp, text = await ask(base, stream=True)
    assert resp.code == 200 and resp.headers["x-freeapi-provider"] == "backup"
    assert (await holder)[0].code == 200


# -- clients that leave ---------------------------------------------------------------------

async def open_raw(base, body, key=USER):
    port = int(base.rsplit(":", 1)[1])
    stream = await TCPClient().connect("127.0.0.1", port)
    data = json.dumps(body).encode()
    await stream.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                       b"Authorization: Bearer " + key.encode() + b"\r\n"
                       b"Content-Type: application/json\r\n"
                       b"Content-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data)
    return stream


async def test_clients_that_leave_early_do_not_count_against_the_key(make_gateway,
                                                                     upstream_state):
    base, _ = make_gateway(config([GOOD]))
    for i in range(ERROR_MIN + 1):
        s = await open_raw(base, chat_body("!slow 30", stream=i % 2 == 1))
        await eventually(lambda: len(upstream_state.requests) == i + 1)
        s.close()
        await eventually(lambda: upstream_state.active.get(GOOD) == 0)
    resp, text = await ask(base)
    assert resp.code == 200 and text == TEXT
    row = (await key_rows(base))[mask(GOOD)]
    assert row["state"] == "ok" and row["in_flight"] == 0


async def test_a_client_that_leaves_while_queued_spends_nothing(make_gateway, upstream_state):
    base, gw = make_gateway(config([GOOD], key_pool={"max_concurrency": 1}))
    pool = gw.pools["deepseek"]
    holder = asyncio.ensure_future(ask(base, "!slow 1.5"))
    await eventually(lambda: upstream_state.active.get(GOOD) == 1)
    s = await open_raw(base, chat_body(stream=True))
    await eventually(lambda: len(pool._waiters) == 1)
    s.close()
    await eventually(lambda: not pool._waiters, timeout=0.5)  # left the queue at once
    assert (await holder)[0].code == 200
    await asyncio.sleep(0.1)
    assert len(upstream_state.requests) == 1 and pool.in_flight == {}


# -- pass-through keys ----------------------------------------------------------------------

async def test_unknown_pass_through_keys_cost_no_background_work(make_gateway, upstream_state):
    """Anyone may send any key in pass-through mode: a dead one must not start a background
    re-probe that lives on (thousands of them would hammer the vendor's balance API from
    the gateway's address), nor be remembered without bound."""
    base, gw = make_gateway({"providers": {"deepseek": {
        "key_pool": {"recheck_interval": 0.05}}}})
    gw.health._limit = 20
    for i in range(40):
        resp = await request(base + "/v1/chat/completions", "POST", chat_body(),
                             key=f"sk-random-{i:016d}")
        assert error_of(resp, 401)["message"].startswith("deepseek: ")
    await asyncio.sleep(0.2)
    assert upstream_state.balance_checks == [] and gw.pools["deepseek"]._probes == {}
    assert len(gw.health._h) <= 20
    # A client's own key that works again is simply used again (no probe needed).
    upstream_state.keys["sk-random-0000000000000039"] = "ok"
    resp = await request(base + "/v1/chat/completions", "POST", chat_body(),
                         key="sk-random-0000000000000039")
    assert resp.code == 200
    assert gw.pools["deepseek"].status(["sk-random-0000000000000039"])[0]["state"] == "ok"
