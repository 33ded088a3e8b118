"""A llama.cpp-like local server for tests: no key, `GET /v1/models` lists `models` (a list
the test may change, as pulling a model would), and it can be stopped and started again on
the same port. It answers HTTP 500 to a request it cannot handle (`!bad`), as llama.cpp's
server does."""

from __future__ import annotations

import json

from tornado import web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets


class LlamaCpp:
    def __init__(self, models=("qwen3",)):
        self.models = list(models)
        self.port = None
        self.server = None
        self.calls = 0  # chat requests
        self.listings = 0  # GET /v1/models

    def start(self) -> str:
        """Listen (on the same port as before, if any); returns the base URL."""
        fake = self

        class Chat(web.RequestHandler):
            def post(self):
                fake.calls += 1
                body = json.loads(self.request.body)
                self.set_header("Content-Type", "application/json")
                if body["model"] not in fake.models:
                    self.set_status(404)
                    self.finish({"error": {"code": 404, "type": "not_found_error",
                                           "message": "model not found"}})
                    return
                if body["messages"][-1]["content"] == "!bad":
                    self.set_status(500)
                    self.finish({"error": {"code": 500, "type": "server_error",
                                           "message": "failed to parse the request"}})
                    return
                self.finish({"id": "chatcmpl-1", "object": "chat.completion",
                             "created": 1, "model": body["model"],
                             "choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": "ok"}}],
                             "usage": {"prompt_tokens": 1, "completion_tokens": 1,
                                       "total_tokens": 2}})

        class Models(web.RequestHandler):
            def get(self):
                fake.listings += 1
                self.finish({"object": "list", "data": [{"id": m, "object": "model"}
                                                        for m in fake.models]})

        socks = bind_sockets(self.port or 0, "127.0.0.1")
        self.port = socks[0].getsockname()[1]
        self.server = HTTPServer(web.Application([(r"/v1/chat/completions", Chat),
                                                  (r"/v1/models", Models)]))
        self.server.add_sockets(socks)
        return self.url

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def reserve(self) -> str:
        """A URL for a server that is not running yet (start() later listens there)."""
        self.start()
        self.stop()
        return self.url

    def stop(self):
        if self.server is not None:
            self.server.stop()
            self.server = None
