"""Bad input gets a clear 400, keys stay out of logs (the real command's too), config
mistakes are config errors, and the documented config is the real one."""

import dataclasses
import json
import logging
import re
import signal
import subprocess
import sys
import time

import pytest

from freeapi.app import Gateway
from freeapi.config import Failover, KeyPoolConfig, Timeouts, load_config, parse_config
from freeapi.errors import APIError
from freeapi.keys import mask, public_url, redact_log
from freeapi.log_redaction import RedactKeys
from freeapi.plugins import make_plugin_manager, provider_types
from tests.conftest import free_port
from tests.helpers import chat_body, error_of, request
from tests.test_config_cli import ROOT, raw_exchange, run, wait_until_up

# -- bad input ------------------------------------------------------------------------------


async def test_lone_surrogate_is_named(gateway, upstream_state):
    raw = (b'{"model": "deepseek-chat", "messages": [{"role": "user", "content": "ok"}, '
           b'{"role": "user", "content": "x\\ud800"}]}')
    err = error_of(await request(gateway + "/v1/chat/completions", "POST", raw), 400)
    assert "surrogate" in err["message"] and "messages[1].content" in err["message"]
    # A pair spelled as escapes is an ordinary character (an emoji) and goes through.
    raw = b'{"model": "deepseek-chat", "messages": [{"role": "user", "content": "\\ud83d\\ude00"}]}'
    resp = await request(gateway + "/v1/chat/completions", "POST", raw)
    assert resp.code == 200
    assert upstream_state.requests[-1]["body"]["messages"][0]["content"] == "\U0001F600"


async def test_nan_is_named(gateway):
    raw = json.dumps(chat_body(temperature=float("nan"))).encode()
    err = error_of(await request(gateway + "/v1/chat/completions", "POST", raw), 400)
    assert "NaN" in err["message"] and err["code"] == "invalid_json"


async def test_long_model_names_are_refused_and_never_echoed_whole(gateway, upstream_state):
    ok = error_of(await request(gateway + "/v1/chat/completions", "POST",
                                chat_body(model="m" * 256)), 404)  # at the limit: looked up
    assert len(ok["message"]) < 2000
    err = error_of(await request(gateway + "/v1/chat/completions", "POST",
                                 chat_body(model="m" * 257)), 400)
    assert err["param"] == "model" and "256" in err["message"]
    # GET /v1/models/{id} takes any length from the URL: the 404 quotes only its start.
    resp = await request(gateway + "/v1/models/" + "q" * 20000)
    err = error_of(resp, 404)
    assert "q" * 81 not in err["message"] and "q" * 80 + "..." in err["message"]
    assert upstream_state.requests == []


def test_refusing_a_huge_name_is_quick():
    types = provider_types(make_plugin_manager())
    gw = Gateway(parse_config(None, types), make_plugin_manager(), types)
    try:
        started = time.monotonic()
        with pytest.raises(APIError) as info:
            gw.catalog.resolve("deepseek-chta" * 5000)
        assert time.monotonic() - started < 0.5
        assert info.value.status == 404 and len(info.value.message) < 2000
    finally:
        gw.close()


async def test_unknown_route_lists_every_route(gateway):
    err = error_of(await request(gateway + "/v1/nothing"), 404)
    for route in ("/v1/chat/completions", "/v1/models", "/v1/models/{id}", "/v1/keys",
                  "/token/check", "/ping", "/healthz"):
        assert route in err["message"]


# -- keys in logs ---------------------------------------------------------------------------

def test_mask_shows_only_a_vendor_prefix():
    assert mask("team-gateway-pass") == "...pass"
    assert mask("gw-secret-key-1") == "...ey-1"
    assert mask("sk-proj-abcdefghijkl") == "sk-...ijkl"
    assert mask("mk-0123456789abcdef") == "mk-...cdef"
    for key in ("team-gateway-pass", "gw-secret-key-1"):
        assert "team" not in mask(key) and "gw-" not in mask(key)


def test_redact_log():
    line = "Malformed HTTP message from 1.2.3.4: Invalid header value 'Bearer team-pass-x\\x01'"
    assert "team-pass" not in redact_log(line)
    assert "sk-...0001" in redact_log("Invalid header value 'Bearer sk-test-good-0001\\x7f'")
    quoted = "'Authorization: Bearer abc,defghijklmnopq\\r\\nHost: example.com\\r\\n'"
    clean = redact_log(quoted)
    assert "abc" not in clean and "defghijklm" not in clean and "Host: example.com" in clean
    assert "authorization:..." in redact_log("authorization:hunter2").lower()
    # Configured keys are removed wherever they appear, whatever they look like.
    assert redact_log("header name 'X-team-pass\\x01'", ["team-pass"]) == \
        "header name 'X-...\\x01'"


def test_log_filter_uses_the_configured_keys():
    f = RedactKeys()
    f.keys = ["vendorpass-0099", "team-pass"]
    record = logging.LogRecord("tornado.general", logging.INFO, __file__, 1,
                               "saw %s and %s", ("vendorpass-0099", "team-pass"), None)
    assert f.filter(record)
    assert "vendorpass" not in record.getMessage() and "team-pass" not in record.getMessage()


def test_public_url():
    assert public_url("https://user:pw@proxy.example:8443/v1?key=abc#frag") == \
        "https://proxy.example:8443/v1"
    assert public_url("http://127.0.0.1:11434/v1") == "http://127.0.0.1:11434/v1"


@pytest.mark.parametrize("core", ["httptools", "tornado"])
def test_real_command_keeps_keys_out_of_its_log(tmp_path, core):
    """A malformed header is logged at INFO (Tornado's server quotes its value and name,
    httptools' names what is wrong): a gateway key that looks like no key, sent with a
    stray control character, must not reach the log; nor a configured vendor key. (A
    base_url's credentials and query are refused as config errors that never quote the
    URL: tests/test_config_and_names.py.)"""
    port = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(
        f"server:\n  http_core: {core}\n"
        "auth:\n  keys: [team-gateway-pass]\n"
        "providers:\n  deepseek:\n    api_keys: [vendorpass-0099]\n"
        "    base_url: http://127.0.0.1:9/v1\n"
        "state:\n  path: ':memory:'\n")
    log = open(tmp_path / "stderr.txt", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "freeapi", "--config", str(config),
                             "--host", "127.0.0.1", "--port", str(port)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=log)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/ping", proc)
        for header in (b"Authorization: Bearer team-gateway-pass\x01",
                       b"X-team-gateway-pass\x01: 1", b"X-vendorpass-0099\x01: 1"):
            answer = raw_exchange(port, b"GET /v1/models HTTP/1.1\r\nHost: x\r\n" + header
                                  + b"\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 400")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log.seek(0)
    text = log.read()
    for secret in ("team-gateway-pass", "vendorpass-0099", "team-"):
        assert secret not in text, secret
    assert text.count("Malformed HTTP message") == 3, text
    if core == "tornado":  # the value quoted, the key in it masked
        assert "Invalid header value 'Bearer " in text and "...pass" in text
    else:
        assert "Invalid header value char" in text and "Invalid header token" in text
    assert "at http://127.0.0.1:9/v1," in text


# -- config ---------------------------------------------------------------------------------

BAD_KEYS_AND_URLS = {  # config text -> (what the one stderr line must name, what it must not)
    "port not a number": ("providers:\n  deepseek:\n    base_url: http://host:abc/v1\n",
                          "providers.deepseek.base_url: the port must be", None),
    "port out of range": ("providers:\n  deepseek:\n    base_url: 'https://host:99999'\n",
                          "providers.deepseek.base_url: the port must be", None),
    "port zero": ("providers:\n  deepseek:\n    base_url: 'http://host:0'\n",
                  "providers.deepseek.base_url: the port must be", None),
    "space in a vendor key": ("auth:\n  keys: [gw]\nproviders:\n  deepseek:\n"
                              "    api_keys: ['sk-good', 'sk-secret part']\n",
                              "providers.deepseek.api_keys[1]: contains U+0020", "secret"),
    "control character": ("auth:\n  keys: [gw]\nproviders:\n  kimi:\n"
                          "    api_keys: \"sk-secret\\x01\"\n",
                          "providers.kimi.api_keys[0]: contains U+0001", "secret"),
    "non-ASCII": ("auth:\n  keys: [gw]\nproviders:\n  deepseek:\n"
                  "    api_keys: [\"sk-s\u00e9cret\"]\n",
                  "providers.deepseek.api_keys[0]: contains U+00E9", "cret"),
}


@pytest.mark.parametrize("case", list(BAD_KEYS_AND_URLS))
def test_bad_base_url_port_and_key_characters(tmp_path, case):
    text, expected, hidden = BAD_KEYS_AND_URLS[case]
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    p = run("--config", str(path))
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("freeapi: config: "), p.stderr
    assert expected in lines[0]
    assert hidden is None or hidden not in lines[0]


def test_shipped_config_loads_and_documents_every_key():
    """config.yaml loads through the real loader and mentions every key the loader takes
    (the state, prices and per-key limit sections are documented with their feature);
    the documentation under docs/ lists them too."""
    types = provider_types(make_plugin_manager())
    cfg = load_config(str(ROOT / "config.yaml"), types)
    assert cfg.port == 8000 and cfg.failover == Failover()
    shipped = (ROOT / "config.yaml").read_text()
    readme = "\n".join(p.read_text() for p in sorted((ROOT / "docs").rglob("*.md")))
    fields = lambda cls: [f.name for f in dataclasses.fields(cls)]  # noqa: E731
    documented = {
        "server": ["host", "port", "max_body_size", "keepalive_interval", "log_level",
                   "shutdown_grace", "body_timeout", "max_connections", "max_event_size"],
        "auth": ["keys", "allow_anonymous"],
        "providers.NAME": ["enabled", "type", "base_url", "api_keys"],
        "providers.NAME.timeouts": fields(Timeouts),
        "providers.NAME.key_pool": fields(KeyPoolConfig),
        "failover": fields(Failover),
    }
    options = {name for cls in types.values() for name in getattr(cls, "options", {})}
    assert {"check_model", "discover", "stream_only_models", "models", "reasoning_models",
            "think_tags"} <= options
    documented["providers.NAME"] += sorted(options)
    for section, keys in documented.items():
        for key in keys:
            assert re.search(rf"^\s*#?\s*{key}:", shipped, re.M), f"config.yaml: {key}"
            assert f"`{section}.{key}`" in readme, f"docs/: {section}.{key}"
    for top in ("models", "fallbacks", "failover"):
        assert re.search(rf"^{top}:", shipped, re.M) and f"`{top}" in readme
    assert re.search(r"\{name: \w+, key: .*, role: admin\}", shipped)
    # first_byte: streams wait for the first data event, not the headers.
    for text in (shipped, readme, Timeouts.__doc__):
        assert "until the vendor's response headers" not in text
        assert "first data event" in text
    assert "3 when" in readme and "no server-side keys" in readme
    assert readme.count("Needs no gateway key") + readme.count("needs no gateway key") >= 2
