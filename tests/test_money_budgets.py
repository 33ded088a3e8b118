"""Money budgets (freeapi/budgets.py): a key's and its team's spend per UTC day, month and
in total. Admission reserves each request's estimated cost and refuses what does not fit
(429 budget_exceeded, Retry-After at the period's end); the reservation settles to the real
cost. Prices here make the estimate exact (input free, max_tokens = the fake's 7 completion
tokens at 1000 per million: 0.007 a request), so a budget worth N requests admits N."""

import asyncio
import calendar
import json
import time

import pytest
from tornado.httpclient import AsyncHTTPClient
from tornado.simple_httpclient import HTTPTimeoutError

from freeapi.budgets import NANO, key_counter_id, period_keys
from tests.fakes.deepseek import GOOD
from tests.helpers import chat_body, error_of, request

ADMIN, ALICE, BOB = "gw-admin-budget-0001", "gw-alice-budget-0002", "gw-bob-budget-0003"
PRICES = {"deepseek-flash": {"input": 0, "cached": 0, "output": 1000}}
COST = 0.007  # 7 completion tokens at 1000 per million


def config(alice_budget=None, **extra) -> dict:
    cfg = {"auth": {"keys": [{"key": ADMIN, "name": "ops", "role": "admin"},
                             {"key": ALICE, "name": "alice", "budget": alice_budget},
                             {"key": BOB, "name": "bob"}]},
           "providers": {"deepseek": {"api_keys": [GOOD]}}, "prices": PRICES}
    cfg.update(extra)
    return cfg


def ask(content="hi", **extra) -> dict:
    return chat_body(content, max_tokens=7, **extra)


def seconds_to_midnight() -> float:
    t = time.gmtime()
    return calendar.timegm((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0)) + 86400 - time.time()


async def spent(gw, name="alice") -> dict:
    """The key's tallies, in billing.currency, once settlements in flight have landed."""
    await gw.store.settle()
    [used] = await gw.steps.budgets.used([key_counter_id(f"config:{name}",
                                                         gw.config.gateway_keys)])
    return used


async def ledger(gw) -> list[dict]:
    await gw.store.flush()
    return await gw.store.ledger()


async def test_a_budget_worth_n_requests_admits_n_and_refuses_the_next(make_gateway):
    base, gw = make_gateway(config({"daily": 3 * COST}))
    url = base + "/v1/chat/completions"
    for body in (ask(), ask(stream=True), ask()):
        resp = await request(url, "POST", body, key=ALICE)
        assert resp.code == 200, resp.body
    resp = await request(url, "POST", ask(), key=ALICE)
    err = error_of(resp, 429)
    assert err["code"] == "budget_exceeded"
    assert "'alice'" in err["message"] and "daily" in err["message"]
    assert "0.021 USD" in err["message"]
    assert abs(int(resp.headers["Retry-After"]) - seconds_to_midnight()) <= 2
    # Other keys are not touched; the refusal wrote no ledger entry.
    assert (await request(url, "POST", ask(), key=BOB)).code == 200
    rows = await ledger(gw)
    assert [r["key"] for r in rows] == ["alice"] * 3 + ["bob"]
    assert [r["cost"] for r in rows] == [COST] * 4
    assert await spent(gw) == {"daily": 0.021, "monthly": 0.021, "total": 0.021}


async def test_twenty_at_once_against_a_budget_worth_three_serve_three(make_gateway):
    base, gw = make_gateway(config({"monthly": 3 * COST}))
    client = AsyncHTTPClient(force_instance=True, max_clients=25)
    try:
        got = await asyncio.gather(*(
            request(base + "/v1/chat/completions", "POST", ask("!slow 0.3"), key=ALICE,
                    client=client) for _ in range(20)))
    finally:
        client.close()
    codes = sorted(r.code for r in got)
    assert codes == [200] * 3 + [429] * 17
    assert {json.loads(r.body)["error"]["code"] for r in got if r.code == 429} == \
        {"budget_exceeded"}
    rows = await ledger(gw)
    assert len(rows) == 3
    assert (await spent(gw))["monthly"] == pytest.approx(sum(r["cost"] for r in rows))


async def test_a_total_budget_says_retrying_will_not_help(make_gateway):
    base, _ = make_gateway(config({"total": COST}))
    url = base + "/v1/chat/completions"
    assert (await request(url, "POST", ask(), key=ALICE)).code == 200
    resp = await request(url, "POST", ask(), key=ALICE)
    err = error_of(resp, 429)
    assert err["code"] == "budget_exceeded" and "total" in err["message"]
    assert "retrying will not help" in err["message"]
    assert "Retry-After" not in resp.headers


async def test_a_team_budget_is_shared_by_its_keys_and_the_stricter_budget_refuses(
        make_gateway):
    base, gw = make_gateway(config())
    team = await request(base + "/admin/teams", "POST", {
        "name": "research", "budget": {"daily": 3 * COST}}, key=ADMIN)
    assert team.code == 201, team.body
    keys = {}
    for name, budget in (("ana", None), ("ben", {"daily": COST})):
        resp = await request(base + "/admin/keys", "POST", {
            "name": name, "team": "research", "budget": budget}, key=ADMIN)
        assert resp.code == 201, resp.body
        keys[name] = json.loads(resp.body)["key"]
    url = base + "/v1/chat/completions"
    assert (await request(url, "POST", ask(), key=keys["ben"])).code == 200
    err = error_of(await request(url, "POST", ask(), key=keys["ben"]), 429)
    assert "Gateway key 'ben' is over its daily" in err["message"]  # its own, the stricter
    for _ in range(2):
        assert (await request(url, "POST", ask(), key=keys["ana"])).code == 200
    err = error_of(await request(url, "POST", ask(), key=keys["ana"]), 429)
    assert err["code"] == "budget_exceeded"
    assert "'ana''s team 'research' is over its daily" in err["message"]
    await gw.store.settle()
    teams = json.loads((await request(base + "/admin/teams", key=ADMIN)).body)["data"]
    assert teams[0]["budget_used"] == {"daily": 0.021, "monthly": 0.021, "total": 0.021}
    listed = json.loads((await request(base + "/admin/keys", key=ADMIN)).body)["data"]
    used = {k["name"]: k["budget_used"]["daily"] for k in listed}
    assert used["ana"] == 0.014 and used["ben"] == COST


async def test_a_model_without_a_price_is_served_with_a_spent_budget_and_recorded_unpriced(
        make_gateway):
    base, gw = make_gateway(config({"total": COST}))
    url = base + "/v1/chat/completions"
    assert (await request(url, "POST", ask(), key=ALICE)).code == 200
    assert (await request(url, "POST", ask(), key=ALICE)).code == 429
    # deepseek-v4-flash-vision-exp has no row in the built-in table nor in `prices:`
    resp = await request(url, "POST", ask(model="deepseek/deepseek-v4-flash-vision-exp"),
                         key=ALICE)
    assert resp.code == 200, resp.body
    last = (await ledger(gw))[-1]
    assert last["unpriced"] is True and last["cost"] is None
    assert await spent(gw) == {"daily": COST, "monthly": COST, "total": COST}


async def test_a_price_no_rate_converts_counts_nothing_and_is_logged_once(make_gateway,
                                                                          caplog):
    prices = {"deepseek-flash": {"input": 0, "output": 1000, "currency": "EUR"}}
    base, gw = make_gateway(config({"total": 0}, prices=prices))
    for _ in range(2):  # a budget of 0, yet served: EUR cannot count against it
        resp = await request(base + "/v1/chat/completions", "POST", ask(), key=ALICE)
        assert resp.code == 200, resp.body
    warned = [r for r in caplog.records if "EUR cannot count against" in r.getMessage()]
    assert len(warned) == 1 and "billing.rates" in warned[0].getMessage()
    assert [(r["cost"], r["currency"]) for r in await ledger(gw)] == [(COST, "EUR")] * 2
    assert await spent(gw) == {"daily": 0, "monthly": 0, "total": 0}


async def test_settlement_corrects_the_reservation_to_the_real_cost(make_gateway):
    # No max_tokens: billing.reserve_output_tokens (100 here) is reserved, 0.1; the real
    # answer costs 0.007. A budget of 0.15 fits one reservation at a time only, so the
    # second request fits only once the first has settled.
    base, gw = make_gateway(config({"daily": 0.15}, billing={"reserve_output_tokens": 100}))
    url = base + "/v1/chat/completions"
    for _ in range(5):
        assert (await request(url, "POST", chat_body(), key=ALICE)).code == 200
        await gw.store.settle()
    assert (await spent(gw))["daily"] == pytest.approx(5 * COST)


async def test_no_reservation_leaks_whatever_way_a_request_ends(make_gateway, upstream_state):
    base, gw = make_gateway(config({"total": 100.0}))
    url = base + "/v1/chat/completions"
    assert (await request(url, "POST", chat_body(), key=ALICE)).code == 200
    assert (await request(url, "POST", chat_body(stream=True), key=ALICE)).code == 200
    assert (await request(url, "POST", chat_body("!status 400"), key=ALICE)).code == 400
    assert (await request(url, "POST", chat_body("!status 500"), key=ALICE)).code >= 500
    # Too big for the budget: refused before anything is sent.
    assert (await request(url, "POST", chat_body(max_tokens=10 ** 9), key=ALICE)).code == 429
    # The client leaves before the answer: the reservation is given back.
    with pytest.raises(HTTPTimeoutError):
        await request(url, "POST", chat_body("!slow 3"), key=ALICE, timeout=0.3)
    for _ in range(100):
        rows = await ledger(gw)
        if any(r["status"] == 499 for r in rows):
            break
        await asyncio.sleep(0.05)
    total = sum(r["cost"] or 0 for r in rows if r["key"] == "alice")
    assert total == pytest.approx(2 * COST)
    assert (await spent(gw))["total"] == pytest.approx(total)


@pytest.mark.parametrize("budget, served", [(0.02, False), (0.03, True)])
async def test_failover_to_a_dearer_target_tops_the_reservation_up_or_skips_it(
        make_gateway, upstream_state, budget, served):
    # deepseek-v4-pro at 3000 per million output: 0.021 for max_tokens 7, against 0.007
    # for the first target, which fails (503) after its 0.007 was reserved.
    prices = dict(PRICES, **{"deepseek-v4-pro": {"input": 0, "cached": 0, "output": 3000}})
    base, gw = make_gateway(config({"daily": budget}, prices=prices, fallbacks={
        "deepseek-chat": ["deepseek/deepseek-v4-pro"]}))
    upstream_state.fail_next = 1
    resp = await request(base + "/v1/chat/completions", "POST", ask(), key=ALICE)
    sent = [r["body"]["model"] for r in upstream_state.requests]
    if served:
        assert resp.code == 200, resp.body
        assert resp.headers["x-freeapi-upstream-model"] == "deepseek-v4-pro"
        assert sent == ["deepseek-flash", "deepseek-v4-pro"]
    else:
        err = error_of(resp, 429)
        assert err["code"] == "budget_exceeded"
        assert "0.007 used or reserved, and this request needs 0.014 more" in err["message"]
        assert sent == ["deepseek-flash"]  # the dearer target was never asked
    rows = await ledger(gw)
    assert (await spent(gw))["daily"] == pytest.approx(sum(r["cost"] or 0 for r in rows))


async def test_a_store_that_cannot_answer_fails_a_budgeted_caller_closed(make_gateway):
    base, _ = make_gateway(config({"daily": 1.0}, state={
        "redis_url": "redis://127.0.0.1:1/0", "timeout": 0.5}))
    url = base + "/v1/chat/completions"
    resp = await request(url, "POST", ask(), key=ALICE)
    err = error_of(resp, 503)
    assert err["code"] == "state_unavailable" and "budget" in err["message"]
    # A caller without a budget (nor limits) never asks the store.
    assert (await request(url, "POST", ask(), key=BOB)).code == 200


async def test_the_budget_metric_and_the_admin_api_show_what_is_used(make_gateway):
    base, gw = make_gateway(config({"daily": 3 * COST, "total": 10 * COST}))
    url = base + "/v1/chat/completions"
    for _ in range(2):
        assert (await request(url, "POST", ask(), key=ALICE)).code == 200
    await gw.store.settle()
    metrics = (await request(base + "/metrics", key=ADMIN)).body.decode()
    ratios = {line.split("{")[1].split("}")[0]: float(line.split()[-1])
              for line in metrics.splitlines()
              if line.startswith("freeapi_budget_used_ratio{")}
    assert ratios['key="alice",period="daily",team=""'] == pytest.approx(2 / 3)
    assert ratios['key="alice",period="total",team=""'] == pytest.approx(0.2)
    assert not any('"bob"' in k for k in ratios)  # no budget, no series
    want = {"daily": 0.014, "monthly": 0.014, "total": 0.014}
    listed = json.loads((await request(base + "/admin/keys", key=ADMIN)).body)["data"]
    alice = next(k for k in listed if k["id"] == "config:alice")
    assert alice["budget"] == {"daily": 3 * COST, "total": 10 * COST}
    assert alice["budget_used"] == want
    one = json.loads((await request(base + "/admin/keys/config:alice", key=ADMIN)).body)
    assert one["budget_used"] == want


def test_tallies_are_named_by_holder_and_period():
    at = calendar.timegm((2026, 12, 31, 23, 0, 0))
    got = period_keys("k:abc", at)
    assert [(p, k) for p, k, _, _ in got] == [
        ("daily", "b:k:abc:d20261231"), ("monthly", "b:k:abc:m202612"),
        ("total", "b:k:abc:total")]
    assert [ends for _, _, _, ends in got] == [at + 3600, at + 3600, None]
    assert NANO == 10 ** 9


def test_a_transcription_is_charged_the_seconds_its_vendor_reports_and_none_it_does_not():
    from freeapi.provider import Provider
    seconds = Provider.transcription_seconds
    assert seconds(None, b'{"text": "hi", "usage": {"type": "duration", "seconds": 3}}') == 3.0
    assert seconds(None, b'{"text": "hi", "duration": 12.5, "segments": []}') == 12.5
    assert seconds(None, b'{"text": "hi"}') is None
    assert seconds(None, b"1\n00:00:00,000 --> 00:00:01,000\nhi\n") is None
    assert seconds(None, b'{"text": "hi", "duration": true}') is None


@pytest.mark.parametrize("limited", [False, True])
async def test_a_client_that_leaves_while_its_reservation_is_made_leaves_nothing_held(
        make_gateway, upstream_state, limited):
    # The store is slow to answer (a loaded Redis): the client gives up meanwhile. With
    # limits too, it may leave during the limits' store call, before the reservation is.
    budget = dict(config({"daily": 1.0}))
    if limited:
        budget["auth"]["keys"][1]["rpm"] = 100
    base, gw = make_gateway(budget)
    for name in ("tally_reserve", "hits") if limited else ("tally_reserve",):
        real = getattr(gw.store, name)

        async def slow(*args, _real=real, **kw):
            await asyncio.sleep(0.4)
            return await _real(*args, **kw)
        setattr(gw.store, name, slow)
    with pytest.raises(HTTPTimeoutError):
        await request(base + "/v1/chat/completions", "POST", ask(), key=ALICE, timeout=0.2)
    await asyncio.sleep(1.2)  # the store's answers come, and whatever follows them
    assert upstream_state.requests == []  # nothing was sent for nobody
    assert await spent(gw) == {"daily": 0, "monthly": 0, "total": 0}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("rounds_fit", [False, True])
async def test_a_search_models_rounds_are_held_one_after_the_other(
        make_gateway, start_vendor, rounds_fit, stream):
    # Kimi's `$web_search` takes two rounds, each billed 8 completion tokens: with
    # max_tokens 8 and input free, each round's estimate is exactly its cost (0.000008),
    # and the request costs two of them. A budget worth 1.5 rounds must not pay for two.
    from tests.fakes import kimi as fake_kimi
    url, _ = start_vendor(fake_kimi)
    round_cost = 8 * 1000 / 1e6
    budget = (2 if rounds_fit else 1.5) * round_cost
    base, gw = make_gateway(config({"daily": budget}, providers={
        "kimi": {"base_url": url + "/v1", "api_keys": [fake_kimi.GOOD], "discover": False}},
        prices={"moonshot-v1-8k": {"input": 0, "cached": 0, "output": 1000}}))
    resp = await request(base + "/v1/chat/completions", "POST", {
        "model": "moonshot-v1-8k-search", "max_tokens": 8, "stream": stream,
        "messages": [{"role": "user", "content": "what happened today?"}]}, key=ALICE)
    rows = await ledger(gw)
    if rounds_fit:
        assert resp.code == 200, resp.body
        assert rows[-1]["cost"] == pytest.approx(2 * round_cost)
    else:  # the second round does not fit: refused before it is sent
        assert error_of(resp, 429)["code"] == "budget_exceeded"
        assert rows[-1]["cost"] == pytest.approx(round_cost)  # the first round's, billed
    used = await spent(gw)
    assert used["daily"] == pytest.approx(rows[-1]["cost"]) and used["daily"] <= budget


@pytest.mark.parametrize("fields, output", [
    ({"max_tokens": 9000.0}, 9000),  # a float an OpenAI-compatible server reads as 9000
    ({"max_tokens": "9000"}, 9000),  # so does a numeric string, in pydantic's lax mode
    ({"max_tokens": 1, "max_completion_tokens": 9000}, 9000),  # the larger one may count
    ({"max_completion_tokens": 1, "max_tokens": 9000}, 9000),
    ({"max_tokens": 0, "max_completion_tokens": 9000}, 9000),
    ({"max_tokens": 9000, "n": 2.0}, 18000),
    ({"max_tokens": 9000, "n": "3"}, 27000),
    ({"max_tokens": True}, 100), ({"max_tokens": -5}, 100), ({"max_tokens": "lots"}, 100),
    ({"max_tokens": float("nan")}, 100), ({"max_tokens": float("inf")}, 100),
    ({"max_tokens": 9000, "n": -3}, 9000), ({"max_tokens": 9000, "n": True}, 9000),
])
def test_a_chat_estimate_reads_the_largest_output_any_vendor_could_allow(fields, output):
    from freeapi.budgets import chat_estimate
    counts, _ = chat_estimate({"messages": [{"role": "user", "content": "hi"}], **fields},
                              100)
    assert counts["completion_tokens"] == output


def test_a_chinese_prompt_is_reserved_at_least_at_the_vendors_own_ratio():
    # DeepSeek: 1 Chinese character ~ 0.6 token, 1 English one ~ 0.3
    # (https://api-docs.deepseek.com/quick_start/token_usage): four characters a token
    # reserved a Chinese prompt at 0.25 a character, under half of what it is billed.
    from freeapi.budgets import chat_estimate
    chinese, english = "你好世界" * 500, "hello world " * 500
    for text, ratio in ((chinese, 0.6), (english, 0.3)):
        counts, _ = chat_estimate({"messages": [{"role": "user", "content": text}]}, 1)
        assert counts["prompt_tokens"] >= ratio * len(text)
    counts, _ = chat_estimate({"messages": [{"role": "user", "content": "😀" * 100}]}, 1)
    assert counts["prompt_tokens"] >= 100


def test_schemas_the_vendor_reads_are_part_of_the_prompt_estimate():
    from freeapi.budgets import chat_estimate
    schema = {"type": "object", "properties": {f"field_{i}": {"type": "string"}
                                               for i in range(200)}}
    plain, _ = chat_estimate({"messages": [{"role": "user", "content": "hi"}]}, 1)
    for extra in ({"functions": [{"name": "f", "parameters": schema}]},
                  {"response_format": {"type": "json_schema",
                                       "json_schema": {"name": "s", "schema": schema}}},
                  {"tools": [{"type": "function",
                              "function": {"name": "f", "parameters": schema}}]}):
        counts, _ = chat_estimate({"messages": [{"role": "user", "content": "hi"}],
                                   **extra}, 1)
        assert counts["prompt_tokens"] > plain["prompt_tokens"] + 1000, extra


@pytest.mark.parametrize("fields", [{"max_tokens": 10 ** 400},
                                    {"max_tokens": 7, "n": 10 ** 400},
                                    {"max_tokens": "1e308", "n": "1e308"}])
async def test_an_absurd_output_count_is_refused_by_the_budget_not_a_traceback(
        make_gateway, upstream_state, fields):
    base, gw = make_gateway(config({"total": 1000.0}))
    resp = await request(base + "/v1/chat/completions", "POST", dict(ask(), **fields),
                         key=ALICE)
    assert error_of(resp, 429)["code"] == "budget_exceeded"
    assert upstream_state.requests == []
    assert await spent(gw) == {"daily": 0, "monthly": 0, "total": 0}


def seconds_to_month_end() -> float:
    t = time.gmtime()
    year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
    return calendar.timegm((year, month, 1, 0, 0, 0)) - time.time()


@pytest.mark.parametrize("budget, period", [({"daily": COST, "monthly": COST}, "monthly"),
                                            ({"daily": COST, "total": COST}, "total")])
async def test_a_refusal_names_the_spent_period_that_renews_last(make_gateway, budget,
                                                                 period):
    # Both periods are spent: retrying at midnight would be refused again by the longer.
    base, _ = make_gateway(config(budget))
    url = base + "/v1/chat/completions"
    assert (await request(url, "POST", ask(), key=ALICE)).code == 200
    resp = await request(url, "POST", ask(), key=ALICE)
    err = error_of(resp, 429)
    assert f"over its {period} money budget" in err["message"]
    if period == "total":
        assert "Retry-After" not in resp.headers
    else:
        assert abs(int(resp.headers["Retry-After"]) - seconds_to_month_end()) <= 2
