"""GET /v1/models. Each entry says what the model can do (`capabilities`: chat, vision,
embeddings, images, speech, search), from its provider's declarations."""

from freeapi.handlers.base import APIHandler


def _capabilities(route) -> list[str]:
    return route.provider.capabilities(route.upstream_model)


class ModelsHandler(APIHandler):
    def get(self):
        self.client_token()
        catalog = self.gateway.catalog
        data = catalog.listing()
        for entry in data:
            entry["capabilities"] = _capabilities(catalog.resolve(entry["id"]))
        self.write_json({"object": "list", "data": data})


class ModelHandler(APIHandler):
    def get(self, model: str):
        self.client_token()
        route = self.gateway.resolve(model)
        self.write_json({"id": model, "object": "model", "created": self.gateway.catalog.created,
                         "owned_by": route.provider.owned_by,
                         "capabilities": _capabilities(route)})
