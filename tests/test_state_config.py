"""Config for shared state, key limits and prices: defaults, paths, errors naming the key."""

import subprocess
import sys
from pathlib import Path

import pytest

from freeapi.config import ConfigError, load_config, parse_config
from freeapi.plugins import make_plugin_manager, provider_types
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
TYPES = provider_types(make_plugin_manager())


def config(raw, base_dir=None):
    return parse_config(raw, TYPES, base_dir)


def error(raw) -> str:
    with pytest.raises(ConfigError) as e:
        config(raw)
    return str(e.value)


def test_state_defaults_sqlite_next_to_the_config_file_or_memory(tmp_path):
    st = config(None).state
    assert (st.path, st.redis_url, st.prefix, st.ledger_days) == (":memory:", None,
                                                                  "freeapi:", 90)
    path = tmp_path / "conf" / "config.yaml"
    path.parent.mkdir()
    path.write_text("server: {port: 9000}\n")
    assert load_config(str(path), TYPES).state.path == str(tmp_path / "conf" / "freeapi.db")
    path.write_text("state: {path: data/x.db}\n")
    assert load_config(str(path), TYPES).state.path == str(tmp_path / "conf" / "data" / "x.db")
    path.write_text(f"state: {{path: {tmp_path / 'abs.db'}}}\n")
    assert load_config(str(path), TYPES).state.path == str(tmp_path / "abs.db")
    path.write_text("state: {path: ':memory:'}\n")
    assert load_config(str(path), TYPES).state.path == ":memory:"


def test_state_redis_settings(monkeypatch):
    st = config({"state": {"redis_url": "redis://:pw@127.0.0.1:6379/2", "prefix": "fa:",
                           "timeout": 2, "ledger_days": 0, "sync_interval": 0.5}}).state
    assert (st.redis_url, st.prefix, st.timeout, st.ledger_days, st.sync_interval) == (
        "redis://:pw@127.0.0.1:6379/2", "fa:", 2.0, 0.0, 0.5)
    assert config(None).state.sync_interval == 1.0
    monkeypatch.delenv("FREEAPI_TEST_REDIS_URL", raising=False)
    assert config({"state": {"redis_url": "${FREEAPI_TEST_REDIS_URL:-}"}}).state.redis_url \
        is None  # an optional env var left empty: no Redis


def test_state_postgres_settings(monkeypatch):
    from freeapi.store import open_store
    from freeapi.store.postgres import PostgresStore
    from freeapi.store.redis import RedisStore
    st = config({"state": {"database_url": "postgresql://u:pw@db:5432/freeapi?sslmode=require",
                           "pool_size": 4, "ledger_buffer": 50}}).state
    assert (st.database_url, st.pool_size, st.ledger_buffer) == (
        "postgresql://u:pw@db:5432/freeapi?sslmode=require", 4, 50)
    store = open_store(st)
    assert isinstance(store, PostgresStore) and store.hot is None
    assert store.max_pending == 50 and store.pool_size == 4
    assert "pw" not in store.describe()
    assert open_store(config({"state": {"database_url": "postgresql://db/x?user=u&password=pw"
                                                       "&sslmode=require"}}).state
                      ).describe() == ("PostgreSQL postgresql://db/x?user=u&password=***&"
                                       "sslmode=require")
    both = open_store(config({"state": {"database_url": "postgres://db/x",
                                        "redis_url": "redis://r:6379/0"}}).state)
    assert isinstance(both, PostgresStore) and isinstance(both.hot, RedisStore)
    assert (config(None).state.database_url, config(None).state.ledger_buffer) == (None, 10000)
    monkeypatch.delenv("FREEAPI_TEST_DATABASE_URL", raising=False)
    assert config({"state": {"database_url": "${FREEAPI_TEST_DATABASE_URL:-}"}}
                  ).state.database_url is None


@pytest.mark.parametrize("raw, expected", [
    ({"state": {"database_url": "mysql://x/db"}}, "state.database_url: expected postgresql://"),
    ({"state": {"database_url": 5}}, "state.database_url: expected a postgresql:// URL"),
    ({"state": {"pool_size": 0}}, "state.pool_size: expected a whole number of at least 1"),
    ({"state": {"ledger_buffer": "big"}}, "state.ledger_buffer: expected a whole number"),
    ({"state": {"ledger_buffer": True}}, "state.ledger_buffer: expected a whole number"),
    ({"state": {"redis_url": "http://x"}}, "state.redis_url: expected redis://"),
    ({"state": {"redis_url": "redis://h:1/db"}}, "state.redis_url"),
    ({"state": {"path": 3}}, "state.path: expected a file path"),
    ({"state": {"pth": "x"}}, "state.pth: unknown key"),
    ({"state": {"ledger_days": -1}}, "state.ledger_days: must not be negative"),
    ({"state": {"timeout": 0}}, "state.timeout: must be greater than 0"),
    ({"state": {"sync_interval": 0}}, "state.sync_interval: must be greater than 0"),
    ({"state": {"sync_interval": "1s"}}, "state.sync_interval: expected a number"),
    ({"auth": {"keys": [{"key": "k", "rpm": 0}]}}, "auth.keys[0].rpm: must be at least 1"),
    ({"auth": {"keys": [{"key": "k", "tpm": "many"}]}}, "auth.keys[0].tpm: expected an int"),
    ({"auth": {"keys": [{"key": "k", "daily_tokens": 1.5}]}}, "auth.keys[0].daily_tokens"),
    ({"auth": {"keys": [{"key": "k", "models": [1]}]}}, "auth.keys[0].models[0]: expected"),
    ({"auth": {"keys": [{"key": "k", "rpd": 1}]}}, "auth.keys[0].rpd: unknown key"),
    ({"auth": {"keys": [{"key": "a", "name": "x"}, {"key": "b", "name": "x"}]}},
     "auth.keys[1].name: 'x' is used twice"),
    ({"prices": {"m": {"input": 1}}}, "prices.m.output: is required"),
    ({"prices": {"m": {"input": -1, "output": 1}}}, "prices.m.input: must not be negative"),
    ({"prices": {"m": {"input": 1, "output": 1, "cache": 1}}}, "prices.m.cache: unknown key"),
    ({"prices": {"m": 3}}, "prices.m: expected a mapping"),
])
def test_errors_name_the_key(raw, expected):
    assert expected in error(raw)


def test_key_limits_and_prices_parse():
    cfg = config({"auth": {"keys": ["plain", {"key": "k2", "name": "alice", "role": "admin",
                                              "models": ["deepseek-chat", "kimi/*"],
                                              "rpm": 60, "tpm": 100000,
                                              "daily_tokens": 2000000,
                                              "monthly_tokens": 50000000}]},
                  "prices": {"deepseek-chat": {"input": 0.27, "output": 1.1, "cached": 0.07},
                             "kimi/x": {"input": 1, "output": 2}}})
    plain, alice = cfg.gateway_keys
    assert not plain.limited and plain.models is None
    assert alice.limited and alice.models == ["deepseek-chat", "kimi/*"]
    assert (alice.rpm, alice.tpm, alice.daily_tokens, alice.monthly_tokens) == (
        60, 100000, 2000000, 50000000)
    assert cfg.prices["deepseek-chat"].cached == 0.07 and cfg.prices["kimi/x"].cached is None


def test_an_unreachable_redis_stops_startup(tmp_path):
    port = free_port()
    path = tmp_path / "config.yaml"
    path.write_text(f"server: {{port: {free_port()}, host: 127.0.0.1}}\n"
                    f"state: {{redis_url: 'redis://:secret@127.0.0.1:{port}/0', timeout: 1}}\n")
    p = subprocess.run([sys.executable, "-m", "freeapi", "--config", str(path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=20)
    assert p.returncode == 1
    assert f"state store: cannot reach redis://127.0.0.1:{port}/0" in p.stderr
    assert "secret" not in p.stderr and "Traceback" not in p.stderr


def test_an_unreachable_postgres_stops_startup(tmp_path):
    port = free_port()
    path = tmp_path / "config.yaml"
    path.write_text(f"server: {{port: {free_port()}, host: 127.0.0.1}}\n"
                    f"state: {{database_url: 'postgresql://u:secret@127.0.0.1:{port}/db', "
                    f"timeout: 1}}\n")
    p = subprocess.run([sys.executable, "-m", "freeapi", "--config", str(path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=20)
    assert p.returncode == 1
    assert f"PostgreSQL postgresql://u:***@127.0.0.1:{port}/db: cannot reach" in p.stderr
    assert "secret" not in p.stderr and "Traceback" not in p.stderr
