"""A fake Moonshot (Kimi) API: OpenAI-shaped, but a stream's usage sits in
`choices[0].usage` of the final chunk; GET /users/me/balance for key checks.

Today's rules (https://platform.kimi.com/docs/models, .../docs/api/errors.md): retired and
unknown model names are a 404; an account out of balance is HTTP 429
`exceeded_current_quota_error`; the organization's concurrency limit is HTTP 429
`rate_limit_reached_error` with "please try again after N seconds"; kimi-k2.6 / kimi-k2.5
think unless `thinking: {"type": "disabled"}`, kimi-k2-thinking* always think."""

from __future__ import annotations

import json

from tornado import web

from tests.fakes.common import ANSWER, REASONING, Base, Models, State

GOOD = "sk-kimi-good-00000000000001"
POOR = "sk-kimi-poor-00000000000402"
DEAD = "sk-kimi-dead-00000000000401"
BUSY = "sk-kimi-busy-00000000000429"
POOR403 = "sk-kimi-poor-00000000000403"
KEYS = {GOOD: "ok", POOR: "poor", DEAD: 401, BUSY: "busy", POOR403: "poor-403"}
USAGE = {"prompt_tokens": 19, "completion_tokens": 13, "total_tokens": 32}
MODELS = ("moonshot-v1-8k", "kimi-k2-thinking", "kimi-k3-preview")
# What the fake serves: the listed models and today's catalog; nothing retired.
SERVED = MODELS + ("kimi-k2.6", "kimi-k2.5", "kimi-k2-thinking-turbo", "kimi-k2-0905-preview",
                   "kimi-k2-turbo-preview", "moonshot-v1-32k", "moonshot-v1-128k")
THINKING_DEFAULT = ("kimi-k2.6", "kimi-k2.5")  # thinking unless disabled
RETIRED = ("kimi-latest", "kimi-thinking-preview", "moonshot-v1-auto")


def thinks(body: dict) -> bool:
    model = body["model"]
    if "thinking" in model and model in SERVED:
        return True
    return model in THINKING_DEFAULT and (body.get("thinking") or {}).get("type") != "disabled"


class Chat(Base):
    async def post(self):
        body = self.body()
        account = self.account()
        if account in (None, 401):
            return self.json({"error": {"message": "Invalid Authentication",
                                        "type": "invalid_authentication_error"}}, 401)
        if account == "poor":
            return self.json({"error": {"message": "Your account is suspended, please check "
                                        "your plan and billing details",
                                        "type": "exceeded_current_quota_error"}}, 429)
        if account == "poor-403":  # the help center's other wording (message text guessed)
            return self.json({"error": {"message": "Your account balance is insufficient, "
                                        "please recharge",
                                        "type": "permission_denied_error"}}, 403)
        if account == "busy":
            return self.json({"error": {"message": "Your account org-fake<ak-fake> request "
                                        "reached organization max concurrency: 1, please "
                                        "try again after 7 seconds",
                                        "type": "rate_limit_reached_error"}}, 429)
        model = body["model"]
        if model not in SERVED:
            return self.json({"error": {"message": f"Not found the model {model} or "
                                        "Permission denied",
                                        "type": "resource_not_found_error"}}, 404)
        thinking = thinks(body)
        base = {"id": "cmpl-kimi", "object": "chat.completion.chunk", "created": 1698999575,
                "model": model}
        if not body.get("stream"):
            message = {"role": "assistant", "content": "".join(ANSWER)}
            if thinking:
                message["reasoning_content"] = "".join(REASONING)
            return self.json(dict(base, object="chat.completion", usage=USAGE, choices=[
                {"index": 0, "message": message, "finish_reason": "stop"}]))
        self.start_stream()
        await self.event(dict(base, choices=[{"index": 0, "delta": {"role": "assistant",
                                                                      "content": ""},
                                               "finish_reason": None}]))
        for piece in (REASONING if thinking else ()):
            await self.event(dict(base, choices=[{"index": 0, "delta": {
                "reasoning_content": piece}, "finish_reason": None}]))
        for piece in ANSWER:
            await self.event(dict(base, choices=[{"index": 0, "delta": {"content": piece},
                                                   "finish_reason": None}]))
        # The quirk: usage inside the choice, none at the top level.
        await self.event(dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": "stop",
                                               "usage": USAGE}]))
        await self.event("[DONE]")


class Balance(Base):
    def get(self):
        account = self.account()
        if account in (None, 401):
            return self.json({"error": {"message": "Invalid Authentication",
                                        "type": "invalid_authentication_error"}}, 401)
        available = 0.0 if account == "poor" else 49.58894
        self.json({"code": 0, "data": {"available_balance": available,
                                       "voucher_balance": available, "cash_balance": 0.0},
                   "scode": "0x0", "status": True})


class ToolLoopChat(Chat):
    """Tool calls ("!tools" in the last message), and the thinking models' rule
    (https://platform.kimi.com/docs/guide/use-kimi-k2-thinking-model: keep
    `reasoning_content` in a tool loop): a tool-call turn back without it is a 400."""

    async def post(self):
        body = json.loads(self.request.body or b"{}")
        model = body.get("model") or ""
        thinks = "thinking" in model or (model in ("kimi-k2.6", "kimi-k2.5") and (
            body.get("thinking") or {}).get("type") != "disabled")
        missing = next((i for i, m in enumerate(body.get("messages") or ())
                        if m.get("role") == "assistant" and m.get("tool_calls")
                        and not m.get("reasoning_content")), None) if thinks else None
        if self.account() != "ok" or missing is None and self.command(body)[0] != "!tools":
            return await super().post()
        self.body()  # record it
        if missing is not None:
            return self.json({"error": {
                "message": "thinking is enabled but reasoning_content is missing in "
                           f"assistant tool call message at index {missing}",
                "type": "invalid_request_error"}}, 400)
        self.state.served = getattr(self.state, "served", 0) + 1
        call = {"index": 0, "id": f"get_weather:{self.state.served}", "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
        reasoning = "".join(REASONING) if thinks else None
        base = {"id": "cmpl-kimi", "created": 1698999575, "model": model}
        if not body.get("stream"):
            message = {"role": "assistant", "content": "", "tool_calls": [call]}
            if reasoning:
                message["reasoning_content"] = reasoning
            return self.json(dict(base, object="chat.completion", usage=USAGE, choices=[
                {"index": 0, "message": message, "finish_reason": "tool_calls"}]))
        self.start_stream()
        base["object"] = "chat.completion.chunk"
        deltas = ([{"role": "assistant", "reasoning_content": reasoning}] if reasoning
                  else []) + [{"tool_calls": [call]}]
        for delta in deltas:
            await self.event(dict(base, choices=[{"index": 0, "delta": delta,
                                                  "finish_reason": None}]))
        await self.event(dict(base, choices=[{"index": 0, "delta": {},
                                              "finish_reason": "tool_calls", "usage": USAGE}]))
        await self.event("[DONE]")


def make_app(state: State) -> web.Application:
    return web.Application([
        (r"/v1/chat/completions", WebSearchChat, {"state": state}),
        (r"/v1/users/me/balance", Balance, {"state": state}),
        (r"/v1/models", Models, {"state": state, "ids": MODELS}),
    ] + [(path, handler, {"state": state}) for path, handler in FILE_ROUTES])


# -- beyond chat: the builtin $web_search tool ----------------------------------------------
# https://platform.moonshot.ai/docs/guide/use-web-search: with the builtin tool declared,
# the model first answers finish_reason "tool_calls" with a `$web_search` call; the caller
# appends that message and a `tool` message whose content is the call's arguments as
# they were, and asks again. Anything else in that tool message is refused here. The
# builtin tool needs thinking disabled (https://platform.kimi.com/docs/guide/use-web-search.md):
# `$web_search` with thinking on (kimi-k2.6 / kimi-k2.5 by default, kimi-k2-thinking*
# always) is a 400 here (the message text is a guess).

import json as _json  # noqa: E402

SEARCH_ARGS = {"search_result": {"search_id": "ws-7f1c"}, "usage": {"total_tokens": 1536}}
SEARCH_USAGE = {"prompt_tokens": 30, "completion_tokens": 8, "total_tokens": 38}
SEARCHED = "Found it on the web."


def _declares_search(body) -> bool:
    return any(isinstance(t, dict) and t.get("type") == "builtin_function"
               and (t.get("function") or {}).get("name") == "$web_search"
               for t in body.get("tools") or ())


class WebSearchChat(ToolLoopChat):
    async def post(self):
        body = _json.loads(self.request.body or b"{}")
        if not isinstance(body.get("tools", []), list) and self.account() == "ok":
            self.body()  # record it; a field of the wrong type is a 400, as any bad request
            return self.json({"error": {"message": "Invalid request: tools must be an array",
                                        "type": "invalid_request_error"}}, 400)
        if not _declares_search(body) or self.account() in (None, 401, "poor"):
            return await super().post()
        self.body()  # record it
        if body.get("model") in SERVED and thinks(body):
            return self.json({"error": {"message": "the builtin $web_search tool is not "
                                        "supported when thinking is enabled",
                                        "type": "invalid_request_error"}}, 400)
        last = (body.get("messages") or [{}])[-1]
        base = {"id": "cmpl-kimi-ws", "created": 1698999575, "model": body.get("model"),
                "object": "chat.completion"}
        if last.get("role") != "tool":
            call = {"index": 0, "id": "web_search:0", "type": "builtin_function",
                    "function": {"name": "$web_search", "arguments": _json.dumps(SEARCH_ARGS)}}
            return self.json(dict(base, usage=SEARCH_USAGE, choices=[{
                "index": 0, "finish_reason": "tool_calls",
                "message": {"role": "assistant", "content": "", "tool_calls": [call]}}]))
        if last.get("name") != "$web_search" or last.get("tool_call_id") != "web_search:0" \
                or _json.loads(last.get("content") or "null") != SEARCH_ARGS:
            return self.json({"error": {"message": "tool result does not match the call",
                                        "type": "invalid_request_error"}}, 400)
        self.json(dict(base, usage=SEARCH_USAGE, choices=[{
            "index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": SEARCHED}}]))


# -- beyond chat: the files API with purpose "file-extract" ---------------------------------
# https://platform.moonshot.ai/docs/api/files.en-US: a multipart upload (`file`, `purpose`),
# the extraction as text at GET /v1/files/{id}/content, DELETE /v1/files/{id}.

import itertools as _itertools  # noqa: E402

_file_ids = _itertools.count(1)


def _files(state) -> dict:
    return state.__dict__.setdefault("files", {})


class Files(Base):
    def prepare(self):
        self.state.requests.append({"path": self.request.path, "method": self.request.method,
                                    "headers": dict(self.request.headers), "body": None})

    def post(self):
        if self.account() in (None, 401):
            return self.json({"error": {"message": "Invalid Authentication",
                                        "type": "invalid_authentication_error"}}, 401)
        purpose = self.get_body_argument("purpose", None)
        uploads = self.request.files.get("file") or []
        if purpose != "file-extract" or len(uploads) != 1:
            return self.json({"error": {"message": "purpose must be file-extract and one "
                                        "file given", "type": "invalid_request_error"}}, 400)
        up = uploads[0]
        file_id = f"cq{next(_file_ids):06d}"
        _files(self.state)[file_id] = {"filename": up.filename, "body": up.body,
                                       "type": up.content_type, "key": self.key()}
        self.json({"id": file_id, "object": "file", "bytes": len(up.body),
                   "created_at": 1698999575, "filename": up.filename,
                   "purpose": "file-extract", "status": "ok"})


class FileItem(Base):
    def prepare(self):
        Files.prepare(self)

    def _mine(self, file_id):
        f = _files(self.state).get(file_id)
        return f if f is not None and f["key"] == self.key() else None

    def get(self, file_id):
        f = self._mine(file_id)
        if f is None:
            return self.json({"error": {"message": "file not found",
                                        "type": "resource_not_found_error"}}, 404)
        text = f["body"].decode("utf-8", "replace")
        self.set_header("Content-Type", "application/json")
        self.finish(_json.dumps({"content": f"EXTRACTED: {text}", "file_type": f["type"],
                                 "filename": f["filename"], "title": "", "type": "file"}))

    def delete(self, file_id):
        if self._mine(file_id) is None:
            return self.json({"error": {"message": "file not found",
                                        "type": "resource_not_found_error"}}, 404)
        del _files(self.state)[file_id]
        self.json({"deleted": True, "id": file_id, "object": "file"})


FILE_ROUTES = [(r"/v1/files", Files), (r"/v1/files/([^/]+)/content", FileItem),
               (r"/v1/files/([^/]+)", FileItem)]
