"""URLs a vendor's answer names (GLM's and Qwen's images for `b64_json`, Qwen-TTS's audio)
are downloaded only from public addresses, checked after name resolution and on the
address connected to, in every notation, also through a proxy (refused before any
CONNECT); only as many as the client asked for; through the provider's own proxy; never
pooled; and a malformed URL is a 502 in the door's shape. The vendor's own base_url
origin and `providers.NAME.download_hosts` are the documented exceptions.

The vendor here is hostile (tests/fakes/hostile_media.py); a second server on another
loopback port holds a secret that must never reach the client."""

import asyncio
import base64
import ipaddress

import openai
import pytest
from tornado import web

from freeapi.config import ConfigError, parse_config
from freeapi.download_policy import Refused, internal, parse_url
from freeapi.plugins import make_plugin_manager, provider_types
from tests.fakes import hostile_media
from tests.fakes.common import serve

GW = "gw-download-key-000003"
SECRET = b"\x89PNG\r\n\x1a\nTOP-SECRET-internal-body"
EDIT_PNG = b"\x89PNG\r\n\x1a\n" + b"client-image" * 4


class _Secret(web.RequestHandler):
    def initialize(self, hits):
        self.hits = hits

    def get(self, _):
        self.hits.append(self.request.path)
        self.set_header("Content-Type", "image/png")
        self.finish(SECRET)


@pytest.fixture
def secret(io_loop):
    """An internal service on another loopback port: (port, hits)."""
    hits = []
    url, server = serve(web.Application([(r"/(.*)", _Secret, {"hits": hits})]))
    yield int(url.rsplit(":", 1)[1]), hits
    server.stop()


@pytest.fixture
def hostile(make_gateway):
    """start(urls, **provider settings) -> (gateway base URL, Gateway, vendor state)."""
    servers = []

    def start(urls, **extra):
        url, state, server = hostile_media.start(urls)
        servers.append(server)
        common = {"api_keys": ["sk-hostile-vendor-key-0001"], "timeouts": {"connect": 1},
                  **extra}
        base, gateway = make_gateway({"auth": {"keys": [GW]}, "providers": {
            "glm": {"base_url": url + "/api/paas/v4", **common},
            "qwen": {"base_url": url + "/compatible-mode/v1", "discover": False, **common}}})
        return base, gateway, state

    yield start
    for server in servers:
        server.stop()


def client(base):
    return openai.AsyncOpenAI(base_url=base + "/v1", api_key=GW, max_retries=0, timeout=60)


async def ask(base, path: str, n: int = 1):
    """(status, what the client got: the bytes downloaded for it, or the error object)."""
    # Each client is closed here: a client left to the garbage collector aborts its
    # sockets later, by descriptor number, which may by then be another connection's.
    async with client(base) as c:
        try:
            if path == "images":
                r = await c.images.generate(model="cogview-3-flash", prompt="x", n=n,
                                            response_format="b64_json")
                return 200, [base64.b64decode(d.b64_json) for d in r.data]
            if path == "edits":
                r = await c.images.edit(model="qwen-image-edit", prompt="x", n=n,
                                        image=("a.png", EDIT_PNG),
                                        response_format="b64_json")
                return 200, [base64.b64decode(d.b64_json) for d in r.data]
            r = await c.audio.speech.create(model="qwen3-tts-flash", voice="alloy",
                                            input="hi", response_format="wav")
            return 200, [r.content]
        except openai.APIStatusError as e:
            return e.status_code, e.body


def refused(got) -> None:
    status, body = got
    assert status == 502, got
    assert body["code"] == "download_refused" and body["type"], body
    assert "SECRET" not in str(body)


# -- internal addresses, in every notation and every path ------------------------------------

INTERNAL = {
    "another loopback port": "http://127.0.0.1:{port}/secret.png",
    "localhost": "http://localhost:{port}/secret.png",
    "IPv4-mapped IPv6": "http://[::ffff:127.0.0.1]:{port}/secret.png",
    "decimal": "http://2130706433:{port}/secret.png",
    "hex": "http://0x7f000001:{port}/secret.png",
    "short": "http://127.1:{port}/secret.png",
    "metadata": "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "private": "https://10.0.0.5:6443/api/v1/secrets",
    "unspecified": "http://0.0.0.0:{port}/secret.png",
}


@pytest.mark.parametrize("kind", sorted(INTERNAL))
async def test_an_image_url_on_an_internal_address_is_refused(hostile, secret, kind):
    port, hits = secret
    base, _, _ = hostile([INTERNAL[kind].format(port=port)])
    refused(await ask(base, "images"))
    assert hits == []


@pytest.mark.parametrize("path", ["speech", "edits"])
@pytest.mark.parametrize("kind", ["another loopback port", "metadata"])
async def test_audio_and_edit_urls_on_internal_addresses_are_refused(hostile, secret, path,
                                                                     kind):
    port, hits = secret
    base, _, _ = hostile([INTERNAL[kind].format(port=port)])
    refused(await ask(base, path))
    assert hits == []


@pytest.mark.parametrize("addresses", [["127.0.0.1"], ["93.184.216.34", "127.0.0.1"]])
async def test_a_name_resolving_to_an_internal_address_is_refused(hostile, secret,
                                                                  addresses):
    port, hits = secret
    base, gateway, _ = hostile([f"http://images.vendor.test:{port}/secret.png"])
    asked = []

    async def resolve(host, p):
        asked.append((host, p))
        return addresses

    gateway.downloads.resolve = resolve
    refused(await ask(base, "images"))
    assert asked == [("images.vendor.test", port)] and hits == []


async def test_a_redirect_is_not_followed(hostile, secret):
    port, hits = secret
    base, _, vendor = hostile(["{own}/files/redirect"])
    vendor.redirect = f"http://127.0.0.1:{port}/secret.png"
    status, body = await ask(base, "images")
    assert status == 502 and "HTTP 302" in body["message"] and hits == []


@pytest.mark.parametrize("address,inside", [
    ("127.0.0.1", True), ("10.1.2.3", True), ("172.16.0.1", True), ("192.168.1.1", True),
    ("169.254.169.254", True), ("100.100.100.200", True), ("100.64.0.1", True),
    ("0.0.0.0", True), ("224.0.0.1", True), ("255.255.255.255", True), ("::1", True),
    ("::", True), ("fe80::1", True), ("fd00:ec2::254", True), ("ff02::1", True),
    ("::ffff:127.0.0.1", True), ("::ffff:10.0.0.5", True), ("::7f00:1", True),
    ("2002:7f00:1::", True), ("64:ff9b::a00:1", True), ("168.63.129.16", True),
    ("93.184.216.34", False), ("8.8.8.8", False), ("2606:4700:4700::1111", False),
])
def test_which_addresses_are_internal(address, inside):
    assert internal(ipaddress.ip_address(address)) is inside


# -- as many as asked for ---------------------------------------------------------------------

@pytest.mark.parametrize("path", ["images", "edits"])
async def test_only_the_images_asked_for_are_downloaded(hostile, path):
    base, _, vendor = hostile([f"{{own}}/files/{i}.png" for i in range(12)])
    status, got = await ask(base, path)
    assert status == 200 and got == [hostile_media.PNG]
    assert [q["path"] for q in vendor.requests if q["path"].startswith("/files/")] == \
        ["/files/0.png"]
    # Nor are extra URLs passed on when the client asked for URLs.
    async with client(base) as c:
        r = await c.images.generate(model="cogview-3-flash", prompt="x")
    assert len(r.data) == 1 and r.data[0].url.endswith("/files/0.png")


# -- malformed URLs -----------------------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "http://127.0.0.1:99999/x.png", "https://cdn.vendor.test/图片.png",
    "https://cdn.vendor.test/a b.png", "ftp://cdn.vendor.test/x.png",
    "https://user:pw@cdn.vendor.test/x.png", "http:///x.png", "https://cdn.vendor.test:0/x",
    "https://cdn.vendor.test:abc/x", "file:///etc/passwd", "//cdn.vendor.test/x.png",
])
async def test_a_malformed_url_is_a_502_never_a_500(hostile, url):
    base, _, _ = hostile([url])
    for path in ("images", "speech"):
        refused(await ask(base, path))


def test_parse_url_says_what_is_wrong():
    with pytest.raises(Refused, match="port"):
        parse_url("http://h:99999/x")
    with pytest.raises(Refused, match="credentials"):
        parse_url("http://u:p@h/x")
    t = parse_url("HTTPS://CDN.Vendor.test/a%20b.png?Expires=1&Signature=x#frag")
    assert (t.scheme, t.host, t.port, t.path) == ("https", "cdn.vendor.test", 443,
                                                  "/a%20b.png?Expires=1&Signature=x")


# -- the exceptions: the vendor's own origin, the operator's download_hosts ---------------------

async def test_the_vendors_own_origin_and_listed_hosts_are_downloaded(hostile, secret):
    port, hits = secret
    base, _, _ = hostile(["{own}/files/a.png"])
    assert await ask(base, "images") == (200, [hostile_media.PNG])
    base, _, _ = hostile([f"http://127.0.0.1:{port}/listed.png"],
                         download_hosts=[f"127.0.0.1:{port}"])
    assert await ask(base, "images") == (200, [SECRET])
    assert hits == ["/listed.png"]
    base, _, _ = hostile([f"http://127.0.0.1:{port}/other-port.png"],
                         download_hosts=[f"127.0.0.1:{port + 1}"])
    refused(await ask(base, "images"))  # the listed port only


def _parsed(value):
    return parse_config({"providers": {"glm": {"download_hosts": value}}},
                        provider_types(make_plugin_manager())).providers["glm"]


@pytest.mark.parametrize("value,words", [
    ("cdn.vendor.test", "list"), (["a/b"], "not a host"), (["h:99999"], "port"),
    (["u@h"], "not a host"), ([1], "list"), (["图.test"], "not a host"),
    (["h:0"], "not a host")])
def test_download_hosts_are_checked_at_startup(value, words):
    with pytest.raises(ConfigError) as e:
        _parsed(value)
    assert "providers.glm.download_hosts" in str(e.value) and words in str(e.value)


def test_download_hosts_are_read_as_host_and_port():
    assert _parsed(["CDN.Vendor.test", "files.lan:9000", "[fd00::8]:443", "10.0.0.8"]
                   ).download_hosts == (("cdn.vendor.test", None), ("files.lan", 9000),
                                        ("fd00::8", 443), ("10.0.0.8", None))


async def test_a_download_connection_is_closed_after_its_body(hostile, io_loop):
    """Not pooled: no idle download connection is left for anyone to sweep."""
    closed = asyncio.Event()

    async def serve_once(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: %d\r\n"
                     b"\r\n" % len(hostile_media.PNG) + hostile_media.PNG)
        await writer.drain()
        if await reader.read() == b"":  # the gateway closed it
            closed.set()
        writer.close()

    server = await asyncio.start_server(serve_once, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        base, _, _ = hostile([f"http://127.0.0.1:{port}/x.png"],
                             download_hosts=[f"127.0.0.1:{port}"])
        assert await ask(base, "images") == (200, [hostile_media.PNG])
        await asyncio.wait_for(closed.wait(), 10)
    finally:
        server.close()


# -- proxies -----------------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["environment", "provider"])
async def test_no_connect_is_sent_for_an_internal_target(hostile, proxy_server, monkeypatch,
                                                         how):
    proxy = await proxy_server(tunnel=False)
    extra = {}
    if how == "environment":
        monkeypatch.setenv("HTTPS_PROXY", f"http://me:pw@127.0.0.1:{proxy.port}")
    else:
        extra["proxy"] = f"http://127.0.0.1:{proxy.port}"
    base, _, _ = hostile(["https://10.0.0.5:6443/api/v1/secrets"], **extra)
    refused(await ask(base, "images"))
    base, _, _ = hostile(["https://[::ffff:a00:5]:6443/x"], **extra)
    refused(await ask(base, "speech"))
    assert proxy.connects == []


async def test_downloads_take_the_providers_proxy(hostile, proxy_server):
    proxy = await proxy_server(tunnel=False)  # CONNECTs are recorded, then refused
    setting = {"proxy": f"http://127.0.0.1:{proxy.port}"}
    base, _, vendor = hostile(["https://cdn.vendor.test/x.png"],
                              download_hosts=["cdn.vendor.test"], **setting)
    status, _ = await ask(base, "images")
    assert status == 502 and proxy.connects == ["cdn.vendor.test:443"]
    # A name that is not listed is resolved and checked by the gateway, and the proxy is
    # asked for the checked address (it does not resolve the name again).
    base, gateway, _ = hostile(["https://cdn2.vendor.test/x.png"], **setting)

    async def resolve(host, port):
        return ["93.184.216.34"]

    gateway.downloads.resolve = resolve
    status, _ = await ask(base, "images")
    assert status == 502 and proxy.connects[1:] == ["93.184.216.34:443"]
    # The vendor's own requests went through the same proxy.
    assert any("/images/generations" in f for f in proxy.forwarded)
