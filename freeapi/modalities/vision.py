"""Chat requests to models that cannot take them: images sent to a text-only model, or
a chat request to an embeddings, image or speech model. The vendor's own answer to those
is an opaque error (or worse, a 200 that ignores the image); the gateway says which model
would do, from the provider's declarations (`vision_models`, `embedding_models`, ...).

Only models a provider lists are judged: a model it does not list (a newer one, a
`provider/model` name) goes to the vendor as is, so a declaration can never refuse a model
that would have worked."""

from __future__ import annotations

from freeapi.errors import invalid_request

_OTHER_DOOR = (("embedding_models", "embeddings", "POST /v1/embeddings"),
               ("image_edit_models", "image editing", "POST /v1/images/edits"),
               ("image_models", "image generation", "POST /v1/images/generations"),
               ("speech_models", "speech", "POST /v1/audio/speech"),
               ("transcription_models", "transcription",
                "POST /v1/audio/transcriptions"))


def has_parts(messages) -> bool:
    """Whether any message has content parts (a list): the one pass every chat request
    pays; images and files are looked for only when it is true."""
    for m in messages:
        if isinstance(m, dict) and type(m.get("content")) is list:
            return True
    return False


def has_images(messages) -> bool:
    for m in messages:
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and part.get("type") in ("image_url", "image"):
                    return True
    return False


def _other_doors(p) -> dict:
    """The provider's non-chat models -> (what, endpoint), built once per provider."""
    table = p.__dict__.get("_freeapi_other_doors")
    if table is None:
        table = {m: (what, door) for attr, what, door in _OTHER_DOOR
                 for m in getattr(p, attr)}
        p.__dict__["_freeapi_other_doors"] = table
    return table


def _takes_images(route) -> bool:
    """Whether the route's model takes images, or may (a model the provider does not list,
    or a provider that does not say)."""
    p, upstream = route.provider, route.upstream_model
    return p.vision_models is None or upstream in p.vision_models or upstream not in p.models


def check_chat(route, body: dict, model: str, parts: bool = True) -> None:
    """Raise the 400 for a chat request this route's model cannot serve. `parts`: the
    request has content parts (see has_parts); without, only the model is checked."""
    p, upstream = route.provider, route.upstream_model
    other = _other_doors(p)
    if other and upstream in other:
        what, door = other[upstream]
        raise invalid_request(f"The model {model!r} is a {what} model, not a chat model: "
                              f"use {door}.", param="model", code="model_not_supported")
    if route.via and parts:  # the `free` model: every target it may fail over to
        if not all(_takes_images(t) for t in (route, *(route.chain or ()))) \
                and has_images(body.get("messages") or ()):
            raise invalid_request(  # its vision variant, never a paid model
                f"The model {model!r} may pick a model that takes no images; send images "
                f"to {route.via.replace('free', 'free-vision', 1)!r} (listed in GET "
                "/v1/models when a free model here takes images).", param="messages",
                code="model_not_vision")
        return
    vision = p.vision_models
    if not parts or _takes_images(route):
        return
    if has_images(body.get("messages") or ()):
        listed = sorted(v for v in vision if v in p.models) or sorted(vision)
        raise invalid_request(
            f"The model {model!r} does not take images. {p.name} models that do: "
            f"{', '.join(listed)} (e.g. model {p.name}/{listed[0]}).", param="messages",
            code="model_not_vision")
