"""Metaso (秘塔AI搜索) official API (https://metaso.cn/search-api), Bearer `mk-...` keys.

No official API reference could be found for this review (Dec 2026): the base URL, model
ids, fields and error shape below are 3p, unverified, kept as they were.

Its `/chat/completions` answers a question with a web search behind it, in the OpenAI shape:
`messages` in, `choices[].message`/`delta` out, `reasoning_content` from the thinking
models, usage on the last chunk; sources come as extra `citations` (and `highlights` in
stream deltas), which OpenAI clients ignore and raw clients can read. Extra fields such as
`scope` ("webpage", "document", "scholar"...) pass through. Quirk: a failure can be HTTP 200
with `{"errCode": ..., "errMsg": ...}`. Every call spends credits, so there is no key check.
"""

from __future__ import annotations

from freeapi import hookimpl
from freeapi.errors import APIError, invalid_request
from freeapi.keys import redact
from freeapi.provider import NO_BALANCE_OPTION, Provider


class Metaso(Provider):
    type_name = "metaso"
    default_base_url = "https://metaso.cn/api/v1"  # 3p, unverified
    models = ("fast", "fast_thinking", "ds-r1")  # 3p, unverified
    aliases = {"metaso": "fast", "metaso-fast": "fast", "metaso-thinking": "fast_thinking",
               "metaso-r1": "ds-r1"}
    reasoning_models = frozenset({"fast_thinking", "ds-r1"})
    # "fast", "ds-r1": no prefix of Metaso's own that a pattern could safely claim.
    patterns = ()
    owned_by = "metaso"
    # Free tier (the `free` model): none known (no official price or limit page found).
    free_tier = ()
    options = NO_BALANCE_OPTION
    rewrites_chunks = True

    def body_error(self, data, keys=()):
        code = data.get("errCode") if isinstance(data, dict) else None
        if code in (None, 0, "0"):
            return None
        message = redact(str(data.get("errMsg") or "error"), keys)
        # 1000 is what Metaso answers to parameters it does not accept; other codes are not
        # documented, so they are reported as the vendor's failure.
        status = 400 if str(code) == "1000" else 502
        return APIError(status, f"{self.name}: {message} (Metaso errCode {code})",
                        code=f"metaso_{code}")

    def search_body(self, body):
        """Metaso is a search engine: every answer searches the web, so a `-search` name
        (`metaso-search`) changes nothing and the models list `search`."""
        return dict(body)

    def normalize_chunk(self, chunk):
        err = self.body_error(chunk)
        if err is not None:
            return err.to_dict()
        chunk.setdefault("object", "chat.completion.chunk")
        return chunk

    def normalize_completion(self, data):
        data.setdefault("object", "chat.completion")
        return data

    def key_check_request(self, key):
        raise invalid_request("metaso has no free endpoint to check a key with: every call "
                              "spends credits.", param="provider", code="key_check_unsupported")


@hookimpl
def register_providers(register):
    register(Metaso)
