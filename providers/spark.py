"""iFlytek Spark's HTTP API (https://www.xfyun.cn/doc/spark/HTTP调用文档.html).

`Authorization: Bearer <APIPassword>` (from the console; `APIKey:APISecret` works too,
https://www.xfyun.cn/doc/spark/X1http.html). Quirks: answers carry top-level
`code`/`message`/`sid`, and a non-zero `code` is an error even with HTTP 200; answers and
stream chunks may lack `id`/`object`/`created`/`model`/`finish_reason`, which are filled in;
the X reasoning models live under `/v2/chat/completions`, the others under `/v1`.
"""

from __future__ import annotations

import time

from freeapi import hookimpl
from freeapi.config import ConfigError
from freeapi.errors import APIError
from freeapi.free_tier import DAILY
from freeapi.keys import redact
from freeapi.provider import NO_BALANCE_OPTION, Provider, UpstreamRequest

# code -> (status, OpenAI type, code), from the vendor's error code list (the "错误码" section
# of https://www.xfyun.cn/doc/spark/HTTP调用文档.html).
_BUSY = (429, "rate_limit_error", "rate_limit_exceeded")
_FILTERED = (400, "invalid_request_error", "content_filter")
_CODES = {
    10007: _BUSY,
    10013: _FILTERED, 10014: _FILTERED, 10019: _FILTERED,
    10907: (400, "invalid_request_error", "context_length_exceeded"),
    11200: (403, "permission_error", "not_authorized"),
    11201: (429, "insufficient_quota", "daily_limit"),
    11202: _BUSY, 11203: _BUSY,
}



def _fill(data: dict, object_name: str) -> dict:
    data.pop("code", None)
    data.pop("message", None)
    data.setdefault("id", data.get("sid") or "chatcmpl-spark")
    data["object"] = object_name
    data.setdefault("created", int(time.time()))
    return data


class Spark(Provider):
    type_name = "spark"
    default_base_url = "https://spark-api-open.xf-yun.com/v1"
    # https://www.xfyun.cn/doc/spark/HTTP调用文档.html: lite is free; generalv3 is Pro,
    # generalv3.5 is Max. The deep-reasoning model X1.5 is `spark-x` on /v2, and X1 was
    # upgraded into it ("X1的历史用户请求将默认指向该版本",
    # https://www.xfyun.cn/doc/spark/X1http.html). Spark X2.5's ids (spark-x2.5,
    # spark-x2.5-4b, spark-x2.5-1.7b: https://www.xfyun.cn/doc/spark/Spark-X2.5.html) are
    # not built in: its endpoint could not be read (unverified); add them with `v2_models`
    # or as an `openai` instance once known.
    models = ("lite", "generalv3", "pro-128k", "generalv3.5", "max-32k", "4.0Ultra",
              "spark-x")
    free_models = frozenset({"lite"})
    # Not in the `free` model's built-in offers: no current official page saying Lite is
    # free could be read (3p only: LobeHub's provider card "完全免费开放"; juejin 2024
    # "tokens 总量无限, QPS 2"; 3p, unverified). An operator who sees it free in the
    # console adds it: `free: {add: [spark/lite]}` (docs: the free model). If it is
    # added, its daily cap (11201, `daily_limit`) is remembered until midnight Beijing
    # time (the reset hour: 3p, unverified).
    free_refusals = {"daily_limit": DAILY}
    reasoning_models = frozenset({"spark-x"})
    retired = {"x1": ("spark-x", {})}
    aliases = {"spark-lite": "lite", "spark-pro": "generalv3", "spark-pro-128k": "pro-128k",
               "spark-max": "generalv3.5", "spark-max-32k": "max-32k",
               "spark-4.0-ultra": "4.0Ultra", "spark-x1.5": "spark-x"}
    # Spark's ids (lite, x1, 4.0Ultra...) share no prefix a pattern could safely claim.
    patterns = ()
    owned_by = "iflytek"
    # Nothing to GET with an APIPassword; a one-token chat with the free `lite` is free.
    # APIPasswords are per model version, so a Max-only password wants check_model: generalv3.5.
    options = {"check_model": ((str,), "lite"), "v2_models": ((list,), None),  # X models
               **NO_BALANCE_OPTION}
    rewrites_chunks = True

    def __init__(self, config):
        super().__init__(config)
        extra = config.options.get("v2_models") or []
        if not all(isinstance(m, str) and m for m in extra):
            raise ConfigError(f"providers.{self.name}.v2_models",
                              "expected a list of model names")
        self._v2 = frozenset(extra) | {"spark-x"}
        # https://spark-api-open.xf-yun.com/v1 -> .../v2 (X1http.html); another base_url
        # that does not end in /v1 is used as it is.
        base = self.base_url.rstrip("/")
        self._v2_base = base[:-3] + "/v2" if base.endswith("/v1") else base

    def chat_request(self, body, key):
        req = super().chat_request(body, key)
        if body.get("model") in self._v2:
            req = UpstreamRequest(req.method, self._v2_base + self.chat_path, req.headers,
                                  req.body)
        return req

    def body_error(self, data, keys=()):
        code = data.get("code") if isinstance(data, dict) else None
        if not isinstance(code, int) or code == 0:
            return None
        status, etype, ocode = _CODES.get(code) or (502, "server_error", None)
        message = redact(str(data.get("message") or "error"), keys)
        return APIError(status, f"{self.name}: {message} (Spark code {code}, "
                                f"sid {data.get('sid')})", type=etype,
                        code=ocode or f"spark_{code}")


    def normalize_chunk(self, chunk):
        err = self.body_error(chunk)
        if err is not None:
            return err.to_dict()
        return _fill(chunk, "chat.completion.chunk")

    def normalize_completion(self, data):
        for choice in data.get("choices") or ():
            if isinstance(choice, dict):
                choice.setdefault("finish_reason", "stop")
        return _fill(data, "chat.completion")

    def key_check_request(self, key):
        return self.chat_ping(key, self.config.options.get("check_model") or "lite")


@hookimpl
def register_providers(register):
    register(Spark)
