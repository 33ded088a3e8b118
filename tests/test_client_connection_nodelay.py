"""A client connection has Nagle's algorithm off for its whole life: set once when it is
accepted (Tornado would turn it off at the end of each response and back on after, and
leave it on while a streamed response's events are written, where it can only delay them)."""

import socket

import pytest
from tornado.iostream import IOStream

from freeapi.app import make_app
from freeapi.server import make_server
from tests.fakes.deepseek import GOOD
from tests.fakes.raw_client import RawClient


@pytest.mark.parametrize("core", ["httptools", "tornado"])
async def test_nagle_stays_off_across_requests_and_streams(make_gateway, core):
    _, gw = make_gateway({"server": {"http_core": core}})
    server = make_server(make_app(gw), gw.config)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    client = await RawClient.connect(f"http://127.0.0.1:{port}")
    accepted, address = listener.accept()
    listener.close()
    accepted.setblocking(False)
    if core == "tornado":
        stream = IOStream(accepted)
        server.handle_stream(stream, address)
    else:
        server.serve_connection(accepted, address)
    try:
        def nodelay() -> int:
            return accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)

        await client.send(b"GET /ping HTTP/1.1\r\nHost: gw\r\n\r\n")
        assert (await client.response())[0] == 200  # (the connection is being served)
        assert nodelay()
        await client.send(b"GET /ping HTTP/1.1\r\nHost: gw\r\n\r\n")
        assert (await client.response())[0] == 200
        assert nodelay(), "turned back on after a response"
        body = (b'{"model": "deepseek-chat", "stream": true, '
                b'"messages": [{"role": "user", "content": "a b c d"}]}')
        await client.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n"
                          b"Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n%s" % (GOOD.encode(), len(body), body))
        head = await client.reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"chunked" in head.lower()
        assert nodelay(), "on while a stream is written"
        rest = b""
        while not rest.endswith(b"0\r\n\r\n"):
            rest += await client.reader.read(65536)
        assert b"[DONE]" in rest
        assert nodelay()
    finally:
        client.close()
        if core == "tornado":
            stream.close()
        else:
            await server.close_all_connections()
