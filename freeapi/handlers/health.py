"""GET /ping and GET /healthz: liveness and readiness for load balancers and humans."""

import asyncio

from freeapi import __version__
from freeapi.handlers.base import APIHandler
from freeapi.store import StoreError

# A health check must answer before the orchestrator's own probe timeout (often 1-5 s),
# even when the store hangs.
STORE_CHECK_TIMEOUT = 2.0


class PingHandler(APIHandler):
    access_logged = False  # probes and scrapers: no access line
    auth_required = False  # liveness for load balancers

    def get(self):
        self.set_header("Content-Type", "text/plain")
        self.finish("pong")


class HealthHandler(APIHandler):
    """200 while the gateway serves; 503 with the reason while it drains for shutdown or
    while its state store does not answer, so a load balancer stops sending it traffic."""
    access_logged = False  # probes and scrapers: no access line

    auth_required = False

    async def get(self):
        gw = self.gateway
        status, reason = "ok", None
        if gw.draining:
            status, reason = "draining", "shutting down; requests in flight are finishing"
        else:
            wait = min(STORE_CHECK_TIMEOUT, gw.config.state.timeout)
            try:
                await asyncio.wait_for(gw.store.ping(), wait)
            except asyncio.TimeoutError:
                status, reason = "unavailable", f"state store did not answer within {wait:g}s"
            except StoreError as e:
                status, reason = "unavailable", f"state store: {e}"
        body = {"status": status, "version": __version__,
                "providers": {
                    name: {"type": p.type_name, "models": p.model_ids(),
                           "keys": "server" if p.api_keys else "pass-through"}
                    for name, p in gw.providers.items()}}
        if reason:
            body["reason"] = reason
        self.write_json(body, 200 if status == "ok" else 503)
