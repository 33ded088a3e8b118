"""StepFun's API (https://platform.stepfun.com/docs, international platform.stepfun.ai).

OpenAI-compatible. Quirk: reasoning models put their thinking in `reasoning` (the default
`reasoning_format`, https://platform.stepfun.ai/docs/en/guide/reasoning), not
`reasoning_content`; it is renamed so `-fold`/`-silent` and clients that know DeepSeek's
field see it. Step Plan keys use https://api.stepfun.com/step_plan/v1 as base_url
(https://platform.stepfun.com/docs/zh/step-plan/integrations/reasoning-api.md).
"""

from __future__ import annotations

from freeapi import hookimpl
from freeapi.errors import invalid_request
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
    reasoning_models = frozenset({"step-3.7-flash", "step-3.5-flash"})
    # Older names (step-3, step-2-*, step-1-*...) are on none of today's model pages and no
    # successor is documented for them: they still reach StepFun through the pattern.
    retired = {}
    patterns = ("step-*",)
    owned_by = "stepfun"
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

    # -- beyond chat (README "Beyond chat") -------------------------------------------
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
