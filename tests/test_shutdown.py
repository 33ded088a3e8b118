"""Graceful shutdown: in process through Gateway.drain, and the real `freeapi` command on
SIGTERM. Streams in flight finish within the grace period, or end with an error event and
`[DONE]` after it; new chat requests are refused; the process exits 0."""

import asyncio
import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from freeapi.errors import APIError, ClientGone
from freeapi.pipeline.exchange import Exchange
from freeapi.pipeline.failover import Failover
from tests.conftest import free_port
from tests.fakes.deepseek import ANSWER, GOOD
from tests.helpers import ThreadedFake, assert_no_keys, chat_body, check_stream, error_of, \
    request, stream_raw, wait_listening

ROOT = Path(__file__).resolve().parent.parent
TEXT = "".join(ANSWER)
PREFIX = "".join(ANSWER[:3])


async def start_stream(base, content):
    """A stream that has begun: returns the task that finishes it, once data arrived."""
    first = asyncio.Event()
    task = asyncio.ensure_future(stream_raw(base, chat_body(content, stream=True),
                                            on_data=lambda b: first.set()))
    await asyncio.wait_for(first.wait(), 5)
    return task


# -- in process -----------------------------------------------------------------------------

async def test_drain_lets_streams_finish_and_refuses_new_requests(make_gateway,
                                                                   upstream_state):
    base, gw = make_gateway()
    task = await start_stream(base, "!stall 0.6")  # pauses mid-way, then completes
    start = time.monotonic()
    drain = asyncio.ensure_future(gw.drain(10))
    await asyncio.sleep(0.05)
    for stream in (False, True):
        resp = await request(base + "/v1/chat/completions", "POST", chat_body(stream=stream))
        err = error_of(resp, 503)
        assert err["code"] == "shutting_down"
    assert (await request(base + "/ping")).code == 200  # only chat work is refused
    resp, raw = await task
    text, err = check_stream(raw, TEXT)
    assert err is None and text == TEXT
    await asyncio.wait_for(drain, 2)
    assert time.monotonic() - start < 2  # done when the stream was, not after the grace
    assert not gw.shutting_down and len(upstream_state.requests) == 1


async def test_drain_ends_what_is_left_after_the_grace_period(make_gateway, upstream_state):
    base, gw = make_gateway()
    task = await start_stream(base, "!stall 30")
    plain = asyncio.ensure_future(request(base + "/v1/chat/completions", "POST",
                                          chat_body("!slow 30")))
    while len(upstream_state.requests) < 2:
        await asyncio.sleep(0.01)
    start = time.monotonic()
    await asyncio.wait_for(gw.drain(0.3), 3)
    assert 0.3 <= time.monotonic() - start < 2.5
    resp, raw = await task
    assert resp.code == 200
    text, err = check_stream(raw, TEXT)
    assert text == PREFIX and err["code"] == "shutting_down"
    assert "incomplete" in err["message"]
    assert error_of(await plain, 503)["code"] == "shutting_down"
    assert upstream_state.cancelled.is_set()  # the vendor stopped generating for nobody
    assert len(upstream_state.requests) == 2  # and nothing was retried


async def test_drain_releases_requests_queued_for_a_busy_key(make_gateway, upstream_state):
    base, gw = make_gateway({"providers": {"deepseek": {"key_pool": {"max_concurrency": 1}}}})
    task = await start_stream(base, "!stall 30")
    queued = asyncio.ensure_future(request(base + "/v1/chat/completions", "POST",
                                           chat_body()))
    while not gw.pools["deepseek"]._waiters:
        await asyncio.sleep(0.01)
    await asyncio.wait_for(gw.drain(0.3), 3)
    resp, raw = await task
    assert check_stream(raw, TEXT)[1]["code"] == "shutting_down"
    assert error_of(await asyncio.wait_for(queued, 3), 503)["code"] == "shutting_down"
    assert len(upstream_state.requests) == 1  # the queued request never reached the vendor
    assert gw.pools["deepseek"].in_flight == {}


async def test_a_key_granted_as_shutdown_ends_a_request_is_given_back_unspent(make_gateway):
    # The race drain cannot stage on its own: the pool hands a queued request its key
    # just before shutdown (or the client leaving) fails the wait; the key must come back
    # unused and the request end, not go to the vendor for nobody.
    _, gw = make_gateway()
    pool, failover = gw.pools["deepseek"], Failover(gw, None, None, None)
    gw.shutting_down = True
    try:
        with pytest.raises(APIError) as info:
            await failover.lease(Exchange(None), pool, [GOOD], set(), False)
    finally:
        gw.shutting_down = False
    assert info.value.code == "shutting_down" and pool.in_flight == {}
    gone = Exchange(None)
    gone.client_gone = True
    with pytest.raises(ClientGone):
        await failover.lease(gone, pool, [GOOD], set(), False)
    assert pool.in_flight == {}
    lease = await failover.lease(Exchange(None), pool, [GOOD], set(), False)
    assert lease is not None and pool.in_flight == {GOOD: 1}  # neither: the request keeps it
    lease.cancel()


# -- the real command -----------------------------------------------------------------------

class StreamReader(threading.Thread):
    """A client reading one stream from the gateway, as it arrives."""

    def __init__(self, port: int, content: str):
        super().__init__(daemon=True)
        self.port, self.content = port, content
        self.first = threading.Event()
        self.raw, self.status = b"", None

    def run(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        try:
            conn.request("POST", "/v1/chat/completions",
                         json.dumps(chat_body(self.content, stream=True)),
                         {"Authorization": f"Bearer {GOOD}",
                          "Content-Type": "application/json"})
            resp = conn.getresponse()
            self.status = resp.status
            while True:
                piece = resp.read1(65536)
                if not piece:
                    break
                self.raw += piece
                self.first.set()
        finally:
            conn.close()
            self.first.set()


def start_gateway(tmp_path, upstream: str, grace: float):
    port = free_port()
    cfg = tmp_path / "tmp.yaml"
    cfg.write_text(f"server:\n  host: 127.0.0.1\n  shutdown_grace: {grace}\n"
                   f"providers:\n  deepseek:\n    base_url: {upstream}\n")
    log = open(tmp_path / "stderr.txt", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "freeapi", "--config", str(cfg),
                             "--port", str(port)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=log)
    wait_listening(port, proc)
    return proc, port, log


def refused(port) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return False
    except (ConnectionRefusedError, ConnectionResetError):
        # (a connection the kernel queued as the listening socket closed is reset: it was
        # never accepted either)
        return True


def run_shutdown(tmp_path, grace: float, content: str, sig=signal.SIGTERM):
    """Start the gateway, begin a stream, signal: (exit code, seconds, raw stream)."""
    with ThreadedFake() as fake:
        proc, port, log = start_gateway(tmp_path, fake.url, grace)
        try:
            reader = StreamReader(port, content)
            reader.start()
            assert reader.first.wait(5) and reader.raw
            start = time.monotonic()
            proc.send_signal(sig)
            deadline = start + 3
            while not refused(port):  # it stops listening at once
                assert time.monotonic() < deadline, "still accepting after SIGTERM"
                time.sleep(0.02)
            code = proc.wait(timeout=10)
            took = time.monotonic() - start
            reader.join(5)
            assert not reader.is_alive() and reader.status == 200
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    log.seek(0)
    text = log.read()
    assert "Traceback" not in text and "shutting down" in text
    assert_no_keys(text)
    return code, took, reader.raw


def test_sigterm_lets_a_stream_finish_within_the_grace_period(tmp_path):
    code, took, raw = run_shutdown(tmp_path, grace=10, content="!stall 1")
    assert code == 0
    text, err = check_stream(raw, TEXT)
    assert err is None and text == TEXT
    assert took < 5  # it exited when the stream was done, not after the grace period


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_a_short_grace_ends_the_stream_with_an_error_event(tmp_path, sig):
    code, took, raw = run_shutdown(tmp_path, grace=0.3, content="!stall 30", sig=sig)
    assert code == 0
    text, err = check_stream(raw, TEXT)
    assert text == PREFIX and err["code"] == "shutting_down"
    assert took < 5
