"""The status page's JSON (GET /v1/status): key health, per-model traffic, gateway keys
against their limits, latest requests; admin keys only; no raw key anywhere."""

import asyncio
import json
import re

from tests.fakes.deepseek import BUSY, GOOD, GOOD2
from tests.helpers import assert_no_keys, chat_body, request, stream_raw

ADMIN, USER = "gw-admin-key-0001", "gw-user-key-0002"
CONFIG = {"auth": {"keys": [{"name": "ops", "key": ADMIN, "role": "admin"},
                            {"name": "app", "key": USER, "rpm": 50, "daily_tokens": 1000}]},
          "providers": {"deepseek": {"api_keys": [BUSY, GOOD, GOOD2],
                                     "key_pool": {"max_concurrency": 4}}}}


async def status(base, key=ADMIN, expect=200) -> dict:
    resp = await request(base + "/v1/status", key=key)
    assert resp.code == expect, resp.body
    assert_no_keys(resp.body)
    for k in (ADMIN, USER):
        assert k.encode() not in resp.body
    return json.loads(resp.body)


async def test_status_json_shows_keys_models_limits_and_recent_requests(make_gateway):
    base, gw = make_gateway(CONFIG)
    ids = []
    for i in range(4):
        resp = await request(base + "/v1/chat/completions", "POST", chat_body(), key=USER)
        assert resp.code == 200
        ids.append(resp.headers["X-Request-Id"])
    resp, _ = await stream_raw(base, chat_body(stream=True), key=USER)
    ids.append(resp.headers["X-Request-Id"])
    resp = await request(base + "/v1/chat/completions", "POST", chat_body("!status 400"),
                         key=ADMIN)
    assert resp.code == 400
    ids.append(resp.headers["X-Request-Id"])
    await gw.store.flush()
    for _ in range(100):  # the ledger is written in the background
        data = await status(base)
        if len(data["recent"]) >= 6:
            break
        gw.status._ledger = None
        await asyncio.sleep(0.02)
    assert [r["request_id"] for r in data["recent"]] == ids[::-1]  # newest first
    assert all("messages" not in r and "content" not in r for r in data["recent"])
    keys = {k["id"]: k for k in data["keys"]}
    assert set(keys) == {"sk-...0429", "sk-...0001", "sk-...0002"}
    assert keys["sk-...0429"]["state"] == "cooldown"
    assert keys["sk-...0429"]["cooldown_remaining"] > 0
    assert keys["sk-...0001"]["max_concurrency"] == 4 and keys["sk-...0001"]["queue"] == 0
    [model] = data["models"]["hour"]
    assert model["model"] == "deepseek-chat" and model["requests"] == 6
    assert model["errors"] == {"client": 1}
    assert model["tokens"] == {"input": 55, "output": 35, "cached": 40, "reasoning": 0}
    assert model["ttft_ms"]["p50"] is not None and model["latency_ms"]["p95"] >= \
        model["latency_ms"]["p50"]
    assert data["models"]["day"] == data["models"]["hour"]
    assert sum(s["ok"] for s in data["slots"]) == 5
    assert sum(s["errors"] for s in data["slots"]) == 1 and len(data["slots"]) == 96
    app = next(k for k in data["gateway_keys"] if k["name"] == "app")
    assert app["limits"] == {"rpm": 50, "tpm": None, "daily_tokens": 1000,
                             "monthly_tokens": None}
    assert app["used"] == {"rpm": 5, "tpm": 90, "daily_tokens": 90, "monthly_tokens": 90}
    assert data["workers"] == 1 and data["version"] and data["uptime_s"] >= 0


async def test_status_is_for_admin_keys(make_gateway):
    base, _ = make_gateway(CONFIG)
    await status(base, key=None, expect=401)
    await status(base, key=USER, expect=403)
    base, _ = make_gateway()  # no gateway keys at all: nobody is an operator
    err = await status(base, key=GOOD, expect=403)
    assert err["error"]["code"] == "auth_required"


async def test_the_page_is_self_contained(make_gateway):
    base, _ = make_gateway(CONFIG)
    resp = await request(base + "/status", key=None)
    assert resp.code == 200 and resp.headers["Content-Type"].startswith("text/html")
    policy = resp.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    page = resp.body.decode()
    # Nothing fetched from elsewhere: the only absolute URL is the SVG namespace name.
    assert set(re.findall(r"https?://[^\s\"')]+", page)) == {"http://www.w3.org/2000/svg"}
    assert "innerHTML" not in page  # client-chosen names are shown as text, never markup
