"""GET /admin/spend (spend per key, team, model or provider per hour or day, read from the
rollups only) and the CSV exports (/admin/requests?format=csv paged through the whole log,
/admin/spend?format=csv): the shape and totals, the bounds, bad input named, admin only,
and cells a spreadsheet would run as formulas made inert."""

import csv
import io
import json
import time

import pytest

from freeapi import rollups as R
from freeapi.config_state import parse_state
from freeapi.csvexport import cell
from freeapi.store import open_store
from tests.fakes.deepseek import GOOD
from tests.helpers import request
from tests.test_usage import ledger

ADMIN, USER = "gw-admin-spend-00001", "gw-user-spend-000002"
DAY = 86400


def config(state=None):
    cfg = {"auth": {"keys": [{"key": ADMIN, "name": "ops", "role": "admin"},
                             {"key": USER, "name": "app"}]},
           "billing": {"currency": "USD", "rates": {"CNY": 0.5}},
           "providers": {"deepseek": {"api_keys": [GOOD]}}}
    if state is not None:
        cfg["state"] = state
    return cfg


def entry(ts, model="deepseek-chat", key="config:app", cost=None, currency="USD", **kw):
    return {"ts": ts, "key": key.split(":")[-1], "key_id": key, "team": kw.pop("team", None),
            "vendor_key": "sk-...0001", "provider": "deepseek", "model": model,
            "upstream_model": model, "status": kw.pop("status", 200), "error": None,
            "stream": False, "latency_ms": 100, "ttfb_ms": None, "prompt_tokens": 10,
            "completion_tokens": 5, "cached_tokens": 0, "reasoning_tokens": None,
            "total_tokens": 15, "endpoint": "chat", "request_id": kw.pop("rid", "r"),
            "estimated": False, "cost": cost, "currency": currency if cost else None,
            "unpriced": cost is None, **kw}


async def get(base, path, key=ADMIN):
    resp = await request(base + path, key=key)
    return resp.code, resp


async def test_spend_per_model_per_day_sums_the_days_in_billing_currency(make_gateway):
    base, gw = make_gateway(config())
    now = time.time()
    if now % DAY > DAY - 120:  # keep "today" one day through the test
        time.sleep(DAY - now % DAY + 1)
        now = time.time()
    today = int(now // DAY) * DAY
    await gw.store.rollup_add([
        entry(today + 10, cost=1.0), entry(today + 20, cost=2.0, currency="CNY"),
        entry(today - DAY + 5, cost=0.5), entry(today - 2 * DAY + 5, model="glm-4.7"),
        entry(today - 3 * DAY + 5, model="glm-4.7", cost=0.25, status=500)])
    code, resp = await get(base, f"/admin/spend?by=model&period=day&since={today - 3 * DAY}")
    assert code == 200, resp.body
    got = json.loads(resp.body)
    assert got["starts"] == [today - 3 * DAY + i * DAY for i in range(4)]
    assert got["by"] == "model" and got["period"] == "day" and got["currency"] == "USD"
    chat, glm = got["data"]
    assert chat["value"] == "deepseek-chat" and chat["name"] == "deepseek-chat"
    assert chat["totals"]["amount"] == pytest.approx(2.5)  # 1 + 2 CNY * 0.5 + 0.5
    assert chat["series"]["amount"] == pytest.approx([0, 0, 0.5, 2.0])
    assert chat["series"]["requests"] == [0, 0, 1, 2]
    assert glm["totals"] == dict(glm["totals"], requests=2, errors=1, unpriced=1,
                                 tokens=30, input_tokens=20, output_tokens=10)
    assert got["total"]["requests"] == 5 and got["total"]["amount"] == pytest.approx(2.75)
    assert got["more"] == 0
    # `limit` keeps the biggest spenders; the total still counts everyone.
    _, resp = await get(base, f"/admin/spend?by=model&since={today - 3 * DAY}&limit=1")
    one = json.loads(resp.body)
    assert [r["value"] for r in one["data"]] == ["deepseek-chat"] and one["more"] == 1
    assert one["total"]["requests"] == 5
    # One value only; per key, the key's name beside its id.
    await gw.store.rollup_add([entry(today + 30, key="config:ops", model="x", cost=9.0)])
    _, resp = await get(base, f"/admin/spend?by=key&since={today - 3 * DAY}"
                              "&value=config:app")
    [app] = json.loads(resp.body)["data"]
    assert app["value"] == "config:app" and app["name"] == "app"
    assert app["totals"]["requests"] == 5


async def test_spend_reads_rollups_never_the_raw_log(make_gateway, monkeypatch):
    base, gw = make_gateway(config())
    await gw.store.ledger_append([entry(time.time() - 60, cost=0.1)])

    async def no_scan(*a, **kw):
        raise AssertionError("the raw ledger was read")
    monkeypatch.setattr(gw.store, "ledger", no_scan)
    monkeypatch.setattr(gw.store, "ledger_page", no_scan)
    for by in ("key", "team", "model", "provider"):
        code, resp = await get(base, f"/admin/spend?by={by}&period=hour")
        assert code == 200, resp.body
        assert json.loads(resp.body)["total"]["requests"] == 1


async def test_counts_read_equals_the_full_read_without_histograms(state_backend):
    store = open_store(parse_state(state_backend, None))
    try:
        now = time.time()
        await store.rollup_add([entry(now - i * 700, model=f"m{i % 3}", cost=0.01 * i,
                                      status=(200, 429, 502)[i % 3]) for i in range(30)])
        starts = R.last("h", 8, now)
        full = await store.rollup_read("h", "model", starts)
        counts = await store.rollup_read_counts("h", "model", starts)
        assert any(R.is_detail(k) for b in full for k in b)  # there were some to leave out
        assert counts == [{k: v for k, v in b.items() if not R.is_detail(k)} for b in full]
        assert sum(b.get("m1\x1fn", 0) for b in counts) == 10
    finally:
        store.close()


@pytest.mark.parametrize("query, param", [
    ("by=user", "by"), ("period=week", "period"), ("since=yesterday", "since"),
    ("period=day&since=200d", "since"), ("period=hour&since=9d", "since"),
    ("since=1d&until=2d", "since"), ("until=4102444800", "until"), ("limit=0", "limit"),
    ("limit=501", "limit"), ("format=xml", "format"), ("value=", "value"),
    ("limit=%C2%B2", "limit")])  # "²": a digit to str.isdigit(), not to int()
async def test_bad_spend_queries_are_400_naming_the_field(make_gateway, query, param):
    base, _ = make_gateway(config())
    code, resp = await get(base, f"/admin/spend?{query}")
    assert code == 400, resp.body
    assert json.loads(resp.body)["error"]["param"] == param


async def test_spend_and_exports_are_for_admin_keys_only(make_gateway):
    base, _ = make_gateway(config())
    for path in ("/admin/spend", "/admin/spend?format=csv", "/admin/requests?format=csv"):
        code, resp = await get(base, path, key=USER)
        assert code == 403 and json.loads(resp.body)["error"]["code"] == "admin_only"
        assert (await get(base, path, key=None))[0] == 401


def test_cells_that_would_run_as_formulas_are_made_text():
    assert [cell(v) for v in ("=1+2", "+x", "-x", "@SUM(A1)", "\t=x", "\r=x")] == [
        "'=1+2", "'+x", "'-x", "'@SUM(A1)", "'\t=x", "'\r=x"]
    assert [cell(v) for v in ("deepseek-chat", -1.5, 3, None, True)] == [
        "deepseek-chat", -1.5, 3, "", "true"]


def test_a_formula_behind_leading_blanks_is_made_text_too():
    # Spreadsheets that trim a cell's leading blanks (or a line break) on import then see
    # the formula; numbers sent as strings stay readable, with the apostrophe.
    assert [cell(v) for v in (" =1+2", "\n=1+2", "\u00a0@SUM(A1)", "  -2", " x")] == [
        "' =1+2", "'\n=1+2", "'\u00a0@SUM(A1)", "'  -2", " x"]


async def test_requests_csv_streams_every_page_with_the_filters(state_backend, make_gateway):
    base, gw = make_gateway(config(state_backend))
    now = time.time()
    evil = '=HYPERLINK("http://x","y"),"\n'
    entries = [entry(now - 600 + i * 0.1, rid=f"r{i}", cost=0.001) for i in range(1203)]
    entries += [entry(now - 30, model=evil, rid="evil", status=400),
                entry(now - 20, key="config:ops", rid="other")]
    await gw.store.ledger_append(entries)
    await ledger(gw, len(entries))
    code, resp = await get(base, "/admin/requests?format=csv&key=config:app")
    assert code == 200, resp.body
    assert resp.headers["Content-Type"].startswith("text/csv")
    disposition = resp.headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="freeapi-requests-')
    rows = list(csv.DictReader(io.StringIO(resp.body.decode())))
    assert len(rows) == 1204  # three pages and a bit, the ops entry filtered out
    assert [r["request_id"] for r in rows[:2]] == ["evil", "r1202"]
    assert rows[0]["model"] == "'" + evil and rows[0]["status"] == "400"
    assert rows[-1]["request_id"] == "r0" and rows[-1]["unpriced"] == "false"
    assert rows[-1]["time"].endswith("Z") and float(rows[-1]["cost"]) == 0.001
    _, resp = await get(base, "/admin/requests?format=csv&status=400&limit=5")
    assert [r["request_id"] for r in csv.DictReader(io.StringIO(resp.body.decode()))] == [
        "evil"]
    _, resp = await get(base, "/admin/requests?format=csv&limit=7")
    assert len(list(csv.DictReader(io.StringIO(resp.body.decode())))) == 7


async def test_spend_csv_has_a_row_per_value_and_bucket(make_gateway):
    base, gw = make_gateway(config())
    today = int(time.time() // DAY) * DAY
    await gw.store.rollup_add([entry(today + 1, model="-evil", cost=1.0),
                               entry(today - DAY + 1, model="-evil", cost=2.0),
                               entry(today + 1, key="config:ops", cost=0.5)])
    code, resp = await get(base, f"/admin/spend?by=model&format=csv&since={today - DAY}")
    assert code == 200 and "spend-by-model" in resp.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(resp.body.decode())))
    assert {(r["value"], float(r["amount"])) for r in rows} == {
        ("'-evil", 2.0), ("'-evil", 1.0), ("deepseek-chat", 0.5)}
    assert all(r["currency"] == "USD" and r["by"] == "model" for r in rows)
