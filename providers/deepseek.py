"""DeepSeek's official API (https://api-docs.deepseek.com), as of December 2026.

- Models, per the pricing page (https://api-docs.deepseek.com/zh-cn/quick_start/pricing,
  read 2026-12-06): `deepseek-flash` (DeepSeek-V4.1-Flash-1017; image input; concurrency
  2500) and `deepseek-v4-pro` (its own model, DeepSeek-V4-Pro-0813, at its own price; no
  image input, "图像理解: 不支持"; concurrency 500). Footnote 1 of that page: the older ids
  `deepseek-v4-flash` and `deepseek-v4-flash-vision-exp` are still accepted and served by
  V4.1 Flash at the Flash price. (That v4-pro was routed to Flash from 2026-09-14 came
  from 3p articles only; the vendor's November page contradicts it.)
- `deepseek-chat` / `deepseek-reasoner` were retired on 2026-07-24 15:59 UTC
  (https://api-docs.deepseek.com/news/news260424): the vendor now answers 400 "Model Not
  Exist" for them, so the gateway translates them (chat: thinking disabled, reasoner:
  thinking enabled), as the vendor's migration notes map them.
- Thinking is ON by default, switched by `"thinking": {"type": "enabled" | "disabled"}`;
  `reasoning_effort` low / high / max (https://api-docs.deepseek.com/guides/thinking_mode).
  Every V4 model reasons, so every name gets `-fold` / `-silent`. An assistant turn that
  made tool calls must come back with its `reasoning_content`, or the API answers 400
  (same page, "Tool Calls").
- Image input (`image_url` parts) on flash only; request bodies up to 48 MiB
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
    # https://api-docs.deepseek.com/zh-cn/quick_start/pricing (read 2026-12-06): the two
    # current ids, then the older Flash id the vendor still accepts (footnote 1).
    models = ("deepseek-flash", "deepseek-v4-pro", "deepseek-v4-flash")
    # The retired names, and the ones users of the older community proxies type. The
    # underscore spellings are the model names the seed project documented
    # (`deepseek_chat`, `deepseek_code`); DeepSeek never had them, and the `deepseek-*`
    # pattern does not match them, so without these they were a 404. They go where their
    # hyphenated namesakes go: the coding name like `deepseek-coder` (Flash, thinking off:
    # a code assistant wants answers, not long reasoning, and a client wanting thinking
    # sends `thinking` itself, which wins).
    retired = {
        "deepseek-chat": ("deepseek-flash", _THINKING_OFF),
        "deepseek_chat": ("deepseek-flash", _THINKING_OFF),
        "deepseek-coder": ("deepseek-flash", _THINKING_OFF),
        "deepseek_code": ("deepseek-flash", _THINKING_OFF),
        "deepseek-reasoner": ("deepseek-flash", _THINKING_ON),
        "deepseek-r1": ("deepseek-flash", _THINKING_ON),
        "deepseek-think": ("deepseek-flash", _THINKING_ON),
    }
    # A DeepSeek model released after this gateway routes here as is.
    patterns = ("deepseek-*",)
    reasoning_models = frozenset(models)
    owned_by = "deepseek"
    # Free tier (the `free` model): none. "No free model"; a granted balance is spent before
    # a topped-up one (https://api-docs.deepseek.com/quick_start/pricing, read 2026-12-06).
    free_tier = ()
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

    # -- beyond chat (docs/beyond-chat.md) --------------------------------------------
    # Image input: Flash only ("图像理解": 支持 for deepseek-flash, 不支持 for
    # deepseek-v4-pro, https://api-docs.deepseek.com/zh-cn/quick_start/pricing, read
    # 2026-12-06; https://api-docs.deepseek.com/guides/vision). `deepseek-v4-flash` is
    # served by V4.1 Flash, so it takes them too. Images sent to v4-pro get the gateway's
    # 400 naming these, not an opaque vendor error.
    vision_models = frozenset({"deepseek-flash", "deepseek-v4-flash"})


@hookimpl
def register_providers(register):
    register(DeepSeek)
