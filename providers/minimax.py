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


from freeapi import hookimpl
from freeapi.errors import APIError
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


@hookimpl
def register_providers(register):
    register(MiniMax)
