"""POST /v1/images/generations (https://platform.openai.com/docs/api-reference/images/create).

Vendors answer with URLs (GLM CogView, Qwen-Image's task results): for
`response_format: b64_json` the gateway downloads each image and encodes it. Qwen-Image is
an asynchronous task at DashScope: its provider hook answers the submission with a poll
request, which is sent with the same key, with growing pauses, until the task ends or the
provider's `timeouts.total` runs out (504)."""

from __future__ import annotations

import base64
import re
import time

from freeapi.errors import APIError, invalid_request, vendor_error
from freeapi.modalities import UNUSABLE, Operation, required_text
from freeapi.routing import require_model
from freeapi.provider import UpstreamRequest

MAX_PROMPT = 32000  # OpenAI's limit for gpt-image-1; vendors' own are checked by them
MAX_N = 10
MAX_IMAGE_BYTES = 32 << 20
_SIZE = re.compile(r"^(\d{2,5})[x*×](\d{2,5})$")


def parse_size(size: str, param: str = "size") -> tuple[int, int]:
    """(width, height) from `1024x1024` (OpenAI) or `1024*1024` (DashScope)."""
    m = _SIZE.match(size) if isinstance(size, str) else None
    if not m:
        raise invalid_request(f"`size` {size!r} is not WIDTHxHEIGHT (e.g. 1024x1024).",
                              param=param, code="invalid_size")
    return int(m.group(1)), int(m.group(2))


def refuse_size(vendor: str, size: str, accepted: str) -> APIError:
    return invalid_request(f"{vendor} does not generate images of size {size!r}; it "
                           f"accepts {accepted}.", param="size", code="unsupported_size")


def validate(body: dict) -> str:
    model = require_model(body)
    required_text(body, "prompt", MAX_PROMPT)
    n = body.get("n", 1)
    if n is not None and not (isinstance(n, int) and not isinstance(n, bool)
                              and 1 <= n <= MAX_N):
        raise invalid_request(f"`n` must be an integer from 1 to {MAX_N}.", param="n")
    if body.get("response_format") not in (None, "url", "b64_json"):
        raise invalid_request("`response_format` must be \"url\" or \"b64_json\".",
                              param="response_format")
    size = body.get("size")
    if size is not None and size != "auto":
        parse_size(size)
    if body.get("stream"):
        raise invalid_request("Streamed image generation is not supported by this gateway.",
                              param="stream")
    return model


class Images(Operation):
    endpoint = capability = "images"
    hook = "images_request"

    def __init__(self, body: dict):
        model = validate(body)
        self.b64 = body.get("response_format") == "b64_json"
        if body.get("size") == "auto":
            body = {k: v for k, v in body.items() if k != "size"}
        super().__init__(body, model)

    def request(self, provider, body: dict, key):
        if provider.images_url_only:
            body = {k: v for k, v in body.items() if k != "response_format"}
        return provider.images_request(body, key)

    async def finish(self, ctx, raw: bytes, route) -> dict:
        provider, key, polls = route.provider, ctx.key, 0
        while True:
            try:
                got = provider.images_answer(raw, key)
            except UNUSABLE:
                raise vendor_error(provider.name, 502, "the image answer was not understood"
                                   ) from None
            if not isinstance(got, UpstreamRequest):
                break
            await ctx.pause(provider.images_poll_delay(polls), provider, "the image task")
            polls += 1
            status, headers, raw = await ctx.fetch(provider, got, 1 << 20, "the image task")
            err = provider.error_from(status, headers, raw, [key] if key else [])
            if err is not None:
                raise err
        # No more than asked for: extra URLs a vendor lists are neither downloaded nor
        # passed on.
        data = [d for d in got.get("data") or () if isinstance(d, dict)][:self.n]
        if not data:
            raise vendor_error(provider.name, 502, "the answer holds no image")
        if self.b64 and provider.images_url_only:
            for item in data:
                url = item.pop("url", None)
                if isinstance(url, str) and "b64_json" not in item:
                    # No key goes with it: the URL is the vendor's storage, signed on its
                    # own.
                    raw = await ctx.download(provider, url, MAX_IMAGE_BYTES,
                                             "the image download")
                    item["b64_json"] = base64.b64encode(raw).decode()
        out = {"created": got.get("created") or int(time.time()), "data": [
            {k: v for k, v in item.items() if k in ("url", "b64_json", "revised_prompt")}
            for item in data]}
        if ctx.usage is None:  # priced per image (freeapi/pricing.py)
            ctx.report_usage({"images": len(out["data"])})
        return out

    @property
    def n(self) -> int:
        return self.body.get("n") or 1

    def estimate(self, body: dict) -> tuple[dict, dict]:
        return {}, {"image": self.n}
