"""StepFun's API (https://platform.stepfun.com/docs, international platform.stepfun.ai).

OpenAI-compatible. Quirk: reasoning models put their thinking in `reasoning` (the default
`reasoning_format`, https://platform.stepfun.ai/docs/en/guide/reasoning), not
`reasoning_content`; it is renamed so `-fold`/`-silent` and clients that know DeepSeek's
field see it. Step Plan keys use https://api.stepfun.com/step_plan/v1 as base_url
(https://platform.stepfun.com/docs/zh/step-plan/integrations/reasoning-api.md).
"""

from __future__ import annotations

from freeapi import hookimpl
from freeapi.provider import DISCOVER_OPTION, NO_BALANCE_OPTION, Provider


def _rename(part):
    if isinstance(part, dict) and "reasoning" in part:
        reasoning = part.pop("reasoning")
        if reasoning and not part.get("reasoning_content"):
            part["reasoning_content"] = reasoning


class Step(Provider):
    type_name = "step"
    # https://platform.stepfun.com/docs/zh/guides/models/step-3.7-flash-quickstart;
    # international: https://api.stepfun.ai/v1 (its own keys).
    default_base_url = "https://api.stepfun.com/v1"
    models = (
        # Reasoning: https://platform.stepfun.ai/docs/en/guides/models/reasoning
        # (step-3.7-flash also takes images and video).
        "step-3.7-flash", "step-3.5-flash",
        # Vision: https://platform.stepfun.ai/docs/en/guides/models/vision
        "step-1o-turbo-vision", "step-1o-vision-32k", "step-1v-8k", "step-1v-32k",
    )
    reasoning_models = frozenset({"step-3.7-flash", "step-3.5-flash"})
    # Older names (step-3, step-2-*, step-1-*...) are on none of today's model pages and no
    # successor is documented for them: they still reach StepFun through the pattern.
    retired = {}
    patterns = ("step-*",)
    owned_by = "stepfun"
    # GET /models is the key check (DISCOVER); it cannot see a balance.
    options = {**DISCOVER_OPTION, **NO_BALANCE_OPTION}
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
