"""A fake StepFun API: OpenAI-shaped; reasoning models put their thinking in `reasoning`
(deltas and messages), StepFun's default `reasoning_format`; only today's models are served
(https://platform.stepfun.ai/docs/en/guides/models/reasoning, .../models/vision).

Tools (https://platform.stepfun.com/docs/zh/api-reference/tool-call): `function` tools with
a name, and the official web search tool, `{"type": "web_search", "function":
{"description": ...}}` (that shape 3p, unverified): with it the answer is SEARCHED, searched
by the vendor itself, stream or not. Any other tool, or a web_search tool without its
description, is a 400 (the error's wording is a guess)."""

from __future__ import annotations

import base64

from tornado import web

from tests.fakes.common import ANSWER, REASONING, Base, Models, State

GOOD = "step-good-key-000000000000000000001"
DEAD = "step-dead-key-000000000000000000401"
KEYS = {GOOD: "ok", DEAD: 401}
USAGE = {"prompt_tokens": 83, "completion_tokens": 176, "total_tokens": 259}
REASONERS = ("step-3.7-flash", "step-3.5-flash")
MODELS = ("step-3.7-flash", "step-3.5-flash", "step-1o-turbo-vision")
RETIRED = ("step-3", "step-1-8k", "step-2-16k")
SEARCHED = ["Found ", "it on ", "the web."]


def tool_problem(tools) -> str | None:
    if tools is None:
        return None
    if not isinstance(tools, list):
        return "tools must be an array"
    for t in tools:
        fn = t.get("function") if isinstance(t, dict) else None
        if not isinstance(fn, dict):
            return "each tool needs a function object"
        if t.get("type") == "web_search":
            if not isinstance(fn.get("description"), str) or not fn["description"]:
                return "web_search needs function.description"
        elif t.get("type") != "function" or not isinstance(fn.get("name"), str):
            return f"unsupported tool type {t.get('type')!r}"
    return None


class Chat(Base):
    async def post(self):
        body = self.body()
        if self.account() in (None, 401):
            return self.json({"error": {"message": "Incorrect API key provided",
                                        "type": "invalid_api_key"}}, 401)
        model = body["model"]
        if model not in MODELS:  # the shape of StepFun's 404 is a guess (3p, unverified)
            return self.json({"error": {"message": f"model {model} not found",
                                        "type": "invalid_request_error"}}, 404)
        problem = tool_problem(body.get("tools"))
        if problem:
            return self.json({"error": {"message": problem,
                                        "type": "invalid_request_error"}}, 400)
        searched = any(t.get("type") == "web_search" for t in body.get("tools") or ())
        answer = SEARCHED if searched else ANSWER
        reasoner = model in REASONERS
        base = {"id": "b7b56af0-52a6-483f", "created": 1709893411, "model": model}
        if not body.get("stream"):
            message = {"role": "assistant", "content": "".join(answer)}
            if reasoner:
                message["reasoning"] = "".join(REASONING)
            return self.json(dict(base, object="chat.completion", usage=USAGE, choices=[
                {"index": 0, "message": message, "finish_reason": "stop"}]))
        self.start_stream()
        chunk = dict(base, object="chat.completion.chunk")
        deltas = [{"role": "assistant", "reasoning": r} for r in REASONING] if reasoner else []
        deltas += [{"role": "assistant", "content": c} for c in answer]
        for delta in deltas:
            await self.event(dict(chunk, choices=[{"index": 0, "delta": delta,
                                                    "finish_reason": None}]))
        await self.event(dict(chunk, usage=USAGE, choices=[
            {"index": 0, "delta": {}, "finish_reason": "stop"}]))
        await self.event("[DONE]")


def make_app(state: State) -> web.Application:
    return web.Application([
        (r"/v1/chat/completions", Chat, {"state": state}),
        (r"/v1/models", Models, {"state": state, "ids": MODELS}),
    ] + [(path, handler, {"state": state}) for path, handler in EXTRA_ROUTES])


# -- beyond chat: text to speech, OpenAI-compatible: the audio file is the body -----------
# https://platform.stepfun.com/docs/api-reference/audio/create_audio. The audio leaves in
# AUDIO's pieces; with `state.gate` (an asyncio.Event) set up, the rest waits for it.

AUDIO = [b"ID3\x04step-audio-part-1|", b"part-2|", b"part-3"]
VOICES = ("cixingnansheng", "linjiajiejie")
TTS_MODELS = ("step-tts-mini", "step-tts-2", "stepaudio-2.5-tts")
MEDIA = {"mp3": "audio/mpeg", "wav": "audio/wav", "flac": "audio/flac", "opus": "audio/ogg",
         "pcm": "audio/pcm"}


class Speech(Base):
    async def post(self):
        body = self.body()
        if self.account() in (None, 401):
            return self.json({"error": {"message": "Incorrect API key provided",
                                        "type": "invalid_api_key"}}, 401)
        fmt = body.get("response_format", "mp3")
        problem = (body.get("model") not in TTS_MODELS and "model not found"
                   or body.get("voice") not in VOICES and "voice not found"
                   or len(body.get("input") or "") > 1000 and "input too long"
                   or fmt not in MEDIA and "unsupported response_format")
        if problem:
            return self.json({"error": {"message": problem,
                                        "type": "invalid_request_error"}}, 400)
        self.set_header("Content-Type", MEDIA[fmt])
        gate = self.state.__dict__.get("gate")
        for i, piece in enumerate(AUDIO):
            if i == 1 and gate is not None:
                await gate.wait()
            self.write(piece)
            await self.flush()
        self.finish()


EXTRA_ROUTES = [(r"/v1/audio/speech", Speech)]


# -- speech to text: multipart, as documented -----------------------------------------------
# https://platform.stepfun.com/docs/api-reference/audio/transcriptions: model step-asr,
# response_format json, text, srt or vtt (required), one audio `file`.

TRANSCRIPT = "测试录制音频"


class Transcriptions(Base):
    def prepare(self):
        self.record_form()

    def post(self):
        if self.account() in (None, 401):
            return self.json({"error": {"message": "Incorrect API key provided",
                                        "type": "invalid_api_key"}}, 401)
        model = self.get_body_argument("model", None)
        fmt = self.get_body_argument("response_format", None)
        uploads = self.request.files.get("file") or []
        if model != "step-asr" or fmt not in ("json", "text", "srt", "vtt") \
                or len(uploads) != 1 or not uploads[0].body:
            return self.json({"error": {"message": "invalid parameters",
                                        "type": "invalid_request_error"}}, 400)
        if fmt == "json":
            return self.json({"text": TRANSCRIPT})
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(TRANSCRIPT if fmt == "text" else f"1\n00:00:00,000 --> 00:00:01,000\n"
                    f"{TRANSCRIPT}\n")


EXTRA_ROUTES.append((r"/v1/audio/transcriptions", Transcriptions))


# -- image generation, OpenAI-compatible ------------------------------------------------------
# https://platform.stepfun.ai/docs/en/api-reference/images/image (step-image-edit-2: sizes
# written height x width, prompt <= 512, steps 1-50, `b64_json` or `url`) and
# https://platform.stepfun.com/docs/api-reference/image (step-1x-medium, whose base64 field
# is `image`). One image per request. The wording of the 400s is a guess (3p, unverified).
# A prompt "!filtered ..." is stopped by the content filter (finish_reason
# content_filtered).

IMAGE = b"\x89PNG\r\n\x1a\nfake-stepfun-image" * 4
IMAGE_SIZES = {
    "step-image-edit-2": ("1024x1024", "768x1360", "896x1184", "1360x768", "1184x896"),
    "step-1x-medium": ("256x256", "512x512", "768x768", "1024x1024", "1280x800", "800x1280"),
    "step-2x-large": ("256x256", "512x512", "768x768", "1024x1024", "1280x800", "800x1280"),
}


class ImageGeneration(Base):
    def post(self):
        body = self.body()
        if self.account() in (None, 401):
            return self.json({"error": {"message": "Incorrect API key provided",
                                        "type": "invalid_api_key"}}, 401)
        model, prompt = body.get("model"), body.get("prompt") or ""
        fmt = body.get("response_format", "url")
        steps = body.get("steps", 8)
        problem = (model not in IMAGE_SIZES and f"model {model} not found"
                   or not prompt and "prompt is required"
                   or model == "step-image-edit-2" and len(prompt) > 512 and "prompt too long"
                   or body.get("size", "1024x1024") not in IMAGE_SIZES[model]
                   and "unsupported size"
                   or body.get("n", 1) != 1 and "n must be 1"
                   or fmt not in ("url", "b64_json") and "unsupported response_format"
                   or not (isinstance(steps, int) and 1 <= steps <= (
                       50 if model == "step-image-edit-2" else 100)) and "invalid steps")
        if problem:
            return self.json({"error": {"message": problem,
                                        "type": "invalid_request_error"}}, 400)
        item = {"seed": body.get("seed") or 123838, "finish_reason": "success"}
        if prompt.startswith("!filtered"):
            item["finish_reason"] = "content_filtered"
        elif fmt == "b64_json":
            field = "image" if model == "step-1x-medium" else "b64_json"
            item[field] = base64.b64encode(IMAGE).decode()
        else:
            item["url"] = f"{self.request.protocol}://{self.request.host}/files/step.png"
        self.json({"created": 1589478378, "data": [item]})


class ImageFile(Base):
    def get(self):
        self.set_header("Content-Type", "image/png")
        self.finish(IMAGE)


EXTRA_ROUTES += [(r"/v1/images/generations", ImageGeneration),
                 (r"/files/step.png", ImageFile)]


# -- image edits: multipart, as documented ------------------------------------------------------
# https://platform.stepfun.ai/docs/en/api-reference/images/edits (zh:
# https://platform.stepfun.com/docs/zh/api-reference/images/edits.md): model
# step-image-edit-2, one `image` file of at most 4096x4096 (read here from a PNG's IHDR),
# `prompt` and `negative_prompt` at most 512 characters, steps 1-50, cfg_scale 1.0-10.0,
# seed 0-2147483647, response_format url or b64_json; the answer is the generation's. The
# wording of the 400s is a guess (3p, unverified). "!filtered ..." is content_filtered.

EDITED = b"\x89PNG\r\n\x1a\nfake-stepfun-edited-image" * 4
EDIT_MODELS = ("step-image-edit-2",)


def png_size(data: bytes) -> tuple[int, int] | None:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return None


def _in_range(text, kind, low, high) -> bool:
    try:
        return low <= kind(text) <= high
    except ValueError:
        return False


class ImageEdit(Base):
    def prepare(self):
        self.record_form()

    def post(self):
        if self.account() in (None, 401):
            return self.json({"error": {"message": "Incorrect API key provided",
                                        "type": "invalid_api_key"}}, 401)
        arg = self.get_body_argument
        model, prompt = arg("model", None), arg("prompt", "")
        fmt = arg("response_format", "url")
        uploads = self.request.files.get("image") or []
        size = png_size(uploads[0].body) if len(uploads) == 1 else None
        problem = (model not in EDIT_MODELS and f"model {model} not found"
                   or len(uploads) != 1 and "exactly one image is required"
                   or not uploads[0].body and "image is empty"
                   or size and max(size) > 4096 and "image resolution exceeds 4096x4096"
                   or not prompt and "prompt is required"
                   or len(prompt) > 512 and "prompt too long"
                   or len(arg("negative_prompt", "")) > 512 and "negative_prompt too long"
                   or not _in_range(arg("steps", "8"), int, 1, 50) and "invalid steps"
                   or not _in_range(arg("cfg_scale", "1.0"), float, 1, 10)
                   and "invalid cfg_scale"
                   or not _in_range(arg("seed", "0"), int, 0, 2147483647) and "invalid seed"
                   or fmt not in ("url", "b64_json") and "unsupported response_format")
        if problem:
            return self.json({"error": {"message": problem,
                                        "type": "invalid_request_error"}}, 400)
        item = {"seed": int(arg("seed", "0")) or 123838, "finish_reason": "success"}
        if prompt.startswith("!filtered"):
            item["finish_reason"] = "content_filtered"
        elif fmt == "b64_json":
            item["b64_json"] = base64.b64encode(EDITED).decode()
        else:
            item["url"] = f"{self.request.protocol}://{self.request.host}/files/edited.png"
        self.json({"created": 1589478378, "data": [item]})


class EditedFile(Base):
    def get(self):
        self.set_header("Content-Type", "image/png")
        self.finish(EDITED)


EXTRA_ROUTES += [(r"/v1/images/edits", ImageEdit), (r"/files/edited.png", EditedFile)]
