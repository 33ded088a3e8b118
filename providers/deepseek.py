"""DeepSeek's official API (https://api-docs.deepseek.com), as of December 2026.

- Models (https://api-docs.deepseek.com/, "Your First API Call"): `deepseek-flash`
  (V4.1 Flash); the older ids `deepseek-v4-flash` and `deepseek-v4-flash-vision-exp` are
  still accepted and served by V4.1 Flash; `deepseek-v4-pro` is routed to V4.1 Flash
  since 2026-09-14.
- `deepseek-chat` / `deepseek-reasoner` were retired on 2026-07-24 15:59 UTC
  (https://api-docs.deepseek.com/news/news260424): the vendor now answers 400 "Model Not
  Exist" for them, so the gateway translates them (chat: thinking disabled, reasoner:
  thinking enabled), as the vendor's migration notes map them.
- Thinking is ON by default, switched by `"thinking": {"type": "enabled" | "disabled"}`;
  `reasoning_effort` low / high / max (https://api-docs.deepseek.com/guides/thinking_mode).
  Every V4 model reasons, so every name gets `-fold` / `-silent`. An assistant turn that
  made tool calls must come back with its `reasoning_content`, or the API answers 400
  (same page, "Tool Calls").
- Image input (`image_url` parts) on flash; request bodies up to 48 MiB
  (https://api-docs.deepseek.com/guides/vision).
- Key check: `GET /user/balance` (`is_available`), free
  (https://api-docs.deepseek.com/api/get-user-balance).
- Errors: 402 balance, 429 rate limit (https://api-docs.deepseek.com/quick_start/error_codes).
"""

from __future__ import annotations

import json

from freeapi import hookimpl
from freeapi.errors import vendor_error
from freeapi.provider import Provider, UpstreamRequest

_THINKING_OFF = {"thinking": {"type": "disabled"}}
_THINKING_ON = {"thinking": {"type": "enabled"}}


class DeepSeek(Provider):
    type_name = "deepseek"
    default_base_url = "https://api.deepseek.com"
    # https://api-docs.deepseek.com/ ("Your First API Call")
    models = ("deepseek-flash", "deepseek-v4-pro", "deepseek-v4-flash")
    # The retired names, and the ones users of the older community proxies type.
    retired = {
        "deepseek-chat": ("deepseek-flash", _THINKING_OFF),
        "deepseek-coder": ("deepseek-flash", _THINKING_OFF),
        "deepseek-reasoner": ("deepseek-flash", _THINKING_ON),
        "deepseek-r1": ("deepseek-flash", _THINKING_ON),
        "deepseek-think": ("deepseek-flash", _THINKING_ON),
    }
    # A DeepSeek model released after this gateway routes here as is.
    patterns = ("deepseek-*",)
    reasoning_models = frozenset(models)
    owned_by = "deepseek"
    # https://api-docs.deepseek.com/guides/anthropic_api (base https://api.deepseek.com/anthropic)
    anthropic_base_url = "/anthropic"
    # GET /user/balance says `is_available` (see the key check below): a key out of
    # balance is re-checked by it and restored once the account can pay again.
    balance_check = True

    def is_reasoning(self, model: str) -> bool:
        return True  # every V4 model thinks unless the request disables it

    def thinks(self, body):
        thinking = (body or {}).get("thinking")
        return not (isinstance(thinking, dict) and thinking.get("type") == "disabled")

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

    # -- beyond chat (README "Beyond chat") -------------------------------------------
    # Every current model takes image_url parts (https://api-docs.deepseek.com/guides/vision);
    # declared for GET /v1/models' capabilities (nothing is refused).
    vision_models = frozenset(models)


@hookimpl
def register_providers(register):
    register(DeepSeek)
