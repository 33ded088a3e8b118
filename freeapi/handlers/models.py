"""GET /v1/models: only the models the gateway can serve for this caller. Each entry says
what the model can do (`capabilities`: chat, vision, embeddings, images, speech, search),
from its provider's declarations."""

from freeapi.errors import APIError
from freeapi.handlers.base import APIHandler
from freeapi.limits import Limits


def _capabilities(route) -> list[str]:
    return route.provider.capabilities(route.upstream_model)


def _free_allowed(caller):
    """Whether the caller's gateway key may use a `free` name."""
    return lambda name, route: caller is None or caller.models is None or \
        Limits.model_allowed(caller, name, route)


class ModelsHandler(APIHandler):
    async def get(self):
        self.client_token()
        gw, caller = self.gateway, self.caller
        catalog = gw.catalog
        data = catalog.listing(lambda name, route: gw.servable(caller, name, route))
        for entry in data:
            entry["capabilities"] = _capabilities(catalog.resolve(entry["id"]))
        # `free` and its variants first, each with the models behind it in order and
        # whether each can serve now (extra fields OpenAI clients ignore: freeapi/free.py)
        free = await gw.free.listing(catalog.created, _free_allowed(caller))
        self.write_json({"object": "list", "data": free + data})


class ModelHandler(APIHandler):
    async def get(self, model: str):
        self.client_token()
        gw = self.gateway
        if gw.free.parse(model) is not None:
            found = [e for e in await gw.free.listing(gw.catalog.created,
                                                     _free_allowed(self.caller))
                     if e["id"] == model]
            if not found:
                raise APIError(404, f"The model {model[:80]!r} is not available to this "
                                    "caller.", param="model", code="model_not_found")
            self.write_json(found[0])
            return
        route = await gw.resolve_fresh(model)
        if not gw.servable(self.caller, model, route):
            raise APIError(404, f"The model {model[:80]!r} is not available to this caller.",
                           param="model", code="model_not_found")
        self.write_json({"id": model, "object": "model", "created": gw.catalog.created,
                         "owned_by": route.provider.owned_by,
                         "capabilities": _capabilities(route)})
