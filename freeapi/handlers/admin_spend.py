"""GET /admin/spend: spend per key, team, model or provider per hour or day over a range,
from the rollups only (freeapi/admin/spend.py), for the console's charts and for reports;
`format=csv` gives the same figures as one CSV row per value and bucket."""

from __future__ import annotations

import time

from freeapi import csvexport
from freeapi.admin import spend as S
from freeapi.admin.records import format_time
from freeapi.errors import invalid_request
from freeapi.handlers.admin import AdminHandler, store_answers

LIMIT_MAX = 500
CSV_COLUMNS = ("start", "by", "value", "name", *(n for n, _ in S.COUNTS), "amount",
               "currency")


class SpendAdminHandler(AdminHandler):
    @store_answers
    async def get(self):
        by = self._choice("by", S.DIMENSIONS, "model")
        period = self._choice("period", tuple(S.PERIODS), "day")
        csv = self._choice("format", ("json", "csv"), "json") == "csv"
        now = time.time()
        since, until = self._time("since"), self._time("until")
        if until is not None and until > now + 86400:
            raise invalid_request("`until` is more than a day in the future.",
                                  param="until", code="invalid_field")
        if since is not None and since >= (now if until is None else until):
            raise invalid_request("`since` must be before `until` (default: now).",
                                  param="since", code="invalid_field")
        starts = S.bucket_starts(period, since, until, now)
        span = S.max_span(period)
        if since is not None and (now if until is None else until) - since > span:
            raise invalid_request(
                f"`since`: per {period} the range is at most {span // 3600} hours "
                f"(the {period} rollups are kept that long).", param="since",
                code="invalid_field")
        value = self._arg("value")
        if value is not None and not 0 < len(value) <= 400:
            raise invalid_request("`value` must be 1 to 400 characters.", param="value",
                                  code="invalid_field")
        limit = self._int("limit", 50, 1, LIMIT_MAX)
        got = await S.spend_series(self.gateway.store, self.gateway.pricing, by, period,
                                   starts, limit, await self._names(by), value)
        if csv:
            self._csv(by, got)
            return
        self.set_header("Cache-Control", "no-store")
        self.write_json({"object": "spend", "by": by, "period": period,
                         "since": format_time(starts[0]) if starts else None,
                         "until": format_time(until if until is not None else now),
                         **got})

    async def _names(self, by: str) -> dict:
        """What the console shows for a key or team id: its name (ids stay in `value`)."""
        if by == "key":
            return {k["id"]: k["name"] for k in await self.admin.list_keys()}
        if by == "team":
            return {t["id"]: t["name"] for t in await self.admin.list_teams()}
        return {}

    def _csv(self, by: str, got: dict):
        rows = [CSV_COLUMNS]
        for row in got["data"]:
            series = row["series"]
            for i, start in enumerate(got["starts"]):
                if series["requests"][i] or series["amount"][i]:
                    rows.append([format_time(start), by, row["value"], row["name"],
                                 *(series[n][i] for n, _ in S.COUNTS), series["amount"][i],
                                 got["currency"]])
        self.set_header("Content-Type", "text/csv; charset=utf-8")
        self.set_header("Content-Disposition", csvexport.attachment(f"spend-by-{by}"))
        self.set_header("Cache-Control", "no-store")
        self.finish(csvexport.lines(rows))


ROUTES = [(r"/admin/spend", SpendAdminHandler)]
