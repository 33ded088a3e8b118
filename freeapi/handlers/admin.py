"""The admin API: /admin/keys, /admin/teams, /admin/audit (docs/admin.md). For config
gateway keys under the rule of GET /v1/keys (once any key has `role: admin`, one of those);
a key made at runtime is refused (403), so no key can make itself more keys."""

from __future__ import annotations

import functools

from freeapi.budgets import key_counter_id
from freeapi.errors import APIError, invalid_request
from freeapi.handlers.base import APIHandler
from freeapi.store import StoreError
from freeapi.usage import parse_time


def store_answers(method):
    """A store that cannot answer is a 503 the caller may retry, not a 500."""
    @functools.wraps(method)
    async def run(self, *args):
        try:
            return await method(self, *args)
        except StoreError as e:
            raise APIError(503, f"The gateway's state store cannot answer right now ({e}); "
                                "retry shortly.", code="state_unavailable",
                           retry_after="1") from None
    return run


class AdminHandler(APIHandler):
    @classmethod
    def before_body(cls, arrival, request) -> None:
        if not arrival.gateway.auth.enabled:
            raise APIError(403, "The admin API needs gateway keys: configure auth.keys with "
                                "an admin key.", code="auth_required")
        super().before_body(arrival, request)

    @classmethod
    def check_token(cls, arrival, headers) -> None:
        # Checked before any of the body is read: a refused caller costs no body.
        super().check_token(arrival, headers)
        if not arrival.gateway.auth.is_admin(arrival.caller):
            arrival.checked = False  # never taken as checked, whoever asks again
            raise APIError(403, "The admin API is for gateway keys from auth.keys with "
                                "role: admin.", code="admin_only")

    @property
    def admin(self):
        return self.gateway.admin

    @property
    def actor(self) -> str:
        return self.caller.name

    def body(self, optional: bool = False) -> dict:
        """The JSON body; `optional`: none at all (or only whitespace) is {}."""
        if optional and not self.raw_body().strip():
            return {}
        return self.json_body()

    def _arg(self, name: str) -> str | None:
        return self.get_query_argument(name, None)

    def _int(self, name: str, default, low: int, high: int):
        """A query argument that must be a whole number in [low, high] (400 naming it)."""
        raw = self._arg(name)
        if raw is None:
            return default
        # isascii(): "²" is a digit to isdigit(), not to int()
        if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
            raise invalid_request(f"`{name}` must be a whole number from {low} to {high}.",
                                  param=name, code="invalid_field")
        return int(raw)

    def _time(self, name: str):
        """unix seconds, or what `freeapi usage --since` takes (400 naming it)."""
        raw = self._arg(name)
        if raw is None:
            return None
        try:
            return float(raw)
        except ValueError:
            pass
        try:
            return parse_time(raw)
        except ValueError as e:
            raise invalid_request(f"`{name}`: {e}", param=name, code="invalid_field") \
                from None

    def _choice(self, name: str, options: tuple, default: str) -> str:
        raw = self._arg(name)
        if raw is None:
            return default
        if raw not in options:
            raise invalid_request(f"`{name}` must be one of {', '.join(options)}.",
                                  param=name, code="invalid_field")
        return raw

    def listing(self, data: list, **extra):
        self.write_json({"object": "list", "data": data, **extra})

    async def with_budget_used(self, rows: list[dict], kind: str) -> list[dict]:
        """Each key or team record with `budget_used`: {daily, monthly, total} spent of
        billing.currency this UTC day, month and in total, reservations in flight included
        (freeapi/budgets.py; counted while the key or its team has a budget)."""
        gw = self.gateway
        if kind == "key":
            cids = [key_counter_id(r["id"], gw.config.gateway_keys) or "" for r in rows]
        else:
            cids = ["t:" + r["id"] for r in rows]
        used = await gw.steps.budgets.used(cids)
        return [dict(r, budget_used=u) for r, u in zip(rows, used)]


class KeysAdminHandler(AdminHandler):
    @store_answers
    async def get(self):
        # Today's and this month's spend per key, from the day rollups (freeapi/status.py).
        rows, status = await self.admin.list_keys(), self.gateway.status
        spend = await status.key_spend()
        empty = {"today": status.usage_of({}), "month": status.usage_of({})}
        rows = await self.with_budget_used(rows, "key")
        self.listing([dict(r, usage=spend.get(r["id"], empty)) for r in rows])

    @store_answers
    async def post(self):
        view, secret = await self.admin.create_key(self.body(), self.actor)
        self.write_json(dict(view, key=secret), 201)


class KeyAdminHandler(AdminHandler):
    @store_answers
    async def get(self, rid):
        [view] = await self.with_budget_used([await self.admin.get_key(rid)], "key")
        self.write_json(view)

    @store_answers
    async def patch(self, rid):
        self.write_json(await self.admin.update_key(rid, self.body(), self.actor))

    @store_answers
    async def delete(self, rid):
        self.write_json(await self.admin.revoke_key(rid, self.actor))


class KeyRotateHandler(AdminHandler):
    @store_answers
    async def post(self, rid):
        view, secret = await self.admin.rotate_key(rid, self.body(optional=True), self.actor)
        self.write_json(dict(view, key=secret))


class TeamsAdminHandler(AdminHandler):
    @store_answers
    async def get(self):
        self.listing(await self.with_budget_used(await self.admin.list_teams(), "team"))

    @store_answers
    async def post(self):
        self.write_json(await self.admin.create_team(self.body(), self.actor), 201)


class TeamAdminHandler(AdminHandler):
    @store_answers
    async def get(self, ref):
        [view] = await self.with_budget_used([await self.admin.get_team(ref)], "team")
        self.write_json(view)

    @store_answers
    async def patch(self, ref):
        self.write_json(await self.admin.update_team(ref, self.body(), self.actor))

    @store_answers
    async def delete(self, ref):
        self.write_json(await self.admin.delete_team(ref, self.actor))


class AuditHandler(AdminHandler):
    """GET /admin/audit?limit=50&before=SEQ: newest first; `next_before` pages on."""

    @store_answers
    async def get(self):
        limit = self._int("limit", 50, 1, 500)
        before = self._int("before", None, 1, 1 << 62)
        rows = await self.admin.audit(before, limit)
        self.listing(rows, next_before=rows[-1]["seq"] if len(rows) == limit else None)


ROUTES = [
    (r"/admin/keys", KeysAdminHandler),
    (r"/admin/keys/([^/]+)", KeyAdminHandler),
    (r"/admin/keys/([^/]+)/rotate", KeyRotateHandler),
    (r"/admin/teams", TeamsAdminHandler),
    (r"/admin/teams/([^/]+)", TeamAdminHandler),
    (r"/admin/audit", AuditHandler),
]
