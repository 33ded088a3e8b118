"""Hostile clients: unauthenticated bodies, bodies and headers that stall, more connections
than the gateway should hold, and an accept loop at the file-descriptor limit. None of them
may hold the gateway's memory or sockets for long, or flood its log."""

import asyncio
import errno
import json
import socket
import time

import pytest

from tests.fakes.deepseek import GOOD
from tests.fakes.raw_client import RawClient
from tests.helpers import chat_body, request

GW_KEY = "gw-hostile-client-0001"
AUTH = {"auth": {"keys": [GW_KEY]}, "providers": {"deepseek": {"api_keys": [GOOD]}}}


def post_head(length: int, key: str | None = None, path="/v1/chat/completions") -> bytes:
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    return (f"POST {path} HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
            f"{auth}Content-Length: {length}\r\n\r\n").encode()


async def closed_after_the_timeout(c: RawClient) -> None:
    """The gateway closes `c` about server.body_timeout (0.4 s here) from now: not at once,
    and not never."""
    started = time.monotonic()
    assert await c.closed_within(5)
    assert 0.3 < time.monotonic() - started < 3
    c.close()


# -- unauthenticated bodies -------------------------------------------------------------

@pytest.mark.parametrize("key", [None, "gw-wrong-key-000001"])
async def test_an_unauthenticated_body_is_refused_before_it_is_read(make_gateway, key):
    base, gw = make_gateway(AUTH)
    c = await RawClient.connect(base)
    await c.send(post_head(15 << 20, key) + b"{" + b" " * 65536)
    status, headers, body = await c.response(timeout=3)  # not after 15 MB
    assert status == 401 and json.loads(body)["error"]["code"] == "invalid_api_key"
    assert await c.closed_within(3), "the connection stays open for the rest of the body"
    c.close()


async def test_an_authenticated_body_is_still_read_whole(make_gateway):
    base, gw = make_gateway(AUTH)
    resp = await request(base + "/v1/chat/completions", "POST", chat_body("x" * 200_000),
                         key=GW_KEY)
    assert resp.code == 200


async def test_health_needs_no_gateway_key(make_gateway):
    base, gw = make_gateway(AUTH)
    assert (await request(base + "/healthz", key=None)).code == 200
    assert (await request(base + "/ping", key=None)).code == 200


# -- stalls ----------------------------------------------------------------------------

async def test_a_body_that_stops_arriving_is_dropped_after_body_timeout(make_gateway):
    base, gw = make_gateway({**AUTH, "server": {"body_timeout": 0.4}})
    c = await RawClient.connect(base)
    await c.send(post_head(10_000, GW_KEY) + b'{"model": "deepseek-chat", ')
    await closed_after_the_timeout(c)


async def test_a_slow_body_that_keeps_moving_is_not_dropped(make_gateway):
    base, gw = make_gateway({**AUTH, "server": {"body_timeout": 0.4}})
    body = json.dumps(chat_body("slow but steady")).encode()
    c = await RawClient.connect(base)
    await c.send(post_head(len(body), GW_KEY))
    pieces = [body[i:i + 8] for i in range(0, len(body), 8)]
    step = 1.2 / len(pieces)  # 1.2 s in all, three times the timeout, no pause over 0.4 s
    for piece in pieces:
        await c.send(piece)
        await asyncio.sleep(step)
    status, _, answer = await c.response()
    assert status == 200, answer
    c.close()


async def test_headers_that_stop_arriving_are_dropped_after_body_timeout(make_gateway):
    base, gw = make_gateway({**AUTH, "server": {"body_timeout": 0.4}})
    c = await RawClient.connect(base)
    await c.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n")
    assert await c.closed_within(5)
    c.close()


async def test_headers_trickled_a_byte_at_a_time_are_dropped_after_body_timeout(make_gateway):
    """Slowloris: the headers as a whole must arrive within the timeout; bytes that keep
    coming do not extend it (unlike a body's, whose pauses are what is bounded)."""
    base, gw = make_gateway({**AUTH, "server": {"body_timeout": 0.4}})
    c = await RawClient.connect(base)
    started = time.monotonic()
    closed = False
    for byte in b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nX-Pad: " + b"a" * 100:
        try:
            await c.send(bytes([byte]))
        except ConnectionError:
            closed = True
            break
        if c.reader.at_eof():
            closed = True
            break
        await asyncio.sleep(0.05)  # 5 s in all if it were never dropped
    assert closed or await c.closed_within(3)
    assert time.monotonic() - started < 3
    c.close()


async def test_an_idle_keep_alive_connection_is_closed_after_body_timeout(make_gateway):
    base, gw = make_gateway({**AUTH, "server": {"body_timeout": 0.4}})
    c = await RawClient.connect(base)
    await c.send(b"GET /ping HTTP/1.1\r\nHost: gw\r\n\r\n")
    assert (await c.response())[0] == 200
    await closed_after_the_timeout(c)


async def test_a_keep_alive_connection_in_use_is_not_dropped(make_gateway):
    """Requests one after another, together longer than the timeout, none pausing."""
    base, gw = make_gateway({**AUTH, "server": {"body_timeout": 0.3}})
    c = await RawClient.connect(base)
    body = json.dumps(chat_body("hi")).encode()
    started = time.monotonic()
    while time.monotonic() - started < 1.0:
        await c.send(post_head(len(body), GW_KEY) + body)
        assert (await c.response())[0] == 200
        await asyncio.sleep(0.1)
    c.close()


async def test_a_second_request_whose_body_stalls_is_dropped(make_gateway, caplog):
    """The stall is watched per connection: a later request on a keep-alive connection is
    watched as the first was, and the drop is logged without the query string."""
    base, gw = make_gateway({**AUTH, "server": {"body_timeout": 0.4}})
    c = await RawClient.connect(base)
    body = json.dumps(chat_body("hi")).encode()
    await c.send(post_head(len(body), GW_KEY) + body)
    assert (await c.response())[0] == 200
    await c.send(post_head(10_000, GW_KEY, "/v1/chat/completions?x=secret-in-query")
                 + b'{"model": "deepseek-chat", ')
    await closed_after_the_timeout(c)
    stalls = [r.getMessage() for r in caplog.records if "stalled" in r.getMessage()]
    assert stalls == ["POST /v1/chat/completions: dropped; the request body stalled for 0.4s "
                      "(server.body_timeout)"], stalls


# -- the connection cap -----------------------------------------------------------------

async def test_connections_beyond_max_connections_get_a_clear_503(make_gateway):
    base, gw = make_gateway({"server": {"max_connections": 3}})
    held = [await RawClient.connect(base) for _ in range(3)]
    await asyncio.sleep(0.1)  # accepted
    extra = await RawClient.connect(base)
    await extra.send(b"GET /ping HTTP/1.1\r\nHost: gw\r\n\r\n")
    status, headers, body = await extra.response()
    assert status == 503 and headers["connection"] == "close" and "retry-after" in headers
    err = json.loads(body)["error"]
    assert err["code"] == "too_many_connections" and "server.max_connections" in err["message"]
    assert await extra.closed_within(3)
    # a held connection is served normally, and one freed slot lets the next one in
    await held[0].send(b"GET /ping HTTP/1.1\r\nHost: gw\r\n\r\n")
    assert (await held[0].response())[0] == 200
    held[1].close()
    await asyncio.sleep(0.1)
    assert (await request(base + "/ping", key=None)).code == 200
    for c in held:
        c.close()


# -- the accept loop at the descriptor limit --------------------------------------------

class _ExhaustedSocket(socket.socket):
    """A listening socket whose accept() fails with EMFILE `failures` times first."""
    failures = 0
    attempts = 0

    def accept(self):
        type(self).attempts += 1
        if type(self).failures:
            type(self).failures -= 1
            raise OSError(errno.EMFILE, "Too many open files")
        return super().accept()


async def test_fd_exhaustion_pauses_accepting_and_is_logged_once(make_gateway, caplog):
    from freeapi.app import make_app
    from freeapi.server import make_server
    _, gw = make_gateway()
    server = make_server(make_app(gw), gw.config)
    listener = _ExhaustedSocket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setblocking(False)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    _ExhaustedSocket.failures, _ExhaustedSocket.attempts = 3, 0
    server.add_sockets([listener])
    try:
        port = listener.getsockname()[1]
        caplog.clear()
        # the connection waits in the backlog while accept() fails, then is served
        resp = await request(f"http://127.0.0.1:{port}/ping", key=None, timeout=5)
        assert resp.code == 200, resp
        assert server.cap.accept_failures == 3
        assert _ExhaustedSocket.attempts <= 6, f"the accept loop spun: {_ExhaustedSocket.attempts}"
        warnings = [r.getMessage() for r in caplog.records if r.name == "freeapi.server"]
        assert len(warnings) == 1 and "ulimit -n" in warnings[0], warnings
        # (other tests' SDK clients may log their own teardown errors here: not counted)
        tracebacks = [r for r in caplog.records if r.exc_info and (
            r.name.startswith(("freeapi", "tornado")) or "callback" in r.getMessage())]
        assert not tracebacks, "a traceback was logged"
    finally:
        server.stop()


async def test_a_client_that_leaves_mid_body_ends_its_request(make_gateway, caplog):
    """What its body held is given back (no request left pending for ever), and the
    stall watchdog does not fire later for a connection that is already gone."""
    base, gw = make_gateway({**AUTH, "server": {"body_timeout": 0.3}})
    c = await RawClient.connect(base)
    await c.send(post_head(10_000, GW_KEY) + b'{"model": "deep')
    await asyncio.sleep(0.1)
    assert gw.body_budget.used == 10_000, "the request was not admitted to its body"
    c.close()
    for _ in range(50):
        await asyncio.sleep(0.02)
        if not gw.body_budget.used:
            break
    assert gw.body_budget.used == 0 and not gw.active
    await asyncio.sleep(0.5)
    assert not [r for r in caplog.records if "stalled" in r.getMessage()]
