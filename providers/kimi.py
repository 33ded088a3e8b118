"""Moonshot AI's Kimi API (https://platform.moonshot.cn/docs, international platform.moonshot.ai).

OpenAI-compatible. Quirk: a stream's final usage sits in `choices[0].usage`, not at the top
level where OpenAI clients look for it.
"""

from __future__ import annotations

import json

from freeapi import hookimpl
from freeapi.errors import vendor_error
from freeapi.provider import DISCOVER_OPTION, Provider, UpstreamRequest


class Kimi(Provider):
    type_name = "kimi"
    # The international platform (https://api.moonshot.ai/v1) takes its own keys: set
    # providers.kimi.base_url to use it.
    default_base_url = "https://api.moonshot.cn/v1"
    # A fallback for when GET /models cannot be asked (no server-side key, vendor down).
    models = (
        "kimi-k2.5", "kimi-k2-thinking", "kimi-k2-thinking-turbo", "kimi-k2-turbo-preview",
        "kimi-k2-0905-preview", "kimi-latest",
        "moonshot-v1-8k", "moonshot-v1-32k", "moonshot-v1-128k", "moonshot-v1-auto",
        "moonshot-v1-8k-vision-preview", "moonshot-v1-32k-vision-preview",
        "moonshot-v1-128k-vision-preview",
    )
    reasoning_models = frozenset({"kimi-k2.5", "kimi-k2-thinking", "kimi-k2-thinking-turbo"})
    owned_by = "moonshot"
    options = DISCOVER_OPTION
    rewrites_chunks = True

    def normalize_chunk(self, chunk):
        for choice in chunk.get("choices") or ():
            if isinstance(choice, dict) and "usage" in choice:
                usage = choice.pop("usage")
                if usage and not chunk.get("usage"):
                    chunk["usage"] = usage
        return chunk

    def key_check_request(self, key):
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

    # -- beyond chat (README "Beyond chat") -------------------------------------------
    # Vision: https://platform.moonshot.ai/docs/guide/use-kimi-vision-model names the
    # vision previews and kimi-k2.5 ("and so on"); kimi-latest is kept on the safe side
    # (a declared model is never refused images).
    vision_models = frozenset({"moonshot-v1-8k-vision-preview", "moonshot-v1-32k-vision-preview",
                               "moonshot-v1-128k-vision-preview", "kimi-k2.5", "kimi-latest"})
    # Web search (`-search`): the builtin `$web_search` tool, whose calls the caller hands
    # back as their own results (https://platform.moonshot.ai/docs/guide/use-web-search,
    # https://platform.moonshot.cn/docs/guide/use-web-search); the gateway does that.
    search_round_trip = True

    def search_body(self, body):
        tools = [t for t in body.get("tools") or () if not (
            isinstance(t, dict) and (t.get("function") or {}).get("name") == "$web_search")]
        return dict(body, tools=tools + [{"type": "builtin_function",
                                          "function": {"name": "$web_search"}}])

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
