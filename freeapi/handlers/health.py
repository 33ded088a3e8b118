"""GET /ping and GET /healthz: liveness for load balancers and humans."""

from freeapi import __version__
from freeapi.handlers.base import APIHandler


class PingHandler(APIHandler):
    auth_required = False  # liveness for load balancers

    def get(self):
        self.set_header("Content-Type", "text/plain")
        self.finish("pong")


class HealthHandler(APIHandler):
    auth_required = False

    def get(self):
        gw = self.gateway
        self.write_json({
            "status": "ok",
            "version": __version__,
            "providers": {
                name: {"type": p.type_name, "models": p.model_ids(),
                       "keys": "server" if p.api_keys else "pass-through"}
                for name, p in gw.providers.items()
            },
        })
