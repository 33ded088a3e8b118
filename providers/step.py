"""StepFun's API (https://platform.stepfun.com/docs, international platform.stepfun.ai).

OpenAI-compatible. Quirk: reasoning models put their thinking in `reasoning` (the default
`reasoning_format`, https://platform.stepfun.ai/docs/en/guide/reasoning), not
`reasoning_content`; it is renamed so `-fold`/`-silent` and clients that know DeepSeek's
field see it. Step Plan keys use https://api.stepfun.com/step_plan/v1 as base_url
(https://platform.stepfun.com/docs/zh/step-plan/integrations/reasoning-api.md).
"""

from __future__ import annotations

import json

from freeapi import hookimpl
from freeapi.errors import APIError, invalid_request
from freeapi.modalities.image_dimensions import dimensions
from freeapi.modalities.images import parse_size, refuse_size
from freeapi.provider import DISCOVER_OPTION, NO_BALANCE_OPTION, Provider


def _rename(part):
    if isinstance(part, dict) and "reasoning" in part:
        reasoning = part.pop("reasoning")
        if reasoning and not part.get("reasoning_content"):
            part["reasoning_content"] = reasoning


# `description` tells the model when to search (3p, unverified: see Step.search_body).
WEB_SEARCH_TOOL = {"type": "web_search", "function": {
    "description": "Search the internet for current information whenever the question "
                   "needs facts that may be recent or that you do not know."}}


# Image generation, per model: (sizes as OpenAI's WIDTHxHEIGHT, whether StepFun wants them
# written height x width, longest prompt, steps range, extra fields it takes).
# step-image-edit-2: https://platform.stepfun.ai/docs/en/api-reference/images/image (zh:
# https://platform.stepfun.com/docs/zh/api-reference/images/image): "format is height x
# width, not width x height"; 1024x1024, 768x1360, 896x1184, 1360x768, 1184x896; prompt
# at most 512 characters; steps 1-50; cfg_scale 1.0-10.0; negative_prompt, text_mode.
# step-1x-medium: https://platform.stepfun.com/docs/api-reference/image (squares 256-1024,
# 1280x800, 800x1280; prompt at most 1,024 characters; steps 1-100; style_reference).
# step-2x-large: named by the model overview,
# https://platform.stepfun.ai/docs/en/guides/models/image, whose resolution limits are
# the step-1x ones; its own prompt and steps limits are not documented (not checked).
_SQUARES = ("256x256", "512x512", "768x768", "1024x1024", "1280x800", "800x1280")
_IMAGE_RULES = {
    "step-image-edit-2": (("1024x1024", "1360x768", "1184x896", "768x1360", "896x1184"),
                          True, 512, (1, 50), ("negative_prompt", "text_mode")),
    "step-1x-medium": (_SQUARES, False, 1024, (1, 100), ("style_reference",)),
    "step-2x-large": (_SQUARES, False, None, None, ()),
}


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _form_number(text: str, kind, low, high, name: str, vendor: str) -> str:
    """A number of an edit form (where every field is text) within StepFun's range, as the
    text to send on."""
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        what = "an integer" if kind is int else "a number"
        raise invalid_request(f"{vendor}: `{name}` is {what} from {low} to {high}.",
                              param=name)
    return str(value)


class Step(Provider):
    type_name = "step"
    # https://platform.stepfun.com/docs/zh/guides/models/step-3.7-flash-quickstart;
    # international: https://api.stepfun.ai/v1 (its own keys).
    default_base_url = "https://api.stepfun.com/v1"
    models = (
        # Reasoning: https://platform.stepfun.ai/docs/en/guides/models/reasoning
        # (step-3.7-flash also takes images and video).
        "step-3.7-flash", "step-3.5-flash",
        # Vision: https://platform.stepfun.ai/docs/en/guides/models/vision
        "step-1o-turbo-vision", "step-1o-vision-32k", "step-1v-8k", "step-1v-32k",
    )
    # The price list (https://platform.stepfun.com/docs/zh/guides/pricing/details) as a 3p
    # transcription dated 2026-10-07 has it (api-evangelist/stepfun
    # plans/stepfun-plans-pricing.yml): it no longer lists step-1o-vision-32k, step-1v-8k
    # and step-1v-32k, and lists step-5-preview (¥7 / ¥0.35 / ¥20 per 1M) and
    # step-3.5-flash-2603. The official page itself could not be read (2026-12-06), and a
    # model missing from a price list is not a documented retirement with a successor: the
    # three stay listed, and step-5-preview stays out of the list (3p, unverified) while
    # the `step-*` pattern still sends it, and any other new id, to StepFun as is.
    reasoning_models = frozenset({"step-3.7-flash", "step-3.5-flash"})
    # Older names (step-3, step-2-*, step-1-*...) are on none of today's model pages and no
    # successor is documented for them: they still reach StepFun through the pattern.
    retired = {}
    patterns = ("step-*",)
    owned_by = "stepfun"
    # Free tier (the `free` model): no free chat model; only the realtime audio previews
    # are "限时免费", which the gateway does not serve (3p transcription of
    # https://platform.stepfun.com/docs/zh/guides/pricing/details, read 2026-10-07).
    free_tier = ()
    # GET /models is the key check (DISCOVER); it cannot see a balance.
    options = {**DISCOVER_OPTION, **NO_BALANCE_OPTION}
    rewrites_chunks = True

    def normalize_chunk(self, chunk):
        for choice in chunk.get("choices") or ():
            if isinstance(choice, dict):
                _rename(choice.get("delta"))
        return chunk

    def normalize_completion(self, data):
        for choice in data.get("choices") or ():
            if isinstance(choice, dict):
                _rename(choice.get("message"))
        return data

    # -- beyond chat (docs/beyond-chat.md) --------------------------------------------
    # Speech, OpenAI-compatible, the audio file as the body
    # (https://platform.stepfun.com/docs/api-reference/audio/create_audio,
    # https://platform.stepfun.ai/docs/en/api-reference/audio/create-audio): at most
    # 1,000 characters; wav, mp3, flac, opus, pcm; speed 0.5-2; StepFun's own voices.
    speech_models = ("step-tts-2", "step-tts-mini", "stepaudio-2.5-tts")
    # Vision input (https://platform.stepfun.ai/docs/en/guides/models/vision): the vision
    # models and step-3.7-flash (images and video); step-3.5-flash takes text only.
    vision_models = frozenset({"step-3.7-flash", "step-1o-turbo-vision", "step-1o-vision-32k",
                               "step-1v-8k", "step-1v-32k", "step-r1-v-mini", "step-3"})

    # Web search (`-search`): StepFun's official web search tool ("官方工具列表: 互联网搜索",
    # https://platform.stepfun.com/docs/zh/api-reference/tool-call, guide
    # https://platform.stepfun.com/docs/zh/guides/developer/web-search), which StepFun runs
    # itself: the answer comes back as any other, stream or not. The tool's shape,
    # `{"type": "web_search", "function": {"description": ...}}`, is 3p, unverified (a
    # StepFun demo repository and LobeChat's StepFun runtime; the guide's text was not
    # found). The tool-call page lists every model above as taking tools (step-3.7-flash,
    # step-3.5-flash, step-3.5-flash-2603 first; the vision models as "其他兼容"); the
    # docs say nothing about search and streaming, so streams stay streams.
    def search_body(self, body):
        tools = body.get("tools")
        if tools is None:
            tools = []
        if not isinstance(tools, list) or any(
                isinstance(t, dict) and t.get("type") == "web_search" for t in tools):
            return dict(body)  # the client's own web_search tool (or garbage for a 400)
        return dict(body, tools=tools + [WEB_SEARCH_TOOL])

    # Images: POST /v1/images/generations, OpenAI-compatible; StepFun answers
    # `response_format` url or b64_json itself, one image per request (the API references
    # above). Step Plan keys reach the same path under /step_plan/v1
    # (https://platform.stepfun.com/docs/zh/step-plan/integrations/image-api).
    image_models = tuple(_IMAGE_RULES)
    images_url_only = False

    def images_request(self, body, key):
        model = body["model"]
        sizes, swapped, max_prompt, steps, extra = _IMAGE_RULES.get(
            model, _IMAGE_RULES["step-2x-large"])  # a newer name: only what all share
        vendor = f"{self.name} ({model})"
        if (body.get("n") or 1) != 1:
            raise invalid_request(f"{vendor}: StepFun makes one image per request; send n=1.",
                                  param="n")
        if max_prompt and len(body["prompt"]) > max_prompt:
            raise invalid_request(f"{vendor}: the prompt is at most {max_prompt} characters.",
                                  param="prompt")
        out = {"model": model, "prompt": body["prompt"],
               "response_format": body.get("response_format") or "url"}
        if body.get("size") is not None:
            w, h = parse_size(body["size"])
            if f"{w}x{h}" not in sizes:
                raise refuse_size(vendor, body["size"], ", ".join(sizes))
            # OpenAI's size is width x height; step-image-edit-2 reads height x width.
            out["size"] = f"{h}x{w}" if swapped else f"{w}x{h}"
        if body.get("steps") is not None and steps and not (
                isinstance(body["steps"], int) and not isinstance(body["steps"], bool)
                and steps[0] <= body["steps"] <= steps[1]):
            raise invalid_request(f"{vendor}: `steps` is an integer from {steps[0]} to "
                                  f"{steps[1]}.", param="steps")
        cfg = body.get("cfg_scale")
        if cfg is not None and not (_number(cfg) and 1 <= cfg <= 10):
            raise invalid_request(f"{vendor}: `cfg_scale` is a number from 1 to 10.",
                                  param="cfg_scale")
        seed = body.get("seed")
        if seed is not None and not (isinstance(seed, int) and not isinstance(seed, bool)
                                     and 0 <= seed <= 2147483647):
            raise invalid_request(f"{vendor}: `seed` is an integer from 0 to 2147483647.",
                                  param="seed")
        for field in ("seed", "steps", "cfg_scale") + extra:
            if body.get(field) is not None:
                out[field] = body[field]
        return self.json_request("/images/generations", out, key)

    def images_answer(self, raw, key):
        """StepFun's `data[]` items carry `b64_json` or `url` (older docs name the base64
        field `image`), `seed` and `finish_reason`; `content_filtered` means the image was
        stopped by StepFun's moderation, which is the request's fault (a 400)."""
        data = json.loads(raw)
        items = data["data"]
        if not isinstance(items, list):
            raise ValueError("no `data` list")
        out, filtered = [], False
        for item in items:
            if not isinstance(item, dict):
                continue
            if item.get("finish_reason") == "content_filtered":
                filtered = True
                continue
            b64, url = item.get("b64_json") or item.get("image"), item.get("url")
            if isinstance(b64, str) and b64:
                out.append({"b64_json": b64})
            elif isinstance(url, str) and url:
                out.append({"url": url})
        if filtered and not out:
            raise APIError(400, f"{self.name}: StepFun's content filter stopped the image "
                                "(finish_reason content_filtered).",
                           type="invalid_request_error", code="content_filter")
        return {"created": data.get("created"), "data": out}

    # Image edits: POST /v1/images/edits, multipart/form-data as OpenAI's (`image` a file,
    # the rest text fields: https://platform.stepfun.ai/docs/en/api-reference/images/edits,
    # zh https://platform.stepfun.com/docs/zh/api-reference/images/edits.md; the curl
    # `-F image=@input.webp` of https://platform.stepfun.com/docs/zh/step-plan/integrations/
    # image-api, the SDK's `client.images.edit` of
    # https://platform.stepfun.com/docs/zh/guides/developer/image-edit.md). Today's pages
    # name step-image-edit-2 alone (an older zh edition and the model overview also name
    # step-1x-edit: not declared; it, like any other step-* name, still reaches StepFun with
    # only the checks the endpoint documents for all models). The answer is the
    # generation's shape (`data[]` of `seed`, `finish_reason`, `b64_json` | `url`), read by
    # images_answer.
    image_edit_models = ("step-image-edit-2",)
    # step-image-edit-2 (the pages above): one image of at most 4096x4096 pixels; prompt
    # and negative_prompt at most 512 characters; steps 1-50; cfg_scale 1.0-10.0; seed
    # 0-2147483647; `size` is ignored (the result is the input's size); text_mode a bool.
    # No `mask` and no `n` are documented: one image in, one out.
    _EDIT_MAX_SIDE, _EDIT_MAX_PROMPT = 4096, 512

    def image_edits_request(self, body, key):
        model = body["model"]
        vendor = f"{self.name} ({model})"
        if "mask" in body:
            raise invalid_request(f"{vendor}: StepFun's image edits take no mask; say in the "
                                  "prompt what to change and where.", param="mask",
                                  code="mask_not_supported")
        if len(body["image"]) != 1:
            raise invalid_request(f"{vendor}: StepFun edits one image per request; got "
                                  f"{len(body['image'])}.", param="image")
        if body.get("n", 1) != 1:
            raise invalid_request(f"{vendor}: StepFun makes one edited image per request; "
                                  "send n=1.", param="n")
        for field in ("prompt", "negative_prompt"):
            if len(body.get(field) or "") > self._EDIT_MAX_PROMPT:
                raise invalid_request(f"{vendor}: `{field}` is at most "
                                      f"{self._EDIT_MAX_PROMPT} characters.", param=field)
        name, media_type, data = body["image"][0]
        fields = {"model": model, "prompt": body["prompt"],
                  "response_format": body.get("response_format") or "url"}
        if model in self.image_edit_models:
            self._check_edit(body, vendor, media_type, data)
        elif body.get("size") is not None:
            fields["size"] = body["size"]  # a model of its own sizes: StepFun judges them
        for field in ("seed", "steps", "cfg_scale", "negative_prompt", "text_mode"):
            if body.get(field) is not None:
                fields[field] = body[field]
        return self.multipart_request("/images/edits", fields, "image", name, media_type,
                                      data, key)

    def _check_edit(self, body, vendor, media_type, data) -> None:
        """step-image-edit-2's documented limits; normalizes its numbers in `body`."""
        if body.get("size") is not None:
            raise invalid_request(f"{vendor}: StepFun answers an edit at the size of the "
                                  "input image and takes no `size`; send none (or auto).",
                                  param="size", code="unsupported_size")
        dims = dimensions(data, media_type)
        side = self._EDIT_MAX_SIDE
        if dims and (dims[0] > side or dims[1] > side):
            raise invalid_request(f"{vendor}: StepFun edits images of at most {side}x{side} "
                                  f"pixels; this one is {dims[0]}x{dims[1]}.", param="image",
                                  code="image_too_large")
        for field, kind, low, high in (("steps", int, 1, 50), ("cfg_scale", float, 1, 10),
                                       ("seed", int, 0, 2147483647)):
            if body.get(field) is not None:
                body[field] = _form_number(body[field], kind, low, high, field, vendor)
        text_mode = body.get("text_mode")
        if text_mode is not None:
            if text_mode.lower() not in ("true", "false"):
                raise invalid_request(f"{vendor}: `text_mode` is true or false.",
                                      param="text_mode")
            body["text_mode"] = text_mode.lower()

    def speech_request(self, body, key):
        if len(body["input"]) > 1000:
            raise invalid_request(f"{self.name}: StepFun speaks at most 1,000 characters per "
                                  "request.", param="input")
        if body.get("response_format", "mp3") not in ("wav", "mp3", "flac", "opus", "pcm"):
            raise invalid_request(f"{self.name}: StepFun gives wav, mp3, flac, opus or pcm.",
                                  param="response_format")
        if body.get("speed") is not None and not 0.5 <= body["speed"] <= 2.0:
            raise invalid_request(f"{self.name}: StepFun's speed is 0.5 to 2.0.",
                                  param="speed")
        return self.json_request("/audio/speech", {k: body[k] for k in (
            "model", "input", "voice", "response_format", "speed", "volume", "voice_label",
            "instruction") if k in body}, key)

    # Transcription (https://platform.stepfun.com/docs/api-reference/audio/transcriptions):
    # multipart, model step-asr, response_format json/text/srt/vtt, files under 100 MB.
    transcription_models = ("step-asr",)

    def transcriptions_request(self, body, key):
        if body["response_format"] not in ("json", "text", "srt", "vtt"):
            raise invalid_request(f"{self.name}: StepFun transcribes to json, text, srt or "
                                  "vtt.", param="response_format")
        name, media_type, data = body["file"]
        fields = {k: body[k] for k in ("model", "response_format", "hotwords") if k in body}
        return self.multipart_request("/audio/transcriptions", fields, "file", name,
                                      media_type, data, key)


@hookimpl
def register_providers(register):
    register(Step)
