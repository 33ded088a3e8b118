"""`freeapi keys ...` and `freeapi teams ...` as real commands on a config's SQLite store with
no gateway running: JSON out, the secret once, bad input exit 2 naming the field, config
keys listed read-only, every change audited as `cli`; a gateway started afterwards serves
the key (with the openai SDK)."""

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from freeapi.store.sqlite import SQLiteStore
from tests.test_admin_keys_api import ADMIN

ROOT = Path(__file__).resolve().parent.parent


def freeapi(cfg, *args):
    out = subprocess.run([sys.executable, "-m", "freeapi", *args, "--config", str(cfg)],
                         cwd=ROOT, capture_output=True, timeout=60)
    return out.returncode, out.stdout.decode(), out.stderr.decode()


def test_keys_and_teams_from_the_command_line(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(json.dumps({"auth": {"keys": [{"key": ADMIN, "name": "root",
                                                  "role": "admin"}]}}))
    code, out, _ = freeapi(cfg, "teams", "create", "--name", "research", "--rpm", "60",
                           "--budget-monthly", "25")
    assert code == 0
    team = json.loads(out)
    assert team["rpm"] == 60 and team["budget"] == {"monthly": 25.0}

    code, out, err = freeapi(cfg, "keys", "create", "--name", "alice", "--team", "research",
                             "--models", "deepseek-*,kimi-k2.6", "--tpm", "1000")
    assert code == 0, err
    made = json.loads(out)
    assert made["key"].startswith("fk-") and made["team"] == team["id"]
    assert made["models"] == ["deepseek-*", "kimi-k2.6"] and made["tpm"] == 1000

    code, out, _ = freeapi(cfg, "keys", "update", made["id"], "--tpm", "none",
                           "--models", "all")
    updated = json.loads(out)
    assert code == 0 and updated["tpm"] is None and updated["models"] is None
    assert updated["team"] == team["id"]  # not named: unchanged

    code, _, err = freeapi(cfg, "keys", "create", "--name", "bob", "--rpm", "-3")
    assert code == 2 and "`rpm`" in err and "at least 1" in err
    code, _, err = freeapi(cfg, "keys", "create", "--name", "bob", "--team", "nope")
    assert code == 2 and "`team`" in err

    code, out, _ = freeapi(cfg, "keys", "list")
    listed = {k["name"]: k for k in json.loads(out)}
    assert listed["root"]["source"] == "config" and listed["alice"]["source"] == "store"
    assert made["key"] not in out

    code, out, _ = freeapi(cfg, "keys", "rotate", made["id"], "--grace", "30")
    rotated = json.loads(out)
    assert code == 0 and rotated["key"] != made["key"] and rotated["previous_valid_until"]

    async def audit():
        store = SQLiteStore(str(tmp_path / "freeapi.db"))
        try:
            return await store.admin_audit(None, 50)
        finally:
            store.close()
    entries = asyncio.run(audit())
    assert [e["action"] for e in entries] == ["key.rotate", "key.update", "key.create",
                                              "team.create"]
    assert {e["actor"] for e in entries} == {"cli"}
    for path in tmp_path.glob("freeapi.db*"):  # the file and its WAL
        raw = path.read_bytes()
        assert made["key"].encode() not in raw and rotated["key"].encode() not in raw


def test_without_a_config_there_is_no_store_to_manage(tmp_path):
    out = subprocess.run([sys.executable, "-m", "freeapi", "keys", "create", "--name", "x"],
                         cwd=tmp_path, capture_output=True, timeout=60,
                         env=dict(__import__("os").environ, PYTHONPATH=str(ROOT)))
    assert out.returncode == 2 and b"needs a state store" in out.stderr
    assert not out.stdout  # no secret of a key that would be lost at once
