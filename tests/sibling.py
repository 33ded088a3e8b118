"""Fixtures and helpers for the sibling-provider tests (import the fixture into a module:
`from tests.sibling import start_vendor  # noqa: F401`)."""

from __future__ import annotations

import json

import openai
import pytest

from tests.fakes.common import State, serve
from tests.helpers import request

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def start_vendor(io_loop):
    """Start a fake vendor module's app; returns (base_url, state)."""
    servers = []

    def start(fake):
        state = State(getattr(fake, "KEYS", {}))
        url, server = serve(fake.make_app(state))
        servers.append(server)
        return url, state

    yield start
    for server in servers:
        server.stop()


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
