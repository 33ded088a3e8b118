"""StepFun's API (https://platform.stepfun.com/docs, international platform.stepfun.ai).

OpenAI-compatible. Quirk: reasoning models put their thinking in `reasoning` (the default
`reasoning_format`), not `reasoning_content`; it is renamed so `-fold`/`-silent` and
clients that know DeepSeek's field see it.
"""

from __future__ import annotations

from freeapi import hookimpl
from freeapi.provider import DISCOVER_OPTION, Provider


def _rename(part):
    if isinstance(part, dict) and "reasoning" in part:
        reasoning = part.pop("reasoning")
        if reasoning and not part.get("reasoning_content"):
            part["reasoning_content"] = reasoning


class Step(Provider):
    type_name = "step"
    # International: https://api.stepfun.ai/v1 (its own keys).
    default_base_url = "https://api.stepfun.com/v1"
    models = (
        "step-3.7-flash", "step-3.5-flash", "step-3", "step-r1-v-mini",
        "step-2-16k", "step-2-mini", "step-1-8k", "step-1-32k", "step-1-256k", "step-1-flash",
        "step-1v-8k", "step-1o-turbo-vision",
    )
    reasoning_models = frozenset({"step-3.7-flash", "step-3.5-flash", "step-3",
                                  "step-r1-v-mini"})
    owned_by = "stepfun"
    options = DISCOVER_OPTION
    rewrites_chunks = True

    def normalize_chunk(self, chunk):
        for choice in chunk.get("choices") or ():
            if isinstance(choice, dict):
                _rename(choice.get("delta"))
        return chunk

    def normalize_completion(self, data):
        for choice in data.get("choices") or ():
            if isinstance(choice, dict):
                _rename(choice.get("message"))
        return data


@hookimpl
def register_providers(register):
    register(Step)
