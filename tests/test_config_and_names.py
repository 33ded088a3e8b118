"""Operator and client mistakes that used to be a 500, a traceback or a silently wrong
setting: each is now a clear 400, a one-line config error (exit 2), a state error or a
startup warning."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from freeapi.config import ConfigError, parse_config
from freeapi.plugins import make_plugin_manager, provider_types
from tests.conftest import free_port
from tests.helpers import chat_body, error_of, request, wait_listening
from tests.test_config_cli import ROOT, run


def one_config_error(p, *expected, hidden=None):
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("freeapi: config: "), p.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    assert hidden is None or hidden not in lines[0]


# -- model names -------------------------------------------------------------------------------

@pytest.mark.parametrize("model", ["deepseek/deepseek-chat\x01", "deepseek/chat\x7f",
                                   "deepseek/chat\x85", "deepseek/\u6a21\u578b",
                                   "deepseek-chat\n"])
async def test_model_names_that_cannot_be_headers_are_400_before_any_vendor_call(
        gateway, upstream_state, model):
    for stream in (False, True):
        resp = await request(gateway + "/v1/chat/completions", "POST",
                             chat_body(model=model, stream=stream))
        err = error_of(resp, 400)
        assert err["code"] == "invalid_model" and err["param"] == "model"
    assert upstream_state.requests == []  # nobody was billed for a request that fails


async def test_latin1_model_names_still_reach_the_vendor(gateway, upstream_state):
    resp = await request(gateway + "/v1/chat/completions", "POST",
                         chat_body(model="deepseek/caf\u00e9"))
    assert resp.code != 500 and upstream_state.requests[-1]["body"]["model"] == "caf\u00e9"


# -- config files ------------------------------------------------------------------------------

def test_a_config_that_is_not_utf8_is_one_line_and_exit_2(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_bytes(b"server:\n  host: \"caf\xe9\"\n")  # Latin-1, as an old editor saves it
    one_config_error(run("--config", str(path)), "not UTF-8", "0xe9")


@pytest.mark.parametrize("url,expected", [
    ("https://user:secret-pass@api.deepseek.com", "credentials in the URL"),
    ("https://api.deepseek.com/v1?key=secret-pass", "?query"),
    ("https://api.deepseek.com/v1#secret-pass", "#fragment"),
])
def test_base_url_credentials_and_queries_are_refused_naming_the_key(tmp_path, url, expected):
    path = tmp_path / "config.yaml"
    path.write_text(f"providers:\n  deepseek:\n    base_url: '{url}'\n", encoding="utf-8")
    one_config_error(run("--config", str(path)), "providers.deepseek.base_url:", expected,
                     hidden="secret-pass")


@pytest.mark.parametrize("value", ["0.5", "1024.5"])
def test_a_fractional_max_body_size_is_a_config_error(value):
    types = provider_types(make_plugin_manager())
    with pytest.raises(ConfigError) as e:
        parse_config({"server": {"max_body_size": float(value)}}, types)
    assert "server.max_body_size" in str(e.value)
    assert parse_config({"server": {"max_body_size": 2048.0}}, types).max_body_size == 2048


@pytest.mark.parametrize("budget, where", [({"daily": -1}, "budget.daily"),
                                            ({"total": 1e12}, "budget.total"),
                                            ({"weekly": 5}, "budget.weekly")])
def test_a_config_keys_budget_out_of_range_is_a_config_error(budget, where):
    # 1e12 would overflow the tallies' 64-bit nano-units (freeapi/config_keys.py BUDGET_MAX)
    types = provider_types(make_plugin_manager())
    with pytest.raises(ConfigError) as e:
        parse_config({"auth": {"keys": [{"name": "a", "key": "k-1", "budget": budget}]}},
                     types)
    assert f"auth.keys[0].{where}" in str(e.value)


def test_a_state_path_under_a_file_is_a_state_error(tmp_path):
    (tmp_path / "afile").write_text("x")
    path = tmp_path / "config.yaml"
    path.write_text("state:\n  path: afile/freeapi.db\n", encoding="utf-8")
    p = run("--config", str(path), "--host", "127.0.0.1", "--port", str(free_port()))
    assert p.returncode == 1, p.stderr
    assert "cannot listen" not in p.stderr
    line = p.stderr.strip().splitlines()[-1]
    assert line.startswith("freeapi: state store: ") and "afile" in line
    assert "Traceback" not in p.stderr


# -- plain http to a remote vendor -------------------------------------------------------------

def test_which_plain_http_urls_leave_the_machine():
    from freeapi.config import plain_http_to_remote
    for url in ("http://api.example.com/v1", "http://203.0.113.7:8080/v1",
                "http://[2001:db8::1]/v1"):
        assert plain_http_to_remote(url), url
    for url in ("https://api.example.com/v1", "http://127.0.0.1:11434/v1",
                "http://localhost:8080/v1", "http://ollama:11434/v1", "http://[::1]/v1",
                "http://192.168.1.20:8000/v1", "http://10.0.0.5/v1", "http://gpu.lan/v1",
                "http://box.local:1234/v1"):
        assert not plain_http_to_remote(url), url


def test_plain_http_to_a_remote_vendor_logs_a_warning_at_startup(tmp_path):
    path = tmp_path / "config.yaml"
    # TEST-NET-3: never routed, and nothing connects to it at startup.
    path.write_text("providers:\n  deepseek:\n    base_url: http://203.0.113.7:9/v1\n"
                    "  local: {type: openai, base_url: 'http://127.0.0.1:9/v1', "
                    "discover: false}\n", encoding="utf-8")
    port = free_port()
    log = open(tmp_path / "stderr.txt", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "freeapi", "--config", str(path),
                             "--host", "127.0.0.1", "--port", str(port)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=log)
    try:
        wait_listening(port, proc)
        deadline = time.monotonic() + 10
        while "listening on" not in (tmp_path / "stderr.txt").read_text():
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(10)
    text = (tmp_path / "stderr.txt").read_text()
    warnings = [line for line in text.splitlines() if "plain http://" in line]
    assert len(warnings) == 1 and "WARNING" in warnings[0] and "deepseek" in warnings[0]
