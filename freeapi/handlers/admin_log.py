"""GET /admin/requests: the raw request log, newest first, paged and filtered (admin key):
`key` (a key id as GET /admin/keys shows it), `team` (a team id), `model`, `status`,
`request_id`, `since` / `until` (unix seconds or the forms `freeapi usage` takes), `limit`
(1-500, default 100) and `cursor` (the previous page's `next_cursor`). Each filter reads an
index (Store.ledger_page); nothing reads the whole log.

`format=csv`: every matching entry as a CSV attachment, read and sent one page at a time
(flushed before the next is read), so an export of a month holds one page in memory."""

from __future__ import annotations

from tornado.iostream import StreamClosedError

from freeapi import csvexport
from freeapi.admin.records import format_time
from freeapi.errors import invalid_request
from freeapi.handlers.admin import AdminHandler, store_answers
from freeapi.store import LEDGER_FIELDS, PAGE_MAX

CSV_COLUMNS = ("time", *LEDGER_FIELDS)
CSV_MAX_ROWS = 1_000_000  # one export's bound (the default), as `limit` may lower it


class RequestsAdminHandler(AdminHandler):
    def _arg(self, name: str):
        value = self.get_query_argument(name, None)
        if value is not None and (not value or len(value) > 400):
            raise invalid_request(f"`{name}` must be 1 to 400 characters.", param=name,
                                  code="invalid_field")
        return value

    def _cursor(self):
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
        return cursor

    @store_answers
    async def get(self):
        csv = self._choice("format", ("json", "csv"), "json") == "csv"
        filters = dict(since=self._time("since"), until=self._time("until"),
                       key=self._arg("key"), team=self._arg("team"), model=self._arg("model"),
                       status=self._int("status", None, 100, 599),
                       request_id=self._arg("request_id"))
        cursor = self._cursor()
        if csv:
            await self._csv(filters, cursor, self._int("limit", CSV_MAX_ROWS, 1, CSV_MAX_ROWS))
            return
        rows, nxt = await self.gateway.store.ledger_page(
            **filters, cursor=cursor, limit=self._int("limit", 100, 1, PAGE_MAX))
        self.listing(rows, next_cursor=nxt)

    async def _csv(self, filters: dict, cursor, limit: int):
        store = self.gateway.store
        # The first page is read before anything is sent: a store that cannot answer is
        # still a clean 503, not a cut download.
        rows, cursor = await store.ledger_page(**filters, cursor=cursor,
                                               limit=min(PAGE_MAX, limit))
        self.set_header("Content-Type", "text/csv; charset=utf-8")
        self.set_header("Content-Disposition", csvexport.attachment("requests"))
        self.set_header("Cache-Control", "no-store")
        self.write(csvexport.lines([CSV_COLUMNS]))
        sent = 0
        while True:
            self.write(csvexport.lines(
                [format_time(e.get("ts")), *(e.get(f) for f in LEDGER_FIELDS)] for e in rows))
            sent += len(rows)
            try:
                await self.flush()
            except StreamClosedError:  # the client went away: stop reading the log
                return
            if cursor is None or sent >= limit:
                break
            rows, cursor = await store.ledger_page(**filters, cursor=cursor,
                                                   limit=min(PAGE_MAX, limit - sent))
        self.finish()


ROUTES = [(r"/admin/requests", RequestsAdminHandler)]
