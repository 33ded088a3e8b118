"""Small helpers shared by the test modules: raw HTTP calls and OpenAI error-shape checks."""

from __future__ import annotations

import json

import openai
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from tests.fakes.deepseek import BUSY, DEAD, GOOD, GOOD2, POOR

ALL_KEYS = (GOOD, GOOD2, DEAD, POOR, BUSY)
HI = [{"role": "user", "content": "hi"}]


def chat_body(content="hi", model="deepseek-chat", **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


async def request(url: str, method: str = "GET", body=None, key: str | None = GOOD,
                  headers: dict | None = None, timeout: float = 10):
    """A raw request that never raises on HTTP errors; `body` dicts are sent as JSON."""
    hdrs = {"Content-Type": "application/json"} if body is not None else {}
    if key is not None:
        hdrs["Authorization"] = f"Bearer {key}"
    hdrs.update(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    req = HTTPRequest(url, method=method, body=body, headers=hdrs, request_timeout=timeout,
                      allow_nonstandard_methods=True)
    return await AsyncHTTPClient().fetch(req, raise_error=False)


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
