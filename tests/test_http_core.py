"""The HTTP/1.1 wire behaviour a client sees, the same on both of the gateway's HTTP cores
(server.http_core: httptools, the default, and tornado): keep-alive and its end,
pipelined requests answered in order, `Expect: 100-continue`, chunked request bodies,
HTTP/1.0, HEAD, and malformed or oversized requests refused with the connection closed."""

import asyncio
import gc
import json
import socket
import weakref

import pytest
from tornado import httputil
from tornado.testing import bind_unused_port

from freeapi.app import Gateway, make_app
from freeapi.config import ConfigError, parse_config
from freeapi.plugins import make_plugin_manager, provider_types
from freeapi.handlers.gate import BodyGate
from freeapi.server import GatewayServer, make_server
from freeapi.serving.connection import ClientConnection
from freeapi.serving.framing import response_head
from freeapi.serving.server import HttptoolsServer
from tests.fakes.deepseek import GOOD
from tests.fakes.raw_client import RawClient
from tests.helpers import chat_body, eventually

CORES = ["httptools", "tornado"]
GW_KEY = "gw-http-core-0001"


@pytest.fixture(params=CORES)
def base(request, make_gateway):
    url, _ = make_gateway({"server": {"http_core": request.param}, "auth": {"keys": [GW_KEY]},
                           "providers": {"deepseek": {"api_keys": [GOOD]}}})
    return url


def post(path: str, body: bytes, extra: str = "", version: str = "HTTP/1.1") -> bytes:
    return (f"POST {path} {version}\r\nHost: gw\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {GW_KEY}\r\nContent-Length: {len(body)}\r\n{extra}"
            "\r\n").encode() + body


CHAT = json.dumps(chat_body("hi")).encode()


def test_the_core_is_chosen_by_server_http_core():
    types = provider_types(make_plugin_manager())
    assert isinstance(make_server(None, parse_config({}, types)), HttptoolsServer)
    cfg = parse_config({"server": {"http_core": "tornado"}}, types)
    assert isinstance(make_server(None, cfg), GatewayServer)
    with pytest.raises(ConfigError, match="server.http_core"):
        parse_config({"server": {"http_core": "h2o"}}, types)


async def test_keep_alive_serves_requests_one_after_another(base):
    c = await RawClient.connect(base)
    for _ in range(3):
        await c.send(post("/v1/chat/completions", CHAT))
        status, headers, body = await c.response()
        assert status == 200 and json.loads(body)["object"] == "chat.completion"
        assert headers.get("connection") != "close"
    c.close()


async def test_pipelined_requests_are_answered_in_order(base):
    c = await RawClient.connect(base)
    await c.send(b"GET /ping HTTP/1.1\r\nHost: gw\r\n\r\n" + post("/v1/chat/completions", CHAT)
                 + b"GET /nowhere HTTP/1.1\r\nHost: gw\r\n\r\n")
    assert (await c.response())[2] == b"pong"
    status, _, body = await c.response()
    assert status == 200 and json.loads(body)["object"] == "chat.completion"
    assert (await c.response())[0] == 404
    c.close()


async def test_an_offered_upgrade_is_answered_over_http_1_1(base):
    c = await RawClient.connect(base)
    upgrade = (b"GET /ping HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade, HTTP2-Settings\r\n"
               b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
    await c.send(upgrade + b"GET /ping HTTP/1.1\r\nHost: gw\r\n\r\n")
    for _ in range(2):
        status, _, body = await c.response()
        assert (status, body) == (200, b"pong")
    await c.send(upgrade)
    assert (await c.response())[2] == b"pong"
    c.close()


@pytest.mark.parametrize("framing", ["Content-Length: 3\r\n\r\nabc",
                                     "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"])
async def test_an_upgrade_offer_with_a_body_is_refused_not_run_without_it(make_gateway,
                                                                         framing):
    # httptools core only: llhttp reads no body after an upgrade offer (Tornado reads it)
    base, _ = make_gateway({"server": {"http_core": "httptools"}})
    c = await RawClient.connect(base)
    await c.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade\r\n"
                 b"Upgrade: h2c\r\n" + framing.encode())
    # one answer, the 400, then the close (not the request run without its body, then a
    # 400 for the body read as the next request)
    answer = await asyncio.wait_for(c.reader.read(), 5)
    assert answer.startswith(b"HTTP/1.1 400") and answer.count(b"HTTP/1.1 ") == 1, answer


async def test_connection_close_is_honoured(base):
    c = await RawClient.connect(base)
    await c.send(post("/v1/chat/completions", CHAT, "Connection: close\r\n"))
    status, headers, _ = await c.response()
    assert status == 200 and headers["connection"] == "close"
    assert await c.closed_within(3)


async def test_expect_100_continue_gets_its_interim_answer(base):
    c = await RawClient.connect(base)
    head = post("/v1/chat/completions", b"", "Expect: 100-continue\r\n")
    head = head.replace(b"Content-Length: 0", b"Content-Length: %d" % len(CHAT))
    await c.send(head)
    interim = await c.reader.readuntil(b"\r\n\r\n")
    assert interim.startswith(b"HTTP/1.1 100")
    await c.send(CHAT)
    assert (await c.response())[0] == 200
    c.close()


async def test_a_chunked_request_body_is_read(base):
    c = await RawClient.connect(base)
    half = len(CHAT) // 2
    chunks = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (half, CHAT[:half], len(CHAT) - half,
                                                   CHAT[half:])
    await c.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: "
                 b"application/json\r\nAuthorization: Bearer %s\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n%s" % (GW_KEY.encode(), chunks))
    status, _, body = await c.response()
    assert status == 200, body
    c.close()


async def test_http_1_0_closes_unless_kept_alive(base):
    c = await RawClient.connect(base)
    await c.send(b"GET /ping HTTP/1.0\r\n\r\n")
    assert (await c.response())[2] == b"pong"
    assert await c.closed_within(3)
    c = await RawClient.connect(base)
    await c.send(b"GET /ping HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    status, headers, _ = await c.response()
    assert status == 200 and headers["connection"].lower() == "keep-alive"
    await c.send(b"GET /ping HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert (await c.response())[2] == b"pong"
    c.close()


async def test_a_streamed_answer_is_chunked_and_ends(base):
    c = await RawClient.connect(base)
    await c.send(post("/v1/chat/completions", json.dumps(chat_body("hi", stream=True)).encode()))
    head = (await c.reader.readuntil(b"\r\n\r\n")).decode().lower()
    assert head.startswith("http/1.1 200") and "transfer-encoding: chunked" in head
    body = await c.reader.readuntil(b"\r\n0\r\n\r\n")
    assert b"data: [DONE]" in body
    # and the connection is ready for the next request
    await c.send(b"GET /ping HTTP/1.1\r\nHost: gw\r\n\r\n")
    assert (await c.response())[2] == b"pong"
    c.close()


@pytest.mark.parametrize("request_bytes", [
    b"NOT A REQUEST\r\n\r\n",
    b"GET /ping HTTP/1.1\r\nHost: gw\r\nBad Header\r\n\r\n",
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer %s\r\n"
    b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" % GW_KEY.encode(),
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer %s\r\n"
    b"Transfer-Encoding: chunked\r\n\r\nzz\r\n" % GW_KEY.encode(),
    b"GET /ping HTTP/1.1\r\nHost: gw\r\nX@Y: 1\r\n\r\n",
    b"GET /ping HTTP/1.1\r\nHost: gw\r\nX: a\x00b\r\n\r\n",
    b"GET /ping HTTP/1.1\r\nHost: gw\r\nX: a\x1bb\r\n\r\n",
    b"GET /ping HTTP/1.1\r\nHost: gw\r\nX: a\x7fb\r\n\r\n",
    # parsed, then refused by Tornado's HTTPServerRequest (an HTTPInputError)
    b"GET /ping HTTP/1.1\r\n\r\n",
    b"GET /ping HTTP/1.1\r\nHost: gw\r\nHost: other\r\n\r\n",
    b"GET /ping HTTP/1.1\r\nHost: g w\r\n\r\n",
    b"GET /ping HTTP/2.0\r\nHost: gw\r\n\r\n",
    b"GET /ping HTTP/0.9\r\nHost: gw\r\n\r\n",
], ids=["request-line", "header", "length-and-chunked", "chunk-size", "name-not-a-token",
        "value-nul", "value-escape", "value-del", "no-host", "two-hosts", "host-with-space",
        "version-2.0", "version-0.9"])
async def test_a_malformed_request_gets_400_and_a_close(base, request_bytes, caplog):
    c = await RawClient.connect(base)
    await c.send(request_bytes)
    status_line = await c.reader.readuntil(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 400"), status_line
    assert await c.closed_within(3)
    # the client's fault, not the gateway's: logged without a traceback (by the gateway's
    # loggers: an SDK client another test left to the collector may log its own)
    assert not [r.getMessage() for r in caplog.records if r.exc_info
                and r.name.startswith(("freeapi", "tornado"))]


async def test_headers_beyond_64_kib_close_the_connection(base):
    c = await RawClient.connect(base)
    await c.send(b"GET /ping HTTP/1.1\r\nHost: gw\r\n" + b"X-Pad: " + b"a" * 70_000 + b"\r\n\r\n")
    answer = await asyncio.wait_for(c.reader.read(100), 5)  # an answer, or b"" at close
    assert not answer.startswith(b"HTTP/1.1 200"), answer
    assert await c.closed_within(3)


@pytest.mark.parametrize("value", ["a\r\nX-Injected: 1", "a\nX-Injected: 1", "a\rb"])
def test_a_header_value_with_a_line_break_is_refused_not_sent(value):
    request = httputil.RequestStartLine("GET", "/", "HTTP/1.1")
    with pytest.raises(ValueError, match="CR or LF"):
        response_head(request, httputil.HTTPHeaders(),
                      httputil.ResponseStartLine("HTTP/1.1", 200, "OK"),
                      httputil.HTTPHeaders({"X-A": value}), False)


@pytest.mark.parametrize("ending", ["connection-close", "client-closes", "refused-unread"])
async def test_a_closed_connection_is_freed_without_the_collector(make_gateway, monkeypatch,
                                                                  ending):
    # (the httptools core: a connection's parser and watch point back at it)
    base, _ = make_gateway({"auth": {"keys": [GW_KEY]},
                            "providers": {"deepseek": {"api_keys": [GOOD]}}})
    made = []
    init = ClientConnection.__init__

    def noted(self, *args):
        made.append(weakref.ref(self))
        init(self, *args)

    monkeypatch.setattr(ClientConnection, "__init__", noted)

    async def one():
        c = await RawClient.connect(base)
        if ending == "refused-unread":  # answered before its body (401), then lingering
            await c.send(post("/v1/chat/completions", CHAT).replace(GW_KEY.encode(), b"x"))
            assert (await c.response())[0] == 401
        else:
            extra = "Connection: close\r\n" if ending == "connection-close" else ""
            await c.send(post("/v1/chat/completions", CHAT, extra))
            assert (await c.response())[0] == 200
        c.close()

    await one()
    gc.collect()
    gc.disable()
    try:
        mark = len(made)
        await one()
        assert len(made) > mark
        await eventually(lambda: all(ref() is None for ref in made[mark:]),
                         "the closed connection is still alive", seconds=3)
    finally:
        gc.enable()


async def test_head_gets_the_head_alone_and_the_connection_goes_on(base):
    c = await RawClient.connect(base)
    await c.send(b"HEAD /ping HTTP/1.1\r\nHost: gw\r\n\r\nGET /ping HTTP/1.1\r\nHost: gw\r\n\r\n")
    head = await c.reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 "), head
    # no body follows the head: the next bytes are the GET's answer
    status, _, body = await c.response()
    assert (status, body) == (200, b"pong")
    c.close()


async def test_requests_pipelined_behind_a_refused_one_are_not_served(base, upstream_state,
                                                                      caplog):
    c = await RawClient.connect(base)
    # An HTTP/1.1 request without Host is refused (by Tornado's HTTPServerRequest) once
    # parsed; the chat request behind it came in the same packet.
    await c.send(b"GET /ping HTTP/1.1\r\n\r\n" + post("/v1/chat/completions", CHAT))
    assert await c.closed_within(3)
    await asyncio.sleep(0.3)
    assert not upstream_state.requests
    assert not [r.getMessage() for r in caplog.records
                if r.name == "freeapi.access" or "Traceback" in r.getMessage()
                or (r.exc_info and not isinstance(r.exc_info[1], httputil.HTTPInputError))]


STATUS_PAGES = b"GET /status HTTP/1.1\r\nHost: gw\r\n\r\n" * 300  # ~66 kB an answer


async def not_reading(base: str) -> RawClient:
    """A client whose socket takes in little: what it does not read stays with the
    gateway."""
    host, port = base.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.setblocking(False)
    return RawClient(*await asyncio.open_connection(sock=sock))


async def test_pipelined_requests_wait_while_the_client_reads_no_answer(base, caplog):
    # As on Tornado, the next request is read once the previous answer is with the
    # kernel: what a client that never reads makes the gateway hold stays bounded.
    c = await not_reading(base)
    c.writer.write(STATUS_PAGES)  # ~20 MB of answers, beyond the sockets' buffers
    await asyncio.sleep(1.5)
    answered = sum(1 for r in caplog.records if r.name == "freeapi.access")
    assert 0 < answered < 150, answered
    for _ in range(300):  # and once it reads, every answer comes, in order
        assert (await c.response())[0] == 200
    c.close()


async def test_a_body_in_tiny_chunks_reaches_the_handler_in_few_pieces(base, monkeypatch):
    # Each piece a delegate keeps is an object of its own (~40 bytes for one byte of
    # body): as Tornado's chunked reader, the connection joins consecutive small chunks.
    pieces = []
    received = BodyGate.data_received

    def counted(self, chunk):
        pieces.append(len(chunk))
        return received(self, chunk)

    monkeypatch.setattr(BodyGate, "data_received", counted)
    body = json.dumps(chat_body("x" * 20_000)).encode()
    c = await RawClient.connect(base)
    await c.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: "
                 b"application/json\r\nAuthorization: Bearer %s\r\nTransfer-Encoding: "
                 b"chunked\r\n\r\n%s0\r\n\r\n"
                 % (GW_KEY.encode(), b"".join(b"1\r\n%c\r\n" % b for b in body)))
    status, _, answer = await c.response()
    assert status == 200, answer
    assert sum(pieces) == len(body) and len(pieces) <= 20, len(pieces)
    c.close()


@pytest.mark.parametrize("core", CORES)
async def test_closing_all_connections_does_not_wait_on_a_client_that_reads_nothing(
        core, upstream):
    pm = make_plugin_manager()
    types = provider_types(pm)
    gateway = Gateway(parse_config({"server": {"http_core": core}}, types), pm, types)
    server = make_server(make_app(gateway), gateway.config)
    sock, port = bind_unused_port()
    server.add_sockets([sock])
    c = await not_reading(f"http://127.0.0.1:{port}")
    c.writer.write(STATUS_PAGES)
    await asyncio.sleep(0.5)  # answers are waiting for the client to read them
    server.stop()
    await asyncio.wait_for(server.close_all_connections(), 2)
    assert await c.closed_within(2)
    gateway.close()


async def test_closing_all_connections_closes_one_still_being_set_up():
    # Accepted, its transport not made yet when the server closes everything: it is closed
    # as soon as it arrives, not served on until the caller's own timeout gives up.
    pm = make_plugin_manager()
    types = provider_types(pm)
    gateway = Gateway(parse_config({}, types), pm, types)
    server = make_server(make_app(gateway), gateway.config)
    assert isinstance(server, HttptoolsServer)
    listener, port = bind_unused_port()
    client = socket.create_connection(("127.0.0.1", port))
    accepted, address = listener.accept()
    try:
        server.serve_connection(accepted, address)  # its transport is made in a later turn
        await asyncio.wait_for(server.close_all_connections(), 0.5)
        assert server.cap.open == 0
        client.settimeout(2)
        assert client.recv(1) == b""  # closed by the gateway, not left open
    finally:
        client.close()
        listener.close()
        gateway.close()
