"""Usage and spend rolled up per key, team, model and provider, per minute / 15 minutes /
hour / day, maintained as ledger entries are written (the store applies the increments in
the same transaction or script as the entries), so the status page, the admin API and
reports read a few aggregates instead of scanning the raw log.

An aggregate is a bucket (period, dimension, start) holding {(value, field): amount}:
`value` is the key id, team id, model or provider name ("" for dimension "all"); fields
are counters (n requests, err errors, pt/ct/ot/rt prompt/cached/output/reasoning tokens,
tt tokens charged to limits), `c.CUR` cost per currency, `up` unpriced requests, and for
the model dimension `e.CLASS` errors by class and `lh.I` / `th.I` latency and
time-to-first-token histograms (LAT_EDGES_MS). Memory is bounded by the number of
distinct values per bucket and the buckets kept (PERIODS' `keep`), not by traffic.
"""

from __future__ import annotations

import bisect

from freeapi.ledger import tokens_spent

# name: (width s, dimensions, seconds a bucket is kept after it ends)
PERIODS = {
    "m": (60, ("key",), 600),
    "q": (900, ("all", "model"), 2 * 86400),
    "h": (3600, ("all", "key", "team", "model", "provider"), 8 * 86400),
    "d": (86400, ("all", "key", "team", "model", "provider", "key_model"), 100 * 86400),
}
# Upper edges (ms) of the latency histogram's buckets; the last is open.
LAT_EDGES_MS = (50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 7500, 10000,
                15000, 20000, 30000, 60000, 120000)
SEP = "\x1f"  # between a value and a field name in one stored field
# The model dimension's per-bucket detail (error classes, latency and time-to-first-token
# histograms): most of a model bucket's fields, needed by the status page's percentiles
# but not by counts and spend over time (Store.rollup_read_counts leaves them out).
DETAIL_PREFIXES = ("e.", "lh.", "th.")


def is_detail(stored_field: str) -> bool:
    """Whether a stored field (value SEP field) is one of DETAIL_PREFIXES."""
    return stored_field.rpartition(SEP)[2].startswith(DETAIL_PREFIXES)


def error_class(e: dict) -> str | None:
    """None for a success; otherwise what kind of failure."""
    status, error = e.get("status") or 0, e.get("error")
    if status == 499:
        return "client_gone"
    if status == 429:
        return "rate_limited"
    if status >= 500:
        return "server"
    if status >= 400:
        return "client"
    if error is not None:
        return "stream_cut"  # 200, then the stream ended with an error event
    return None


def key_of(e: dict) -> str:
    # Pass-through requests have no gateway key: the masked vendor key tells them apart.
    return e.get("key_id") or e.get("key") or e.get("vendor_key") or "-"


def values(e: dict) -> tuple:
    """(key, team, model, provider) of an entry, as the dimensions name them."""
    return (key_of(e), e.get("team") or "-", e.get("model") or "-",
            e.get("provider") or "-")


def _by_dim(vals: tuple) -> dict:
    key, team, model, provider = vals
    return {"all": "", "key": key, "team": team, "model": model, "provider": provider,
            "key_model": f"{key}\x1e{model}"}


def fields_of(e: dict) -> tuple[dict, dict]:
    """(the fields every dimension adds, the model dimension's extra fields)."""
    cls = error_class(e)
    base = {"n": 1, "err": 1 if cls else 0,
            "pt": e.get("prompt_tokens") or 0, "ct": e.get("cached_tokens") or 0,
            "ot": e.get("completion_tokens") or 0, "rt": e.get("reasoning_tokens") or 0,
            "tt": tokens_spent(e) if e.get("total_tokens") is not None
            or e.get("prompt_tokens") is not None else 0}
    if e.get("unpriced"):
        base["up"] = 1
    elif e.get("cost") and e.get("currency"):
        base[f"c.{e['currency']}"] = e["cost"]
    extra = {}
    if cls:
        extra[f"e.{cls}"] = 1
    if e.get("latency_ms") is not None:
        extra[f"lh.{bisect.bisect_left(LAT_EDGES_MS, e['latency_ms'])}"] = 1
    if e.get("stream") and e.get("ttfb_ms") is not None:
        extra[f"th.{bisect.bisect_left(LAT_EDGES_MS, e['ttfb_ms'])}"] = 1
    return base, extra


def increments(entries) -> dict:
    """{(period, dim, start): {value SEP field: amount}} for a batch, summed, zeros left
    out. Entries are first summed per (minute, key, team, model, provider), so a busy
    batch costs one small dict update per entry plus one fan-out per group."""
    groups: dict[tuple, tuple[dict, dict]] = {}
    for e in entries:
        ts = e.get("ts")
        if ts is None:
            continue
        g = (int(ts // 60) * 60, values(e))
        acc = groups.get(g)
        if acc is None:
            acc = groups[g] = ({}, {})
        for target, fields in zip(acc, fields_of(e)):
            for f, v in fields.items():
                if v:
                    target[f] = target.get(f, 0) + v
    out: dict[tuple, dict] = {}
    for (minute, vals), (base, extra) in groups.items():
        by_dim = _by_dim(vals)
        both = {**base, **extra}
        for period, (width, dims, _) in PERIODS.items():
            start = minute - minute % width
            for dim in dims:
                bucket = out.setdefault((period, dim, start), {})
                prefix = by_dim[dim] + SEP
                for f, v in (both if dim == "model" else base).items():
                    k = prefix + f
                    bucket[k] = bucket.get(k, 0) + v
    return out


def fold(total: dict, entries, now: float) -> None:
    """Add the increments of `entries` into `total` (shaped as increments() returns),
    leaving out buckets already expired at `now`: a rebuild of old days (freeapi/
    rollups_rebuild.py) writes no minute buckets the sweep would delete at once."""
    for (period, dim, start), fields in increments(entries).items():
        width, _, keep = PERIODS[period]
        if start + width + keep <= now:
            continue
        bucket = total.setdefault((period, dim, start), {})
        for f, v in fields.items():
            bucket[f] = bucket.get(f, 0) + v


def starts(period: str, since: float, until: float) -> list[int]:
    """The bucket starts of `period` that overlap [since, until)."""
    width = PERIODS[period][0]
    first = int(since // width) * width
    return list(range(first, int(until), width)) if until > first else []


def last(period: str, n: int, now: float) -> list[int]:
    """The starts of the `n` buckets of `period` ending with the one holding `now`."""
    width = PERIODS[period][0]
    top = int(now // width) * width
    return [top - (n - 1 - i) * width for i in range(n)]


def merge(buckets) -> dict[str, dict[str, float]]:
    """{value: {field: amount}} summed over buckets ({value SEP field: amount} each)."""
    out: dict[str, dict[str, float]] = {}
    for bucket in buckets:
        for k, v in bucket.items():
            val, _, f = k.rpartition(SEP)
            d = out.setdefault(val, {})
            d[f] = d.get(f, 0) + v
    return out


def percentile(hist: dict, prefix: str, p: float):
    """The upper edge (ms) of the histogram bucket holding the p-th quantile."""
    counts = sorted((int(f[len(prefix):]), n) for f, n in hist.items()
                    if f.startswith(prefix))
    total = sum(n for _, n in counts)
    if not total:
        return None
    rank, seen = min(total - 1, int(p * total)), 0
    for i, n in counts:
        seen += n
        if seen > rank:
            return LAT_EDGES_MS[i] if i < len(LAT_EDGES_MS) else LAT_EDGES_MS[-1] * 2
    return None


def costs(fields: dict) -> dict[str, float]:
    return {f[2:]: v for f, v in fields.items() if f.startswith("c.")}
