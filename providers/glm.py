"""Zhipu's GLM API (https://docs.bigmodel.cn, international https://docs.z.ai).

OpenAI-compatible with Bearer API keys. Quirks: the HTTP status is coarse (GLM answers 429
for an account in arrears as well as for rate limits); the business code in
`{"error": {"code": "1113", "message": ...}}` says what happened, so it decides the status
and OpenAI error type the client sees, for HTTP answers and for errors sent inside a stream
alike. Stream chunks lack `object`, which is filled in.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

from freeapi import hookimpl
from freeapi.errors import APIError, invalid_request, vendor_error
from freeapi.free_tier import DAILY, FreeOffer
from freeapi.keys import redact
from freeapi.modalities.images import parse_size, refuse_size
from freeapi.provider import NO_BALANCE_OPTION, Provider, error_detail
from freeapi.vendor_request import UpstreamRequest
from providers.glm_audio import GLMAudio

# Business code -> (status, OpenAI type, OpenAI-style code), from the vendor's error table:
# https://docs.bigmodel.cn/cn/api/api-code (also https://docs.bigmodel.cn/cn/faq/api-code.md,
# international https://docs.z.ai/api-reference/api-code).
_AUTH = (401, "authentication_error", "invalid_api_key")
_ACCOUNT = (403, "permission_error", "account_unavailable")
_BAD = (400, "invalid_request_error", None)
_BUSY = (429, "rate_limit_error", "rate_limit_exceeded")
_QUOTA = (429, "insufficient_quota", "quota_exceeded")
_SERVER = (502, "server_error", None)  # the vendor's failure: another key or target may do
_NO_BALANCE = (402, "insufficient_quota", "insufficient_balance")
_CODES = {
    500: _SERVER,  # "内部错误"
    # 1000-1004 are the table's authentication errors (https://docs.bigmodel.cn/cn/api/api-code,
    # read 2026-12-06). 1005, HTTP 401 "已开启二次认证保护，需要二次认证登录" (two-factor
    # protection is on), is reported from https://docs.bigmodel.cn/cn/faq/api-code.md by the
    # team's research of 2026-12-06; our own search reached only the /cn/api/api-code copy,
    # which stops at 1004, so the text stays unverified here. Either way it is the key's
    # authentication, not the request: 401.
    **{c: _AUTH for c in (1000, 1001, 1002, 1003, 1004, 1005)},
    **{c: _ACCOUNT for c in (1110, 1111, 1112, 1120, 1121, 1220)},
    1113: _NO_BALANCE,  # "您的账户已欠费" (sent as HTTP 429)
    # 1200 "API 调用错误", 1230 "API 调用流程出错", 1234 "网络错误...请联系客服": server side,
    # so the request goes to another key / target instead of failing as the client's fault.
    **{c: _SERVER for c in (1200, 1230, 1234)},
    1211: (404, "not_found_error", "model_not_found"),
    **{c: _BAD for c in (1210, 1212, 1213, 1214, 1215, 1231)},
    1221: (404, "not_found_error", "api_offline"),
    1222: (404, "not_found_error", "api_not_found"),
    1261: (400, "invalid_request_error", "context_length_exceeded"),
    1300: (400, "invalid_request_error", "blocked_by_policy"),
    1301: (400, "invalid_request_error", "content_filter"),
    # 1302 concurrency, 1303 frequency, 1305 traffic limit, 1312 model overloaded,
    # 1313 fair-use policy throttling (GLM Coding Plan).
    **{c: _BUSY for c in (1302, 1303, 1305, 1312, 1313)},
    # 1304 daily call limit, 1308 usage limit until ${next_flush_time}, 1310 weekly/monthly
    # limit until ${next_flush_time}.
    **{c: _QUOTA for c in (1304, 1308, 1310)},
    1309: (402, "insufficient_quota", "plan_expired"),  # GLM Coding Plan expired
    # "当前订阅套餐暂未开放${model_name}权限": this key's plan lacks the model; the key itself
    # is fine for other models, so it is OpenAI's "no access to this model" 404, not a 403
    # that would take the key out of rotation.
    1311: (404, "not_found_error", "model_not_in_plan"),
}
# 1308/1310 name when the limit resets ("您的限额将在 ${next_flush_time} 重置"); the key then
# cools down until that moment instead of being retried every few seconds for days. The
# time is Beijing time like the rest of the API's timestamps (3p, unverified).
_RESET_AT = re.compile(r"(\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2})")
_BEIJING = timezone(timedelta(hours=8))


def _reset_in(message: str, now: datetime | None = None) -> str | None:
    found = _RESET_AT.search(message)
    if not found:
        return None
    try:
        at = datetime.fromisoformat(found.group(1).replace(" ", "T")).replace(tzinfo=_BEIJING)
    except ValueError:
        return None
    seconds = (at - (now or datetime.now(timezone.utc))).total_seconds()
    return str(max(1, round(seconds))) if seconds > 0 else None


_MEANING = {401: "rejected the API key", 402: "insufficient balance", 403: "refused access",
            404: "does not know this resource", 429: "rate limit or quota reached"}


class GLM(GLMAudio, Provider):
    # Speech (GLM-TTS) and transcription (GLM-ASR): providers/glm_audio.py.
    type_name = "glm"
    default_base_url = "https://open.bigmodel.cn/api/paas/v4"
    # Claude API compatible: https://docs.bigmodel.cn/cn/guide/develop/claude/introduction
    # (https://open.bigmodel.cn/api/anthropic; api.z.ai/api/anthropic for z.ai)
    anthropic_base_url = "/api/anthropic"
    anthropic_models = ("glm-*",)  # not the image models its name patterns also route
    # Model overview: https://docs.bigmodel.cn/cn/guide/start/model-overview (text and
    # vision tables); GLM-4 series: https://docs.bigmodel.cn/cn/guide/models/text/glm-4.md;
    # flagship table: https://docs.bigmodel.cn/cn/guide/start/pricing.md (read 2026-12-06).
    models = (
        # Free of charge ("免费模型" on the model overview).
        "glm-4.7-flash", "glm-4-flash-250414",
        # Paid. GLM-5.3 (¥8 in / ¥2 cache hit / ¥28 out per 1M, text) and GLM-5.3-Flash
        # (list ¥0.8 / ¥0.23 / ¥2.8, images, video, files and text in): the "旗舰模型"
        # table of https://docs.bigmodel.cn/cn/guide/start/pricing.md, read 2026-12-06.
        "glm-5.3", "glm-5.3-flash",
        "glm-5", "glm-4.7", "glm-4.7-flashx", "glm-4.6", "glm-4.5-air", "glm-4.5-airx",
        "glm-4-long", "glm-4-flashx-250414", "glm-4-plus", "glm-4-air-250414", "glm-4-airx",
        "glm-4.6v",
    )
    free_models = frozenset({"glm-4.7-flash", "glm-4-flash-250414"})
    # The `free` model (freeapi/free.py): both are "免费模型" on the model overview
    # (https://docs.bigmodel.cn/cn/guide/start/model-overview, read 2026-12-06); GLM-4.7-Flash
    # is also "Free" on https://docs.z.ai/guides/overview/pricing.md. Their limits are
    # per-model concurrency by user tier (https://docs.bigmodel.cn/cn/api/rate-limit: 1302 /
    # 1305, a 429 the key pool cools down) and daily call caps (1304, 1308/1310 "将在
    # ${next_flush_time} 重置": https://docs.bigmodel.cn/cn/api/api-code). Not built in,
    # because only third parties say they are free today: cogview-3-flash (the image table
    # was cut from the official copy), glm-4.6v-flash / glm-4v-flash / glm-4.1v-thinking-flash
    # (3p, unverified); add them under `free.add` if the console shows them free.
    free_tier = (
        FreeOffer("glm-4.7-flash", 20, DAILY,
                  "https://docs.bigmodel.cn/cn/guide/start/model-overview"),
        FreeOffer("glm-4-flash-250414", 60, DAILY,
                  "https://docs.bigmodel.cn/cn/guide/start/model-overview"),
    )
    # 1304 daily cap, 1308/1310 "until ${next_flush_time}" (their Retry-After, see
    # _reset_in): all three are `quota_exceeded`. A daily cap without a time resets at
    # midnight Beijing time (the API's time zone; the reset hour itself: 3p, unverified).
    free_refusals = {"quota_exceeded": DAILY}
    # Thinking models (`thinking: {"type": "enabled"|"disabled"}` passes through untouched;
    # https://docs.bigmodel.cn/cn/guide/capabilities/thinking-mode.md). GLM-5.3 and
    # GLM-5.3-Flash are counted with GLM-5 (the pricing page does not say; 3p describe
    # both as reasoning models: unverified): a wrong "thinks" only lengthens a timeout.
    reasoning_models = frozenset({
        "glm-5.3", "glm-5.3-flash", "glm-5", "glm-4.7", "glm-4.7-flash", "glm-4.7-flashx",
        "glm-4.6", "glm-4.5-air", "glm-4.5-airx", "glm-4.6v",
    })
    retired = {
        # The bare `glm-4-flash` (the old free model) is not on the model overview any
        # more; its dated successor is (https://docs.bigmodel.cn/cn/guide/models/text/glm-4.md
        # calls GLM-4-FlashX-250414 the enhanced "免费语言模型 GLM-4-Flash").
        "glm-4-flash": ("glm-4-flash-250414", {}),
        # "GLM-4.5-Flash 将于2026年1月30日下线 ... 正式下线后，相关请求将会自动路由至
        # GLM-4.7-Flash" (https://docs.bigmodel.cn/cn/guide/models/free/glm-4.5-flash.md,
        # read 2026-12-06): sent as glm-4.7-flash, which is what GLM serves for it anyway.
        "glm-4.5-flash": ("glm-4.7-flash", {}),
    }
    patterns = ("glm-*", "cogview-*")
    owned_by = "zhipu"
    # No free authenticated GET and no balance API are documented; a one-token chat with a
    # current free model costs nothing (GLM-4.7-Flash, "免费模型" on the model overview).
    options = {"check_model": ((str,), "glm-4.7-flash"), **NO_BALANCE_OPTION}
    # GLM's stream chunks have no `object`; strict OpenAI clients want it.
    rewrites_chunks = True

    def normalize_chunk(self, chunk):
        chunk.setdefault("object", "chat.completion.chunk")
        return chunk

    def normalize_completion(self, data):
        data.setdefault("object", "chat.completion")
        return data

    def _business_error(self, status, code, message, retry_after=None):
        try:
            number = int(code)
        except (TypeError, ValueError):
            return None
        out, etype, ocode = _CODES.get(number) or (
            (status, None, None) if 400 <= status < 500 else _SERVER)
        if retry_after is None and number in (1308, 1310):
            retry_after = _reset_in(message)
        meaning = _MEANING.get(out) or ("rejected the request" if out < 500 else "server error")
        return APIError(out, f"{self.name}: {meaning} (GLM code {number}): {message}",
                        type=etype, code=ocode or f"glm_{number}", retry_after=retry_after)

    def error_from(self, status, headers, body, keys=()):
        if 200 <= status < 300:
            return None
        message, code = error_detail(body)
        return (self._business_error(status, code, redact(message, keys),
                                     headers.get("Retry-After"))
                or super().error_from(status, headers, body, keys))

    def chunk_error(self, chunk, keys=()):
        # An error inside a stream (first event or mid-way) carries the same business code
        # as an HTTP error: a 1301 content filter is the request's fault (400), not a vendor
        # failure to retry on every other key.
        detail = chunk.get("error") if "choices" not in chunk else None
        if isinstance(detail, dict):
            err = self._business_error(502, detail.get("code"),
                                       redact(str(detail.get("message") or "error")[:500], keys))
            if err is not None:
                return err
        return super().chunk_error(chunk, keys)

    def key_check_request(self, key):
        return self.chat_ping(key, self.config.options.get("check_model") or "glm-4.7-flash")

    # -- beyond chat (docs/beyond-chat.md) --------------------------------------------
    # Embeddings: https://docs.bigmodel.cn/api-reference/模型-api/文本嵌入 (text only;
    # embedding-3: dimensions 256/512/1024/2048, at most 64 texts; embedding-2: 1024).
    _EMBED_DIMS = {"embedding-3": (256, 512, 1024, 2048), "embedding-2": (1024,)}
    embedding_models = tuple(_EMBED_DIMS)
    # Images: https://docs.bigmodel.cn/api-reference/模型-api/图像生成 (URLs only;
    # cogview-3-flash is free per https://docs.bigmodel.cn/cn/guide/start/model-overview).
    image_models = ("cogview-3-flash", "cogview-4", "cogview-4-250304", "glm-image")
    # No image edits: that page documents generation only, and no CogView edit endpoint
    # was found in bigmodel's docs (so `image_edits_request` stays None).
    # Vision: the model overview's vision table
    # (https://docs.bigmodel.cn/cn/guide/start/model-overview): glm-4.6v in this list;
    # the others named so that, if routed, they are never refused images. glm-5.3-flash:
    # "输入模态: 图片、视频、文件、文本" (https://docs.bigmodel.cn/cn/guide/start/pricing.md,
    # read 2026-12-06); glm-5.3 is "文本" there.
    vision_models = frozenset({"glm-5.3-flash", "glm-4.6v", "glm-4.5v",
                               "glm-4.1v-thinking-flash", "glm-4v-flash", "glm-4v-plus-0111"})

    def embeddings_request(self, body, key):
        return self.text_embeddings_request(body, key, vendor="GLM", max_inputs=64,
                                            dimensions=self._EMBED_DIMS)

    def images_request(self, body, key):
        model = body["model"]
        if (body.get("n") or 1) != 1:
            raise invalid_request(f"{self.name}: GLM makes one image per request; send n=1.",
                                  param="n")
        out = {"model": model, "prompt": body["prompt"]}
        if body.get("size") is not None:
            w, h = parse_size(body["size"])
            if model == "glm-image":  # sides multiples of 32, at most 2^22 pixels
                ok, rule = (w % 32 == h % 32 == 0 and w * h <= 1 << 22,
                            "sides that are multiples of 32, at most 4194304 pixels")
            else:  # 512-2048 per side, multiples of 16, at most 2^21 pixels
                ok, rule = (512 <= w <= 2048 and 512 <= h <= 2048 and w % 16 == h % 16 == 0
                            and w * h <= 1 << 21, "sides of 512-2048 px that are multiples "
                            "of 16, at most 2097152 pixels (e.g. 1024x1024, 1344x768)")
            if not ok:
                raise refuse_size(f"{self.name} ({model})", body["size"], rule)
            out["size"] = f"{w}x{h}"
        quality = body.get("quality")
        if quality is not None and not isinstance(quality, str):  # unhashable: was a 500
            raise invalid_request(f"{self.name}: `quality` must be a string (hd, standard).",
                                  param="quality")
        quality = {"hd": "hd", "high": "hd", "standard": "standard", "medium": "standard",
                   "low": "standard"}.get(quality)
        if quality:
            out["quality"] = quality
        return self.json_request("/images/generations", out, key)

    def search_body(self, body):
        """`-search`: the `web_search` tool of "Web Search in Chat"
        (https://docs.bigmodel.cn/cn/guide/tools/web-search; the tool's fields as in
        https://docs.bigmodel.cn/api-reference/工具-api/网络搜索); sources come back in the
        answer's top-level `web_search` list."""
        tools = [t for t in body.get("tools") or ()
                 if not (isinstance(t, dict) and t.get("type") == "web_search")]
        return dict(body, tools=tools + [{"type": "web_search", "web_search": {
            "enable": True, "search_engine": "search_std", "search_result": True}}])

    # -- documents (docs/providers/glm.md, Documents): the file parsing service ----------
    # "extract" mode: the async parser's Lite tool, free of charge ("按调用次数计费，当前
    # 免费", https://docs.bigmodel.cn/cn/guide/tools/file-parser; an older copy of that
    # page announced 0.01 yuan a call from 2025-10-08: 3p, unverified), plain text only,
    # at most 50 MB.
    # POST /paas/v4/files/parser/create (multipart `file`, `tool_type`, optional
    # `file_type`; answers `task_id`:
    # https://docs.bigmodel.cn/api-reference/工具-api/文件解析), then
    # GET /paas/v4/files/parser/result/{taskId}/text until `status` leaves "processing"
    # (https://docs.bigmodel.cn/api-reference/工具-api/解析结果). The files API's purposes
    # (batch, code-interpreter, agent, voice-clone-input:
    # https://docs.bigmodel.cn/api-reference/文件-api/上传文件) extract nothing any more.
    # Lite's file types (the `file_type` enum of the create page): by extension, else by
    # media type.
    _LITE_TYPES = ("PDF", "DOCX", "DOC", "XLS", "XLSX", "PPT", "PPTX", "PNG", "JPG", "JPEG",
                   "CSV", "TXT", "MD")
    _LITE_MEDIA = {
        "application/pdf": "PDF", "application/msword": "DOC",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "DOCX",
        "application/vnd.ms-excel": "XLS",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "XLSX",
        "application/vnd.ms-powerpoint": "PPT",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation": "PPTX",
        "image/png": "PNG", "image/jpeg": "JPG", "text/csv": "CSV", "text/plain": "TXT",
        "text/markdown": "MD"}
    _LITE_MAX = 50 << 20  # "≤50M" (the guide's comparison table)

    def document_upload(self, filename, media_type, data, key):
        ext = filename.rpartition(".")[2].upper() if "." in filename else ""
        file_type = ext if ext in self._LITE_TYPES else self._LITE_MEDIA.get(
            media_type.split(";")[0].strip().lower())
        if file_type is None:
            raise invalid_request(
                f"{self.name}: GLM's file parser (Lite) reads "
                f"{', '.join(t.lower() for t in self._LITE_TYPES)} files; "
                f"{filename!r} ({media_type}) is none of them.", param="messages",
                code="unsupported_file_type")
        if len(data) > self._LITE_MAX:
            raise invalid_request(f"{self.name}: GLM's file parser (Lite) reads files of at "
                                  f"most 50 MB; {filename!r} has {len(data)} bytes.",
                                  param="messages", code="file_too_large")
        return self.multipart_request("/files/parser/create", {
            "tool_type": "lite", "file_type": file_type}, "file", filename, media_type,
            data, key)

    def document_id(self, raw):
        task_id = json.loads(raw)["task_id"]
        if not isinstance(task_id, str) or not task_id or "/" in task_id:
            raise ValueError("no task id")
        return task_id

    def document_text_request(self, file_id, key):
        # `text`: the parsed text itself ("text模式最长返回1m以内的文本内容", the guide)
        return UpstreamRequest("GET", f"{self.base_url}/files/parser/result/"
                               f"{quote(file_id, safe='')}/text", self.auth_headers(key))

    def document_text(self, raw):
        try:
            answer = json.loads(raw)
            status = answer["status"]
        except (ValueError, KeyError, TypeError):
            raise vendor_error(self.name, 502, "the file parser's result held no "
                                               "status") from None
        if status == "processing":
            return None
        if status == "succeeded":
            return str(answer.get("content") or "")
        raise invalid_request(f"{self.name}: GLM's file parser could not parse the "
                              f"document ({status}: {str(answer.get('message'))[:200]}).",
                              param="messages", code="document_unreadable")


@hookimpl
def register_providers(register):
    register(GLM)
