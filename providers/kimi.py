"""Moonshot AI's Kimi API (https://platform.kimi.com/docs, international
https://platform.kimi.ai/docs; keys of the two platforms are not interchangeable).

OpenAI-compatible. Quirks: a stream's final usage sits in `choices[0].usage`, not at the top
level where OpenAI clients look for it; an account out of balance is HTTP 429
`exceeded_current_quota_error`, which is surfaced as 402 so the key is taken out until the
balance check (GET /users/me/balance) sees money again, instead of being retried in seconds.
"""

from __future__ import annotations

import json
import re

from freeapi import hookimpl
from freeapi.errors import APIError, vendor_error
from freeapi.keys import redact
from freeapi.provider import DISCOVER_OPTION, Provider, UpstreamRequest, error_detail

# "...please try again after {time} seconds" in the rate-limit answers
# (https://platform.kimi.com/docs/api/errors.md): the key's cooldown, when no Retry-After.
_AFTER = re.compile(r"try again after (\d+(?:\.\d+)?) ?s", re.IGNORECASE)


def _always_thinks(model) -> bool:
    # kimi-k2-thinking and -turbo: "强制启用思考" (use-kimi-k2-thinking-model.md)
    return str(model or "").startswith("kimi-k2-thinking")


class Kimi(Provider):
    type_name = "kimi"
    # https://platform.kimi.com/docs/guide/use-kimi-k2-thinking-model.md (api.moonshot.cn);
    # the international platform (https://api.moonshot.ai/v1) takes its own keys: set
    # providers.kimi.base_url to use it.
    default_base_url = "https://api.moonshot.cn/v1"
    # A fallback for when GET /models cannot be asked (no server-side key, vendor down).
    # Model list: https://platform.kimi.com/docs/models; kimi-k2.6 ("推荐使用", thinking on
    # by default): https://platform.kimi.com/docs/guide/use-kimi-k2-thinking-model.md
    models = (
        "kimi-k2.6", "kimi-k2.5", "kimi-k2-thinking", "kimi-k2-thinking-turbo",
        "kimi-k2-0905-preview", "kimi-k2-turbo-preview", "kimi-k2-0711-preview",
        "moonshot-v1-8k", "moonshot-v1-32k", "moonshot-v1-128k",
        "moonshot-v1-8k-vision-preview", "moonshot-v1-32k-vision-preview",
        "moonshot-v1-128k-vision-preview",
    )
    # Not listed: `kimi-k3`, `kimi-k2.7-code` and `kimi-k2.7-code-highspeed`, named only by
    # third parties (promptfoo.dev/docs/providers/moonshot, docs.openclaw.ai, model
    # resellers; 3p, unverified): no official Kimi page naming them could be read on
    # 2026-12-06. The `kimi-*` pattern sends them to Kimi as is, and discovery
    # (`discover: true`, GET /models) lists them once Kimi does.
    # kimi-k2.6 / kimi-k2.5 think unless `thinking: {"type": "disabled"}`; kimi-k2-thinking*
    # always do (same guide).
    reasoning_models = frozenset({"kimi-k2.6", "kimi-k2.5", "kimi-k2-thinking",
                                  "kimi-k2-thinking-turbo"})
    # https://platform.kimi.com/docs/models "已下线模型": kimi-latest closed to new users on
    # 2026-01-28, kimi-thinking-preview retired on 2025-11-11; the page points both to the
    # newest Kimi model. kimi-latest was a chat model (no thinking), so it keeps answering
    # without thinking; kimi-thinking-preview keeps its thinking.
    retired = {
        "kimi-latest": ("kimi-k2.6", {"thinking": {"type": "disabled"}}),
        "kimi-thinking-preview": ("kimi-k2.6", {"thinking": {"type": "enabled"}}),
    }
    patterns = ("kimi-*", "moonshot-*")
    owned_by = "moonshot"
    # Free tier (the `free` model): none. International accounts top up at least $1 first;
    # the $5 voucher comes after $5 spent (https://platform.moonshot.ai/docs/pricing/limits,
    # read 2026-12-06).
    free_tier = ()
    options = DISCOVER_OPTION
    rewrites_chunks = True
    # GET /users/me/balance shows available_balance: a key out of balance is re-checked by it.
    balance_check = True

    def thinks(self, body):
        # kimi-k2-thinking* always think ("强制启用思考"); kimi-k2.6 / kimi-k2.5 think
        # unless `thinking: {"type": "disabled"}`
        # (https://platform.moonshot.cn/docs/guide/use-kimi-k2-thinking-model,
        # https://platform.kimi.com/docs/api/models-overview "Kimi K2.6 — thinking 参数").
        # `body` is the vendor's request, its `model` the upstream id.
        body = body or {}
        if _always_thinks(body.get("model")):
            return True
        thinking = body.get("thinking")
        return not (isinstance(thinking, dict) and thinking.get("type") == "disabled")

    def normalize_chunk(self, chunk):
        for choice in chunk.get("choices") or ():
            if isinstance(choice, dict) and "usage" in choice:
                usage = choice.pop("usage")
                if usage and not chunk.get("usage"):
                    chunk["usage"] = usage
        return chunk

    def error_from(self, status, headers, body, keys=()):
        if status == 403:
            message, etype = error_detail(body)
            # "A 403 error typically indicates insufficient account balance"
            # (https://www.kimi.com/help/kimi-api/api-troubleshooting); other 403s
            # (permission_denied_error, .../docs/api/errors.md) keep their meaning.
            if "balance" in message.lower() or "quota" in str(etype).lower():
                return APIError(402, f"{self.name}: insufficient balance (HTTP 403): "
                                     f"{redact(message, keys)}",
                                type="insufficient_quota", code="insufficient_balance")
        if status == 429:
            message, etype = error_detail(body)
            # HTTP 429 with this type means the account is suspended for insufficient
            # balance, not a rate limit (https://platform.kimi.com/docs/api/errors.md;
            # https://forum.moonshot.ai/t/api-billing-behaviour/111): 402, so the key
            # waits for the balance check instead of a few seconds' cooldown.
            if etype == "exceeded_current_quota_error":
                return APIError(402, f"{self.name}: insufficient balance (HTTP 429 "
                                     f"{etype}): {redact(message, keys)}",
                                type="insufficient_quota", code="insufficient_balance")
            # rate_limit_reached_error (organization max concurrency / RPM / TPM / TPD) and
            # engine_overloaded_error stay 429: a cooldown, never a dead key
            # (https://www.kimi.com/help/kimi-api/api-rate-limits).
            after = headers.get("Retry-After")
            found = _AFTER.search(message) if after is None else None
            if found:
                err = super().error_from(status, headers, body, keys)
                err.retry_after = found.group(1)
                return err
        return super().error_from(status, headers, body, keys)

    def chunk_error(self, chunk, keys=()):
        err = super().chunk_error(chunk, keys)
        detail = chunk.get("error") if isinstance(chunk.get("error"), dict) else {}
        if err is not None and detail.get("type") == "exceeded_current_quota_error":
            err.status, err.type, err.code = 402, "insufficient_quota", "insufficient_balance"
        return err

    def key_check_request(self, key):
        # GET /v1/users/me/balance, the "balance query API" of
        # https://www.kimi.com/help/kimi-api/api-troubleshooting; reference page
        # https://platform.kimi.ai/docs/api/balance (known from 3p research only).
        return UpstreamRequest("GET", self.base_url + "/users/me/balance", self.auth_headers(key))

    def key_check_result(self, status, headers, body, keys=()):
        # The inference API refuses calls once available_balance (cash + vouchers) is <= 0.
        if status != 200:
            return super().key_check_result(status, headers, body, keys)
        try:
            return float(json.loads(body)["data"]["available_balance"]) > 0
        except (ValueError, KeyError, TypeError):
            raise vendor_error(self.name, 502, "unexpected answer from /users/me/balance") \
                from None

    # -- beyond chat (docs/beyond-chat.md) --------------------------------------------
    # Vision: https://platform.moonshot.ai/docs/guide/use-kimi-vision-model names the
    # vision previews and kimi-k2.5 ("and so on"); its successor kimi-k2.6 is kept on the
    # safe side (a declared model is never refused images).
    vision_models = frozenset({"moonshot-v1-8k-vision-preview", "moonshot-v1-32k-vision-preview",
                               "moonshot-v1-128k-vision-preview", "kimi-k2.5", "kimi-k2.6"})
    # Web search (`-search`): the builtin `$web_search` tool, whose calls the caller hands
    # back as their own results (https://platform.moonshot.ai/docs/guide/use-web-search,
    # https://platform.moonshot.cn/docs/guide/use-web-search); the gateway does that. The
    # builtin tool needs thinking disabled (https://platform.kimi.com/docs/guide/use-web-search.md):
    # kimi-k2.6 / kimi-k2.5 take `thinking: {"type": "disabled"}`, which the `-search`
    # route sets even over a client's `enabled`; kimi-k2-thinking* cannot switch it off
    # (https://platform.kimi.com/docs/guide/use-kimi-k2-thinking-model.md), so their
    # `-search` is a 400. A request without thinking also gets the plain first-byte
    # timeout (thinks() reads the same switch).
    search_round_trip = True

    def search_body(self, body):
        tools = [t for t in body.get("tools") or () if not (
            isinstance(t, dict) and (t.get("function") or {}).get("name") == "$web_search")]
        out = dict(body, tools=tools + [{"type": "builtin_function",
                                         "function": {"name": "$web_search"}}])
        model = body.get("model")
        if model in self.reasoning_models and not _always_thinks(model):
            out["thinking"] = {"type": "disabled"}
        return out

    def search_refusal(self, model):
        if _always_thinks(model):
            return ("Kimi's $web_search works only with thinking disabled, and the "
                    "kimi-k2-thinking models always think; ask for kimi-k2.6-search (it "
                    "searches with thinking off) or use the model without the suffix.")
        return None

    # Documents: the files API with purpose "file-extract"; the extracted text goes in a
    # system message (https://platform.moonshot.ai/docs/api/files.en-US,
    # https://platform.moonshot.ai/docs/guide/use-kimi-api-for-file-based-qa). At most
    # 1,000 files per account: the gateway deletes its upload once it has the text.
    def document_upload(self, filename, media_type, data, key):
        return self.multipart_request("/files", {"purpose": "file-extract"}, "file",
                                      filename, media_type, data, key)

    def document_text_request(self, file_id, key):
        return UpstreamRequest("GET", f"{self.base_url}/files/{file_id}/content",
                               self.auth_headers(key))

    def document_delete(self, file_id, key):
        return UpstreamRequest("DELETE", f"{self.base_url}/files/{file_id}",
                               self.auth_headers(key))


@hookimpl
def register_providers(register):
    register(Kimi)
