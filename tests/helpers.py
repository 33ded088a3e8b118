"""Small helpers shared by the test modules: raw HTTP calls and OpenAI error-shape checks."""

from __future__ import annotations

import asyncio
import inspect
import io
import json
import os
import time

import openai
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from tests.fakes.deepseek import BUSY, DEAD, GOOD, GOOD2, POOR

# The Redis the state-store tests use (an unreachable one fails them, never skips them).
REDIS_URL = os.environ.get("FREEAPI_TEST_REDIS", "redis://127.0.0.1:6379/0")
ALL_KEYS = (GOOD, GOOD2, DEAD, POOR, BUSY)
HI = [{"role": "user", "content": "hi"}]


def chat_body(content="hi", model="deepseek-chat", **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


async def request(url: str, method: str = "GET", body=None, key: str | None = GOOD,
                  headers: dict | None = None, timeout: float = 10, client=None):
    """A raw request that never raises on HTTP errors; `body` dicts are sent as JSON.
    `client`: an AsyncHTTPClient of one's own (the shared one runs 10 requests at once)."""
    hdrs = {"Content-Type": "application/json"} if body is not None else {}
    if key is not None:
        hdrs["Authorization"] = f"Bearer {key}"
    hdrs.update(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    req = HTTPRequest(url, method=method, body=body, headers=hdrs, request_timeout=timeout,
                      allow_nonstandard_methods=True)
    return await (client or AsyncHTTPClient()).fetch(req, raise_error=False)


def assert_no_keys(text: str | bytes):
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    for key in ALL_KEYS:
        assert key not in text, "a full API key leaked"


def error_of(resp, status: int) -> dict:
    """The `error` object of an OpenAI-shaped error response, after checking its shape."""
    assert resp.code == status, (resp.code, resp.body)
    assert resp.headers["Content-Type"].startswith("application/json")
    assert_no_keys(resp.body)
    assert_no_keys(str(resp.headers))
    data = json.loads(resp.body)
    assert list(data) == ["error"]
    err = data["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err["type"], str) and err["type"]
    assert err["param"] is None or isinstance(err["param"], str)
    assert err["code"] is None or isinstance(err["code"], str)
    return err


def sdk(base: str, key: str = GOOD, **kw) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base + "/v1", api_key=key, max_retries=0, **kw)


# -- streams and fakes for the reliability tests --------------------------------------------

def sse_events(raw: bytes) -> list[str]:
    from freeapi.sse import SSEParser
    p = SSEParser()
    return p.feed(raw) + p.close()


async def stream_raw(url: str, body: dict, key: str | None = GOOD, timeout: float = 10,
                     on_data=None, client=None):
    """POST a chat request and collect the body as it streams: (response, raw bytes).
    `on_data(bytes)` sees each piece as it arrives."""
    pieces = []

    def got(b):
        pieces.append(b)
        if on_data is not None:
            on_data(b)

    hdrs = {"Content-Type": "application/json"}
    if key is not None:
        hdrs["Authorization"] = f"Bearer {key}"
    req = HTTPRequest(url + "/v1/chat/completions", method="POST", body=json.dumps(body),
                      headers=hdrs, streaming_callback=got, request_timeout=timeout)
    resp = await (client or AsyncHTTPClient()).fetch(req, raise_error=False)
    raw = b"".join(pieces)
    resp.buffer, resp._body = io.BytesIO(raw), None  # so `resp.body` works for errors too
    return resp, raw


def check_stream(raw: bytes, full_text: str) -> tuple[str, dict | None]:
    """What every client of a stream must be able to rely on, whatever failed upstream: one
    answer (a single completion id), `[DONE]` exactly once and last, and either the whole
    answer (a finish_reason) or an error event right before `[DONE]`; the text received is
    a prefix of the answer, so nothing was repeated. Returns (text, error or None)."""
    assert_no_keys(raw)
    assert raw.endswith(b"data: [DONE]\n\n"), raw[-200:]
    evs = sse_events(raw)
    assert evs.count("[DONE]") == 1 and evs[-1] == "[DONE]"
    chunks = [json.loads(e) for e in evs[:-1]]
    error = None
    if chunks and "error" in chunks[-1]:
        error = chunks.pop()["error"]
        assert set(error) == {"message", "type", "param", "code"}
    ids, text, finish = set(), "", None
    for c in chunks:
        assert "error" not in c, "an error event that did not end the stream"
        assert c["object"] == "chat.completion.chunk"
        ids.add(c["id"])
        for choice in c["choices"]:
            assert finish is None, "content after the finish_reason"
            text += choice["delta"].get("content") or ""
            finish = choice.get("finish_reason") or finish
    assert len(ids) <= 1, f"two answers mixed: {ids}"
    assert full_text.startswith(text), f"not a prefix of the answer: {text!r}"
    if error is None:
        assert finish is not None and text == full_text, "truncated without an error event"
    return text, error


class ThreadedFake:
    """A fake vendor (the fake DeepSeek unless another fake module is given: one with
    `State()` and `make_app(state)`) on its own event loop in a thread, for tests that run
    the real `freeapi` command in a subprocess (the test itself then blocks)."""

    def __init__(self, fake=None):
        import asyncio
        import threading

        from tornado.httpserver import HTTPServer
        from tornado.testing import bind_unused_port

        if fake is None:
            from tests.fakes import deepseek as fake
        ready = threading.Event()

        async def setup():
            self.state = fake.State()
            sock, port = bind_unused_port()
            self.server = HTTPServer(fake.make_app(self.state))
            self.server.add_sockets([sock])
            self.url = f"http://127.0.0.1:{port}"

        def run():
            self.loop = asyncio.new_event_loop()
            self.loop.run_until_complete(setup())
            ready.set()
            self.loop.run_forever()
            self.server.stop()
            self.loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        assert ready.wait(5), "the fake upstream did not start"

    def close(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def wait_listening(port: int, proc, seconds: float = 10.0) -> None:
    """Wait until a real `freeapi` process (`proc`) accepts connections on 127.0.0.1:port.
    If it exits or never listens, it is killed and the failure says why (with its stderr
    when that was piped)."""
    import socket
    import subprocess
    deadline = time.monotonic() + seconds
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    exited = proc.poll()
    if exited is None:
        proc.kill()
    tail = ""
    if proc.stderr is not None and proc.stderr is not subprocess.DEVNULL:
        try:
            tail = ": " + proc.stderr.read().decode(errors="replace")[-2000:]
        except (OSError, ValueError, AttributeError):
            pass
    raise AssertionError(("the gateway exited" if exited is not None else
                          "the gateway did not start") + tail)


def client(gateway: str, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gateway + "/v1", api_key=key, max_retries=0)


async def collect(stream) -> dict:
    """Everything a client reads from a stream: text, reasoning, usage, raw chunks."""
    chunks = [c async for c in stream]
    out = {"chunks": chunks, "content": "", "reasoning": "", "usage": None, "finish": None}
    for c in chunks:
        assert c.object == "chat.completion.chunk"
        out["usage"] = c.usage or out["usage"]
        for choice in c.choices:
            out["content"] += choice.delta.content or ""
            out["reasoning"] += (choice.delta.model_extra or {}).get("reasoning_content") or ""
            out["finish"] = choice.finish_reason or out["finish"]
    return out


async def token_check(gateway: str, provider: str, token: str, auth: str | None = "x"):
    resp = await request(gateway + "/token/check", "POST",
                         {"token": token, "provider": provider}, key=auth)
    return resp.code, json.loads(resp.body)


def assert_no_secret(text, *secrets):
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    for secret in secrets:
        assert secret not in text, "a full API key leaked"


class Clock:
    """A clock the test moves forward instead of sleeping through a window, a cooldown or
    a record's lifetime: `monotonic()` and `time()` as the time module has them (what
    KeyPool and HealthSync take), `time` alone for a store. It starts on a whole second,
    so counters' buckets (a tenth of a window) start exactly at it."""

    def __init__(self):
        self.now = 1_000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return 1_800_000_000.0 + self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def eventually(check, what: str, seconds: float = 10.0):
    """Wait until `check()` (sync or async) is true; fail after `seconds`. For what the test
    cannot drive itself (a background sync, a server's own expiry): a generous deadline
    instead of a fixed sleep whose margin a loaded machine can overrun."""
    deadline = time.monotonic() + seconds
    while True:
        ok = check()
        if inspect.isawaitable(ok):
            ok = await ok
        if ok:
            return
        assert time.monotonic() < deadline, f"{what}: still not so after {seconds:g}s"
        await asyncio.sleep(0.02)
