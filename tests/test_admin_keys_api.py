"""The admin API (/admin/keys, /admin/teams, /admin/audit) in one gateway: keys made,
changed, rotated and revoked at runtime are served (with the openai SDK) or refused at
once; a key in a team gets the stricter of both limits and allowlists; every refusal of bad
input names its field; only admin config keys may use it; the secret is shown once and
never stored, logged or counted."""

import json
import logging
import time

import openai
import pytest

from tests.fakes.deepseek import GOOD
from tests.helpers import chat_body, error_of, request, sdk

ADMIN, USER = "gw-admin-000000000001", "gw-user-0000000000002"


def config(tmp_path=None, **extra):
    cfg = {"auth": {"keys": [{"key": ADMIN, "name": "root", "role": "admin"},
                             {"key": USER, "name": "plain"}]},
           "providers": {"deepseek": {"api_keys": [GOOD]}}}
    if tmp_path is not None:
        cfg["state"] = {"path": str(tmp_path / "state.db")}
    cfg.update(extra)
    return cfg


async def admin(base, method, path, body=None, key=ADMIN):
    resp = await request(base + path, method, body, key=key)
    return resp.code, json.loads(resp.body) if resp.body else None


async def served(base, key, model="deepseek-chat") -> bool:
    # Closed here: a client left to the garbage collector closes its sockets later, on
    # whatever loop runs then (another test's, or a closed one).
    async with sdk(base, key) as client:
        try:
            await client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "hi"}])
            return True
        except openai.AuthenticationError:
            return False


async def test_a_created_key_is_served_and_its_secret_shown_once(make_gateway):
    base, gw = make_gateway(config())
    code, made = await admin(base, "POST", "/admin/keys", {"name": "alice"})
    assert code == 201 and made["key"].startswith("fk-") and made["source"] == "store"
    assert made["status"] == "active" and made["hint"] == "fk-..." + made["key"][-4:]
    assert await served(base, made["key"])
    code, shown = await admin(base, "GET", f"/admin/keys/{made['id']}")
    assert code == 200 and "key" not in shown and made["key"] not in json.dumps(shown)
    code, listed = await admin(base, "GET", "/admin/keys")
    assert made["key"] not in json.dumps(listed)
    by_name = {k["name"]: k for k in listed["data"]}
    assert by_name["root"]["source"] == "config" and by_name["alice"]["source"] == "store"


async def test_config_keys_are_read_only(make_gateway):
    base, _ = make_gateway(config())
    code, body = await admin(base, "PATCH", "/admin/keys/config:plain", {"rpm": 3})
    assert code == 409 and body["error"]["code"] == "read_only"
    code, body = await admin(base, "DELETE", "/admin/keys/config:plain")
    assert code == 409
    assert await served(base, USER)


async def test_revoked_key_is_refused_at_once(make_gateway):
    base, _ = make_gateway(config())
    _, made = await admin(base, "POST", "/admin/keys", {"name": "bob"})
    assert await served(base, made["key"])
    code, body = await admin(base, "DELETE", f"/admin/keys/{made['id']}")
    assert code == 200 and body["status"] == "revoked"
    assert not await served(base, made["key"])
    err = error_of(await request(base + "/v1/chat/completions", "POST", chat_body(),
                                 key=made["key"]), 401)
    assert err["code"] == "invalid_api_key"


async def test_expired_key_is_401(make_gateway):
    base, _ = make_gateway(config())
    _, made = await admin(base, "POST", "/admin/keys", {"name": "temp",
                                                         "expires_at": "2099-01-01T00:00:00Z"})
    assert await served(base, made["key"])
    code, body = await admin(base, "PATCH", f"/admin/keys/{made['id']}",
                             {"expires_at": "2020-01-01T00:00:00Z"})
    assert code == 200 and body["status"] == "expired"
    error_of(await request(base + "/v1/chat/completions", "POST", chat_body(),
                           key=made["key"]), 401)


async def test_rotation_without_grace_stops_the_old_secret_at_once(make_gateway):
    base, _ = make_gateway(config())
    _, made = await admin(base, "POST", "/admin/keys", {"name": "carol"})
    code, rotated = await admin(base, "POST", f"/admin/keys/{made['id']}/rotate")
    assert code == 200 and rotated["key"] != made["key"]
    assert rotated["previous_valid_until"] is None
    assert await served(base, rotated["key"]) and not await served(base, made["key"])


async def test_rotation_with_grace_keeps_the_old_secret_until_then(make_gateway):
    base, _ = make_gateway(config())
    _, made = await admin(base, "POST", "/admin/keys", {"name": "dave"})
    code, rotated = await admin(base, "POST", f"/admin/keys/{made['id']}/rotate",
                                {"grace_seconds": 1.5})
    assert code == 200 and rotated["previous_valid_until"]
    assert await served(base, made["key"]) and await served(base, rotated["key"])
    deadline = time.monotonic() + 10
    while await served(base, made["key"]):
        assert time.monotonic() < deadline, "the old secret outlived its grace"
        await __import__("asyncio").sleep(0.1)
    assert await served(base, rotated["key"])


async def test_non_admin_keys_get_403(make_gateway):
    base, _ = make_gateway(config())
    _, made = await admin(base, "POST", "/admin/keys", {"name": "eve"})
    for key in (USER, made["key"]):
        for method, path, body in (("GET", "/admin/keys", None),
                                   ("POST", "/admin/keys", {"name": "x"}),
                                   ("GET", "/admin/teams", None),
                                   ("GET", "/admin/audit", None)):
            resp = await request(base + path, method, body, key=key)
            assert error_of(resp, 403)["code"] == "admin_only", (key, path)
    error_of(await request(base + "/admin/keys", key=None), 401)


@pytest.mark.parametrize("body,field", [
    ({"name": "a", "rpm": -1}, "rpm"),
    ({"name": "a", "tpm": 0}, "tpm"),
    ({"name": "a", "daily_tokens": 1.5}, "daily_tokens"),
    ({"name": "a", "budget": {"daily": -2}}, "budget.daily"),
    ({"name": "a", "budget": {"weekly": 2}}, "budget.weekly"),
    ({"name": "a", "budget": {"total": 1e12}}, "budget.total"),  # past a tally's int8
    ({"name": "a", "budget": 5}, "budget"),
    ({"name": "a", "colour": "red"}, "colour"),
    ({"name": "a", "team": "nobody"}, "team"),
    ({"name": "a", "expires_at": "tomorrow"}, "expires_at"),
    ({"name": "a", "expires_at": "2027-01-01T00:00:00"}, "expires_at"),
    ({"name": "a", "models": "deepseek-chat"}, "models"),
    ({"name": "a", "metadata": [1]}, "metadata"),
    ({"name": ""}, "name"),
    ({"rpm": 5}, "name"),
])
async def test_bad_input_is_400_naming_the_field(make_gateway, body, field):
    base, _ = make_gateway(config())
    err = error_of(await request(base + "/admin/keys", "POST", body, key=ADMIN), 400)
    assert err["param"] == field and f"`{field}`" in err["message"]


async def test_bad_team_input_is_400_naming_the_field(make_gateway):
    base, _ = make_gateway(config())
    err = error_of(await request(base + "/admin/teams", "POST",
                                 {"name": "t", "monthly_tokens": -5}, key=ADMIN), 400)
    assert err["param"] == "monthly_tokens"
    err = error_of(await request(base + "/admin/teams", "POST",
                                 {"name": "t", "expires_at": 5}, key=ADMIN), 400)
    assert err["param"] == "expires_at" and err["code"] == "unknown_field"


async def test_a_key_gets_its_teams_stricter_limits_shared_by_the_team(make_gateway):
    base, _ = make_gateway(config())
    code, team = await admin(base, "POST", "/admin/teams",
                             {"name": "research", "rpm": 3, "models": ["deepseek-*"],
                              "budget": {"monthly": 100}})
    assert code == 201 and team["budget"] == {"monthly": 100}
    _, a = await admin(base, "POST", "/admin/keys", {"name": "a", "team": "research",
                                                     "rpm": 100})
    _, b = await admin(base, "POST", "/admin/keys", {"name": "b", "team": team["id"],
                                                     "models": ["deepseek-chat", "kimi-*"]})
    assert a["team"] == b["team"] == team["id"] and a["team_name"] == "research"
    # b's own list allows kimi-*, its team's does not: refused.
    err = error_of(await request(base + "/v1/chat/completions", "POST",
                                 chat_body(model="kimi-k2"), key=b["key"]), 403)
    assert err["code"] == "model_not_allowed" and "research" in err["message"]
    # Three requests per minute for the whole team, whichever key sends them.
    codes = []
    for key in (a["key"], b["key"], a["key"], b["key"]):
        codes.append((await request(base + "/v1/chat/completions", "POST", chat_body(),
                                    key=key)).code)
    assert codes == [200, 200, 200, 429]
    err = error_of(await request(base + "/v1/chat/completions", "POST", chat_body(),
                                 key=a["key"]), 429)
    assert err["code"] == "rpm_exceeded" and "'research'" in err["message"]


async def test_a_team_with_keys_is_not_deleted(make_gateway):
    base, _ = make_gateway(config())
    _, team = await admin(base, "POST", "/admin/teams", {"name": "ops"})
    _, k = await admin(base, "POST", "/admin/keys", {"name": "k", "team": "ops"})
    code, body = await admin(base, "DELETE", f"/admin/teams/{team['id']}")
    assert code == 409 and body["error"]["code"] == "team_in_use"
    await admin(base, "DELETE", f"/admin/keys/{k['id']}")
    code, body = await admin(base, "DELETE", "/admin/teams/ops")
    assert code == 200 and body["deleted"]
    code, _ = await admin(base, "GET", f"/admin/teams/{team['id']}")
    assert code == 404


async def test_names_are_unique(make_gateway):
    base, _ = make_gateway(config())
    await admin(base, "POST", "/admin/keys", {"name": "zed"})
    for name in ("zed", "plain"):
        code, body = await admin(base, "POST", "/admin/keys", {"name": name})
        assert code == 409 and body["error"]["param"] == "name"


async def test_every_change_is_audited_without_secrets(make_gateway):
    base, _ = make_gateway(config())
    _, team = await admin(base, "POST", "/admin/teams", {"name": "t1"})
    _, k = await admin(base, "POST", "/admin/keys", {"name": "k1", "team": "t1"})
    await admin(base, "PATCH", f"/admin/keys/{k['id']}", {"rpm": 7})
    _, rotated = await admin(base, "POST", f"/admin/keys/{k['id']}/rotate")
    await admin(base, "DELETE", f"/admin/keys/{k['id']}")
    code, page = await admin(base, "GET", "/admin/audit?limit=3")
    assert code == 200 and len(page["data"]) == 3 and page["next_before"]
    code, rest = await admin(base, "GET", f"/admin/audit?before={page['next_before']}")
    entries = page["data"] + rest["data"]
    assert [e["action"] for e in entries] == ["key.revoke", "key.rotate", "key.update",
                                              "key.create", "team.create"]
    assert all(e["actor"] == "root" and e["ts"].endswith("Z") for e in entries)
    update = entries[2]
    assert update["before"]["rpm"] is None and update["after"]["rpm"] == 7
    text = json.dumps(entries)
    assert k["key"] not in text and rotated["key"] not in text and "hashes" not in text
    err = error_of(await request(base + "/admin/audit?limit=0", key=ADMIN), 400)
    assert err["param"] == "limit"


async def test_the_secret_is_nowhere_after_creation(make_gateway, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    base, gw = make_gateway(config(tmp_path))
    _, made = await admin(base, "POST", "/admin/keys", {"name": "sec", "rpm": 50})
    secret = made["key"]
    assert await served(base, secret)
    await request(base + "/v1/chat/completions", "POST", chat_body(), key=secret + "x")
    await gw.store.flush()
    await gw.limits.settle()
    ledger = await gw.store.ledger()
    assert ledger and all(e["key"] in ("sec", None) for e in ledger)
    assert secret not in json.dumps(ledger)
    metrics = await request(base + "/metrics", key=ADMIN)
    assert metrics.code == 200 and secret.encode() not in metrics.body
    for record in caplog.records:
        assert secret not in record.getMessage()
    gw.store.close()
    for path in tmp_path.iterdir():
        assert secret.encode() not in path.read_bytes(), path
        assert secret[3:].encode() not in path.read_bytes(), path


async def test_a_store_that_cannot_answer_is_a_503(make_gateway):
    base, _ = make_gateway(config(state={"redis_url": "redis://127.0.0.1:1", "timeout": 1}))
    err = error_of(await request(base + "/admin/keys", "POST", {"name": "x"}, key=ADMIN), 503)
    assert err["code"] == "state_unavailable"
    assert await served(base, USER)  # config keys need no store


async def test_a_key_expires_by_the_clock_without_any_change(make_gateway):
    base, _ = make_gateway(config())
    _, made = await admin(base, "POST", "/admin/keys",
                          {"name": "brief", "expires_at": time.time() + 1})
    assert await served(base, made["key"])
    deadline = time.monotonic() + 10
    while await served(base, made["key"]):
        assert time.monotonic() < deadline, "the key outlived expires_at"
        await __import__("asyncio").sleep(0.05)
    code, shown = await admin(base, "GET", f"/admin/keys/{made['id']}")
    assert shown["status"] == "expired"


async def test_the_model_list_shows_only_what_key_and_team_both_allow(make_gateway):
    base, _ = make_gateway(config())
    await admin(base, "POST", "/admin/teams", {"name": "narrow",
                                               "models": ["deepseek-v4-*"]})
    _, k = await admin(base, "POST", "/admin/keys", {"name": "n", "team": "narrow"})
    _, both = await admin(base, "POST", "/admin/keys", {
        "name": "m", "team": "narrow", "models": ["deepseek-v4-flash", "deepseek-flash"]})
    async def listed(key):
        async with sdk(base, key) as client:
            return {m.id async for m in client.models.list()}
    everything = await listed(USER)
    assert "deepseek-flash" in everything
    ids = await listed(k["key"])
    assert ids == {i for i in everything if i.startswith("deepseek-v4-")}
    ids = await listed(both["key"])
    assert "deepseek-v4-flash" in ids and "deepseek-flash" not in ids
    assert "deepseek-v4-pro" not in ids
