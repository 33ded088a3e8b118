"""GET /v1/models: only the models the gateway can serve for this caller."""

from freeapi.errors import APIError
from freeapi.handlers.base import APIHandler


class ModelsHandler(APIHandler):
    def get(self):
        self.client_token()
        gw, caller = self.gateway, self.caller
        self.write_json({"object": "list", "data": gw.catalog.listing(
            lambda name, route: gw.servable(caller, name, route))})


class ModelHandler(APIHandler):
    async def get(self, model: str):
        self.client_token()
        gw = self.gateway
        route = await gw.resolve_fresh(model)
        if not gw.servable(self.caller, model, route):
            raise APIError(404, f"The model {model[:80]!r} is not available to this caller.",
                           param="model", code="model_not_found")
        self.write_json({"id": model, "object": "model", "created": gw.catalog.created,
                         "owned_by": route.provider.owned_by})
