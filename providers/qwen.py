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

import json
import re
from urllib.parse import quote, urlsplit

from freeapi import hookimpl
from freeapi.config import ConfigError
from freeapi.errors import APIError, invalid_request, vendor_error
from freeapi.free_tier import FREE_QUOTA_ONLY, GRANT, FreeOffer
from freeapi.keys import redact
from freeapi.provider import (DISCOVER_OPTION, NO_BALANCE_OPTION, Provider, UpstreamRequest,
                              error_detail)
from providers.qwen_audio import QwenAudio
from providers.qwen_images import QwenImages

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


class Qwen(QwenAudio, QwenImages, Provider):
    # Speech (Qwen-TTS) and transcription (Qwen3-ASR-Flash): providers/qwen_audio.py;
    # image generation and edits (Qwen-Image, Qwen-Image-Edit): providers/qwen_images.py.
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


@hookimpl
def register_providers(register):
    register(Qwen)
