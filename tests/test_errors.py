"""Every error path: HTTP status, OpenAI's error shape, and the openai SDK exception class."""

import json
import time

import openai
import pytest
from tornado.httpclient import HTTPRequest, AsyncHTTPClient
from tornado.tcpclient import TCPClient

from tests.conftest import free_port
from tests.fakes.deepseek import BUSY, DEAD, GOOD, GOOD2, POOR
from tests.helpers import assert_no_keys, chat_body, error_of, request, sdk

MSG = {"role": "user", "content": "hi"}


async def sdk_error(base, key=GOOD, **post):
    """POST /chat/completions through the SDK; returns the exception it raised."""
    with pytest.raises(openai.APIStatusError) as info:
        await sdk(base, key).post("/chat/completions", cast_to=object, **post)
    assert_no_keys(str(info.value))
    return info.value


# -- bad input ------------------------------------------------------------------------------

BAD_BODIES = {
    "invalid JSON": (b'{"model": "deepseek-chat", "messages": [', None),
    "empty body": (b"", None),
    "body not an object": (b'[{"role": "user", "content": "hi"}]', None),
    "body is a string": (b'"hi"', None),
    "body not UTF-8": (b'{"model": "\xff"}', None),
    "JSON nested too deeply": (b'{"model": ' + b"[" * 100000 + b"]" * 100000 + b"}", None),
    "missing model": ({"messages": [MSG]}, "model"),
    "model not a string": ({"model": 7, "messages": [MSG]}, "model"),
    "missing messages": ({"model": "deepseek-chat"}, "messages"),
    "messages not a list": ({"model": "deepseek-chat", "messages": "hi"}, "messages"),
    "messages an object": ({"model": "deepseek-chat", "messages": MSG}, "messages"),
    "empty messages": ({"model": "deepseek-chat", "messages": []}, "messages"),
    "message not an object": ({"model": "deepseek-chat", "messages": ["hi"]}, "messages[0]"),
    "message without role": ({"model": "deepseek-chat",
                              "messages": [MSG, {"content": "hi"}]}, "messages[1]"),
    "role not a string": ({"model": "deepseek-chat",
                           "messages": [{"role": 1, "content": "hi"}]}, "messages[0]"),
    "content a number": ({"model": "deepseek-chat",
                          "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    "content an object": ({"model": "deepseek-chat",
                           "messages": [{"role": "user", "content": {"text": "hi"}}]},
                          "messages[0].content"),
    "stream not bool": ({"model": "deepseek-chat", "messages": [MSG], "stream": "yes"},
                        "stream"),
    "stream a number": ({"model": "deepseek-chat", "messages": [MSG], "stream": 1}, "stream"),
    "stream_options not an object": ({"model": "deepseek-chat", "messages": [MSG],
                                      "stream": True, "stream_options": "usage"},
                                     "stream_options"),
    # Python reads these, but they cannot be forwarded: a lone surrogate cannot be encoded
    # as UTF-8, and NaN/Infinity are not JSON.
    "lone surrogate in content": (b'{"model": "deepseek-chat", "messages": [{"role": "user",'
                                  b' "content": "hi \\ud83d\\ude00 \\ud800"}]}',
                                  "messages[0].content"),
    "lone low surrogate in tools": (b'{"model": "deepseek-chat", "messages": [{"role": "user",'
                                    b' "content": "hi"}], "tools": [{"type": "function", '
                                    b'"function": {"name": "f", "description": "\\udc00"}}]}',
                                    "tools[0].function.description"),
    "NaN": ({"model": "deepseek-chat", "messages": [MSG], "temperature": float("nan")}, None),
    "Infinity": ({"model": "deepseek-chat", "messages": [MSG], "top_p": float("-inf")}, None),
    "number overflowing to Infinity": (b'{"model": "deepseek-chat", "messages": [{"role": '
                                       b'"user", "content": "hi"}], "temperature": 1e400}',
                                       None),
    "model over 256 characters": ({"model": "deepseek/" + "x" * 250, "messages": [MSG]},
                                  "model"),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
async def test_bad_input(gateway, upstream_state, case):
    body, param = BAD_BODIES[case]
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    resp = await request(gateway + "/v1/chat/completions", "POST", raw)
    err = error_of(resp, 400)
    assert err["type"] == "invalid_request_error"
    assert err["param"] == param
    e = await sdk_error(gateway, content=raw, options={
        "headers": {"Content-Type": "application/json"}})
    assert type(e) is openai.BadRequestError and e.status_code == 400
    assert upstream_state.requests == []  # refused before spending anything


async def test_bad_input_through_sdk_create(gateway, upstream_state):
    c = sdk(gateway)
    for kwargs in ({"messages": []}, {"messages": "hi"}, {"messages": [{"content": "x"}]},
                   {"messages": [MSG], "stream": "yes"}):
        with pytest.raises(openai.BadRequestError):
            await c.chat.completions.create(model="deepseek-chat", **kwargs)
    assert upstream_state.requests == []


async def test_invalid_json_message_says_so(gateway):
    resp = await request(gateway + "/v1/chat/completions", "POST", b"{not json")
    err = error_of(resp, 400)
    assert "not valid JSON" in err["message"] and err["code"] == "invalid_json"


# -- body size ------------------------------------------------------------------------------

LIMIT = {"server": {"max_body_size": 4096}}


async def test_body_over_limit_sdk(make_gateway, upstream_state):
    base, _ = make_gateway(LIMIT)
    with pytest.raises(openai.APIStatusError) as info:
        await sdk(base).chat.completions.create(
            model="deepseek-chat", messages=[{"role": "user", "content": "x" * 20000}])
    assert info.value.status_code == 413
    assert "max_body_size" in info.value.message
    # Just under the limit still goes through: the limit is on bytes, not off by a margin.
    r = await sdk(base).chat.completions.create(
        model="deepseek-chat", messages=[{"role": "user", "content": "x" * 3900}])
    assert r.choices[0].message.content
    assert len(upstream_state.requests) == 1


async def test_body_over_limit_raw_and_chunked(make_gateway, upstream_state):
    base, _ = make_gateway(LIMIT)
    big = json.dumps(chat_body("x" * 20000))
    err = error_of(await request(base + "/v1/chat/completions", "POST", big), 413)
    assert err["code"] == "request_too_large"

    # Without Content-Length (chunked upload) the limit is enforced while reading.
    async def produce(write):
        for i in range(0, len(big), 1000):
            await write(big[i:i + 1000].encode())
    req = HTTPRequest(base + "/v1/chat/completions", method="POST", body_producer=produce,
                      headers={"Authorization": f"Bearer {GOOD}",
                               "Content-Type": "application/json"})
    resp = await AsyncHTTPClient().fetch(req, raise_error=False)
    error_of(resp, 413)
    assert upstream_state.requests == []


async def test_declared_content_length_refused_before_the_body(make_gateway):
    """A declared size over the limit is refused from the headers alone: the gateway
    answers before the client has sent (or the gateway buffered) a byte of the body."""
    base, _ = make_gateway(LIMIT)
    port = int(base.rsplit(":", 1)[1])
    stream = await TCPClient().connect("127.0.0.1", port)
    try:
        await stream.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 50000000\r\n\r\n")
        head = await stream.read_until(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 413 ")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        data = json.loads(await stream.read_bytes(length))
        assert data["error"]["code"] == "request_too_large"
    finally:
        stream.close()


# -- models and routes ----------------------------------------------------------------------

async def test_unknown_model(gateway, upstream_state):
    with pytest.raises(openai.NotFoundError) as info:
        await sdk(gateway).chat.completions.create(model="gpt-4o", messages=[MSG])
    assert info.value.status_code == 404
    resp = await request(gateway + "/v1/chat/completions", "POST", chat_body(model="gpt-4o"))
    err = error_of(resp, 404)
    assert err["param"] == "model" and err["code"] == "model_not_found"
    for name in ("deepseek-flash", "deepseek-v4-pro", "deepseek-flash-fold"):
        assert name in err["message"]
    # (A `deepseek-` typo is DeepSeek's to judge: its name pattern sends it there.)
    err = error_of(await request(gateway + "/v1/chat/completions", "POST",
                                 chat_body(model="deepsek-flash")), 404)
    assert "Did you mean: deepseek-flash" in err["message"]
    assert upstream_state.requests == []


@pytest.mark.parametrize("method,path", [("GET", "/v1/nothing"), ("POST", "/v1/moderations"),
                                         ("GET", "/"), ("POST", "/v2/chat/completions")])
async def test_unknown_route(gateway, method, path):
    resp = await request(gateway + path, method, {} if method == "POST" else None)
    err = error_of(resp, 404)
    assert err["code"] == "unknown_route" and path in err["message"]


async def test_unknown_route_sdk(gateway):
    with pytest.raises(openai.NotFoundError):
        await sdk(gateway).moderations.create(model="deepseek-chat", input="hi")


async def test_wrong_method(gateway):
    resp = await request(gateway + "/v1/chat/completions", "GET")
    err = error_of(resp, 405)
    assert err["type"] == "invalid_request_error"


# -- credentials ----------------------------------------------------------------------------

async def test_missing_key_pass_through(gateway, upstream_state):
    resp = await request(gateway + "/v1/chat/completions", "POST", chat_body(), key=None)
    err = error_of(resp, 401)
    assert "Authorization: Bearer" in err["message"] and "api_keys" in err["message"]
    assert err["type"] == "authentication_error"
    with pytest.raises(openai.AuthenticationError) as info:
        await sdk(gateway).chat.completions.create(
            model="deepseek-chat", messages=[MSG], extra_headers={"Authorization": openai.omit})
    assert "Authorization: Bearer" in info.value.message
    assert upstream_state.requests == []


@pytest.mark.parametrize("header", [
    "Basic " + GOOD,            # not a bearer token
    "Bearer",                   # nothing after the scheme
    "Bearer   ",
    "Bearer , ,,",              # a list of nothing
])
async def test_no_usable_key(gateway, upstream_state, header):
    resp = await request(gateway + "/v1/chat/completions", "POST", chat_body(), key=None,
                         headers={"Authorization": header})
    err = error_of(resp, 401)
    assert err["code"] == "missing_api_key"
    assert upstream_state.requests == []


@pytest.mark.parametrize("header", [
    f"Bearer {GOOD} {GOOD2}",                     # space instead of comma
    f"Bearer {GOOD},sk-\u00e9\u00e9\u00e9",       # non-ASCII (sent as UTF-8 bytes)
    f"Bearer {GOOD},sk-a\tb",                     # a tab inside a key
])
async def test_malformed_key(gateway, upstream_state, header):
    header = header.encode().decode("latin-1")
    resp = await request(gateway + "/v1/chat/completions", "POST", chat_body(), key=None,
                         headers={"Authorization": header})
    err = error_of(resp, 401)
    assert err["code"] == "invalid_api_key" and "Malformed" in err["message"]
    assert upstream_state.requests == []


# -- vendor errors --------------------------------------------------------------------------

VENDOR = {  # status -> (SDK class, words the message must contain)
    400: (openai.BadRequestError, "rejected the request"),
    401: (openai.AuthenticationError, "rejected the API key"),
    402: (openai.APIStatusError, "insufficient balance"),
    422: (openai.UnprocessableEntityError, "rejected the request parameters"),
    429: (openai.RateLimitError, "rate limit"),
    500: (openai.InternalServerError, "server error"),
    503: (openai.InternalServerError, "server error"),
}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("status", list(VENDOR))
async def test_vendor_status(gateway, status, stream):
    cls, words = VENDOR[status]
    with pytest.raises(openai.APIStatusError) as info:
        await sdk(gateway).chat.completions.create(
            model="deepseek-chat", messages=[{"role": "user", "content": f"!status {status}"}],
            stream=stream)
    e = info.value
    assert type(e) is cls and e.status_code == status
    assert "deepseek" in e.message and words in e.message
    resp = await request(gateway + "/v1/chat/completions", "POST",
                         chat_body(f"!status {status}", stream=stream))
    err = error_of(resp, status)
    assert err["message"].startswith("deepseek: ")
    if status == 429:
        # The first 429 cooled the key down for the vendor's Retry-After, so the gateway
        # answers this one itself, without spending another call on a cooling key.
        assert err["code"] == "keys_cooling_down" and "retry in 3s" in err["message"]
    else:
        assert f"HTTP {status}" in err["message"]
    if status == 429:
        # The vendor said 3 s; the key is still cooling from the first call, so the wait
        # left is at most that (less when the machine took a second between the calls).
        assert resp.headers["Retry-After"] in ("1", "2", "3")
        assert e.response.headers["retry-after"] == "3"
    else:
        assert "Retry-After" not in resp.headers


@pytest.mark.parametrize("key,status,cls", [
    (DEAD, 401, openai.AuthenticationError),
    (POOR, 402, openai.APIStatusError),
    (BUSY, 429, openai.RateLimitError),
    ("sk-unknown-key-0000000000009999", 401, openai.AuthenticationError),
])
async def test_vendor_rejects_key(gateway, key, status, cls):
    with pytest.raises(openai.APIStatusError) as info:
        await sdk(gateway, key).chat.completions.create(model="deepseek-chat", messages=[MSG])
    assert type(info.value) is cls and info.value.status_code == status
    assert "deepseek" in info.value.message
    resp = await request(gateway + "/v1/chat/completions", "POST", chat_body(), key=key)
    err = error_of(resp, status)
    assert key not in resp.body.decode()
    if status == 402:
        assert "insufficient balance" in err["message"]
    if status == 429:
        # The vendor said 3 s; the key is still cooling from the first call, so the wait
        # left is at most that (less when the machine took a second between the calls).
        assert resp.headers["Retry-After"] in ("1", "2", "3")


@pytest.mark.parametrize("stream", [False, True])
async def test_vendor_unreachable(make_gateway, stream):
    base, _ = make_gateway({"providers": {"deepseek": {
        "base_url": f"http://127.0.0.1:{free_port()}"}}})
    with pytest.raises(openai.InternalServerError) as info:
        await sdk(base).chat.completions.create(model="deepseek-chat", messages=[MSG],
                                                stream=stream)
    assert info.value.status_code == 502
    err = error_of(await request(base + "/v1/chat/completions", "POST",
                                 chat_body(stream=stream)), 502)
    assert err["message"].startswith("deepseek: ") and "cannot connect" in err["message"]
    assert "Connection refused" in err["message"]
    assert err["code"] == "upstream_unreachable"


FAST = {"providers": {"deepseek": {"timeouts": {"first_byte": 0.3}}}}


@pytest.mark.parametrize("stream", [False, True])
async def test_vendor_first_byte_timeout(make_gateway, stream):
    base, _ = make_gateway(FAST)
    start = time.monotonic()
    with pytest.raises(openai.APIStatusError) as info:
        await sdk(base).chat.completions.create(
            model="deepseek-chat", messages=[{"role": "user", "content": "!slow 1"}],
            stream=stream)
    # The gateway answered 504 itself; the SDK did not time out.
    assert not isinstance(info.value, openai.APITimeoutError)
    assert type(info.value) is openai.InternalServerError
    assert info.value.status_code == 504
    assert time.monotonic() - start < 0.9
    err = error_of(await request(base + "/v1/chat/completions", "POST",
                                 chat_body("!slow 1", stream=stream)), 504)
    assert err["type"] == "timeout_error" and err["code"] == "upstream_timeout"
    assert err["message"].startswith("deepseek: ")


async def test_vendor_body_timeout_non_stream(make_gateway):
    """Headers arrive, then the body stalls past the idle timeout: 504, not a hang."""
    base, _ = make_gateway({"providers": {"deepseek": {"timeouts": {"idle": 0.1}}}})
    err = error_of(await request(base + "/v1/chat/completions", "POST",
                                 chat_body("!queued 3")), 504)
    assert err["code"] == "upstream_timeout"


async def test_reasoning_models_get_their_own_first_byte_budget(make_gateway):
    base, _ = make_gateway({"providers": {"deepseek": {"timeouts": {
        "first_byte": 0.2, "first_byte_reasoning": 2}}}})
    r = await sdk(base).chat.completions.create(
        model="deepseek-reasoner", messages=[{"role": "user", "content": "!slow 0.5"}])
    assert r.choices[0].message.content
    with pytest.raises(openai.InternalServerError) as info:
        await sdk(base).chat.completions.create(
            model="deepseek-chat", messages=[{"role": "user", "content": "!slow 0.5"}])
    assert info.value.status_code == 504


# -- no key ever leaks ----------------------------------------------------------------------

def test_vendor_error_quoting_the_key_is_redacted():
    """Some vendors quote the key back in their error text; the gateway never relays it."""
    from providers.deepseek import DeepSeek
    from freeapi.config import ProviderConfig
    p = DeepSeek(ProviderConfig(name="deepseek", type="deepseek"))
    body = json.dumps({"error": {"message": f"Incorrect API key provided: {DEAD}. Also "
                                            f"tried {POOR}", "type": "auth", "code": None}})
    err = p.error_from(401, {}, body.encode(), keys=[DEAD])
    assert err.status == 401 and "sk-...0401" in err.message
    assert_no_keys(err.message)  # POOR was not among the request's keys, and still masked
    assert_no_keys(json.dumps(err.to_dict()))
