"""A fake Zhipu GLM API: errors carry a business code next to a coarse HTTP status
(https://docs.bigmodel.cn/cn/api/api-code: 401 for auth, 429 for concurrency, frequency *and*
arrears, 400 for parameters, 500 for its own failures); today's models only
(https://docs.bigmodel.cn/cn/guide/start/model-overview, GLM-5.3 and GLM-5.3-Flash from
https://docs.bigmodel.cn/cn/guide/start/pricing.md), so the retired bare `glm-4-flash` is a
1211, while `glm-4.5-flash`, offline since 2026-01-30, is served by GLM-4.7-Flash as GLM
says (https://docs.bigmodel.cn/cn/guide/models/free/glm-4.5-flash.md); thinking models stream `reasoning_content` unless `thinking.type` is disabled; a
business error can also arrive inside a stream, as its first event or mid-way."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from tornado import web

from tests.fakes.common import ANSWER, REASONING, Base, State

GOOD = "0123456789abcdef0123456789abcdef.GoodSecret01"
DEAD = "fedcba9876543210fedcba9876543210.DeadSecret01"
POOR = "00112233445566778899aabbccddeeff.PoorSecret01"
GOOD2 = "0123456789abcdef0123456789abcdef.GoodSecret02"
KEYS = {GOOD: "ok", GOOD2: "ok", DEAD: 401, POOR: "poor"}
USAGE = {"prompt_tokens": 8, "completion_tokens": 9, "total_tokens": 17}
THINKING = ("glm-5.3", "glm-5.3-flash", "glm-5", "glm-4.7", "glm-4.7-flash", "glm-4.6",
            "glm-4.5-air")
KNOWN = ("glm-4-flash-250414", "glm-4-plus") + THINKING
# Offline models GLM still answers, with the model that serves them in their place.
ROUTED = {"glm-4.5-flash": "glm-4.7-flash"}
RETIRED = ("glm-4-flash", "glm-z1-flash", "glm-4v-flash")

# code -> (HTTP status, message) as the vendor's error table words them. The HTTP status
# of the codes the table gives none for is a guess; the gateway reads the code, not it.
ERRORS = {
    1002: (401, "Authentication Token 非法，请确认 Authentication Token 正确传递。"),
    # https://docs.bigmodel.cn/cn/faq/api-code.md, as the team's notes of 2026-12-06 quote it.
    1005: (401, "已开启二次认证保护，需要二次认证登录"),
    1113: (429, "您的账户已欠费，请充值后重试。"),
    1200: (500, "API 调用错误"),
    1211: (400, "模型不存在，请检查模型代码。"),
    1234: (500, "网络错误，错误id：fake，请联系客服"),
    1261: (400, "Prompt 超长"),
    1301: (400, "系统检测到输入或生成内容可能包含不安全或敏感内容"),
    1302: (429, "您当前使用该 API 的并发数过高，请降低并发"),
    1304: (429, "该 API 已达今日调用次数限额"),
    1305: (429, "当前API请求过多，请稍后重试"),
    1308: (429, "已达到使用上限"),
    1309: (429, "您的 GLM Coding Plan 套餐已到期，暂无法使用"),
    1311: (429, "当前订阅套餐暂未开放 glm-5 权限"),
    1310: (429, "您已达到每周/每月使用上限"),
    1313: (429, "您的账户当前使用模式不符合公平使用策略，请求频率已受到限制"),
    500: (500, "Internal Error"),
}


RESET_IN = 7200  # 1310's reset moment, seconds ahead, as Beijing time in its message


def error_body(code: int) -> dict:
    message = ERRORS[code][1]
    if code in (1308, 1310):  # "您的限额将在 ${next_flush_time} 重置" (the api-code table)
        at = datetime.now(timezone(timedelta(hours=8))) + timedelta(seconds=RESET_IN)
        message = f"{message}，您的限额将在 {at:%Y-%m-%d %H:%M:%S} 重置"
    return {"error": {"code": str(code), "message": message}}


class Chat(Base):
    def fail(self, code: int):
        self.json(error_body(code), ERRORS[code][0])

    async def post(self):
        body = self.body()
        account = self.account()
        if account in (None, 401):
            return self.fail(1002)
        if account == "poor":
            return self.fail(1113)
        cmd, arg = self.command(body)
        if cmd == "!code":
            return self.fail(int(arg))
        spent = self.state.spent.get((self.key(), body.get("model")))
        if spent:  # this key's daily cap / rate limit on this model
            return self.fail(spent)
        model = ROUTED.get(body["model"], body["model"])
        if model not in KNOWN:
            return self.fail(1211)
        # A field of the wrong type is the documented 1214 (invalid parameter), a 400.
        if not isinstance(body.get("tools", []), list) \
                or not isinstance(body.get("thinking", {}), dict):
            return self.fail(1214)
        thinking = model in THINKING and (body.get("thinking") or {}).get("type") != "disabled"
        base = {"id": "2024110809", "created": 1730000000, "model": model}
        if not body.get("stream"):
            message = {"role": "assistant", "content": "".join(ANSWER)}
            if thinking:
                message["reasoning_content"] = "".join(REASONING)
            return self.json(dict(base, object="chat.completion", usage=USAGE,
                                  request_id="2024110809", choices=[
                                      {"index": 0, "message": message, "finish_reason": "stop"}]))
        self.start_stream()
        if cmd == "!first-code":  # HTTP 200, then the business error as the first event
            await self.event(error_body(int(arg)))
            return
        deltas = [{"role": "assistant", "reasoning_content": r} for r in REASONING] \
            if thinking else []
        deltas += [{"role": "assistant", "content": c} for c in ANSWER]
        for delta in deltas:
            await self.event(dict(base, choices=[{"index": 0, "delta": delta}]))
            if cmd == "!mid-code":  # a business error after the answer began
                await self.event(error_body(int(arg)))
                return
        await self.event(dict(base, usage=USAGE, choices=[
            {"index": 0, "finish_reason": "stop", "delta": {"role": "assistant", "content": ""}}]))
        await self.event("[DONE]")


def make_app(state: State) -> web.Application:
    return web.Application([(r"/api/paas/v4/chat/completions", WebSearchChat,
                             {"state": state})] + [
        (path, handler, {"state": state}) for path, handler in EXTRA_ROUTES])


# -- beyond chat: embeddings and CogView images, as docs.bigmodel.cn documents them -------
# https://docs.bigmodel.cn/api-reference/模型-api/文本嵌入,
# https://docs.bigmodel.cn/api-reference/模型-api/图像生成

PNG = b"\x89PNG\r\n\x1a\n" + b"fake-cogview-image" * 8
EMBED_USAGE = {"prompt_tokens": 6, "completion_tokens": 0, "total_tokens": 6}
IMAGE_MODELS = ("cogview-3-flash", "cogview-4", "cogview-4-250304", "glm-image")


def vector(text: str, dims: int) -> list:
    """A deterministic vector per text, so tests can tell inputs apart."""
    seed = sum(map(ord, text)) % 97
    return [round((seed + i) / 128.0, 6) for i in range(dims)]


class Embeddings(Chat):
    async def post(self):
        body = self.body()
        if self.account() in (None, 401):
            return self.fail(1002)
        if self.account() == "poor":
            return self.fail(1113)
        model, inp = body.get("model"), body.get("input")
        if model not in ("embedding-3", "embedding-2"):
            return self.fail(1211)
        texts = [inp] if isinstance(inp, str) else inp
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts) \
                or len(texts) > 64 or set(body) - {"model", "input", "dimensions"}:
            return self.fail(1214)
        dims = body.get("dimensions", 2048 if model == "embedding-3" else 1024)
        if dims not in (256, 512, 1024, 2048):
            return self.fail(1214)
        self.json({"model": model, "object": "list", "usage": EMBED_USAGE, "data": [
            {"index": i, "object": "embedding", "embedding": vector(t, dims)}
            for i, t in enumerate(texts)]})


class Images(Chat):
    async def post(self):
        body = self.body()
        if self.account() in (None, 401):
            return self.fail(1002)
        if body.get("model") not in IMAGE_MODELS:
            return self.fail(1211)
        if set(body) - {"model", "prompt", "size", "quality", "user_id", "watermark_enabled"}:
            return self.fail(1214)
        w, _, h = str(body.get("size", "1024x1024")).partition("x")
        if not (w.isdigit() and h.isdigit() and 512 <= int(w) <= 2048
                and 512 <= int(h) <= 2048 and int(w) % 16 == int(h) % 16 == 0
                and int(w) * int(h) <= 1 << 21):
            return self.fail(1214)
        base = f"{self.request.protocol}://{self.request.host}"
        self.json({"created": 1760335349, "data": [{"url": f"{base}/files/cogview.png"}],
                   "content_filter": [{"role": "assistant", "level": 3}]})


class ImageFile(Base):
    def get(self):
        self.set_header("Content-Type", "image/png")
        self.finish(PNG)


ERRORS.setdefault(1214, (400, "参数非法"))
EXTRA_ROUTES = [(r"/api/paas/v4/embeddings", Embeddings), (r"/api/paas/v4/images/generations",
                                                           Images),
                (r"/files/cogview.png", ImageFile)]


# The web_search tool ("Web Search in Chat", https://docs.bigmodel.cn/cn/guide/tools/web-search):
# a tool without its `web_search` object is refused; with search_result, the answer carries
# a top-level `web_search` list of sources.

SOURCES = [{"title": "Example", "link": "https://example.com/a", "content": "…",
            "refer": "ref_1", "media": "example.com"}]


class WebSearchChat(Chat):
    async def post(self):
        import json as _json
        body = _json.loads(self.request.body or b"{}")
        tools = body.get("tools") if isinstance(body.get("tools"), list) else ()
        tools = [t for t in tools if isinstance(t, dict)
                 and t.get("type") == "web_search"]
        if not tools:
            return await super().post()
        opts = tools[0].get("web_search")
        if not isinstance(opts, dict) or opts.get("enable") is not True:
            self.body()
            return self.json({"error": {"code": "1214", "message": "web_search tool requires "
                                        "web_search object"}}, 400)
        if opts.get("search_result") and not body.get("stream"):
            original_json = self.json

            def with_sources(obj, status=200):
                if status == 200 and isinstance(obj, dict):
                    obj = dict(obj, web_search=SOURCES)
                original_json(obj, status)
            self.json = with_sources
        return await super().post()


# -- speech and transcription, as docs.bigmodel.cn documents them ---------------------------
# GLM-TTS, https://docs.bigmodel.cn/api-reference/模型-api/文本转语音: model glm-tts, input
# at most 1024 characters, a system voice, response_format wav or pcm (default pcm), speed
# [0.5, 2], volume (0, 10], stream false (a stream is pcm only); the audio file is the body.
# The audio leaves in TTS_AUDIO's pieces; with `state.gate` (an asyncio.Event) the rest waits
# for it; an input starting "!cut" dies after the first piece. Refusals as 1214 (参数非法)
# or 1211 (model), their wording a guess.
# GLM-ASR, https://docs.bigmodel.cn/api-reference/模型-api/语音转文本: multipart, model
# glm-asr-2512, one .wav/.mp3 `file` of at most 25 MB, optional prompt, stream false.

TTS_AUDIO = [b"RIFF\x24\x00\x00\x00WAVEglm-part-1|", b"part-2|", b"part-3"]
TTS_VOICES = ("tongtong", "chuichui", "xiaochen", "jam", "kazi", "douji", "luodo")
TTS_FIELDS = {"model", "input", "voice", "response_format", "stream", "speed", "volume",
              "encode_format", "watermark_enabled", "request_id", "user_id"}
TRANSCRIPT = "你好，这是智谱的转写。"


class Speech(Chat):
    async def post(self):
        body = self.body()
        if self.account() in (None, 401):
            return self.fail(1002)
        if self.account() == "poor":
            return self.fail(1113)
        if body.get("model") != "glm-tts":
            return self.fail(1211)
        fmt = body.get("response_format", "pcm")
        speed, volume = body.get("speed", 1.0), body.get("volume", 1.0)
        if set(body) - TTS_FIELDS or body.get("voice") not in TTS_VOICES \
                or not isinstance(body.get("input"), str) or not 0 < len(body["input"]) <= 1024 \
                or fmt not in ("wav", "pcm") or (body.get("stream") and fmt != "pcm") \
                or not 0.5 <= speed <= 2 or not 0 < volume <= 10:
            return self.fail(1214)
        self.set_header("Content-Type", "audio/wav" if fmt == "wav" else "audio/pcm")
        gate = self.state.__dict__.get("gate")
        for i, piece in enumerate(TTS_AUDIO):
            if i == 1 and body["input"].startswith("!cut"):  # the connection dies mid-audio
                self.request.connection.stream.close()
                return
            if i == 1 and gate is not None:
                await gate.wait()
            self.write(piece)
            await self.flush()
        self.finish()


class Transcriptions(Chat):
    def prepare(self):
        self.record_form()

    def post(self):
        if self.account() in (None, 401):
            return self.fail(1002)
        if self.get_body_argument("model", None) != "glm-asr-2512":
            return self.fail(1211)
        uploads = self.request.files.get("file") or []
        if len(uploads) != 1 or not uploads[0].body or len(uploads[0].body) > 25 << 20 \
                or not uploads[0].filename.lower().endswith((".wav", ".mp3")) \
                or self.get_body_argument("stream", "false") != "false":
            return self.fail(1214)
        self.json({"id": "2025121512", "created": 1765790000, "request_id": "req-1",
                   "model": "glm-asr-2512", "text": TRANSCRIPT})


EXTRA_ROUTES += [(r"/api/paas/v4/audio/speech", Speech),
                 (r"/api/paas/v4/audio/transcriptions", Transcriptions)]


# -- the file parsing service (文件解析), asynchronous: a task per upload, polled -----------
# https://docs.bigmodel.cn/api-reference/工具-api/文件解析: multipart `file` and `tool_type`
# (lite|expert|prime) required, `file_type` optional (upper-case); answers
# {"success", "message", "task_id"}. https://docs.bigmodel.cn/api-reference/工具-api/解析结果:
# GET .../result/{taskId}/{text|download_link} -> {"status": processing|succeeded|failed,
# "message", "task_id", "content" (text), "parsing_result_url"}. Lite reads the types of
# https://docs.bigmodel.cn/cn/guide/tools/file-parser, at most 50 MB. What the vendor
# answers for a type its tool does not read, an oversized file or an unknown task is not
# documented: the fake answers the parameter error 1214 / 400, a guess. Tasks belong to
# the account that created them (a guess too): a poll with another key finds none.
# Scenarios: `state.parse_pending` "processing" answers per task before the result;
# `state.parse_fails`: every task fails.

LITE = ("PDF", "DOCX", "DOC", "XLS", "XLSX", "PPT", "PPTX", "PNG", "JPG", "JPEG", "CSV", "TXT",
        "MD")
ALL_TYPES = LITE + ("HTML", "BMP", "GIF", "WEBP", "HEIC", "EPS", "ICNS", "IM", "PCX", "PPM",
                    "TIFF", "XBM", "HEIF", "JP2")


def parser_tasks(state) -> dict:
    return state.__dict__.setdefault("parser_tasks", {})


class ParserCreate(Chat):
    def prepare(self):
        self.state.requests.append({"path": self.request.path, "method": "POST",
                                    "headers": dict(self.request.headers), "body": None,
                                    "form": {k: [v.decode() for v in vs] for k, vs in
                                             self.request.body_arguments.items()}})

    def post(self):
        if self.account() in (None, 401):
            return self.fail(1002)
        if self.account() == "poor":
            return self.fail(1113)
        uploads = self.request.files.get("file") or []
        tool = self.get_body_argument("tool_type", None)
        file_type = self.get_body_argument("file_type", None)
        if len(uploads) != 1 or tool not in ("lite", "expert", "prime") \
                or file_type is not None and file_type not in ALL_TYPES:
            return self.fail(1214)
        up = uploads[0]
        kind = file_type or up.filename.rpartition(".")[2].upper()
        if tool == "lite" and (kind not in LITE or len(up.body) > 50 << 20):
            return self.fail(1214)
        task_id = f"task_{len(parser_tasks(self.state)) + 1:09d}"
        parser_tasks(self.state)[task_id] = {
            "key": self.key(), "body": up.body, "type": kind, "tool": tool,
            "pending": getattr(self.state, "parse_pending", 0)}
        self.json({"message": "任务创建成功", "success": True, "task_id": task_id})


class ParserResult(Chat):
    def get(self, task_id, format_type):
        if self.account() in (None, 401):
            return self.fail(1002)
        task = parser_tasks(self.state).get(task_id)
        if format_type not in ("text", "download_link") or task is None \
                or task["key"] != self.key():
            return self.fail(1214)
        if task["pending"] > 0:
            task["pending"] -= 1
            return self.json({"status": "processing", "message": "任务处理中",
                              "task_id": task_id})
        if getattr(self.state, "parse_fails", False):
            return self.json({"status": "failed", "message": "文件解析失败",
                              "task_id": task_id})
        text = task["body"].decode("utf-8", "replace")
        self.json({"status": "succeeded", "message": "结果获取成功", "task_id": task_id,
                   "content": f"PARSED: {text}" if format_type == "text" else None,
                   "parsing_result_url": None if format_type == "text"
                   else "https://example.com/download/result.zip"})


EXTRA_ROUTES += [(r"/api/paas/v4/files/parser/create", ParserCreate),
                 (r"/api/paas/v4/files/parser/result/([^/]+)/([^/]+)", ParserResult)]
