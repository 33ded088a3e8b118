"""GET /admin/requests: the raw request log, newest first, paged and filtered (admin key):
`key` (a key id as GET /admin/keys shows it), `team` (a team id), `model`, `status`,
`request_id`, `since` / `until` (unix seconds or the forms `freeapi usage` takes), `limit`
(1-500, default 100) and `cursor` (the previous page's `next_cursor`). Each filter reads an
index (Store.ledger_page); nothing reads the whole log."""

from __future__ import annotations

from freeapi.errors import invalid_request
from freeapi.handlers.admin import AdminHandler, store_answers
from freeapi.store import PAGE_MAX
from freeapi.usage import parse_time


class RequestsAdminHandler(AdminHandler):
    def _arg(self, name: str):
        value = self.get_query_argument(name, None)
        if value is not None and (not value or len(value) > 400):
            raise invalid_request(f"`{name}` must be 1 to 400 characters.", param=name,
                                  code="invalid_field")
        return value

    def _time(self, name: str):
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

    @store_answers
    async def get(self):
        cursor = self._arg("cursor")
        if cursor is not None:
            ts, _, n = cursor.partition(":")
            try:
                float(ts)
                # Row ids and offsets are int8 in every backend: beyond is made up.
                if not 0 <= int(n) < 1 << 63:
                    raise ValueError(n)
            except ValueError:
                raise invalid_request("`cursor` is not one this API returned.",
                                      param="cursor", code="invalid_field") from None
        rows, nxt = await self.gateway.store.ledger_page(
            since=self._time("since"), until=self._time("until"), key=self._arg("key"),
            team=self._arg("team"), model=self._arg("model"),
            status=self._int("status", None, 100, 599),
            request_id=self._arg("request_id"), cursor=cursor,
            limit=self._int("limit", 100, 1, PAGE_MAX))
        self.listing(rows, next_cursor=nxt)


ROUTES = [(r"/admin/requests", RequestsAdminHandler)]
