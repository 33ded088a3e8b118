"""The `-search` model suffix: `glm-4.7-flash-search`, `qwen-plus-search`,
`kimi-k2.6-search`, `step-3.5-flash-search` turn on the vendor's own web search, through
the vendor's switch (`Provider.search_body`): GLM's `web_search` tool, Qwen's
`enable_search`, StepFun's `web_search` tool, Kimi's builtin `$web_search` tool (thinking
switched off), whose round trip the gateway completes itself (the client just gets the
answer). Sources come back where the vendor puts them (GLM: the answer's top-level
`web_search` list). A model the vendor's search cannot serve (`Provider.search_refusal`:
Kimi's always-thinking models) is a 400 naming one that can.

The suffix is a `resolve_model` hook implementation: a vendor model whose real name ends
in `-search` keeps its name.
"""

from __future__ import annotations

from dataclasses import dataclass

from freeapi import hookimpl
from freeapi.errors import APIError, invalid_request
from freeapi.routing import DISPLAY_SUFFIXES, Route

SUFFIX = "-search"
MAX_ROUNDS = 5  # Kimi searches rounds; a model still searching after this many is stuck


@dataclass(frozen=True)
class SearchRoute(Route):
    search: bool = True

    def body_for(self, body: dict) -> dict:
        # The vendor's switch once more on the vendor body, whose `model` is now the
        # upstream id: what it turns on may depend on the model (Kimi switches thinking off
        # only where the model can).
        return self.provider.search_body(super().body_for(body))


class SearchSuffix:
    """freeapi's own `-search` resolution; runs before the core's name lookup."""

    @hookimpl
    def resolve_model(self, model, catalog):
        asked = model
        for display in DISPLAY_SUFFIXES:  # `X-search-fold` is `X-fold-search`
            if model.endswith(SUFFIX + display):
                model = model[: -len(SUFFIX + display)] + display + SUFFIX
                break
        if not model.endswith(SUFFIX) or len(model) == len(SUFFIX):
            return None
        try:
            route = catalog.resolve(model[: -len(SUFFIX)])
        except APIError:
            return None  # not a known model plus the suffix: the core decides
        p = route.provider
        if route.upstream_model + SUFFIX in p.model_ids():
            return None  # the vendor's own model of that name
        if route.upstream_model.endswith(SUFFIX) and route.upstream_model not in \
                p.model_ids():  # `X-search-search`: a pattern would send it on as a name
            raise invalid_request(f"The model {asked!r}: `-search` is a suffix taken once.",
                                  param="model", code="model_not_found")
        if p.search_body({"model": route.upstream_model, "messages": []}) is None:
            raise invalid_request(f"The model {model!r}: {p.name} offers no web search of its "
                                  f"own through this gateway; ask for "
                                  f"{model[: -len(SUFFIX)]!r} without the suffix.",
                                  param="model", code="search_not_supported")
        refusal = p.search_refusal(route.upstream_model)
        if refusal:
            raise invalid_request(f"The model {asked!r}: {refusal}", param="model",
                                  code="search_not_supported")
        return SearchRoute(p, route.upstream_model, route.display, route.defaults)


def search_calls(data: dict) -> tuple[dict, list] | None:
    """(the assistant message, its `$web_search` calls) when a Kimi answer asks the caller
    to complete the builtin search; None for a final answer."""
    choices = data.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else None
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict) or choice.get("finish_reason") != "tool_calls":
        return None
    calls = message.get("tool_calls")
    if not isinstance(calls, list) or not calls:
        return None
    if not all(isinstance(c, dict) and (c.get("function") or {}).get("name") == "$web_search"
               for c in calls):
        return None  # the client's own tools are the client's to run
    return message, calls


def add_usage(total: dict | None, usage) -> dict | None:
    if not isinstance(usage, dict):
        return total
    if total is None:
        return dict(usage)
    for k in ("prompt_tokens", "completion_tokens", "total_tokens"):
        if isinstance(usage.get(k), int):
            total[k] = (total.get(k) or 0) + usage[k]
    return total
