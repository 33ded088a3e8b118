"""Beyond chat: the operations behind POST /v1/embeddings, /v1/images/generations (and
edits, variations), /v1/audio/speech and transcriptions, and the vision check of chat
requests.

An operation is what a front door hands `Pipeline.call` instead of a chat body: the
client's (validated) request, how to build the vendor request for one provider and key
(a pure provider hook: `Provider.embeddings_request` and friends, None when the vendor
does not offer it) and how to finish the answer (`finish`, which may poll an asynchronous
task or download images through its context's `fetch`). Key pool, failover, timeouts,
limits, the usage ledger and graceful shutdown are the pipeline's, exactly as for chat.
"""

from __future__ import annotations

from freeapi.errors import APIError, invalid_request

#: What a provider's answer interpreter (`embeddings_answer`, `images_answer`, ...) may
#: raise on a vendor answer of an unexpected shape: a 502, never a traceback.
UNUSABLE = (ValueError, KeyError, IndexError, TypeError, AttributeError, OverflowError,
            RecursionError)


def required_text(body: dict, name: str, limit: int, what: str = "a non-empty string"
                  ) -> str:
    """`body[name]`, a non-blank string of at most `limit` characters, or the 400."""
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise invalid_request(f"`{name}` is required and must be {what}.", param=name)
    if len(value) > limit:
        raise invalid_request(f"`{name}` is longer than {limit} characters.", param=name)
    return value


class Operation:
    """One non-chat request. Subclasses set `endpoint` (the ledger's name), `capability`
    (as in GET /v1/models), `hook` (the provider method building the vendor request) and
    `stream` (what the pipeline expects back: False for a whole body, True for an event
    stream, "bytes" for a body relayed as it arrives)."""

    endpoint = ""
    capability = ""
    hook = ""
    stream: bool | str = False

    def __init__(self, body: dict, model: str):
        self.body = body
        self.model = model

    def request(self, provider, body: dict, key):
        return getattr(provider, self.hook)(body, key)

    def estimate(self, body: dict) -> tuple[dict, dict]:
        """What this request may be billed, before it is sent: (token counts, units) as
        freeapi/pricing.py's cost_of takes them; a money budget reserves their cost
        (freeapi/budgets.py). Nothing by default."""
        return {}, {}

    def offered(self, route) -> bool:
        """Whether the route's provider offers this operation (fallbacks that do not are
        skipped)."""
        try:
            return self.request(route.provider, dict(self.body, model=route.upstream_model),
                                None) is not None
        except APIError:
            return True  # offered, but refuses this input: the attempt will say why

    def check(self, route) -> None:
        """Refuse, before anything is sent or counted, a model that cannot do this."""
        p = route.provider
        declared = getattr(p, f"{_ATTR[self.capability]}")
        model = route.upstream_model
        if declared and model not in declared and (model in p.models
                                                   or model in p.modality_ids()):
            raise invalid_request(
                f"The model {self.model!r} is not a {self.capability} model; {p.name} "
                f"serves {self.capability} with: {', '.join(declared)}.", param="model",
                code="model_not_supported")
        if not self.offered(route):
            raise invalid_request(f"The provider {p.name} (model {self.model!r}) offers no "
                                  f"{self.capability} API.", param="model",
                                  code="model_not_supported")
        # Input the vendor documents it refuses: a 400 now, not after the rpm is spent.
        self.request(p, dict(self.body, model=model), None)

    async def finish(self, ctx, result, route):
        """The client's answer from what the attempt returned (a body, or a stream).
        `ctx` is a freeapi.pipeline.operations.OperationContext: the door, the key that
        served, `fetch`/`pause` for more vendor calls, what the ledger needs."""
        raise NotImplementedError


_ATTR = {"embeddings": "embedding_models", "images": "image_models",
         "image_edits": "image_edit_models", "image_variations": "image_edit_models",
         "speech": "speech_models", "transcription": "transcription_models"}
