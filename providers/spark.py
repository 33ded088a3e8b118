"""iFlytek Spark's HTTP API (https://www.xfyun.cn/doc/spark/HTTP调用文档.html).

`Authorization: Bearer <APIPassword>` (from the console). Quirks: answers carry top-level
`code`/`message`/`sid`, and a non-zero `code` is an error even with HTTP 200; answers and
stream chunks may lack `id`/`object`/`created`/`model`/`finish_reason`, which are filled in.
"""

from __future__ import annotations

import time

from freeapi import hookimpl
from freeapi.errors import APIError
from freeapi.keys import redact
from freeapi.provider import Provider

# code -> (status, OpenAI type, code), from the vendor's error code list.
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
    # lite is free; generalv3 is Pro, generalv3.5 is Max.
    models = ("lite", "generalv3", "pro-128k", "generalv3.5", "max-32k", "4.0Ultra")
    aliases = {"spark-lite": "lite", "spark-pro": "generalv3", "spark-pro-128k": "pro-128k",
               "spark-max": "generalv3.5", "spark-max-32k": "max-32k",
               "spark-4.0-ultra": "4.0Ultra"}
    owned_by = "iflytek"
    # Nothing to GET with an APIPassword; a one-token chat with the free `lite` is free.
    options = {"check_model": ((str,), "lite")}
    rewrites_chunks = True

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
