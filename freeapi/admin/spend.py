"""Spend over time per key, team, model or provider, for GET /admin/spend and the console's
charts: read from the hour or day rollups (freeapi/rollups.py), one bucket per hour or day
of the range, so a month of traffic costs the same to show as a minute of it. Never reads
the raw log.

The range is bounded by how long the rollups keep their buckets (rollups.PERIODS), which
also bounds the answer: at most 192 hours or 100 days, times `limit` values."""

from __future__ import annotations

import time

from freeapi import rollups as R

# The API's names for the rollup periods it serves, and the default span of each.
PERIODS = {"hour": ("h", 86400), "day": ("d", 30 * 86400)}
DIMENSIONS = ("key", "team", "model", "provider")
# The figures of one value in one bucket: (name in the answer, rollup field).
COUNTS = (("requests", "n"), ("errors", "err"), ("tokens", "tt"), ("input_tokens", "pt"),
          ("output_tokens", "ot"), ("unpriced", "up"))


def max_span(period: str) -> int:
    """The longest range (seconds) `period` can answer: as long as its buckets are kept."""
    code = PERIODS[period][0]
    width, _, keep = R.PERIODS[code]
    return keep + width


def bucket_starts(period: str, since: float | None, until: float | None,
                  now: float | None = None) -> list[int]:
    """The starts of the buckets covering [since, until) (defaults: the period's default
    span back from now); the caller has checked the span against max_span."""
    now = time.time() if now is None else now
    code, default = PERIODS[period]
    until = now if until is None else until
    since = until - default if since is None else since
    return R.starts(code, since, until)


_WANTED = frozenset(f for _, f in COUNTS)


def _amount(pricing, fields: dict) -> float:
    costs = R.costs(fields)
    return pricing.total(costs)["amount"] if costs else 0.0


def _add(into: dict, fields: dict) -> None:
    for f, v in fields.items():
        into[f] = into.get(f, 0) + v


def _figures(fields: dict, amount) -> dict:
    out = {name: int(fields.get(f, 0)) for name, f in COUNTS}
    out["amount"] = amount
    return out


async def spend_series(store, pricing, by: str, period: str, starts: list[int],
                       limit: int, names: dict | None = None, value: str | None = None
                       ) -> dict:
    """{"starts", "currency", "data": [{value, name, totals, series}], "more", "total"}:
    the values of dimension `by` with the most spend first (then the most requests), at
    most `limit` of them (`more`: how many were left out; `total` still counts them).
    Amounts are in billing.currency; costs in a currency without a rate are left apart
    under `unconverted` (as everywhere else, freeapi/pricing.py)."""
    code = PERIODS[period][0]
    buckets = await store.rollup_read_counts(code, by, starts)
    # The histograms are left out by the store; one pass keeps the fields answered.
    per_value: dict[str, list[dict]] = {}
    for i, bucket in enumerate(buckets):
        for k, v in bucket.items():
            val, _, f = k.rpartition(R.SEP)
            if (f not in _WANTED and not f.startswith("c.")) or \
                    (value is not None and val != value):
                continue
            series = per_value.get(val)
            if series is None:
                series = per_value[val] = [{} for _ in starts]
            point = series[i]
            point[f] = point.get(f, 0) + v
    rows, everything = [], {}
    for val, series in per_value.items():
        fields: dict = {}
        for s in series:
            _add(fields, s)
        _add(everything, fields)
        total = pricing.total(R.costs(fields))
        points = [(s, _amount(pricing, s)) for s in series]
        rows.append({"value": val, "name": (names or {}).get(val, val),
                     "totals": dict(_figures(fields, total["amount"]),
                                    costs=R.costs(fields), unconverted=total["unconverted"]),
                     "series": {name: [int(s.get(f, 0)) for s, _ in points]
                                for name, f in COUNTS} | {"amount": [a for _, a in points]}})
    rows.sort(key=lambda r: (-r["totals"]["amount"], -r["totals"]["requests"], r["value"]))
    grand = pricing.total(R.costs(everything))
    return {"starts": starts, "currency": pricing.billing.currency, "data": rows[:limit],
            "more": max(0, len(rows) - limit),
            "total": dict(_figures(everything, grand["amount"]),
                          unconverted=grand["unconverted"])}
