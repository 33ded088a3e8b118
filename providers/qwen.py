"""Alibaba Cloud Model Studio (DashScope) in OpenAI-compatible mode
(https://help.aliyun.com/zh/model-studio/; international: alibabacloud.com/help/en/model-studio).

Quirks: QwQ, QVQ, Qwen-Omni and the open-source Qwen3 models only stream, so a client's
`stream: false` is streamed from the vendor and assembled into one completion; an account
in arrears is HTTP 400 `Arrearage`, surfaced as 402 so key rotation treats it as the key's
fault. `enable_thinking`, `enable_search` and other DashScope fields pass through untouched.
"""

from __future__ import annotations

import json
import re
from urllib.parse import quote

from freeapi import hookimpl
from freeapi.config import ConfigError
from freeapi.errors import invalid_request, vendor_error
from freeapi.keys import redact
from freeapi.modalities.images import parse_size, refuse_size
from freeapi.provider import DISCOVER_OPTION, Provider, UpstreamRequest, error_detail

# Over-matching is harmless (such a model is merely streamed and assembled), missing one
# is a vendor error, so the open-source Qwen3 sizes (`qwen3-32b`, `qwen3-30b-a3b`...) are
# matched by shape.
_STREAM_ONLY = re.compile(r"^(qwq|qvq|qwen-omni|qwen2\.5-omni|qwen3-omni|qwen3-\d+(\.\d+)?b)")


class Qwen(Provider):
    type_name = "qwen"
    # International (Singapore): https://dashscope-intl.aliyuncs.com/compatible-mode/v1;
    # keys are bound to their region.
    default_base_url = "https://dashscope.aliyuncs.com/compatible-mode/v1"
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

    # -- beyond chat (README "Beyond chat") -------------------------------------------
    # Embeddings, OpenAI-compatible mode (text only, at most 10 rows; dimensions):
    # https://www.alibabacloud.com/help/en/model-studio/text-embedding-synchronous-api
    embedding_models = ("text-embedding-v4", "text-embedding-v3")
    _EMBED_DIMS = {"text-embedding-v4": (2048, 1536, 1024, 768, 512, 256, 128, 64),
                   "text-embedding-v3": (1024, 768, 512)}
    # Images: DashScope's asynchronous task API, which serves only these two models
    # (https://docs.qwencloud.com/api-reference/image-generation/qwen-text-to-image-async,
    # polled per .../image-generation/qwen-text-to-image-task-query).
    image_models = ("qwen-image-plus", "qwen-image")
    # Their sizes. Unverified: the official size table was not retrievable; 1472*1140 and
    # 1140*1472 are as several third-party copies of it give them.
    _IMAGE_SIZES = ("1664*928", "1472*1140", "1328*1328", "1140*1472", "928*1664")
    _OPENAI_SIZES = {"1024x1024": "1328*1328", "1792x1024": "1664*928",
                     "1024x1792": "928*1664"}
    vision_models = frozenset({"qwen-vl-max", "qwen-vl-plus", "qwen-vl-ocr", "qvq-max",
                               "qwen-omni-turbo", "qwen3-vl-plus", "qwen3-vl-flash"})

    def native_base(self) -> str:
        """DashScope's native API root beside the OpenAI-compatible one (same region)."""
        base = self.base_url.rstrip("/")
        if base.endswith("/compatible-mode/v1"):
            return base[: -len("/compatible-mode/v1")] + "/api/v1"
        return base

    def embeddings_request(self, body, key):
        inp, model = body["input"], body["model"]
        if not (isinstance(inp, str) or all(isinstance(s, str) for s in inp)):
            raise invalid_request(f"{self.name}: DashScope embeddings take text (a string or "
                                  "an array of strings), not token ids.", param="input")
        if isinstance(inp, list) and len(inp) > 10:
            raise invalid_request(f"{self.name}: DashScope embeds at most 10 texts per "
                                  f"request; got {len(inp)}.", param="input")
        dims, allowed = body.get("dimensions"), self._EMBED_DIMS.get(model)
        if dims is not None and allowed and dims not in allowed:
            raise invalid_request(f"{self.name}: {model} gives {', '.join(map(str, allowed))}"
                                  f" dimensions, not {dims}.", param="dimensions")
        return self.json_request("/embeddings", {k: body[k] for k in (
            "model", "input", "dimensions") if k in body}, key)

    def images_request(self, body, key):
        if (body.get("n") or 1) != 1:
            raise invalid_request(f"{self.name}: Qwen-Image makes one image per request; "
                                  "send n=1.", param="n")
        size = body.get("size")
        params = {"n": 1}
        if size is not None:
            w, h = parse_size(size)
            vendor = self._OPENAI_SIZES.get(f"{w}x{h}") or f"{w}*{h}"
            if vendor not in self._IMAGE_SIZES:
                raise refuse_size(f"{self.name} (Qwen-Image)", size, ", ".join(
                    s.replace("*", "x") for s in self._IMAGE_SIZES) + " (1024x1024, "
                    "1792x1024 and 1024x1792 are mapped to the nearest)")
            params["size"] = vendor
        for name in ("negative_prompt", "prompt_extend", "watermark", "seed"):
            if name in body:
                params[name] = body[name]
        payload = {"model": body["model"], "input": {"prompt": body["prompt"]},
                   "parameters": params}
        return UpstreamRequest("POST", self.native_base() +
                               "/services/aigc/text2image/image-synthesis", {
                                   "Content-Type": "application/json",
                                   "X-DashScope-Async": "enable", **self.auth_headers(key)},
                               json.dumps(payload, ensure_ascii=False).encode())

    def images_answer(self, raw, key):
        """The task's state: a poll request while it is PENDING or RUNNING, OpenAI's
        answer once it SUCCEEDED, an error once it FAILED."""
        out = json.loads(raw)["output"]
        status = out.get("task_status")
        if status in ("PENDING", "RUNNING"):
            task = quote(str(out["task_id"]), safe="")
            return UpstreamRequest("GET", f"{self.native_base()}/tasks/{task}",
                                   self.auth_headers(key))
        if status == "SUCCEEDED":
            return {"data": [{"url": r["url"], **({"revised_prompt": r["actual_prompt"]}
                                                 if r.get("actual_prompt") else {})}
                             for r in out.get("results") or ()
                             if isinstance(r, dict) and r.get("url")]}
        code, message = str(out.get("code") or status), str(out.get("message") or "")
        # Refused content or parameters are the request's fault; anything else the
        # vendor's (the task cannot be retried elsewhere: it was already made).
        bad = code.startswith(("DataInspection", "InvalidParameter", "IPInfringement"))
        raise vendor_error(self.name, 400 if bad else 502,
                           f"the image task {status.lower()}: {code} {message}".strip(),
                           code=code)

    def search_body(self, body):
        """`-search`: `enable_search: true` on chat completions
        (https://www.alibabacloud.com/help/en/model-studio/web-search)."""
        return dict(body, enable_search=True)


@hookimpl
def register_providers(register):
    register(Qwen)
