"""Alibaba Cloud Model Studio (DashScope) in OpenAI-compatible mode
(https://help.aliyun.com/zh/model-studio/; international: alibabacloud.com/help/en/model-studio).

Quirks: QVQ, QwQ, Qwen-Omni and the thinking-only open-source Qwen3 models only stream, and
so does any request with `enable_thinking: true`, so a client's `stream: false` is streamed
from the vendor and assembled into one completion; an account in arrears (HTTP 400
`Arrearage`) and a used-up free tier in "free tier only" mode (HTTP 403
`AllocationQuota.FreeTierOnly`) are surfaced as 402 so key rotation treats them as the
key's balance, not as a bad request or a dead key. `enable_thinking`, `enable_search` and
other DashScope fields pass through untouched.
"""

from __future__ import annotations

import re

from freeapi import hookimpl
from freeapi.config import ConfigError
from freeapi.errors import APIError
from freeapi.keys import redact
from freeapi.provider import DISCOVER_OPTION, NO_BALANCE_OPTION, Provider, error_detail

# Over-matching is harmless (such a model is merely streamed and assembled), missing one
# is a vendor error, so these are matched by shape: QVQ "仅支持流式输出"
# (https://help.aliyun.com/zh/model-studio/visual-reasoning), QwQ, Qwen-Omni, and the
# thinking-only open-source sizes (`qwen3-32b`, `qwen3-vl-32b-thinking`...).
_STREAM_ONLY = re.compile(r"^(qwq|qvq|qwen-omni|qwen2\.5-omni|qwen3-omni|qwen3-\d+(\.\d+)?b"
                          r"|qwen3-vl-.*-thinking)")

# HTTP status -> the `code` values that mean the key's money, not the request.
_NO_BALANCE = {
    # "Access denied, please make sure your account is in good standing" (arrears):
    # https://help.aliyun.com/zh/model-studio/error-code
    400: {"Arrearage"},
    # "The free tier of the model has been exhausted... disable the 'use free tier only'
    # mode": the key is fine, its free quota is spent
    # (https://www.alibabacloud.com/help/en/model-studio/new-free-quota "Free Quota Only";
    # the error text itself seen in 3p logs only).
    403: {"AllocationQuota.FreeTierOnly"},
}


class Qwen(Provider):
    type_name = "qwen"
    # Beijing. Singapore (the only region with a free quota,
    # https://www.alibabacloud.com/help/en/model-studio/new-free-quota):
    # https://dashscope-intl.aliyuncs.com/compatible-mode/v1; US and per-workspace domains:
    # https://www.alibabacloud.com/help/model-studio/base-url. Keys are bound to their region.
    default_base_url = "https://dashscope.aliyuncs.com/compatible-mode/v1"
    # https://help.aliyun.com/zh/model-studio/anthropic-api-messages (…/apps/anthropic)
    anthropic_base_url = "/apps/anthropic"
    anthropic_models = ("qwen*",)  # "千问系列模型" only, per that page
    # DashScope streams carry usage only with stream_options.include_usage.
    usage_on_request = True
    models = (
        # https://help.aliyun.com/zh/model-studio/models ("选择模型", 2026).
        "qwen3.7-max", "qwen3.7-plus", "qwen3.6-flash",
        # https://help.aliyun.com/zh/model-studio/deep-thinking (hybrid thinking example).
        "qwen-plus",
        # https://help.aliyun.com/zh/model-studio/visual-reasoning (Qwen3-VL hybrid
        # thinking; QVQ thinking-only, stream-only).
        "qwen3-vl-plus", "qvq-max",
        # https://www.alibabacloud.com/help/en/model-studio/qwq-plus.md (stream only).
        "qwq-plus",
    )
    reasoning_models = frozenset({"qwen3.7-max", "qwen3.7-plus", "qwen3.6-flash", "qwen-plus",
                                  "qwen3-vl-plus", "qvq-max", "qwq-plus"})
    # No retired Qwen name with a documented successor was found (names dropped from the
    # built-in list still reach DashScope through the patterns below).
    retired = {}
    # DashScope's ids put a hyphen after "qwen" or its version (qwen-plus, qwen3.7-max,
    # qwen3-vl-plus); local servers' Qwen tags (Ollama's qwen2.5:0.5b, qwen3:8b) do not,
    # so a bare `qwen*` would send those to DashScope.
    patterns = ("qwen-*", "qwen[0-9]*-*", "qwq-*", "qvq-*")
    owned_by = "alibaba"
    options = {**DISCOVER_OPTION, "stream_only_models": ((list,), None), **NO_BALANCE_OPTION}

    def __init__(self, config):
        super().__init__(config)
        extra = config.options.get("stream_only_models") or []
        if not all(isinstance(m, str) for m in extra):
            raise ConfigError(f"providers.{self.name}.stream_only_models",
                              "expected a list of model names")
        self._stream_only_extra = frozenset(extra)

    def stream_only(self, model, body=None):
        # "parameter.enable_thinking must be set to false for non-streaming calls"
        # (https://help.aliyun.com/en/model-studio/error-code): thinking is streamed only.
        if body is not None and body.get("enable_thinking") is True:
            return True
        return bool(_STREAM_ONLY.match(model)) or model in self._stream_only_extra

    def error_from(self, status, headers, body, keys=()):
        if status in _NO_BALANCE:
            message, code = error_detail(body)
            if code in _NO_BALANCE[status]:
                return APIError(402, f"{self.name}: insufficient balance (HTTP {status} "
                                     f"{code}): {redact(message, keys)}",
                                type="insufficient_quota", code=code)
        return super().error_from(status, headers, body, keys)


@hookimpl
def register_providers(register):
    register(Qwen)
