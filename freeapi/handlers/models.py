"""GET /v1/models: only the models the gateway can serve for this caller. Each entry says
what the model can do (`capabilities`: chat, vision, embeddings, images, speech, search),
from its provider's declarations."""

from freeapi.errors import APIError
from freeapi.handlers.base import APIHandler


def _capabilities(route) -> list[str]:
    return route.provider.capabilities(route.upstream_model)


class ModelsHandler(APIHandler):
    def get(self):
        self.client_token()
        gw, caller = self.gateway, self.caller
        catalog = gw.catalog
        data = catalog.listing(lambda name, route: gw.servable(caller, name, route))
        for entry in data:
            entry["capabilities"] = _capabilities(catalog.resolve(entry["id"]))
        self.write_json({"object": "list", "data": data})


class ModelHandler(APIHandler):
    async def get(self, model: str):
        self.client_token()
        gw = self.gateway
        route = await gw.resolve_fresh(model)
        if not gw.servable(self.caller, model, route):
            raise APIError(404, f"The model {model[:80]!r} is not available to this caller.",
                           param="model", code="model_not_found")
        self.write_json({"id": model, "object": "model", "created": gw.catalog.created,
                         "owned_by": route.provider.owned_by,
                         "capabilities": _capabilities(route)})
