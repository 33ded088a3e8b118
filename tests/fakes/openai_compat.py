"""A fake local OpenAI-compatible server (Ollama-like): no key needed, GET /v1/models lists
what is pulled, and a distilled reasoning model writes `<think>` inline in `content`.
A last message "!slow N" answers after N seconds."""

from __future__ import annotations

import asyncio

from tornado import web

from tests.fakes.common import ANSWER, Base, Models, State

MODELS = ("qwen2.5:0.5b", "deepseek-r1:1.5b", "llama3.2:1b")
RAW = "<think>\nHmm.\n</think>\n\n" + "".join(ANSWER)
USAGE = {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}


class Chat(Base):
    async def post(self):
        body = self.body()
        model = body["model"]
        if model not in MODELS:
            return self.json({"error": {"message": f'model "{model}" not found, try '
                                        "pulling it first", "type": "api_error",
                                        "param": None, "code": None}}, 404)
        cmd, arg = self.command(body)
        if cmd == "!slow":
            await asyncio.sleep(float(arg))
        content = RAW if model.startswith("deepseek-r1") else "".join(ANSWER)
        base = {"id": "chatcmpl-123", "created": 1700000000, "model": model,
                "system_fingerprint": "fp_ollama"}
        if not body.get("stream"):
            return self.json(dict(base, object="chat.completion", usage=USAGE, choices=[
                {"index": 0, "message": {"role": "assistant", "content": content},
                 "finish_reason": "stop"}]))
        self.start_stream()
        chunk = dict(base, object="chat.completion.chunk")
        for i in range(0, len(content), 3):
            await self.event(dict(chunk, choices=[
                {"index": 0, "delta": {"role": "assistant", "content": content[i:i + 3]},
                 "finish_reason": None}]))
        await self.event(dict(chunk, choices=[{"index": 0, "delta": {"role": "assistant",
                                                                      "content": ""},
                                                "finish_reason": "stop"}]))
        if (body.get("stream_options") or {}).get("include_usage"):
            await self.event(dict(chunk, choices=[], usage=USAGE))
        await self.event("[DONE]")


def make_app(state: State) -> web.Application:
    return web.Application([
        (r"/v1/chat/completions", Chat, {"state": state}),
        (r"/v1/models", Models, {"state": state, "ids": MODELS, "needs_key": False}),
    ] + [(path, handler, {"state": state}) for path, handler in EXTRA_ROUTES])


# -- beyond chat: OpenAI's own embeddings, images, speech and transcription shapes -------
# (https://platform.openai.com/docs/api-reference: embeddings/create, images/create,
# audio/createSpeech, audio/createTranscription), as LocalAI or vLLM serve them.

import base64 as _b64  # noqa: E402
import struct as _struct  # noqa: E402

EMBED_MODEL, IMAGE_MODEL, TTS_MODEL, STT_MODEL = ("nomic-embed-text", "sd-turbo", "kokoro",
                                                   "whisper-1")
VECTOR = [0.25, -0.5, 0.75]
PNG = b"\x89PNG\r\n\x1a\nlocal-image"
AUDIO = b"RIFFlocal-wav-audio"


def _unknown(handler, model):
    return handler.json({"error": {"message": f'model "{model}" not found', "type":
                                   "invalid_request_error", "param": "model",
                                   "code": None}}, 404)


class Embeddings(Base):
    def post(self):
        body = self.body()
        if body.get("model") != EMBED_MODEL:
            return _unknown(self, body.get("model"))
        texts = [body["input"]] if isinstance(body["input"], str) else body["input"]
        vec = (_b64.b64encode(_struct.pack("<3f", *VECTOR)).decode()
               if body.get("encoding_format") == "base64" else VECTOR)
        self.json({"object": "list", "model": EMBED_MODEL, "usage": {
            "prompt_tokens": 3, "total_tokens": 3}, "data": [
            {"object": "embedding", "index": i, "embedding": vec}
            for i, _ in enumerate(texts)]})


class Images(Base):
    def post(self):
        body = self.body()
        if body.get("model") != IMAGE_MODEL:
            return _unknown(self, body.get("model"))
        item = ({"b64_json": _b64.b64encode(PNG).decode()}
                if body.get("response_format") == "b64_json"
                else {"url": "http://127.0.0.1:1/never-fetched.png"})
        self.json({"created": 1700000000, "data": [item] * (body.get("n") or 1)})


class Speech(Base):
    def post(self):
        body = self.body()
        if body.get("model") != TTS_MODEL:
            return _unknown(self, body.get("model"))
        self.set_header("Content-Type", "audio/wav")
        self.finish(AUDIO)


class Transcriptions(Base):
    def post(self):
        model = self.get_body_argument("model", None)
        self.state.requests.append({"path": self.request.path, "body": {"model": model}})
        if model != STT_MODEL or not self.request.files.get("file"):
            return _unknown(self, model)
        # whisper-1 bills by audio length and says so in `usage` (the API reference's
        # createTranscription, read 2026-12-06): a fixed 3 seconds here.
        self.json({"text": "hello from whisper", "usage": {"type": "duration", "seconds": 3}})


EXTRA_ROUTES = [(r"/v1/embeddings", Embeddings), (r"/v1/images/generations", Images),
                (r"/v1/audio/speech", Speech), (r"/v1/audio/transcriptions", Transcriptions)]


# -- image edits and variations (https://platform.openai.com/docs/api-reference/images/
# createEdit, .../createVariation): multipart forms; edits take `image` or `image[]` and
# need a `prompt`; variations take one `image` and no prompt. Refusals as OpenAI words them.

EDIT_MODEL = "flux-kontext"


def _bad(handler, message, param):
    return handler.json({"error": {"message": message, "type": "invalid_request_error",
                                   "param": param, "code": None}}, 400)


class _ImageForm(Base):
    def record(self):
        req = self.request
        fields = {k: v[0].decode() for k, v in req.body_arguments.items()}
        files = {k: [(f.filename, f.content_type, f.body) for f in v]
                 for k, v in req.files.items()}
        self.state.requests.append({"path": req.path, "body": fields, "files": files,
                                    "headers": dict(req.headers)})
        return fields, files

    def answer(self, fields):
        item = ({"b64_json": _b64.b64encode(PNG).decode()}
                if fields.get("response_format") == "b64_json"
                else {"url": "http://127.0.0.1:1/never-fetched.png"})
        self.json({"created": 1700000000, "data": [item] * int(fields.get("n") or 1)})


class ImageEdits(_ImageForm):
    def post(self):
        fields, files = self.record()
        if fields.get("model") != EDIT_MODEL:
            return _unknown(self, fields.get("model"))
        if not (files.get("image") or files.get("image[]")):
            return _bad(self, "Missing required parameter: 'image'.", "image")
        if not fields.get("prompt"):
            return _bad(self, "Missing required parameter: 'prompt'.", "prompt")
        self.answer(fields)


class ImageVariations(_ImageForm):
    def post(self):
        fields, files = self.record()
        if fields.get("model") != EDIT_MODEL:
            return _unknown(self, fields.get("model"))
        if len(files.get("image") or ()) != 1 or "prompt" in fields:
            return _bad(self, "Invalid image variation request.", "image")
        self.answer(fields)


EXTRA_ROUTES += [(r"/v1/images/edits", ImageEdits), (r"/v1/images/variations",
                                                        ImageVariations)]
