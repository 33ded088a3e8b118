"""`freeapi usage`: the ledger's totals per UTC day, gateway key and model, with cost in
billing.currency: whole days from the day rollups (freeapi/rollups.py), only the partial
days at either end of the span from the raw log (by its time index)."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone

from freeapi import rollups as R
from freeapi.store import StoreError

_TOKENS = ("prompt_tokens", "cached_tokens", "completion_tokens", "reasoning_tokens")
_HEAD = {"prompt_tokens": "prompt", "cached_tokens": "cached",
         "completion_tokens": "completion", "reasoning_tokens": "reasoning"}
_SPAN = re.compile(r"^(\d+(?:\.\d+)?)([mhdw])$")
_UNIT = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_time(text: str, now: float | None = None) -> float:
    """`2026-11-01` (UTC midnight), `2026-11-01T12:30` (UTC unless an offset is given), or a
    span back from now: `30m`, `24h`, `7d`, `2w`. ValueError names the accepted forms."""
    now = time.time() if now is None else now
    text = text.strip()
    m = _SPAN.match(text)
    if m:
        return now - float(m.group(1)) * _UNIT[m.group(2)]
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r}: expected a date (2026-11-01), a UTC time "
                         "(2026-11-01T12:00) or a span back from now (30m, 24h, 7d, 2w)") \
            from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def price_of(entry: dict, prices: dict):
    """The config.Price for what served the entry: `provider/upstream_model`, the upstream
    model, then the model name the client used."""
    for name in (f"{entry.get('provider')}/{entry.get('upstream_model')}",
                 entry.get("upstream_model"), entry.get("model")):
        if name in prices:
            return prices[name]
    return None


def cost(entry: dict, price) -> float:
    """Per-million prices: uncached prompt at `input`, cache hits at `cached` (default
    `input`), completion (which includes reasoning) at `output`."""
    prompt = entry.get("prompt_tokens") or 0
    cached = min(entry.get("cached_tokens") or 0, prompt)
    cached_price = price.cached if price.cached is not None else price.input
    return ((prompt - cached) * price.input + cached * cached_price
            + (entry.get("completion_tokens") or 0) * price.output) / 1e6


def _blank() -> dict:
    return {"requests": 0, "errors": 0, **dict.fromkeys(_TOKENS, 0), "cost": 0.0}


_ROLLED = {"requests": "n", "errors": "err", "prompt_tokens": "pt", "cached_tokens": "ct",
           "completion_tokens": "ot", "reasoning_tokens": "rt"}


class _Summary:
    """Rows per (day, key, model), added to from rollups and from raw entries alike."""

    def __init__(self, prices: dict, pricing=None):
        self.prices, self.pricing = prices, pricing
        self.rows: dict[tuple, dict] = {}
        self.unpriced: set[str] = set()
        self.unconverted: dict[str, float] = {}

    def _money(self, costs: dict) -> float:
        if self.pricing is None:
            return sum(costs.values())
        got = self.pricing.total(costs)
        for cur, v in got["unconverted"].items():
            self.unconverted[cur] = self.unconverted.get(cur, 0) + v
        return got["amount"]

    def add_rollup(self, day: str, key: str, model: str, f: dict) -> None:
        acc = self.rows.setdefault((day, key, model), _blank())
        for name, field in _ROLLED.items():
            acc[name] += int(f.get(field, 0))
        acc["cost"] += self._money(R.costs(f))
        if f.get("up"):
            self.unpriced.add(model)

    def add_entry(self, e: dict) -> None:
        day = time.strftime("%Y-%m-%d", time.gmtime(e["ts"]))
        model = e.get("model") or "-"
        acc = self.rows.setdefault((day, R.key_of(e), model), _blank())
        acc["requests"] += 1
        acc["errors"] += R.error_class(e) is not None
        for t in _TOKENS:
            acc[t] += e.get(t) or 0
        used = e.get("prompt_tokens") or e.get("completion_tokens")
        if e.get("currency") and e.get("cost") is not None:  # priced when served
            acc["cost"] += self._money({e["currency"]: e["cost"]})
            return
        # An entry from before prices were recorded: priced now by the `prices` table.
        price = price_of(e, self.prices) if self.prices and not e.get("unpriced") else None
        if price is not None:
            acc["cost"] += cost(e, price)
        elif (self.prices or e.get("unpriced")) and used:
            self.unpriced.add(e.get("upstream_model") or model)

    def result(self) -> dict:
        by_key: dict[str, dict] = {}
        by_model: dict[str, dict] = {}
        total = _blank()
        for (_, key, model), r in self.rows.items():
            for acc in (by_key.setdefault(key, _blank()), by_model.setdefault(model, _blank()),
                        total):
                for name, v in r.items():
                    acc[name] += v
        return {
            "rows": [dict(day=d, key=k, model=m, **v)
                     for (d, k, m), v in sorted(self.rows.items())],
            "by_key": [dict(key=k, **v) for k, v in sorted(by_key.items())],
            "by_model": [dict(model=m, **v) for m, v in sorted(by_model.items())],
            "total": total, "unpriced": sorted(self.unpriced),
            "unconverted": {c: round(v, 10) for c, v in self.unconverted.items()}}


def summarize(entries: list[dict], prices: dict, pricing=None) -> dict:
    s = _Summary(prices, pricing)
    for e in entries:
        s.add_entry(e)
    return s.result()


async def gather(store, prices: dict, pricing, since: float | None, until: float | None,
                 now: float | None = None) -> dict:
    """The report for [since, until): whole UTC days from the day rollups (per key and
    model), and only the partial days at either end (and days older than the rollups
    keep) from the raw log, read by time."""
    now = time.time() if now is None else now
    end = until if until is not None else now + 1
    start = since if since is not None else 0.0
    # Day buckets are kept rollups.PERIODS["d"] days: older whole days come from the raw
    # log (what state.ledger_days still keeps of it).
    kept = (now // 86400 - R.PERIODS["d"][2] // 86400 + 1) * 86400
    first_full = max(-(-start // 86400) * 86400, kept)
    last_full = end // 86400 * 86400
    s = _Summary(prices, pricing)
    edges = [(start, end)]
    if first_full < last_full:
        days = list(range(int(first_full), int(last_full), 86400))
        for day0, bucket in zip(days, await store.rollup_read("d", "key_model", days)):
            day = time.strftime("%Y-%m-%d", time.gmtime(day0))
            for km, f in R.merge([bucket]).items():
                key, _, model = km.partition("\x1e")
                if f.get("n"):
                    s.add_rollup(day, key, model, f)
        edges = [(start, first_full), (last_full, end)]
    for lo, hi in edges:
        if lo < hi:
            for e in await store.ledger(lo, hi):
                s.add_entry(e)
    return s.result()


def _table(rows: list[dict], labels: list[str], with_cost: bool) -> list[str]:
    cols = labels + ["requests", "errors", *_TOKENS] + (["cost"] if with_cost else [])
    heads = [_HEAD.get(c, c) for c in cols]
    cells = [[f"{r[c]:.6f}" if c == "cost" else str(r[c]) for c in cols] for r in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(heads)]

    def line(values):
        return "  ".join(v.ljust(w) if i < len(labels) else v.rjust(w)
                         for i, (v, w) in enumerate(zip(values, widths))).rstrip()
    return [line(heads)] + [line(row) for row in cells]


def render(summary: dict, since: float | None, until: float | None, where: str,
           with_cost: bool) -> str:
    def stamp(t):
        return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t))
    span = f"since {stamp(since)}" if since is not None else "all recorded"
    if until is not None:
        span += f" until {stamp(until)}"
    out = [f"usage {span} ({where}); days are UTC"]
    if not summary["rows"]:
        out.append("no requests recorded")
        return "\n".join(out)
    out += ["", "per day, key and model"] + _table(summary["rows"], ["day", "key", "model"],
                                                    with_cost)
    out += ["", "per key"] + _table(summary["by_key"], ["key"], with_cost)
    out += ["", "per model"] + _table(summary["by_model"], ["model"], with_cost)
    out += ["", "total"] + _table([dict(summary["total"], all="all")], ["all"], with_cost)
    if with_cost and summary["unpriced"]:
        out.append(f"no price configured for: {', '.join(summary['unpriced'])} "
                   "(counted as 0 in cost)")
    if with_cost and summary.get("unconverted"):
        out.append("no billing.rates for: " + ", ".join(
            f"{c} ({v:.6f})" for c, v in summary["unconverted"].items())
            + " (left out of cost)")
    return "\n".join(out)


async def usage_command(gateway, since: str | None, until: str | None, as_json: bool,
                        out=print, err=print) -> int:
    cfg = gateway.config
    try:
        t0 = parse_time(since) if since else None
        t1 = parse_time(until) if until else None
    except ValueError as e:
        err(f"freeapi: usage: {e}")
        return 2
    if cfg.state.path == ":memory:" and not (cfg.state.redis_url or cfg.state.database_url):
        err("freeapi: usage: this config keeps state in memory (no --config, or "
            "state.path ':memory:'), so there is no ledger to read; give the config file "
            "the gateway runs with")
        return 2
    try:
        summary = await gather(gateway.store, cfg.prices, gateway.pricing, t0, t1)
    except StoreError as e:
        err(f"freeapi: usage: {e}")
        return 1
    finally:
        gateway.store.close()
    if as_json:
        out(json.dumps({"since": t0, "until": t1, "currency": cfg.billing.currency,
                        **summary}, indent=1))
    else:
        out(render(summary, t0, t1, gateway.store.describe(), True))
    return 0

