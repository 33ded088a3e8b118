"""What the sibling vendors' fakes share: recorded requests, bearer keys, SSE writing.

Each fake keeps its vendor's own wire format in its module; this is only plumbing. The last
user message can carry a scenario command, e.g. "!code 1113" or "!tools".
"""

from __future__ import annotations

import json

from tornado import web
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

ANSWER = ["Hel", "lo", " there", "!"]
REASONING = ["Think", "ing", "."]


class State:
    def __init__(self, keys: dict):
        self.requests: list[dict] = []
        self.keys = dict(keys)
        # (key, model) -> the vendor's refusal code for a model whose free quota (or daily
        # cap) that key has used up: each fake answers it in its vendor's own form.
        self.spent: dict = {}


class Base(web.RequestHandler):
    def initialize(self, state: State):
        self.state = state

    def key(self) -> str:
        auth = self.request.headers.get("Authorization", "")
        return auth[7:] if auth.startswith("Bearer ") else ""

    def account(self):
        """The account state of the caller's key (None: unknown key)."""
        return self.state.keys.get(self.key())

    def body(self) -> dict:
        body = json.loads(self.request.body) if self.request.body else None
        self.state.requests.append({"path": self.request.path, "body": body,
                                    "headers": dict(self.request.headers)})
        return body or {}

    def prepare(self):
        if self.request.method == "GET":
            self.body()  # record it

    def record_form(self):
        """Record a multipart request: its text fields and its files."""
        self.state.requests.append({
            "path": self.request.path, "headers": dict(self.request.headers),
            "body": {k: v[0].decode() for k, v in self.request.body_arguments.items()},
            "files": {k: [(f.filename, f.content_type, f.body) for f in v]
                      for k, v in self.request.files.items()}})

    def command(self, body: dict) -> tuple[str, str]:
        last = (body.get("messages") or [{}])[-1].get("content") or ""
        if isinstance(last, str) and last.startswith("!"):
            cmd, _, arg = last.partition(" ")
            return cmd, arg
        return "", ""

    def json(self, obj, status: int = 200):
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(obj, ensure_ascii=False))

    def start_stream(self):
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")

    async def event(self, obj, prefix: str = "data: "):
        self.write(prefix + (obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False))
                   + "\n\n")
        await self.flush()


class Models(Base):
    """GET /models in OpenAI's list shape (what the OpenAI-compatible vendors document)."""

    def initialize(self, state: State, ids=(), needs_key: bool = True):
        super().initialize(state)
        self.ids = ids
        self.needs_key = needs_key

    def get(self):
        if self.needs_key and self.account() in (None, 401):
            return self.json({"error": {"message": "Invalid API key", "type": "invalid_api_key",
                                        "code": "invalid_api_key"}}, 401)
        self.json({"object": "list", "data": [
            {"id": m, "object": "model", "created": 1700000000, "owned_by": "vendor"}
            for m in self.ids]})


def serve(app: web.Application):
    """Start `app` on 127.0.0.1; returns (base_url, server)."""
    sock, port = bind_unused_port()
    server = HTTPServer(app)
    server.add_sockets([sock])
    return f"http://127.0.0.1:{port}", server
