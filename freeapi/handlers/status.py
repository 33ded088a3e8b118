"""What the operator reads: GET /metrics (Prometheus), GET /status (a page) and the JSON
behind it, GET /v1/status. All of it is for admin gateway keys."""

from __future__ import annotations

from pathlib import Path

from freeapi.errors import APIError
from freeapi.handlers.base import APIHandler


def require_admin(handler: APIHandler, what: str) -> None:
    """The rule of GET /v1/keys: a gateway key, and once any key has `role: admin`, one of
    those."""
    gw = handler.gateway
    if not gw.auth.enabled:
        raise APIError(403, f"{what} needs gateway keys: configure auth.keys.",
                       code="auth_required")
    handler.client_token()
    if gw.auth.has_roles and handler.caller.role != "admin":
        raise APIError(403, f"{what} is for gateway keys with role: admin.",
                       code="admin_only")


class MetricsHandler(APIHandler):
    """Prometheus text format. With gateway keys configured it needs an admin key, unless
    `metrics.public: true` (a scraper on a private network); without gateway keys it is
    open, like the rest of a pass-through gateway."""
    access_logged = False  # probes and scrapers: no access line

    auth_required = False  # no body to protect; get() applies metrics.public itself

    def get(self):
        gw = self.gateway
        if gw.auth.enabled and not gw.config.metrics_public:
            require_admin(self, "GET /metrics")
        body, content_type = gw.metrics.render(gw, self.request.headers.get("Accept"))
        self.set_header("Content-Type", content_type)
        self.finish(body)


class StatusHandler(APIHandler):
    """GET /v1/status: the JSON the status page shows."""

    async def get(self):
        require_admin(self, "GET /v1/status")
        self.set_header("Cache-Control", "no-store")
        self.write_json(await self.gateway.status.snapshot())


# Nothing may be loaded from anywhere: the page is one document with inline style and
# script, and it only talks to this gateway.
_PAGE_POLICY = ("default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
                "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
                "frame-ancestors 'none'")


# freeapi/static/status.html: the admin console, one self-contained document (inline style,
# script and SVG; no build step), shipped as package data. It asks for an admin gateway
# key, keeps it in sessionStorage and reads GET /v1/status and the admin API with it;
# everything it shows is written as text nodes, never as HTML, since key, team and model
# names come from clients.
PAGE = (Path(__file__).resolve().parent.parent / "static" / "status.html").read_bytes()


class StatusPageHandler(APIHandler):
    """GET /status (the console): the page itself holds no data, so it needs no key; it
    asks for one."""

    auth_required = False

    def get(self):
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Content-Security-Policy", _PAGE_POLICY)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")
        self.set_header("Cache-Control", "no-cache")
        self.finish(PAGE)
