"""Alibaba Cloud Model Studio (DashScope) in OpenAI-compatible mode
(https://help.aliyun.com/zh/model-studio/; international: alibabacloud.com/help/en/model-studio).

Quirks: QwQ, QVQ, Qwen-Omni and the open-source Qwen3 models only stream, so a client's
`stream: false` is streamed from the vendor and assembled into one completion; an account
in arrears is HTTP 400 `Arrearage`, surfaced as 402 so key rotation treats it as the key's
fault. `enable_thinking`, `enable_search` and other DashScope fields pass through untouched.
"""

from __future__ import annotations

import re

from freeapi import hookimpl
from freeapi.config import ConfigError
from freeapi.errors import vendor_error
from freeapi.keys import redact
from freeapi.provider import DISCOVER_OPTION, Provider, error_detail

# Over-matching is harmless (such a model is merely streamed and assembled), missing one
# is a vendor error, so the open-source Qwen3 sizes (`qwen3-32b`, `qwen3-30b-a3b`...) are
# matched by shape.
_STREAM_ONLY = re.compile(r"^(qwq|qvq|qwen-omni|qwen2\.5-omni|qwen3-omni|qwen3-\d+(\.\d+)?b)")


class Qwen(Provider):
    type_name = "qwen"
    # International (Singapore): https://dashscope-intl.aliyuncs.com/compatible-mode/v1;
    # keys are bound to their region.
    default_base_url = "https://dashscope.aliyuncs.com/compatible-mode/v1"
    # https://help.aliyun.com/zh/model-studio/anthropic-api-messages (…/apps/anthropic)
    anthropic_base_url = "/apps/anthropic"
    anthropic_models = ("qwen*",)  # "千问系列模型" only, per that page
    # DashScope streams carry usage only with stream_options.include_usage.
    usage_on_request = True
    models = (
        "qwen-max", "qwen-plus", "qwen-turbo", "qwen-flash", "qwen-long", "qwen3-max",
        "qwen3-coder-plus", "qwen-vl-max", "qwen-vl-plus",
        "qwq-plus", "qwq-32b", "qvq-max", "qwen-omni-turbo",
        "qwen3-235b-a22b", "qwen3-32b", "qwen3-30b-a3b", "qwen3-14b", "qwen3-8b",
    )
    reasoning_models = frozenset({"qwq-plus", "qwq-32b", "qvq-max"})
    owned_by = "alibaba"
    options = {**DISCOVER_OPTION, "stream_only_models": ((list,), None)}

    def __init__(self, config):
        super().__init__(config)
        extra = config.options.get("stream_only_models") or []
        if not all(isinstance(m, str) for m in extra):
            raise ConfigError(f"providers.{self.name}.stream_only_models",
                              "expected a list of model names")
        self._stream_only_extra = frozenset(extra)

    def stream_only(self, model):
        return bool(_STREAM_ONLY.match(model)) or model in self._stream_only_extra

    def error_from(self, status, headers, body, keys=()):
        if status == 400:
            message, code = error_detail(body)
            if code == "Arrearage":
                return vendor_error(self.name, 402, redact(message, keys), code="Arrearage")
        return super().error_from(status, headers, body, keys)


@hookimpl
def register_providers(register):
    register(Qwen)
