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
from freeapi.errors import APIError, invalid_request
from freeapi.keys import redact
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
    # "Supported Models" of https://platform.minimax.io/docs/api-reference/text-openai-api;
    # every one reasons (inline <think>, or reasoning_details with reasoning_split). No free
    # model is documented.
    models = (
        "MiniMax-M3", "MiniMax-M2.7", "MiniMax-M2.7-highspeed", "MiniMax-M2.5",
        "MiniMax-M2.5-highspeed", "MiniMax-M2.1", "MiniMax-M2.1-highspeed", "MiniMax-M2",
    )
    reasoning_models = frozenset(models)
    # MiniMax spells its ids "MiniMax-..." (the pattern match is case-sensitive); the
    # lower-case spelling is sent on too, and MiniMax itself says whether it knows it.
    patterns = ("MiniMax-*", "minimax-*")
    owned_by = "minimax"
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

    # -- beyond chat (README "Beyond chat") -------------------------------------------
    # Speech: POST /v1/t2a_v2, streamed as events of hex audio
    # (https://platform.minimax.io/docs/api-reference/speech-t2a-http,
    # https://platform.minimaxi.com/document/t2a_http). speech-2.8-hd is in the official
    # example; the other names are as third-party SDKs list them (unverified).
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


@hookimpl
def register_providers(register):
    register(MiniMax)

# Speech: a voice_id MiniMax does not know is the request's fault (unverified code: the
# official error table, https://platform.minimax.io/docs/api-reference/errorcode, was not
# readable in full).
_CODES.setdefault(2054, (400, "invalid_request_error", "unknown_voice"))
