"""GET /v1/keys: each vendor key's health, for the operator (masked ids only)."""

from freeapi.errors import APIError
from freeapi.handlers.base import APIHandler


class KeysHandler(APIHandler):
    def get(self):
        gw = self.gateway
        if not gw.auth.enabled:
            raise APIError(403, "Key status needs gateway keys: configure auth.keys.",
                           code="auth_required")
        self.client_token()
        if gw.auth.has_roles and self.caller.role != "admin":
            raise APIError(403, "Key status is for gateway keys with role: admin.",
                           code="admin_only")
        self.write_json({"object": "list", "data": [
            dict(row, provider=name)
            for name, provider in gw.providers.items()
            for row in gw.pools[name].status(provider.api_keys)
        ]})
