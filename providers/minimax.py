"""MiniMax's API (https://platform.minimaxi.com/docs, international
https://platform.minimax.io/docs).

OpenAI-compatible `/chat/completions` with quirks:
- errors can arrive as HTTP 200 with a non-zero `base_resp.status_code` (1002 rate limit,
  1004 auth, 1008 balance...): those are errors, not answers;
- the M-series reasons inline, `<think>...</think>` at the start of `content`: it is split
  into `reasoning_content` (with `reasoning_split: true` the vendor sends
  `reasoning_details` instead, which is mapped the same way).
"""

from __future__ import annotations

import json


from freeapi import hookimpl
from freeapi.errors import APIError, invalid_request, vendor_error
from freeapi.keys import redact
from freeapi.modalities.images import parse_size, refuse_size
from freeapi.provider import DISCOVER_OPTION, NO_BALANCE_OPTION, Provider
from freeapi.think import ChunkThinkSplitter, split_message

# base_resp.status_code -> (status, OpenAI type, code), from the vendor's error code table
# https://platform.minimax.io/docs/api-reference/errorcode.md (1000, 1001, 1002, 1004, 1008,
# 1024 read there; the other rows come from the same table as kept from earlier versions).
_CODES = {
    1000: (502, "server_error", "unknown_error"),
    1001: (504, "timeout_error", "upstream_timeout"),
    1002: (429, "rate_limit_error", "rate_limit_exceeded"),
    1004: (401, "authentication_error", "invalid_api_key"),
    1008: (402, "insufficient_quota", "insufficient_balance"),
    1013: (502, "server_error", "internal_error"),
    1024: (502, "server_error", "internal_error"),
    1026: (400, "invalid_request_error", "content_filter"),
    1027: (400, "invalid_request_error", "content_filter"),
    1039: (429, "rate_limit_error", "token_limit"),
    1041: (429, "rate_limit_error", "connection_limit"),
    2013: (400, "invalid_request_error", "invalid_parameters"),
    2049: (401, "authentication_error", "invalid_api_key"),
}


# Image generation (https://platform.minimaxi.com/docs/api-reference/image-generation-t2i,
# international https://platform.minimax.io/docs/api-reference/image-generation-t2i):
# `aspect_ratio` -> the size MiniMax makes for it, as that page lists them.
_ASPECTS = {"1:1": (1024, 1024), "16:9": (1280, 720), "4:3": (1152, 864),
            "3:2": (1248, 832), "2:3": (832, 1248), "3:4": (864, 1152),
            "9:16": (720, 1280), "21:9": (1344, 576)}
_RATIO_OF = {size: ratio for ratio, size in _ASPECTS.items()}
# OpenAI's DALL-E sizes that no preset has: the preset of the same orientation.
_OPENAI_SIZES = {(1792, 1024): "16:9", (1024, 1792): "9:16", (1536, 1024): "3:2",
                 (1024, 1536): "2:3"}


def _reasoning_details(part: dict):
    details = part.pop("reasoning_details", None)
    if isinstance(details, list):
        text = "".join(d.get("text") or "" for d in details if isinstance(d, dict))
        if text:
            part["reasoning_content"] = (part.get("reasoning_content") or "") + text


class MiniMax(Provider):
    type_name = "minimax"
    # International: https://api.minimax.io/v1 (its own keys); both in
    # https://platform.minimax.io/docs/api-reference/text-openai-api
    default_base_url = "https://api.minimaxi.com/v1"
    # https://platform.minimaxi.com/docs/api-reference/text-anthropic-api (…/anthropic)
    anthropic_base_url = "/anthropic"
    anthropic_models = ("MiniMax-M*",)  # the M-series only, per that page
    # That page's compatibility table has no image or document input for the Anthropic
    # endpoint: a document goes the chat way (and MiniMax has no document API: a 400).
    native_documents = False
    # "Supported Models" of https://platform.minimax.io/docs/api-reference/text-openai-api;
    # every one reasons (inline <think>, or reasoning_details with reasoning_split). No free
    # model is documented.
    models = (
        "MiniMax-M3", "MiniMax-M2.7", "MiniMax-M2.7-highspeed", "MiniMax-M2.5",
        "MiniMax-M2.5-highspeed", "MiniMax-M2.1", "MiniMax-M2.1-highspeed", "MiniMax-M2",
    )
    # Not listed: `MiniMax-M3.1-Flash` (always reasons; images and video in). No MiniMax
    # page naming it could be read on 2026-12-06; it is on Alibaba's Model Studio page for
    # the model it hosts (https://help.aliyun.com/zh/model-studio/minimax-m3-1-flash) and
    # on resellers' pages: 3p, unverified for MiniMax's own API. The `MiniMax-*` pattern
    # sends it to MiniMax as is; discovery (`discover: true`) lists it once MiniMax does.
    reasoning_models = frozenset(models)
    # MiniMax spells its ids "MiniMax-..." (the pattern match is case-sensitive); the
    # lower-case spelling is sent on too, and MiniMax itself says whether it knows it.
    patterns = ("MiniMax-*", "minimax-*")
    owned_by = "minimax"
    # Free tier (the `free` model): none built in. "New users without subscription can try
    # the free quota from Pay-as-you-go" (https://platform.minimax.io/docs/solutions/eigent,
    # quoted by a third party: 3p, unverified); no page says which models or how to tell
    # it is used up.
    free_tier = ()
    options = {**DISCOVER_OPTION, **NO_BALANCE_OPTION}
    rewrites_chunks = True

    def body_error(self, data, keys=()):
        resp = data.get("base_resp") if isinstance(data, dict) else None
        if not isinstance(resp, dict) or not resp.get("status_code"):
            return None
        code = resp["status_code"]
        status, etype, ocode = _CODES.get(code) or (502, "server_error", None)
        message = redact(str(resp.get("status_msg") or "error"), keys)
        return APIError(status, f"{self.name}: {message} (MiniMax code {code})", type=etype,
                        code=ocode or f"minimax_{code}")


    def chunk_normalizer(self):
        split = ChunkThinkSplitter()

        def normalize(chunk):
            err = self.body_error(chunk)
            if err is not None:
                return err.to_dict()
            for choice in chunk.get("choices") or ():
                if not isinstance(choice, dict):
                    continue
                # A final chunk may repeat the whole reply as `message`; the deltas had it.
                if "message" in choice and "delta" not in choice:
                    choice.pop("message")
                    choice["delta"] = {}
                if isinstance(choice.get("delta"), dict):
                    _reasoning_details(choice["delta"])
            chunk["object"] = "chat.completion.chunk"
            return split(chunk)
        return normalize

    def normalize_completion(self, data):
        for choice in data.get("choices") or ():
            message = choice.get("message") if isinstance(choice, dict) else None
            if isinstance(message, dict):
                _reasoning_details(message)
                split_message(message)
        return data

    def reasoning_for_history(self, message, body):
        # The gateway hands MiniMax's reasoning out as `reasoning_content`; MiniMax wants
        # it back "completely" in its own form: inline <think> in `content`, or
        # `reasoning_details` with reasoning_split
        # (https://platform.minimax.io/docs/api-reference/text-openai-api,
        # https://platform.minimax.io/docs/guides/text-m2-function-call).
        out = {k: v for k, v in message.items() if k != "reasoning_content"}
        reasoning = message.get("reasoning_content")
        if out.get("reasoning_details") or not isinstance(reasoning, str) or not reasoning:
            return out
        if body.get("reasoning_split") is True:
            out["reasoning_details"] = [{"type": "reasoning.text", "text": reasoning}]
            return out
        block = f"<think>\n{reasoning}\n</think>\n\n"
        content = out.get("content")
        if isinstance(content, list):
            out["content"] = [{"type": "text", "text": block}] + content
        else:
            out["content"] = block + (content if isinstance(content, str) else "")
        return out

    # -- beyond chat (docs/beyond-chat.md) --------------------------------------------
    # Speech: POST /v1/t2a_v2, streamed as events of hex audio
    # (https://platform.minimax.io/docs/api-reference/speech-t2a-http,
    # https://platform.minimaxi.com/document/t2a_http). All six names are on MiniMax's
    # rate-limit tables, T2A v2 row (https://platform.minimaxi.com/docs/guides/rate-limits,
    # https://platform.minimax.io/docs/guides/rate-limits, read 2026-12-06).
    speech_models = ("speech-2.8-hd", "speech-2.8-turbo", "speech-2.6-hd", "speech-2.6-turbo",
                     "speech-02-hd", "speech-02-turbo")
    speech_transport = "sse"
    # OpenAI's voice names -> MiniMax system voices
    # (https://platform.minimax.io/docs/faq/system-voice-id); any other name is sent as
    # a MiniMax voice_id (system, cloned or designed), which MiniMax itself checks.
    OPENAI_VOICES = {
        "alloy": "English_expressive_narrator", "ash": "English_Trustworth_Man",
        "ballad": "English_magnetic_voiced_man", "coral": "English_Upbeat_Woman",
        "echo": "English_Aussie_Bloke", "fable": "English_captivating_female1",
        "onyx": "English_magnetic_voiced_man", "nova": "English_radiant_girl",
        "sage": "English_CalmWoman", "shimmer": "English_compelling_lady1",
        "verse": "English_expressive_narrator"}
    # Streamed audio comes as mp3, pcm or flac (wav only without streaming: unverified).
    _SPEECH_FORMATS = ("mp3", "pcm", "flac")

    def speech_request(self, body, key):
        fmt = body.get("response_format", "mp3")
        if fmt not in self._SPEECH_FORMATS:
            raise invalid_request(f"{self.name}: MiniMax streams {', '.join(self._SPEECH_FORMATS)}"
                                  f" audio, not {fmt}.", param="response_format")
        speed = body.get("speed")
        speed = 1 if speed is None else speed
        if not 0.5 <= speed <= 2.0:
            raise invalid_request(f"{self.name}: MiniMax's speed is 0.5 to 2.0.",
                                  param="speed")
        voice = self.OPENAI_VOICES.get(body["voice"], body["voice"])
        audio = {"format": fmt, "channel": 1,
                 # OpenAI's pcm is 24 kHz 16-bit mono; keep that meaning.
                 "sample_rate": 24000 if fmt == "pcm" else 32000}
        if fmt == "mp3":
            audio["bitrate"] = 128000
        return self.json_request("/t2a_v2", {
            "model": body["model"], "text": body["input"], "stream": True,
            "output_format": "hex",
            "voice_setting": {"voice_id": voice, "speed": speed, "vol": 1, "pitch": 0},
            "audio_setting": audio}, key, headers={"Accept": "text/event-stream"})

    def speech_characters(self, data):
        # `extra_info.usage_characters` ("计费字符数", the characters billed), in the
        # answer and the stream's last event (https://platform.minimaxi.com/document/
        # t2a_http, read 2026-12-06). The check first: most events are hex audio only.
        if '"usage_characters"' not in (data if isinstance(data, str)
                                        else data.decode("utf-8", "replace")):
            return None
        try:
            n = (json.loads(data).get("extra_info") or {}).get("usage_characters")
        except (ValueError, AttributeError):
            return None
        return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None

    def speech_decoder(self):
        sent = bytearray()

        def decode(data: str) -> bytes:
            event = json.loads(data)
            err = self.body_error(event)
            if err is not None:
                raise err
            part = event.get("data") or {}
            audio = bytes.fromhex(part.get("audio") or "")
            # The last event (status 2) may repeat the whole audio: send only what is new.
            if part.get("status") == 2 and sent and audio.startswith(sent):
                audio = audio[len(sent):]
            sent.extend(audio)
            return audio
        return decode

    # -- images: POST /v1/image_generation (the pages cited above _ASPECTS) -------------
    # Models image-01 and image-01-live; prompt at most 1,500 characters; n 1-9;
    # `aspect_ratio` (default 1:1) or, for image-01 only, `width` and `height` together,
    # 512-2048 px in multiples of 8; response_format url (valid 24 h) or base64; seed,
    # prompt_optimizer, aigc_watermark; `style` for image-01-live. The answer:
    # `{"id", "data": {"image_urls": [...]} (or "image_base64"), "metadata":
    # {"success_count", "failed_count"}, "base_resp"}`; errors come as HTTP 200 with a
    # non-zero base_resp.status_code (body_error). MiniMax-H3-Image's OpenAI-shaped
    # /v1/images/generations (https://platform.minimax.io/docs/api-reference/
    # image-generation-h3-generations) is not wired: its parameters were not readable.
    # 21:9 being image-01 only is 3p, unverified: not enforced (MiniMax would say 2013).
    # No embeddings: `embo-01` (/v1/embeddings, `texts`, `type: db|query`) appears only in
    # MiniMax's old docs as third parties mirror them; the current docs
    # (https://platform.minimax.io/docs/faq/about-apis, .../faq/models) name none.
    image_models = ("image-01", "image-01-live")
    images_url_only = False
    _IMAGE_EXTRA = ("seed", "prompt_optimizer", "aigc_watermark", "style")

    def images_request(self, body, key):
        model, vendor = body["model"], f"{self.name} ({body['model']})"
        if len(body["prompt"]) > 1500:
            raise invalid_request(f"{vendor}: MiniMax takes prompts of at most 1,500 "
                                  "characters.", param="prompt")
        n = body.get("n") or 1
        if n > 9:
            raise invalid_request(f"{vendor}: MiniMax makes 1 to 9 images per request.",
                                  param="n")
        out = {"model": model, "prompt": body["prompt"], "n": n,
               "response_format": "base64" if body.get("response_format") == "b64_json"
               else "url"}
        ratio = body.get("aspect_ratio")  # MiniMax's own field, as an extra body field
        if ratio is not None and (not isinstance(ratio, str) or ratio not in _ASPECTS):
            raise invalid_request(f"{vendor}: `aspect_ratio` is one of "
                                  f"{', '.join(_ASPECTS)}.", param="aspect_ratio")
        if body.get("size") is not None:
            # A preset's own size goes as its aspect_ratio; image-01 takes any other
            # size in range as width/height (MiniMax lets aspect_ratio override those, so
            # only one is sent); OpenAI's DALL-E sizes otherwise become the preset of
            # their orientation.
            w, h = parse_size(body["size"])
            custom = model == "image-01" and 512 <= w <= 2048 and 512 <= h <= 2048 \
                and w % 8 == h % 8 == 0
            ratio = _RATIO_OF.get((w, h)) or (None if custom else _OPENAI_SIZES.get((w, h)))
            if ratio is None and custom:
                out["width"], out["height"] = w, h
            elif ratio is None:
                presets = ", ".join(f"{a}x{b}" for a, b in _ASPECTS.values())
                raise refuse_size(vendor, body["size"], presets + (
                    ", or sides of 512-2048 px that are multiples of 8"
                    if model == "image-01" else " (other sizes: image-01 only)"))
        if ratio is not None:
            out["aspect_ratio"] = ratio
        for field in self._IMAGE_EXTRA:
            if body.get(field) is not None:
                out[field] = body[field]
        return self.json_request("/image_generation", out, key)

    def images_answer(self, raw, key):
        data = json.loads(raw)
        got = data.get("data")
        if not isinstance(got, dict):
            raise ValueError("no `data` object")
        items = [{"url": u} for u in got.get("image_urls") or () if isinstance(u, str)]
        items += [{"b64_json": b} for b in got.get("image_base64") or ()
                  if isinstance(b, str)]
        if not items:
            failed = (data.get("metadata") or {}).get("failed_count")
            raise vendor_error(self.name, 502, "MiniMax made none of the images"
                               + (f" (failed_count {failed})" if failed else ""))
        return {"data": items}


@hookimpl
def register_providers(register):
    register(MiniMax)

# Speech: a voice_id MiniMax does not know is the request's fault (unverified code: the
# official error table, https://platform.minimax.io/docs/api-reference/errorcode, was not
# readable in full).
_CODES.setdefault(2054, (400, "invalid_request_error", "unknown_voice"))
