"""GET /v1/models."""

from freeapi.handlers.base import APIHandler


class ModelsHandler(APIHandler):
    def get(self):
        self.client_token()
        self.write_json({"object": "list", "data": self.gateway.catalog.listing()})


class ModelHandler(APIHandler):
    def get(self, model: str):
        self.client_token()
        route = self.gateway.resolve(model)
        self.write_json({"id": model, "object": "model", "created": self.gateway.catalog.created,
                         "owned_by": route.provider.owned_by})
