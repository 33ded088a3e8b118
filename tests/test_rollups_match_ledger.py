"""The rollups (freeapi/rollups.py) equal a scan of the raw ledger after random traffic,
on SQLite, Redis and PostgreSQL; /v1/status and GET /admin/keys read only rollups and one
page of the newest entries, never the raw log; GET /admin/requests pages and filters it —
on gateways over each of the three."""

import json
import random
import time

import pytest

from freeapi import rollups as R
from freeapi.store import open_store
from freeapi.config_state import parse_state
from tests.fakes.deepseek import GOOD
from tests.helpers import chat_body, request
from tests.test_usage import ledger

ADMIN, ALICE = "gw-admin-rollups-001", "gw-alice-rollups-002"


def random_entries(n: int, now: float, seed: int) -> list[dict]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        prompt = rnd.choice([None, rnd.randint(0, 5000)])
        cur = rnd.choice(["USD", "CNY", None])
        out.append({
            "ts": round(now - rnd.uniform(0, 3 * 86400), 3),
            "key": rnd.choice(["alice", "bob", None]), "key_id": rnd.choice(
                ["config:alice", "k_1", None]),
            "team": rnd.choice([None, "t_1", "t_2"]), "vendor_key": "sk-...0001",
            "provider": rnd.choice(["deepseek", "glm"]), "upstream_model": "x",
            "model": rnd.choice(["deepseek-chat", "glm-4.7", "embedding-3"]),
            "status": rnd.choice([200, 200, 200, 400, 429, 499, 502]),
            "error": rnd.choice([None, None, "incomplete"]), "stream": rnd.random() < .5,
            "latency_ms": rnd.randint(1, 90000), "ttfb_ms": rnd.randint(1, 5000),
            "prompt_tokens": prompt, "cached_tokens": rnd.randint(0, prompt or 0),
            "completion_tokens": rnd.randint(0, 900), "reasoning_tokens": None,
            "total_tokens": None, "endpoint": "chat", "request_id": f"req-{seed}-{i}",
            "estimated": False, "cost": round(rnd.uniform(0, 0.01), 6) if cur else None,
            "currency": cur, "unpriced": cur is None})
    return out


def scan(entries, period, dim, start):
    """What one bucket should hold, from the raw entries, computed independently."""
    width = R.PERIODS[period][0]
    out = {}
    for e in entries:
        if not start <= e["ts"] < start + width:
            continue
        key = e["key_id"] or e["key"] or e["vendor_key"] or "-"
        val = {"all": "", "key": key, "team": e["team"] or "-", "model": e["model"],
               "provider": e["provider"], "key_model": f"{key}\x1e{e['model']}"}[dim]
        f = out.setdefault(val, {})

        def add(name, v):
            if v:
                f[name] = f.get(name, 0) + v
        add("n", 1)
        failed = e["status"] >= 400 or e["error"] is not None
        add("err", 1 if failed else 0)
        add("pt", e["prompt_tokens"] or 0)
        add("ct", e["cached_tokens"] or 0)
        add("ot", e["completion_tokens"] or 0)
        add("tt", (e["prompt_tokens"] or 0) + e["completion_tokens"]
            if e["prompt_tokens"] is not None else 0)
        add("up", 1 if e["unpriced"] else 0)
        if e["currency"]:
            add(f"c.{e['currency']}", e["cost"])
    return out


@pytest.mark.parametrize("seed", [1, 2])
async def test_rollups_equal_a_scan_of_the_raw_ledger(state_backend, seed):
    store = open_store(parse_state(state_backend, None))
    now = time.time()
    entries = random_entries(600, now, seed)
    rnd = random.Random(seed)
    shuffled = entries[:]
    rnd.shuffle(shuffled)
    i = 0
    while i < len(shuffled):  # random batch sizes, as the background writer makes them
        n = rnd.randint(1, 80)
        await store.ledger_append(shuffled[i:i + n])
        i += n
    try:
        for period, (width, dims, keep) in R.PERIODS.items():
            # Buckets still kept (older ones expired, as they should); minutes: see below.
            span = [s for s in R.starts(period, now - 3 * 86400 - width, now + 1)
                    if s + width + keep > time.time() + 5]
            for dim in dims:
                got = await store.rollup_read(period, dim, span)
                for start, bucket in zip(span, got):
                    want = scan(entries, period, dim, start)
                    have = R.merge([bucket])
                    trimmed = {v: {f: x for f, x in fs.items() if f in (
                        "n", "err", "pt", "ct", "ot", "tt", "up") or f.startswith("c.")}
                        for v, fs in have.items()}
                    assert trimmed.keys() == want.keys(), (period, dim, start)
                    for v in want:
                        assert trimmed[v] == pytest.approx(want[v]), (period, dim, start, v)
                # Summed by the backend, as /v1/status reads them: the same totals.
                summed = await store.rollup_sum(period, dim, span)
                flat: dict = {}
                for bucket in got:
                    for k, v in bucket.items():
                        flat[k] = flat.get(k, 0) + v
                assert summed == pytest.approx(flat)
        # The raw log, paged and filtered: every alice entry of the last day, once.
        since = now - 86400
        wanted = sorted((e for e in entries if e["key_id"] == "config:alice"
                         and e["ts"] >= since), key=lambda e: -e["ts"])
        seen, cursor = [], None
        while True:
            rows, cursor = await store.ledger_page(key="config:alice", since=since,
                                                   cursor=cursor, limit=37)
            seen += rows
            if cursor is None:
                break
        assert [r["request_id"] for r in seen] == [e["request_id"] for e in wanted]
        [one] = (await store.ledger_page(request_id=f"req-{seed}-7"))[0]
        assert one["request_id"] == f"req-{seed}-7"
        rows, _ = await store.ledger_page(status=429, team="t_1", model="glm-4.7")
        assert rows and all(r["status"] == 429 and r["team"] == "t_1"
                            and r["model"] == "glm-4.7" for r in rows)
    finally:
        store.close()


async def test_status_and_admin_keys_never_read_the_raw_log(state_backend, make_gateway,
                                                            monkeypatch):
    base, gw = make_gateway({"auth": {"keys": [{"key": ADMIN, "name": "ops", "role": "admin"},
                                               {"key": ALICE, "name": "alice"}]},
                             "state": state_backend,
                             "providers": {"deepseek": {"api_keys": [GOOD]}}})
    for _ in range(3):
        resp = await request(base + "/v1/chat/completions", "POST", chat_body(), key=ALICE)
        assert resp.code == 200
    await ledger(gw, 3)

    async def no_scan(*a, **kw):
        raise AssertionError("the raw ledger was scanned")
    monkeypatch.setattr(gw.store, "ledger", no_scan)
    data = json.loads((await request(base + "/v1/status", key=ADMIN)).body)
    assert "error" not in data
    [m] = data["models"]["day"]
    assert m["requests"] == 3 and m["tokens"]["cached"] == 24
    alice = next(k for k in data["gateway_keys"] if k["name"] == "alice")
    assert alice["used"]["daily_tokens"] == 54 and alice["used"]["rpm"] == 3
    assert len(data["recent"]) == 3
    keys = json.loads((await request(base + "/admin/keys", key=ADMIN)).body)["data"]
    alice = next(k for k in keys if k["id"] == "config:alice")
    assert alice["usage"]["today"]["requests"] == 3


async def test_admin_requests_is_paged_filtered_and_admin_only(state_backend, make_gateway):
    base, gw = make_gateway({"auth": {"keys": [{"key": ADMIN, "name": "ops", "role": "admin"},
                                               {"key": ALICE, "name": "alice"}]},
                             "state": state_backend,
                             "providers": {"deepseek": {"api_keys": [GOOD]}}})
    ids = []
    for _ in range(3):
        resp = await request(base + "/v1/chat/completions", "POST", chat_body(), key=ALICE)
        ids.append(resp.headers["X-Request-Id"])
    await request(base + "/v1/chat/completions", "POST", chat_body(), key=ADMIN)
    await ledger(gw, 4)
    page = json.loads((await request(base + "/admin/requests?key=config:alice&limit=2",
                                     key=ADMIN)).body)
    assert [r["request_id"] for r in page["data"]] == ids[::-1][:2]
    nxt = await request(base + f"/admin/requests?key=config:alice&limit=2&cursor="
                        f"{page['next_cursor']}", key=ADMIN)
    rest = json.loads(nxt.body)
    assert [r["request_id"] for r in rest["data"]] == ids[:1] and rest["next_cursor"] is None
    one = json.loads((await request(base + f"/admin/requests?request_id={ids[1]}",
                                    key=ADMIN)).body)["data"]
    assert [r["request_id"] for r in one] == [ids[1]]
    assert (await request(base + "/admin/requests", key=ALICE)).code == 403
    bad = await request(base + "/admin/requests?limit=5000", key=ADMIN)
    assert bad.code == 400 and json.loads(bad.body)["error"]["param"] == "limit"
    bad = await request(base + "/admin/requests?since=yesterday", key=ADMIN)
    assert bad.code == 400 and json.loads(bad.body)["error"]["param"] == "since"
    for made_up in ("1:99999999999999999999999", "1:-5", "x:1"):
        bad = await request(base + f"/admin/requests?cursor={made_up}", key=ADMIN)
        assert bad.code == 400 and json.loads(bad.body)["error"]["param"] == "cursor"


async def test_usage_reads_whole_days_from_rollups_and_only_partial_days_raw(state_backend):
    from freeapi.usage import gather, summarize
    store = open_store(parse_state(state_backend, None))
    now = time.time()
    entries = random_entries(400, now, 5)
    await store.ledger_append(entries)
    spans = []
    scan_all = store.ledger

    async def ledger(since=None, until=None):
        spans.append((since, until))
        return await scan_all(since, until)
    store.ledger = ledger
    try:
        since = now - 2.5 * 86400
        got = await gather(store, {}, None, since, None, now)
        want = summarize([e for e in entries if e["ts"] >= since], {})
        assert got["total"] == pytest.approx(want["total"])
        for part in ("by_key", "by_model", "rows"):
            assert len(got[part]) == len(want[part])
            for g, w in zip(got[part], want[part]):
                assert g == pytest.approx(w), part
        # Raw rows were read only for the partial first and last days.
        assert spans and all(hi - lo <= 86400 for lo, hi in spans)
    finally:
        store.close()
