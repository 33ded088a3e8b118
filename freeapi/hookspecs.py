"""The hooks a freeapi plugin can implement. Decorate implementations with `freeapi.hookimpl`.

Hooks are always called with keyword arguments, so an implementation may accept only the
arguments it needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import pluggy

if TYPE_CHECKING:
    from freeapi.provider import Provider
    from freeapi.routing import Catalog, Route

hookspec = pluggy.HookspecMarker("freeapi")


@hookspec
def register_providers(register: Callable[[type["Provider"]], None]) -> None:
    """Register provider classes by calling `register(ProviderSubclass)` once per class.

    Every implementation is called (results are not used). A class is keyed by its
    `type_name`; the config section `providers.<name>` with that name, or with
    `type: <type_name>`, creates an instance of it.

    Beyond chat, a provider class offers embeddings, images, speech or transcription for
    its vendor by overriding the pure hooks `embeddings_request`, `images_request`,
    `image_edits_request`, `image_variations_request`, `speech_request`,
    `transcriptions_request` (and their `*_answer` interpreters; edits are read by
    `images_answer`) and declaring the models in `embedding_models`, `image_models`,
    `image_edit_models`, `speech_models`, `transcription_models`; `vision_models` names
    the chat models that take images, `search_body` turns the vendor's own web search on
    (the `-search` suffix; `search_refusal` names models it cannot serve), and the
    `document_*` hooks read chat `file` parts. See
    `freeapi.provider.Provider` and docs/plugins.md.
    """


@hookspec(firstresult=True)
def resolve_model(model: str, catalog: "Catalog") -> "Route | None":
    """Map the `model` a client asked for to a provider and upstream model.

    The first non-None result wins. freeapi's own implementation runs last (the order it
    resolves names in is documented on `freeapi.routing.Catalog`).
    Raise `freeapi.errors.APIError` to refuse the request with that error.
    """
