"""DeepSeek's official API (https://api-docs.deepseek.com)."""

from __future__ import annotations

import json

from freeapi import hookimpl
from freeapi.errors import vendor_error
from freeapi.provider import Provider, UpstreamRequest


class DeepSeek(Provider):
    type_name = "deepseek"
    default_base_url = "https://api.deepseek.com"
    models = ("deepseek-chat", "deepseek-reasoner")
    # Names that users of the older community proxies type.
    aliases = {
        "deepseek-r1": "deepseek-reasoner",
        "deepseek-think": "deepseek-reasoner",
        "deepseek-coder": "deepseek-chat",
    }
    reasoning_models = frozenset({"deepseek-reasoner"})
    owned_by = "deepseek"
    # https://api-docs.deepseek.com/guides/anthropic_api (base https://api.deepseek.com/anthropic)
    anthropic_base_url = "/anthropic"

    def key_check_request(self, key):
        return UpstreamRequest("GET", self.base_url + "/user/balance", self.auth_headers(key))

    def key_check_result(self, status, headers, body, keys=()):
        # /user/balance answers 200 for any valid key; is_available says whether it can
        # still pay for calls.
        if status != 200:
            return super().key_check_result(status, headers, body, keys)
        try:
            return bool(json.loads(body)["is_available"])
        except (ValueError, KeyError, TypeError):
            raise vendor_error(self.name, 502, "unexpected answer from /user/balance") from None


@hookimpl
def register_providers(register):
    register(DeepSeek)
