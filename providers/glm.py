"""Zhipu's GLM API (https://docs.bigmodel.cn, international https://docs.z.ai).

OpenAI-compatible with Bearer API keys. Quirks: the HTTP status is coarse (GLM answers 429
for an account in arrears as well as for rate limits); the business code in
`{"error": {"code": "1113", "message": ...}}` says what happened, so it decides the status
and OpenAI error type the client sees. Stream chunks lack `object`, which is filled in.
"""

from __future__ import annotations

from freeapi import hookimpl
from freeapi.errors import APIError
from freeapi.keys import redact
from freeapi.provider import Provider, error_detail

# Business code -> (status, OpenAI type, OpenAI-style code), from the vendor's error table.
_AUTH = (401, "authentication_error", "invalid_api_key")
_ACCOUNT = (403, "permission_error", "account_unavailable")
_BAD = (400, "invalid_request_error", None)
_BUSY = (429, "rate_limit_error", "rate_limit_exceeded")
_QUOTA = (429, "insufficient_quota", "quota_exceeded")
_CODES = {
    **{c: _AUTH for c in (1000, 1001, 1002, 1003, 1004)},
    **{c: _ACCOUNT for c in (1110, 1111, 1112, 1120, 1121, 1220)},
    1113: (402, "insufficient_quota", "insufficient_balance"),
    1211: (404, "not_found_error", "model_not_found"),
    **{c: _BAD for c in (1200, 1210, 1212, 1213, 1214, 1215, 1231)},
    1221: (404, "not_found_error", "api_offline"),
    1222: (404, "not_found_error", "api_not_found"),
    1261: (400, "invalid_request_error", "context_length_exceeded"),
    1300: (400, "invalid_request_error", "blocked_by_policy"),
    1301: (400, "invalid_request_error", "content_filter"),
    **{c: _BUSY for c in (1302, 1303, 1305, 1312)},
    **{c: _QUOTA for c in (1304, 1308, 1310)},
}
_MEANING = {401: "rejected the API key", 402: "insufficient balance", 403: "refused access",
            404: "does not know this resource", 429: "rate limit or quota reached"}


class GLM(Provider):
    type_name = "glm"
    default_base_url = "https://open.bigmodel.cn/api/paas/v4"
    # Claude API compatible: https://docs.bigmodel.cn/cn/guide/develop/claude/introduction
    # (https://open.bigmodel.cn/api/anthropic; api.z.ai/api/anthropic for z.ai)
    anthropic_base_url = "/api/anthropic"
    models = (
        # Free of charge (see the vendor's price page).
        "glm-4-flash", "glm-4-flash-250414", "glm-4.5-flash", "glm-z1-flash", "glm-4v-flash",
        # Paid.
        "glm-4-plus", "glm-4-air-250414", "glm-4-airx", "glm-4-flashx-250414", "glm-4-long",
        "glm-4.5", "glm-4.5-air", "glm-4.5-x", "glm-4.6", "glm-4.7", "glm-z1-air",
        "glm-z1-airx",
    )
    # Thinking models (`thinking: {"type": "enabled"|"disabled"}` passes through untouched).
    reasoning_models = frozenset({
        "glm-4.5-flash", "glm-z1-flash", "glm-4.5", "glm-4.5-air", "glm-4.5-x", "glm-4.6",
        "glm-4.7", "glm-z1-air", "glm-z1-airx",
    })
    owned_by = "zhipu"
    # No free authenticated GET is documented; a one-token chat with a free model is.
    options = {"check_model": ((str,), "glm-4-flash")}
    # GLM's stream chunks have no `object`; strict OpenAI clients want it.
    rewrites_chunks = True

    def normalize_chunk(self, chunk):
        chunk.setdefault("object", "chat.completion.chunk")
        return chunk

    def normalize_completion(self, data):
        data.setdefault("object", "chat.completion")
        return data

    def error_from(self, status, headers, body, keys=()):
        if 200 <= status < 300:
            return None
        message, code = error_detail(body)
        try:
            number = int(code)
        except (TypeError, ValueError):
            return super().error_from(status, headers, body, keys)
        out, etype, ocode = _CODES.get(number) or (
            (status, None, None) if status < 500 else (502, "server_error", None))
        meaning = _MEANING.get(out) or ("rejected the request" if out < 500 else "server error")
        return APIError(out, f"{self.name}: {meaning} (GLM code {number}): "
                             f"{redact(message, keys)}", type=etype,
                        code=ocode or f"glm_{number}", retry_after=headers.get("Retry-After"))

    def key_check_request(self, key):
        return self.chat_ping(key, self.config.options.get("check_model") or "glm-4-flash")


@hookimpl
def register_providers(register):
    register(GLM)
