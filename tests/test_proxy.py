"""Outgoing proxies: vendor calls go through a proxy on 127.0.0.1 when configured (CONNECT
for https vendors, absolute form for http ones), directly when NO_PROXY matches or the
provider says `proxy: none`; proxy credentials are sent but never logged or shown."""

import base64
import json
import ssl
import subprocess
from urllib.parse import urlsplit

import pytest
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

from freeapi.config import ConfigError, parse_config
from freeapi.plugins import make_plugin_manager, provider_types
from freeapi.proxy import NoProxy, parse_proxy
from tests.fakes import deepseek as fake_deepseek
from tests.fakes.deepseek import ANSWER
from tests.helpers import chat_body, check_stream, error_of, request, stream_raw

TEXT = "".join(ANSWER)
SECRET = "pr0xy-s3cret"


@pytest.fixture(scope="module")
def tls_cert(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1, made with the openssl command."""
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return str(cert), str(key)


@pytest.fixture
def https_upstream(io_loop, tls_cert, upstream_state):
    """The fake DeepSeek behind TLS (its own certificate, which the gateway is told to
    trust)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*tls_cert)
    sock, port = bind_unused_port()
    server = HTTPServer(fake_deepseek.make_app(upstream_state), ssl_options=ctx)
    server.add_sockets([sock])
    yield f"https://127.0.0.1:{port}"
    server.stop()


def no_secret_logged(caplog):
    for record in caplog.records:
        assert SECRET not in record.getMessage()


async def test_an_https_vendor_goes_through_a_connect_tunnel(make_gateway, https_upstream,
                                                             proxy_server, tls_cert,
                                                             upstream_state, caplog):
    proxy = await proxy_server(credentials=f"me:{SECRET}")
    base, gw = make_gateway({"providers": {"deepseek": {
        "base_url": https_upstream, "proxy": f"http://me:{SECRET}@127.0.0.1:{proxy.port}"}}})
    gw.http._ssl.load_verify_locations(tls_cert[0])
    resp = await request(base + "/v1/chat/completions", "POST", chat_body())
    assert resp.code == 200, resp.body
    assert json.loads(resp.body)["choices"][0]["message"]["content"] == TEXT
    resp, raw = await stream_raw(base, chat_body(stream=True))
    assert resp.code == 200 and check_stream(raw, TEXT) == (TEXT, None)
    port = urlsplit(https_upstream).port
    assert proxy.connects and set(proxy.connects) == {f"127.0.0.1:{port}"}
    assert len(upstream_state.requests) == 2  # both reached the vendor, inside the tunnel
    assert set(proxy.auth_seen) == {"Basic " + base64.b64encode(
        f"me:{SECRET}".encode()).decode()}
    no_secret_logged(caplog)


async def test_an_http_vendor_gets_absolute_form_through_the_environments_proxy(
        make_gateway, upstream, proxy_server, upstream_state, monkeypatch):
    proxy = await proxy_server()
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    base, gw = make_gateway()
    for _ in range(2):
        resp = await request(base + "/v1/chat/completions", "POST", chat_body())
        assert resp.code == 200, resp.body
    resp, _ = await stream_raw(base, chat_body(stream=True))
    assert resp.code == 200
    assert proxy.forwarded == [f"POST {upstream}/chat/completions"] * 3
    assert proxy.connects == [] and len(upstream_state.requests) == 3


@pytest.mark.parametrize("no_proxy", ["127.0.0.1", "localhost,127.0.0.0/8", "*",
                                      ".0.0.1", "other.lan:\u00b2,127.0.0.1"])
async def test_no_proxy_matches_go_direct(make_gateway, upstream, proxy_server,
                                          upstream_state, monkeypatch, no_proxy):
    proxy = await proxy_server()
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.setenv("NO_PROXY", no_proxy)
    base, _ = make_gateway()
    assert (await request(base + "/v1/chat/completions", "POST", chat_body())).code == 200
    assert proxy.forwarded == [] and proxy.connects == []
    assert len(upstream_state.requests) == 1


async def test_proxy_none_opts_a_provider_out(make_gateway, proxy_server, upstream_state,
                                              monkeypatch):
    proxy = await proxy_server()
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    base, _ = make_gateway({"providers": {"deepseek": {"proxy": "none"}}})
    assert (await request(base + "/v1/chat/completions", "POST", chat_body())).code == 200
    assert proxy.forwarded == [] and len(upstream_state.requests) == 1


async def test_a_proxy_refusing_credentials_is_a_clear_502(make_gateway, https_upstream,
                                                           proxy_server, tls_cert, caplog):
    proxy = await proxy_server(credentials="me:right")
    base, gw = make_gateway({"providers": {"deepseek": {
        "base_url": https_upstream, "proxy": f"http://me:{SECRET}@127.0.0.1:{proxy.port}"}}})
    gw.http._ssl.load_verify_locations(tls_cert[0])
    resp = await request(base + "/v1/chat/completions", "POST", chat_body())
    err = error_of(resp, 502)
    assert "proxy" in err["message"] and "407" in err["message"]
    assert SECRET not in err["message"] and "me:" not in err["message"]
    no_secret_logged(caplog)


async def test_a_proxy_answering_connect_with_a_superscript_status_is_a_clear_502(
        make_gateway, proxy_server):
    # "²00": three digits to str.isdigit() (latin-1 0xB2), none to int().
    proxy = await proxy_server(tunnel=False, refusal=b"HTTP/1.1 \xb200 OK\r\n\r\n")
    base, _ = make_gateway({"providers": {"deepseek": {
        "base_url": "https://127.0.0.1:9", "proxy": f"http://127.0.0.1:{proxy.port}"}}})
    resp = await request(base + "/v1/chat/completions", "POST", chat_body())
    err = error_of(resp, 502)
    assert "proxy" in err["message"] and "CONNECT" in err["message"], err
    assert proxy.connects == ["127.0.0.1:9"]


def test_proxy_settings_are_checked_and_never_quoted():
    types = provider_types(make_plugin_manager())
    for bad, says in ((f"socks5://me:{SECRET}@127.0.0.1:1080", "SOCKS"),
                      (f"https://me:{SECRET}@proxy:3128", "scheme"),
                      (f"http://me:{SECRET}@proxy:99999", "port"), ("", "proxy URL")):
        with pytest.raises(ConfigError) as info:
            parse_config({"providers": {"deepseek": {"proxy": bad}}}, types)
        assert "providers.deepseek.proxy" in str(info.value) and says in str(info.value)
        assert SECRET not in str(info.value)
    p = parse_proxy(f"http://me:{SECRET}@proxy.lan:3128")
    assert (p.host, p.port) == ("proxy.lan", 3128) and p.describe() == "http://proxy.lan:3128"
    assert SECRET not in repr(p)
    assert parse_proxy("proxy.lan:8080").port == 8080  # curl's reading without a scheme


def test_no_proxy_rules():
    rules = NoProxy("example.com, .corp.lan,10.0.0.0/8, api.x.cn:8443, [::1]")
    assert rules.matches("example.com", 443) and rules.matches("api.example.com", 443)
    assert not rules.matches("notexample.com", 443)
    assert rules.matches("a.corp.lan", 80) and rules.matches("corp.lan", 80)
    assert rules.matches("10.1.2.3", 443) and not rules.matches("11.1.2.3", 443)
    assert rules.matches("api.x.cn", 8443) and not rules.matches("api.x.cn", 443)
    assert rules.matches("::1", 80)
    assert NoProxy("*").matches("anything", 1) and not NoProxy("").matches("a", 1)


def test_every_host_of_a_provider_takes_its_proxy():
    """A provider's native endpoint (responses_base_url) may live on another host: the
    provider's proxy setting covers it too; hosts of nobody's follow the environment."""
    from types import SimpleNamespace

    from freeapi.proxy import Resolver
    provider = SimpleNamespace(base_url="https://api.a.cn/v1", config=SimpleNamespace(
        proxy="http://proxy.lan:3128", responses_base_url="https://native.a.cn/v1"))
    direct = SimpleNamespace(base_url="https://api.b.cn/v1",
                             config=SimpleNamespace(proxy="none", responses_base_url=None))
    env = {"HTTPS_PROXY": "http://envproxy:8080", "NO_PROXY": "c.cn"}
    resolve = Resolver({"a": provider, "b": direct}, env)
    assert resolve("https", "native.a.cn", 443).describe() == "http://proxy.lan:3128"
    assert resolve("https", "api.a.cn", 443).describe() == "http://proxy.lan:3128"
    assert resolve("https", "api.b.cn", 443) is None  # proxy: none
    assert resolve("https", "elsewhere.org", 443).describe() == "http://envproxy:8080"
    assert resolve("https", "x.c.cn", 443) is None  # NO_PROXY
    assert resolve("http", "elsewhere.org", 80) is None  # no HTTP_PROXY set
