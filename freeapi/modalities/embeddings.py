"""POST /v1/embeddings (https://platform.openai.com/docs/api-reference/embeddings/create).

The vendor is always asked for floats; `encoding_format: base64` (the openai SDK's
default) is produced here, as OpenAI does: the little-endian float32 array, base64."""

from __future__ import annotations

import base64
import json
import math
import sys
from array import array

from freeapi.errors import invalid_request, vendor_error
from freeapi.ledger import reserve_tokens
from freeapi.modalities import UNUSABLE, Operation
from freeapi.routing import require_model

# OpenAI's own limit on the number of inputs in one request.
MAX_INPUTS = 2048


def _tokens(value) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in value)


def validate(body: dict) -> str:
    """The model; a 400 for anything OpenAI's API itself would refuse."""
    model = require_model(body)
    inp = body.get("input")
    ok = (isinstance(inp, str) and inp != "") or _tokens(inp) or (
        isinstance(inp, list) and inp and (
            all(isinstance(s, str) and s != "" for s in inp) or all(map(_tokens, inp))))
    if not ok:
        raise invalid_request("`input` must be a non-empty string, a non-empty array of "
                              "non-empty strings, an array of token ids, or an array of "
                              "token-id arrays.", param="input")
    if isinstance(inp, list) and len(inp) > MAX_INPUTS and not _tokens(inp):
        raise invalid_request(f"`input` has {len(inp)} items; at most {MAX_INPUTS} are "
                              "allowed in one request.", param="input")
    fmt = body.get("encoding_format")
    if fmt not in (None, "float", "base64"):
        raise invalid_request("`encoding_format` must be \"float\" or \"base64\".",
                              param="encoding_format")
    dims = body.get("dimensions")
    if dims is not None and not (isinstance(dims, int) and not isinstance(dims, bool)
                                 and dims > 0):
        raise invalid_request("`dimensions` must be a positive integer.", param="dimensions")
    return model


def to_base64(vector: list) -> str:
    packed = array("f", vector)
    if sys.byteorder != "little":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode()


class Embeddings(Operation):
    endpoint = capability = "embeddings"
    hook = "embeddings_request"

    def __init__(self, body: dict):
        model = validate(body)
        self.base64 = body.get("encoding_format") == "base64"
        super().__init__({k: v for k, v in body.items() if k != "encoding_format"}, model)

    def estimate(self, body: dict) -> tuple[dict, dict]:
        # The input's JSON text, as a budget reserves any text (freeapi/ledger.py): token
        # arrays and strings alike overestimate.
        text = json.dumps(body.get("input"), ensure_ascii=False)
        return {"prompt_tokens": math.ceil(reserve_tokens(text))}, {}

    async def finish(self, ctx, raw: bytes, route) -> dict:
        provider = route.provider
        try:
            data = provider.embeddings_answer(raw)
            items = data["data"]
            for item in items:
                vector = item["embedding"]
                if not isinstance(vector, list):
                    raise ValueError
                if self.base64:
                    item["embedding"] = to_base64(vector)
        except UNUSABLE:
            raise vendor_error(provider.name, 502, "the embeddings answer was not OpenAI's "
                               "list of vectors") from None
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else None
        ctx.report_usage(usage)
        out = {"object": "list", "data": [
            {"object": "embedding", "index": item.get("index", i),
             "embedding": item["embedding"]} for i, item in enumerate(items)],
            "model": self.model}
        if usage is not None:
            out["usage"] = {"prompt_tokens": usage.get("prompt_tokens", 0),
                            "total_tokens": usage.get("total_tokens",
                                                      usage.get("prompt_tokens", 0))}
        return out
