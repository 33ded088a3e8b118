"""A fake DashScope OpenAI-compatible API: usage only with `stream_options.include_usage`
(as a final chunk with `choices: []`), QwQ/QVQ-style models refuse `stream: false` and so
does any request with `enable_thinking: true` ("parameter.enable_thinking must be set to
false for non-streaming calls", https://help.aliyun.com/en/model-studio/error-code); an
account in arrears is HTTP 400 `Arrearage`, a spent free tier in "free tier only" mode HTTP
403 `AllocationQuota.FreeTierOnly`; unknown (retired) models are refused; DashScope's own
fields (`enable_thinking`...) accepted."""

from __future__ import annotations

import asyncio

from tornado import web

from tests.fakes.common import ANSWER, REASONING, Base, Models, State

GOOD = "sk-qwen-good-0000000000000001"
GOOD2 = "sk-qwen-good-0000000000000002"
DEAD = "sk-qwen-dead-0000000000000401"
POOR = "sk-qwen-poor-0000000000000402"
FREE = "sk-qwen-free-tier-only-00000403"
KEYS = {GOOD: "ok", GOOD2: "ok", DEAD: 401, POOR: "poor", FREE: "free-tier-spent"}
USAGE = {"prompt_tokens": 10, "completion_tokens": 7, "total_tokens": 17,
         "completion_tokens_details": {"reasoning_tokens": 3}}
STREAM_ONLY = ("qwq-plus", "qvq-max")
MODELS = ("qwen3.7-plus", "qwen3.6-flash", "qwen-plus", "qwq-plus", "qvq-max", "qwen3-vl-plus",
          "qwen-long")
# GET /models also lists a name another provider claims (the routing tests use it).
LISTED = MODELS + ("deepseek-r1",)
RETIRED = ("qwen-turbo", "qwen3-max", "qwen3-32b", "qwen-vl-max")


def _error(code: str, message: str, etype: str):
    return {"error": {"code": code, "param": None, "message": message, "type": etype}}


class Chat(Base):
    async def post(self):
        body = self.body()
        account = self.account()
        if account in (None, 401):
            return self.json(_error("invalid_api_key", "Incorrect API key provided.",
                                    "invalid_request_error"), 401)
        if account == "poor":
            return self.json(_error("Arrearage", "Access denied, please make sure your "
                                    "account is in good standing.", "Arrearage"), 400)
        if account == "free-tier-spent" or (self.key(), body.get("model")) in self.state.spent:
            return self.json(_error("AllocationQuota.FreeTierOnly", "The free tier of the "
                                    "model has been exhausted. If you wish to continue "
                                    "access the model on a paid basis, please disable the "
                                    "\"use free tier only\" mode in the management console.",
                                    "AllocationQuota.FreeTierOnly"), 403)
        model = body["model"]
        if model not in MODELS:
            return self.json(_error("model_not_found", f"The model `{model}` does not exist "
                                    "or you do not have access to it.",
                                    "invalid_request_error"), 404)
        if model in STREAM_ONLY and not body.get("stream"):
            return self.json(_error("invalid_parameter_error", "This model only support "
                                    "stream mode, please enable the stream parameter to "
                                    "access the model.", "invalid_request_error"), 400)
        if body.get("enable_thinking") is True and not body.get("stream"):
            return self.json(_error("invalid_parameter_error", "parameter.enable_thinking "
                                    "must be set to false for non-streaming calls",
                                    "invalid_request_error"), 400)
        read = None
        if model == "qwen-long":
            read = _referenced(self.state, self.key(), body["messages"])
            if isinstance(read, dict):
                return self.json(read, 400)
        cmd, _ = self.command(body)
        thinking = model.startswith(("qwq", "qvq")) or body.get("enable_thinking") is True
        base = {"id": "chatcmpl-qwen", "created": 1741185359, "model": model,
                "system_fingerprint": None, "object": "chat.completion.chunk"}
        if not body.get("stream"):
            message = {"role": "assistant", "content": "".join(ANSWER) + (
                f" [read: {' | '.join(read)}]" if read else "")}
            return self.json(dict(base, object="chat.completion", usage=USAGE, choices=[
                {"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}]))
        if cmd == "!think":  # the model takes a while before its first event
            self.start_stream()
            await self.flush()
            await asyncio.sleep(float(_ or 0.3))
        self.start_stream()

        async def send(delta, finish=None):
            await self.event(dict(base, usage=None, choices=[
                {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]))

        await send({"role": "assistant", "content": None,
                    "reasoning_content": "" if thinking else None})
        for piece in (REASONING if thinking else ()):
            await send({"content": None, "reasoning_content": piece})
        if cmd == "!inspect":
            # Output moderation stops a stream under way: an error event in the
            # compatible mode's OpenAI shape, then the end (status 400 DataInspectionFailed,
            # https://www.alibabacloud.com/help/en/model-studio/developer-reference/error-code;
            # the event's exact fields are not documented).
            await send({"content": ANSWER[0], "reasoning_content": None})
            await self.event(_error("data_inspection_failed", "Output data may contain "
                                    "inappropriate content.", "data_inspection_failed"))
            return
        if cmd == "!tools":
            await send({"content": None, "tool_calls": [
                {"index": 0, "id": "call_abc", "type": "function",
                 "function": {"name": "get_weather", "arguments": ""}}]})
            for part in ('{"city": ', '"Hangzhou"}'):
                await send({"content": None, "tool_calls": [
                    {"index": 0, "id": "", "type": "function",
                     "function": {"arguments": part}}]})
            await send({"content": None}, "tool_calls")
        else:
            for piece in ANSWER:
                await send({"content": piece, "reasoning_content": None})
            if read:
                await send({"content": f" [read: {' | '.join(read)}]"})
            await send({"content": ""}, "stop")
        if (body.get("stream_options") or {}).get("include_usage"):
            await self.event(dict(base, choices=[], usage=USAGE))
        await self.event("[DONE]")


def make_app(state: State) -> web.Application:
    return web.Application([
        (r"/compatible-mode/v1/chat/completions", Chat, {"state": state}),
        (r"/compatible-mode/v1/models", Models, {"state": state, "ids": LISTED}),
    ] + [(path, handler, {"state": state}) for path, handler in EXTRA_ROUTES])


# -- beyond chat: embeddings (OpenAI-compatible mode) and Qwen-Image's asynchronous tasks --
# https://www.alibabacloud.com/help/en/model-studio/text-embedding-synchronous-api,
# https://docs.qwencloud.com/api-reference/image-generation/qwen-text-to-image-async and
# .../qwen-text-to-image-task-query. A prompt starting "!fail" makes a task that fails,
# "!slow" one that never ends; others succeed after POLLS_TO_FINISH polls.

import itertools  # noqa: E402
import time as _time  # noqa: E402

EMBED_USAGE = {"prompt_tokens": 5, "total_tokens": 5}
PNG = b"\x89PNG\r\n\x1a\n" + b"fake-qwen-image" * 8
POLLS_TO_FINISH = 2
_task_ids = itertools.count(1)


def native_error(code: str, message: str) -> dict:
    return {"request_id": "31f808fd-8a5b-4e2f", "code": code, "message": message}


class Embeddings(Base):
    async def post(self):
        body = self.body()
        if self.account() in (None, 401):
            return self.json(_error("invalid_api_key", "Incorrect API key provided.",
                                    "invalid_request_error"), 401)
        inp, dims = body.get("input"), body.get("dimensions", 1024)
        texts = [inp] if isinstance(inp, str) else inp
        if body.get("model") != "text-embedding-v4" or not isinstance(texts, list) \
                or not all(isinstance(t, str) and t for t in texts) or len(texts) > 10 \
                or dims not in (2048, 1536, 1024, 768, 512, 256, 128, 64):
            return self.json(_error("InvalidParameter", "Value error, batch size is invalid, "
                                    "it should not be larger than 10.",
                                    "invalid_request_error"), 400)
        self.json({"object": "list", "model": "text-embedding-v4", "id": "a3b5c8e1",
                   "usage": EMBED_USAGE, "data": [
                       {"object": "embedding", "index": i,
                        "embedding": [round((len(t) + j) / 64.0, 6) for j in range(dims)]}
                       for i, t in enumerate(texts)]})


class ImageSynthesis(Base):
    """POST .../services/aigc/text2image/image-synthesis: needs `X-DashScope-Async: enable`,
    answers the new task's id; the task itself lives in state.tasks."""

    async def post(self):
        body = self.body()
        if self.account() in (None, 401):
            return self.json(native_error("InvalidApiKey", "Invalid API-key provided."), 401)
        if self.request.headers.get("X-DashScope-Async") != "enable":
            return self.json(native_error("AccessDenied", "current user api does not support "
                                          "synchronous calls"), 403)
        params = body.get("parameters") or {}
        if body.get("model") not in ("qwen-image", "qwen-image-plus") or params.get(
                "size", "1328*1328") not in ("1664*928", "1472*1140", "1328*1328",
                                             "1140*1472", "928*1664"):
            return self.json(native_error("InvalidParameter", "The size is not match the "
                                          "allowed size"), 400)
        prompt = (body.get("input") or {}).get("prompt") or ""
        task_id = f"0385dc79-{next(_task_ids):04d}"
        tasks = self.state.__dict__.setdefault("tasks", {})
        tasks[task_id] = {"prompt": prompt, "polls": 0, "key": self.key()}
        self.json({"output": {"task_status": "PENDING", "task_id": task_id},
                   "request_id": "4909100c-7b5a-9f92"})


class Task(Base):
    def get(self, task_id):
        tasks = self.state.__dict__.setdefault("tasks", {})
        task = tasks.get(task_id)
        if task is None or task["key"] != self.key():
            return self.json({"request_id": "r1", "output": {
                "task_id": task_id, "task_status": "UNKNOWN"}})
        task["polls"] += 1
        out = {"task_id": task_id, "submit_time": "2025-09-09 11:38:54.741"}
        if task["prompt"].startswith("!fail"):
            out.update(task_status="FAILED", code="DataInspectionFailed",
                       message="Output data may contain inappropriate content.")
        elif task["prompt"].startswith("!slow") or task["polls"] < POLLS_TO_FINISH:
            out.update(task_status="RUNNING")
        else:
            base = f"{self.request.protocol}://{self.request.host}"
            out.update(task_status="SUCCEEDED", end_time=_time.strftime("%Y-%m-%d %H:%M:%S"),
                       results=[{"orig_prompt": task["prompt"],
                                 "actual_prompt": task["prompt"] + ", detailed",
                                 "url": f"{base}/files/qwen-image.png?Expires=1"}])
        body = {"request_id": "7434edb2", "output": out}
        if out["task_status"] == "SUCCEEDED":
            body["usage"] = {"image_count": 1}
        self.json(body)


class ImageFile(Base):
    def get(self):
        self.set_header("Content-Type", "image/png")
        self.finish(PNG)


EXTRA_ROUTES = [
    (r"/compatible-mode/v1/embeddings", Embeddings),
    (r"/api/v1/services/aigc/text2image/image-synthesis", ImageSynthesis),
    (r"/api/v1/tasks/([^/]+)", Task),
    (r"/files/qwen-image.png", ImageFile),
]


# -- image edits: Qwen-Image-Edit through the synchronous multimodal-generation API --------
# https://www.alibabacloud.com/help/en/model-studio/qwen-image-edit-api (endpoint, message
# shape, models; qwen-image-edit: one image, no size). Limits as copies of that page give
# them (3p, unverified): 1-3 images, each a URL or a data URL of at most 10 MB; n 1-6;
# size "W*H" with sides 512-2048; the answer's images in output.choices[].message.content.

import base64 as _b64  # noqa: E402
import re as _re  # noqa: E402

EDIT_MODELS = ("qwen-image-edit-max", "qwen-image-edit-plus", "qwen-image-edit")
_DATA_URL = _re.compile(r"^data:image/(png|jpeg|webp|gif|bmp|tiff);base64,([A-Za-z0-9+/=]+)$")


def _edit_refusal(body: dict) -> str | None:
    """Why DashScope would refuse this edit request (None: it would not)."""
    model, params = body.get("model"), body.get("parameters") or {}
    if model not in EDIT_MODELS:
        return f"Model not exist: {model}"
    messages = (body.get("input") or {}).get("messages")
    if not (isinstance(messages, list) and len(messages) == 1
            and messages[0].get("role") == "user"):
        return "input.messages must be one user message"
    content = messages[0].get("content") or []
    images = [c["image"] for c in content if "image" in c]
    texts = [c["text"] for c in content if "text" in c]
    if not 1 <= len(images) <= 3 or len(texts) != 1 or not texts[0]:
        return "content must hold 1-3 images and one text"
    for image in images:
        m = _DATA_URL.match(image) if image.startswith("data:") else None
        if m is None and not image.startswith(("http://", "https://")):
            return "The image is not a valid URL or Base64 data"
        if m is not None and len(_b64.b64decode(m.group(2))) > 10 << 20:
            return "The image size exceeds the limit of 10MB"
    n = params.get("n", 1)
    if not 1 <= n <= (1 if model == "qwen-image-edit" else 6):
        return "The n is out of range"
    size = params.get("size")
    if size is not None:
        sides = [int(x) for x in size.split("*")]
        if model == "qwen-image-edit" or not all(512 <= x <= 2048 for x in sides):
            return "The size is not match the allowed size"
    return None


class ImageEdit(Base):
    async def post(self):
        body = self.body()
        account = self.account()
        if account in (None, 401):
            return self.json(native_error("InvalidApiKey", "Invalid API-key provided."), 401)
        if account == "poor":
            return self.json(native_error("Arrearage", "Access denied, please make sure "
                                          "your account is in good standing."), 400)
        why = _edit_refusal(body)
        if why is not None:
            return self.json(native_error("InvalidParameter", why), 400)
        base = f"{self.request.protocol}://{self.request.host}"
        n = (body.get("parameters") or {}).get("n", 1)
        self.json({"output": {"choices": [{"finish_reason": "stop", "message": {
            "role": "assistant", "content": [
                {"image": f"{base}/files/qwen-edit-{i}.png?Expires=1"} for i in range(n)]}}]},
            "usage": {"width": 1024, "height": 1024, "image_count": n},
            "request_id": "12bc3915-4e9d-9d84"})


EXTRA_ROUTES += [
    (r"/api/v1/services/aigc/multimodal-generation/generation", ImageEdit),
    (r"/files/qwen-edit-\d+.png", ImageFile),
]


# -- beyond chat: Qwen-Long's documents, read by file id -----------------------------------
# https://help.aliyun.com/en/model-studio/openai-file-interface: a multipart upload (`file`,
# `purpose` "file-extract") answers a file object whose `status` is "processed" once
# parsed; GET /files/{id} tells the status. https://help.aliyun.com/en/model-studio/
# long-context-qwen-long: qwen-long reads files named in system messages as
# "fileid://<id>" (comma-separated). A file belongs to the account that uploaded it. A
# file whose text starts "slow-parse" is "processing" for PARSE_POLLS status requests, one
# starting "unparseable" ends "error". The error texts for a file that cannot be used are
# not documented (3p, unverified).

import re as _re  # noqa: E402

PARSE_POLLS = 2
_qwen_file_ids = itertools.count(1)
_FILEID = _re.compile(r"fileid://([^,\s]+)")


def qwen_files(state) -> dict:
    return state.__dict__.setdefault("qwen_files", {})


def _file_object(file_id: str, f: dict) -> dict:
    return {"id": file_id, "object": "file", "bytes": len(f["body"]), "created_at": 1729065448,
            "filename": f["filename"], "purpose": "file-extract", "status": f["status"],
            "status_details": None}


def _referenced(state, key: str, messages) -> list | dict:
    """The texts of the files the system messages name, or the error for a bad one."""
    read = []
    for m in messages:
        if m.get("role") != "system" or not isinstance(m.get("content"), str):
            continue
        for file_id in _FILEID.findall(m["content"]):
            f = qwen_files(state).get(file_id)
            if f is None or f["key"] != key:
                return _error("invalid_parameter_error", f"File [id:{file_id}] cannot be "
                              "found.", "invalid_request_error")
            if f["status"] != "processed":
                return _error("invalid_parameter_error", f"File [id:{file_id}] is still "
                              "being parsed.", "invalid_request_error")
            read.append(f["body"].decode("utf-8", "replace"))
    return read


class QwenFiles(Base):
    def prepare(self):
        self.state.requests.append({"path": self.request.path, "method": self.request.method,
                                    "headers": dict(self.request.headers), "body": None})

    def post(self):
        if self.account() in (None, 401):
            return self.json(_error("invalid_api_key", "Incorrect API key provided.",
                                    "invalid_request_error"), 401)
        if self.account() == "uploads-throttled":  # a test's 429 (wording unverified)
            self.set_header("Retry-After", "600")
            return self.json(_error("Throttling", "Requests rate limit exceeded.",
                                    "rate_limit_error"), 429)
        purpose = self.get_body_argument("purpose", None)
        uploads = self.request.files.get("file") or []
        if purpose not in ("file-extract", "batch") or len(uploads) != 1:
            return self.json(_error("invalid_parameter_error", "purpose and one file are "
                                    "required", "invalid_request_error"), 400)
        up = uploads[0]
        status = "processed"
        if up.body.startswith(b"slow-parse"):
            status = "processing"
        elif up.body.startswith(b"unparseable"):
            status = "error"
        file_id = f"file-fe-{next(_qwen_file_ids):06d}"
        qwen_files(self.state)[file_id] = f = {"filename": up.filename, "body": up.body,
                                               "key": self.key(), "status": status,
                                               "polls": 0}
        self.json(_file_object(file_id, f))


class QwenFile(Base):
    def prepare(self):
        QwenFiles.prepare(self)

    def get(self, file_id):
        f = qwen_files(self.state).get(file_id)
        if f is None or f["key"] != self.key():
            return self.json(_error("invalid_parameter_error", "file not found",
                                    "invalid_request_error"), 404)
        f["polls"] += 1
        if f["status"] == "processing" and f["polls"] >= PARSE_POLLS:
            f["status"] = "processed"
        self.json(_file_object(file_id, f))


EXTRA_ROUTES += [
    (r"/compatible-mode/v1/files", QwenFiles),
    (r"/compatible-mode/v1/files/([^/]+)", QwenFile),
]


# Speech (Qwen-TTS) and transcription (Qwen3-ASR-Flash) share the multimodal-generation
# endpoint with the image edits: tests/fakes/qwen_audio.py (import this module, not that).
from tests.fakes.qwen_audio import PCM, TRANSCRIPT, WAV, Multimodal, TtsFile  # noqa: E402,F401

EXTRA_ROUTES[:] = [(path, Multimodal if handler is ImageEdit else handler)
                   for path, handler in EXTRA_ROUTES]
EXTRA_ROUTES.append((r"/files/qwen-tts.wav", TtsFile))
