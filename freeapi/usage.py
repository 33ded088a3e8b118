"""`freeapi usage`: the ledger's totals per UTC day, gateway key and model, with cost when
the config has a `prices` table."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone

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


def summarize(entries: list[dict], prices: dict) -> dict:
    rows: dict[tuple, dict] = {}
    by_key: dict[str, dict] = {}
    by_model: dict[str, dict] = {}
    total = _blank()
    unpriced: set[str] = set()
    for e in entries:
        day = time.strftime("%Y-%m-%d", time.gmtime(e["ts"]))
        # Pass-through requests have no gateway key: the masked vendor key tells them apart.
        who = e.get("key") or e.get("vendor_key") or "-"
        model = e.get("model") or "-"
        price = price_of(e, prices) if prices else None
        spent = cost(e, price) if price is not None else 0.0
        if prices and price is None and (e.get("prompt_tokens") or e.get("completion_tokens")):
            unpriced.add(e.get("upstream_model") or model)
        failed = e.get("error") is not None or (e.get("status") or 0) >= 400
        for acc in (rows.setdefault((day, who, model), _blank()),
                    by_key.setdefault(who, _blank()), by_model.setdefault(model, _blank()),
                    total):
            acc["requests"] += 1
            acc["errors"] += failed
            for t in _TOKENS:
                acc[t] += e.get(t) or 0
            acc["cost"] += spent
    return {
        "rows": [dict(day=d, key=k, model=m, **v) for (d, k, m), v in sorted(rows.items())],
        "by_key": [dict(key=k, **v) for k, v in sorted(by_key.items())],
        "by_model": [dict(model=m, **v) for m, v in sorted(by_model.items())],
        "total": total,
        "unpriced": sorted(unpriced),
    }


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
        entries = await gateway.store.ledger(t0, t1)
    except StoreError as e:
        err(f"freeapi: usage: {e}")
        return 1
    finally:
        gateway.store.close()
    summary = summarize(entries, cfg.prices)
    if as_json:
        out(json.dumps({"since": t0, "until": t1, **summary}, indent=1))
    else:
        out(render(summary, t0, t1, gateway.store.describe(), bool(cfg.prices)))
    return 0

