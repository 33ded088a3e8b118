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

import base64
import json
import re
from urllib.parse import quote, urlsplit

from freeapi import hookimpl
from freeapi.config import ConfigError
from freeapi.errors import APIError, invalid_request, vendor_error
from freeapi.free_tier import FREE_QUOTA_ONLY, GRANT, FreeOffer
from freeapi.keys import redact
from freeapi.modalities.images import parse_size, refuse_size
from freeapi.provider import (DISCOVER_OPTION, NO_BALANCE_OPTION, Provider, UpstreamRequest,
                              error_detail)
from providers.qwen_audio import QwenAudio

# Over-matching is harmless (such a model is merely streamed and assembled), missing one
# is a vendor error, so these are matched by shape: QVQ "仅支持流式输出"
# (https://help.aliyun.com/zh/model-studio/visual-reasoning), QwQ, Qwen-Omni, and the
# thinking-only open-source sizes (`qwen3-32b`, `qwen3-vl-32b-thinking`...).
_STREAM_ONLY = re.compile(r"^(qwq|qvq|qwen-omni|qwen2\.5-omni|qwen3-omni|qwen3-\d+(\.\d+)?b"
                          r"|qwen3-vl-.*-thinking)")

# The Free Quota page: per-model switch, its 403 (read 2026-12-06).
_FREE_QUOTA_PAGE = "https://www.alibabacloud.com/help/doc-detail/3001515.html"

# HTTP status -> the `code` values that mean the key's money, not the request.
_NO_BALANCE = {
    # "Access denied, please make sure your account is in good standing" (arrears):
    # https://help.aliyun.com/zh/model-studio/error-code
    400: {"Arrearage"},
    # "The free tier of the model has been exhausted... disable the 'use free tier only'
    # mode": the key is fine, its free quota is spent
    # (https://www.alibabacloud.com/help/en/model-studio/new-free-quota "Free Quota Only";
    # status and code "403 error: AllocationQuota.FreeTierOnly" on
    # https://www.alibabacloud.com/help/doc-detail/3001515.html, read 2026-12-06; the
    # message text itself seen in 3p logs only).
    403: {"AllocationQuota.FreeTierOnly"},
}

# The HTTP status DashScope documents for an error code, for the errors that arrive as a
# stream event and so carry no status of their own (output moderation can only stop a
# stream already under way):
# https://www.alibabacloud.com/help/en/model-studio/developer-reference/error-code
# ("400 DataInspectionFailed: Input or output data may contain inappropriate content").
_EVENT_STATUS = {"data_inspection_failed": 400, "DataInspectionFailed": 400,
                 "invalid_parameter_error": 400, "InvalidParameter": 400,
                 "invalid_api_key": 401, "InvalidApiKey": 401,
                 "Arrearage": 402, "AllocationQuota.FreeTierOnly": 402}


class Qwen(QwenAudio, Provider):
    # Speech (Qwen-TTS) and transcription (Qwen3-ASR-Flash): providers/qwen_audio.py.
    type_name = "qwen"
    # Beijing. Singapore: https://dashscope-intl.aliyuncs.com/compatible-mode/v1; US and
    # per-workspace domains: https://www.alibabacloud.com/help/model-studio/base-url. Keys
    # are bound to their region. The new-user free quota is per region and per site (both
    # read 2026-12-06): an international (alibabacloud.com) account gets it in Singapore
    # only (https://www.alibabacloud.com/help/en/model-studio/new-free-quota), a China-site
    # (aliyun.com) account in Beijing only, this default
    # (https://help.aliyun.com/en/model-studio/new-free-quota). Elsewhere every call is paid.
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
        # https://help.aliyun.com/en/model-studio/long-context-qwen-long (documents by
        # file id; China (Beijing) region only).
        "qwen-long",
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
    # `free_quota_only`: true, or the list of models, for which the operator switched on
    # "Free Quota Only" in the console, so a used-up quota is refused instead of billed.
    options = {**DISCOVER_OPTION, "stream_only_models": ((list,), None), **NO_BALANCE_OPTION,
               "free_quota_only": ((bool, list), False)}
    # The new-user free quota: per model, granted once at activation, valid 30-90 days
    # (90 for activations since 2025-09-08), Singapore only for international accounts
    # (https://www.alibabacloud.com/help/en/model-studio/new-free-quota), Beijing only for
    # China-site ones (https://help.aliyun.com/en/model-studio/new-free-quota), both read
    # 2026-12-06. "Models: All models in the Model list"; "Free Quota Only ... returns a
    # 403 error: AllocationQuota.FreeTierOnly" when the quota is used up, and is set per
    # model (https://www.alibabacloud.com/help/doc-detail/3001515.html, read 2026-12-06).
    # Without that mode calls go on AT A CHARGE once the quota is used up, so these count
    # as free only where the operator declares the mode (`free_quota_only`).
    free_tier = tuple(FreeOffer(m, rank, GRANT, _FREE_QUOTA_PAGE, needs=FREE_QUOTA_ONLY)
                      for m, rank in (
                          ("qwen3.7-max", 10), ("qwen3.7-plus", 15), ("qwen3.6-flash", 30),
                          ("qwen3-vl-plus", 35), ("qwen-plus", 40),
                          ("text-embedding-v4", 10), ("text-embedding-v3", 20),
                          ("qwen-image-plus", 10), ("qwen-image", 20)))
    # Granted once, never renewed: asked again only after `free.quota_recheck` seconds.
    free_refusals = {"AllocationQuota.FreeTierOnly": GRANT}

    def __init__(self, config):
        super().__init__(config)
        extra = config.options.get("stream_only_models") or []
        if not all(isinstance(m, str) for m in extra):
            raise ConfigError(f"providers.{self.name}.stream_only_models",
                              "expected a list of model names")
        self._stream_only_extra = frozenset(extra)
        free_only = config.options.get("free_quota_only")
        if isinstance(free_only, list) and not all(isinstance(m, str) and m
                                                   for m in free_only):
            raise ConfigError(f"providers.{self.name}.free_quota_only",
                              "expected true, false or a list of model names")
        if free_only and not _free_quota_region(self.base_url):
            raise ConfigError(f"providers.{self.name}.free_quota_only",
                              "Model Studio grants its free quota in Singapore (international "
                              "accounts) or China (Beijing) only; base_url is in another "
                              "region, where every call is billed")

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
                return _scoped(APIError(402, f"{self.name}: insufficient balance (HTTP "
                                             f"{status} {code}): {redact(message, keys)}",
                                        type="insufficient_quota", code=code))
        return super().error_from(status, headers, body, keys)

    def chunk_error(self, chunk, keys=()):
        detail = chunk.get("error") if "choices" not in chunk else None
        if isinstance(detail, dict):
            code = str(detail.get("code") or detail.get("type") or "")
            status = _EVENT_STATUS.get(code)
            message = redact(str(detail.get("message") or code)[:500], keys)
            if status == 402:
                return _scoped(APIError(402, f"{self.name}: insufficient balance ({code}): "
                                             f"{message}", type="insufficient_quota",
                                        code=code))
            if status:
                return vendor_error(self.name, status, message, code=code)
        return super().chunk_error(chunk, keys)

    # -- beyond chat (docs/beyond-chat.md) --------------------------------------------
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
    # Image edits: Qwen-Image-Edit, DashScope's synchronous multimodal-generation API
    # (https://www.alibabacloud.com/help/en/model-studio/qwen-image-edit-api; zh:
    # https://help.aliyun.com/zh/model-studio/qwen-image-edit-api): one user message whose
    # content is the images ({"image": ...}) then one instruction ({"text": ...}), and
    # `parameters` (n, size as "W*H", negative_prompt, prompt_extend, watermark, seed).
    # The models and their rules are the page's model table (tc edition, Jan 2026):
    # max and plus make 1-6 PNGs at a chosen size; qwen-image-edit one, at its own size.
    # Alibaba now files these under "legacy image models"
    # (https://www.alibabacloud.com/help/en/model-studio/legacy-qwen-image-models/); the
    # qwen-image-2.x/3.0 models that generate and edit are not wired yet.
    image_edit_models = ("qwen-image-edit-max", "qwen-image-edit-max-2026-01-16",
                         "qwen-image-edit-plus", "qwen-image-edit-plus-2025-12-15",
                         "qwen-image-edit-plus-2025-10-30", "qwen-image-edit")
    # 3p, unverified (the official page's parameter table was not retrievable; copies of
    # it agree): 1-3 input images of at most 10 MB each, given as a URL or a data URL
    # ("data:{MIME_type};base64,{base64_data}"); n 1-6; size sides 512-2048 px.
    _EDIT_MAX_IMAGES, _EDIT_MAX_BYTES, _EDIT_MAX_N, _EDIT_SIDES = 3, 10 << 20, 6, (512, 2048)
    # Vision (https://help.aliyun.com/zh/model-studio/visual-reasoning and the model
    # list): Qwen3-VL, QVQ, and the natively multimodal Qwen3.6/3.7 (kept on the safe side:
    # a declared model is never refused images); qwen-plus and qwq-plus take text only.
    vision_models = frozenset({"qwen3-vl-plus", "qwen3-vl-flash", "qvq-max", "qwen-vl-max",
                               "qwen-vl-plus", "qwen3.7-max", "qwen3.7-plus",
                               "qwen3.6-flash"})

    def native_base(self) -> str:
        """DashScope's native API root beside the OpenAI-compatible one (same region)."""
        base = self.base_url.rstrip("/")
        if base.endswith("/compatible-mode/v1"):
            return base[: -len("/compatible-mode/v1")] + "/api/v1"
        return base

    def embeddings_request(self, body, key):
        return self.text_embeddings_request(body, key, vendor="DashScope", max_inputs=10,
                                            dimensions=self._EMBED_DIMS)

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

    def image_edits_request(self, body, key):
        model, vendor = body["model"], f"{self.name} (Qwen-Image-Edit)"
        if "mask" in body:
            raise invalid_request(f"{vendor} takes no mask: say in the prompt what to "
                                  "change and where.", param="mask", code="mask_not_supported")
        images = body["image"]
        if len(images) > self._EDIT_MAX_IMAGES:
            raise invalid_request(f"{vendor} edits 1 to {self._EDIT_MAX_IMAGES} images at "
                                  f"once; got {len(images)}.", param="image")
        for _, media_type, data in images:
            if len(data) > self._EDIT_MAX_BYTES:
                raise invalid_request(f"{vendor} takes images of at most "
                                      f"{self._EDIT_MAX_BYTES >> 20} MB; one is "
                                      f"{len(data) / (1 << 20):.1f} MB.", param="image",
                                      code="image_too_large")
        fixed = model == "qwen-image-edit"  # one image, at a size of its own choosing
        n = body.get("n") or 1
        if not 1 <= n <= (1 if fixed else self._EDIT_MAX_N):
            raise invalid_request(f"{vendor}: {model} makes " + (
                "one image per request; send n=1 (qwen-image-edit-plus makes up to 6)."
                if fixed else f"1 to {self._EDIT_MAX_N} images per request."), param="n")
        params = {"n": n}
        if body.get("size") is not None:
            w, h = parse_size(body["size"])
            low, high = self._EDIT_SIDES
            if fixed:
                raise refuse_size(f"{vendor}: {model}", body["size"], "no size (it keeps "
                                  "the input's aspect ratio; qwen-image-edit-plus takes one)")
            if not (low <= w <= high and low <= h <= high):
                raise refuse_size(vendor, body["size"], f"sides of {low}-{high} px")
            params["size"] = f"{w}*{h}"
        if body.get("output_format") not in (None, "png"):
            raise invalid_request(f"{vendor} answers PNG only.", param="output_format")
        for name, kind in (("negative_prompt", str), ("prompt_extend", bool),
                           ("watermark", bool), ("seed", int)):
            if name in body:
                params[name] = _form_value(body[name], kind, name)
        content = [{"image": f"data:{media_type};base64,{base64.b64encode(data).decode()}"}
                   for _, media_type, data in images]
        content.append({"text": body["prompt"]})
        payload = {"model": model, "input": {"messages": [
            {"role": "user", "content": content}]}, "parameters": params}
        return UpstreamRequest("POST", self.native_base() +
                               "/services/aigc/multimodal-generation/generation", {
                                   "Content-Type": "application/json",
                                   **self.auth_headers(key)},
                               json.dumps(payload, ensure_ascii=False).encode())

    def images_answer(self, raw, key):
        """The task's state: a poll request while it is PENDING or RUNNING, OpenAI's
        answer once it SUCCEEDED, an error once it FAILED. An edit's synchronous answer
        has the images in `output.choices[].message.content[].image` (3p, unverified:
        the shape as copies of the official reference give it)."""
        out = json.loads(raw)["output"]
        if not isinstance(out, dict):  # the caller reads ValueError as a broken answer
            raise ValueError("`output` is not an object")
        if "choices" in out:
            return {"data": [{"url": part["image"]} for choice in out["choices"]
                             for part in (choice.get("message") or {}).get("content") or ()
                             if isinstance(part, dict) and isinstance(part.get("image"),
                                                                      str)]}
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

    # Documents: Qwen-Long (China (Beijing) region keys only) reads a file uploaded to the
    # OpenAI-compatible files API with purpose "file-extract" (150 MB a file; 10,000 files
    # and 100 GB an account; files never expire; upload, query, delete:
    # https://help.aliyun.com/en/model-studio/openai-file-interface), named in a system
    # message as "fileid://<id>", several comma-separated
    # (https://help.aliyun.com/en/model-studio/long-context-qwen-long). The id belongs to
    # the account that uploaded it, hence "reference" mode: the gateway uploads with the
    # key of each attempt and reuses the id for that key (freeapi/pipeline/documents.py).
    # The upload's `status` is "processed" once parsed; a large file may take seconds, so
    # the gateway asks GET /files/{id} until it is (the waiting is 3p, unverified; so are
    # the failed states' names: anything but processed/processing/uploaded is a failure).
    document_mode = "reference"
    document_models = ("qwen-long",)

    def takes_documents(self, model):
        # Its dated snapshots and -latest alias (qwen-long-...) read files the same way.
        return model == "qwen-long" or model.startswith("qwen-long-")

    def document_upload(self, filename, media_type, data, key):
        return self.multipart_request("/files", {"purpose": "file-extract"}, "file",
                                      filename, media_type, data, key)

    def document_ready(self, raw):
        answer = json.loads(raw)
        if not isinstance(answer, dict) or not isinstance(answer.get("status"), str):
            raise ValueError("no file status")  # a broken answer: the gateway's 502
        status = answer["status"]
        if status == "processed":
            return True
        if status in ("uploaded", "processing"):
            return False
        detail = answer.get("status_details")
        raise invalid_request(f"{self.name}: Model Studio could not parse the document "
                              f"({status}{': ' + str(detail)[:200] if detail else ''}).",
                              param="messages", code="document_unreadable")

    def document_status_request(self, file_id, key):
        return UpstreamRequest("GET", f"{self.base_url}/files/{quote(file_id, safe='')}",
                               self.auth_headers(key))

    def document_reference(self, file_ids):
        return {"role": "system", "content": ",".join(f"fileid://{i}" for i in file_ids)}


def _free_quota_region(base_url: str) -> bool:
    """Whether `base_url` may reach a region with the new-user free quota: Singapore or
    Beijing, by their DashScope or workspace domains
    (https://www.alibabacloud.com/help/en/model-studio/base-url, read 2026-12-06: US
    dashscope-us / us-east-1, Hong Kong cn-hongkong, Tokyo ap-northeast-1, Frankfurt
    eu-central-1 have none). A host outside aliyuncs.com (a proxy, a test server) is the
    operator's to vouch for."""
    host = (urlsplit(base_url).hostname or "").lower()
    if not host.endswith(".aliyuncs.com"):
        return True
    return host in ("dashscope.aliyuncs.com", "dashscope-intl.aliyuncs.com") or \
        host.endswith((".ap-southeast-1.maas.aliyuncs.com", ".cn-beijing.maas.aliyuncs.com"))


def _scoped(err: APIError) -> APIError:
    """A used-up free quota is one model's, not the key's (the quota and the "Free Quota
    Only" switch are per model: doc-detail/3001515 above): the key stays in rotation for
    the account's other models, and the `free` model remembers the quota per model."""
    if err.code == "AllocationQuota.FreeTierOnly":
        err.scope = "model"
    return err


def _form_value(text, kind, name: str):
    """A DashScope parameter from OpenAI's form, where every field is text."""
    if kind is str:
        return text
    if kind is bool and str(text).lower() in ("true", "false"):
        return str(text).lower() == "true"
    if kind is int and str(text).isascii() and str(text).isdigit():  # not "²"
        return int(text)
    want = "true or false" if kind is bool else "a whole number"
    raise invalid_request(f"`{name}` must be {want}.", param=name)


@hookimpl
def register_providers(register):
    register(Qwen)
