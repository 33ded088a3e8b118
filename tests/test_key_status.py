"""Key status for the operator: GET /v1/keys and `freeapi check-keys`."""

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.fakes.deepseek import BUSY, DEAD, GOOD, GOOD2, POOR
from tests.helpers import ThreadedFake, assert_no_keys, chat_body, error_of, request

ROOT = Path(__file__).resolve().parent.parent
ADMIN, USER = "gw-admin-key-0001", "gw-user-key-0002"
ROLES = {"keys": [{"key": ADMIN, "role": "admin"}, {"key": USER}]}


def pool(auth, keys=(GOOD, GOOD2)):
    return {"auth": auth, "providers": {"deepseek": {"api_keys": list(keys)}}}


async def keys_of(base, key):
    resp = await request(base + "/v1/keys", key=key)
    assert resp.code == 200, resp.body
    assert_no_keys(resp.body)
    data = json.loads(resp.body)
    assert data["object"] == "list"
    return {row["id"]: row for row in data["data"]}


# -- GET /v1/keys ---------------------------------------------------------------------------

async def test_keys_need_gateway_keys(make_gateway):
    base, _ = make_gateway(pool({"allow_anonymous": True}))
    for key in (None, GOOD):
        err = error_of(await request(base + "/v1/keys", key=key), 403)
        assert err["code"] == "auth_required" and "auth.keys" in err["message"]
    base, _ = make_gateway()  # pass-through only: nothing is configured to show either
    error_of(await request(base + "/v1/keys", key=GOOD), 403)


async def test_keys_need_a_valid_gateway_key(make_gateway):
    base, _ = make_gateway(pool({"keys": [USER]}))
    for key in (None, GOOD, USER + "x"):
        assert error_of(await request(base + "/v1/keys", key=key), 401)["code"] \
            == "invalid_api_key"
    rows = await keys_of(base, USER)  # no roles configured: any gateway key may look
    assert set(rows) == {"sk-...0001", "sk-...0002"}


async def test_keys_are_admin_only_once_roles_are_used(make_gateway):
    base, _ = make_gateway(pool(ROLES))
    err = error_of(await request(base + "/v1/keys", key=USER), 403)
    assert err["code"] == "admin_only" and "admin" in err["message"]
    assert set(await keys_of(base, ADMIN)) == {"sk-...0001", "sk-...0002"}


async def test_keys_show_state_in_flight_last_error_and_cooldown(make_gateway, upstream_state):
    upstream_state.retry_after = "30"
    base, _ = make_gateway(pool(ROLES, [GOOD, DEAD, BUSY, POOR]))
    rows = await keys_of(base, ADMIN)
    assert list(rows) == ["sk-...0001", "sk-...0401", "sk-...0429", "sk-...0402"]
    for row in rows.values():
        assert row == {"provider": "deepseek", "id": row["id"], "state": "ok", "in_flight": 0,
                       "last_error": None, "last_error_at": None, "cooldown_remaining": 0}
    for _ in range(4):  # every bad key is met once, each request ends on GOOD
        resp = await request(base + "/v1/chat/completions", "POST", chat_body(), key=USER)
        assert resp.code == 200
    slow = asyncio.ensure_future(request(base + "/v1/chat/completions", "POST",
                                         chat_body("!slow 0.5"), key=USER))
    while not upstream_state.active.get(GOOD):
        await asyncio.sleep(0.01)
    rows = await keys_of(base, ADMIN)
    assert rows["sk-...0001"]["in_flight"] == 1 and rows["sk-...0001"]["state"] == "ok"
    assert rows["sk-...0401"]["state"] == "invalid"
    assert rows["sk-...0402"]["state"] == "no_balance"
    busy = rows["sk-...0429"]
    assert busy["state"] == "cooldown" and busy["last_error"] == "HTTP 429"
    assert 25 < busy["cooldown_remaining"] <= 30 and busy["last_error_at"] > 0
    assert (await slow).code == 200
    assert (await keys_of(base, ADMIN))["sk-...0001"]["in_flight"] == 0


# -- freeapi check-keys ---------------------------------------------------------------------

def check_keys(tmp_path, providers: str):
    cfg = tmp_path / "keys.yaml"
    cfg.write_text("auth:\n  keys: [gw-admin-key-0001]\nproviders:\n" + providers)
    p = subprocess.run([sys.executable, "-m", "freeapi", "check-keys", "--config", str(cfg)],
                       cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert "Traceback" not in p.stderr
    assert_no_keys(p.stdout + p.stderr)
    return p.returncode, p.stdout.strip().splitlines()


def table(lines):
    return [line.split(None, 2) for line in lines]


@pytest.fixture(scope="module")
def fake():
    with ThreadedFake() as f:
        yield f


OUTAGE = "sk-outage-00000000000503"


def test_check_keys_table_and_exit_codes(tmp_path, fake):
    fake.state.keys[OUTAGE] = "outage"
    code, lines = check_keys(tmp_path, (
        f"  deepseek:\n    base_url: {fake.url}\n"
        f"    api_keys: [{GOOD}, {DEAD}, {POOR}, {OUTAGE}]\n"
        f"  down:\n    type: deepseek\n    base_url: http://127.0.0.1:{free_port()}\n"
        f"    api_keys: [{GOOD2}]\n"))
    assert code == 1
    rows = table(lines)
    assert rows[0] == ["provider", "key", "state"]
    state = {(r[0], r[1]): r[2] for r in rows[1:]}
    assert len(rows) == 6
    assert state[("deepseek", "sk-...0001")] == "live"
    assert state[("deepseek", "sk-...0401")] == "dead"
    assert state[("deepseek", "sk-...0402")] == "dead"
    assert state[("deepseek", "sk-...0503")].startswith("unknown (502: deepseek")
    assert state[("down", "sk-...0002")].startswith("unknown (502: down: cannot connect")
    assert fake.state.requests == []  # checked with /user/balance, no chat request spent
    assert {GOOD, DEAD, POOR, OUTAGE} <= set(fake.state.balance_checks)


def test_check_keys_all_live_exits_0(tmp_path, fake):
    code, lines = check_keys(tmp_path, f"  deepseek:\n    base_url: {fake.url}\n"
                                       f"    api_keys: [{GOOD}, {GOOD2}]\n")
    assert code == 0
    assert table(lines)[1:] == [["deepseek", "sk-...0001", "live"],
                                ["deepseek", "sk-...0002", "live"]]


def test_check_keys_without_server_keys_exits_3(tmp_path):
    code, lines = check_keys(tmp_path, "  deepseek: {}\n")
    assert code == 3 and lines == [
        "no server-side keys are configured (providers.NAME.api_keys)"]
