"""The data behind the status page (GET /v1/status): key health as this process sees it now,
and traffic per model, per gateway key and recent requests from the usage ledger's
rollups (freeapi/rollups.py: a fixed number of aggregates, however long the log) and one
page of its newest entries. "hour" is the last four 15-minute buckets, "day" the last 24
hour buckets (so up to 15 minutes / 1 hour more than the name says).

The ledger is shared by every worker and gateway on one store, so its figures cover them
all; key health is this process's view (cooldowns and verdicts are shared through the
store within state.sync_interval; in-flight counts and queues are per process). Ledger
figures are computed at most once per CACHE_S however many pages are open.
"""

from __future__ import annotations

import asyncio
import calendar
import os
import time

from freeapi import __version__
from freeapi import rollups as R
from freeapi.store import StoreError

CACHE_S = 5.0
RECENT = 50
TOKEN_FIELDS = (("input", "pt"), ("output", "ot"), ("cached", "ct"), ("reasoning", "rt"))
_RECENT_FIELDS = ("ts", "request_id", "endpoint", "key", "vendor_key", "provider", "model",
                  "upstream_model", "status", "error", "stream", "latency_ms", "ttfb_ms",
                  "prompt_tokens", "completion_tokens", "reasoning_tokens", "cached_tokens",
                  "cost", "currency", "unpriced", "team")


def _month_start(now: float) -> float:
    t = time.gmtime(now)
    return calendar.timegm((t.tm_year, t.tm_mon, 1, 0, 0, 0))


def _day_start(now: float) -> float:
    return now - now % 86400


def model_stats(merged: dict, spend) -> list[dict]:
    """Per-model figures from rolled-up fields (freeapi/rollups.py), busiest first."""
    out = []
    for model, f in merged.items():
        if not f.get("n"):
            continue
        out.append({"model": model, "requests": int(f["n"]),
                    "errors": {k[2:]: int(v) for k, v in f.items()
                               if k.startswith("e.") and v},
                    "tokens": {name: int(f.get(field, 0)) for name, field in TOKEN_FIELDS},
                    "latency_ms": {"p50": R.percentile(f, "lh.", 0.5),
                                   "p95": R.percentile(f, "lh.", 0.95)},
                    "ttft_ms": {"p50": R.percentile(f, "th.", 0.5),
                                "p95": R.percentile(f, "th.", 0.95)},
                    "spend": spend(f)})
    return sorted(out, key=lambda m: (-m["requests"], m["model"]))


class StatusBoard:
    def __init__(self, gateway):
        self.gateway = gateway
        self.started = time.time()
        self._ledger_at = 0.0
        self._ledger: dict | None = None
        self._pending: asyncio.Future | None = None

    # -- live, from this process ---------------------------------------------------------

    def keys(self) -> list[dict]:
        gw, now = self.gateway, time.time()
        rows = []
        for name, provider in gw.providers.items():
            pool = gw.pools.get(name)
            if pool is None or not provider.api_keys:
                continue
            queue = pool.waiting
            for key, row in zip(provider.api_keys, pool.status(provider.api_keys)):
                at = pool.probe_at.get(key)
                rows.append(dict(row, provider=name, max_concurrency=pool.max_concurrency,
                                 queue=queue, next_check_in=round(max(0.0, at - now), 1)
                                 if at is not None else None))
        return rows

    # -- from the ledger -------------------------------------------------------------------

    async def _traffic(self) -> dict:
        now = time.time()
        if self._ledger is not None and now - self._ledger_at < CACHE_S:
            return self._ledger
        if self._pending is None:  # one ledger read, whoever else is waiting for it
            self._pending = asyncio.ensure_future(self._read_ledger(now))
            self._pending.add_done_callback(lambda _: setattr(self, "_pending", None))
        return await asyncio.shield(self._pending)

    def spend(self, fields: dict) -> dict:
        """What rolled-up fields cost: per currency, in billing.currency, and how many
        requests were unpriced."""
        costs = R.costs(fields)
        return {"costs": {c: round(v, 10) for c, v in costs.items()},
                "total": self.gateway.pricing.total(costs), "unpriced": int(fields.get("up", 0))}

    async def _merged(self, period: str, dim: str, n: int, now: float) -> dict:
        return R.merge([await self.gateway.store.rollup_sum(period, dim,
                                                            R.last(period, n, now))])

    async def key_spend(self, now: float | None = None) -> dict[str, dict]:
        """{key id: {"today": ..., "month": ...}} (requests, tokens, spend) from the day
        rollups: at most 31 buckets, whatever the traffic."""
        now = time.time() if now is None else now
        day0, month0 = _day_start(now), _month_start(now)
        store = self.gateway.store
        month = R.merge([await store.rollup_sum("d", "key", R.starts("d", month0, now + 1))])
        today = R.merge([await store.rollup_sum("d", "key", R.last("d", 1, now))])
        out = {}
        for key, f in month.items():
            t = today.get(key, {}) if day0 >= month0 else {}
            out[key] = {"today": self.usage_of(t), "month": self.usage_of(f)}
        return out

    def usage_of(self, f: dict) -> dict:
        return {"requests": int(f.get("n", 0)), "tokens": int(f.get("tt", 0)),
                "spend": self.spend(f)}

    async def _read_ledger(self, now: float) -> dict:
        store = self.gateway.store
        try:
            hour = await self._merged("q", "model", 4, now)
            day = await self._merged("h", "model", 24, now)
            first = R.last("q", 96, now)
            slots = await store.rollup_read("q", "all", first)
            minute = await self._merged("m", "key", 1, now)
            spend = await self.key_spend(now)
            recent, _ = await store.ledger_page(since=now - 86400, limit=RECENT)
        except StoreError as e:
            return {"error": f"the usage ledger cannot be read: {e}"}
        out = {"models": {"hour": model_stats(hour, self.spend),
                          "day": model_stats(day, self.spend)},
               "slots": [{"start": s, "ok": int(b.get("\x1fn", 0) - b.get("\x1ferr", 0)),
                          "errors": int(b.get("\x1ferr", 0))} for s, b in zip(first, slots)],
               "gateway_keys": self._key_usage(minute, spend),
               "billing_currency": self.gateway.config.billing.currency,
               "recent": [{f: e.get(f) for f in _RECENT_FIELDS} for e in recent]}
        self._ledger, self._ledger_at = out, time.time()
        return out

    def _key_usage(self, minute: dict, spend: dict) -> list[dict]:
        rows = []
        for k in self.gateway.config.gateway_keys:
            kid = f"config:{k.name}"
            m, s = minute.get(kid, {}), spend.get(kid, {})
            today, month = s.get("today", {}), s.get("month", {})
            used = {"rpm": int(m.get("n", 0)), "tpm": int(m.get("tt", 0)),
                    "daily_tokens": today.get("tokens", 0),
                    "monthly_tokens": month.get("tokens", 0)}
            rows.append({"name": k.name, "role": k.role, "models": k.models,
                         "limits": {n: getattr(k, n) for n in used}, "used": used,
                         "spend": {"today": today.get("spend"),
                                   "month": month.get("spend")}})
        return rows

    async def snapshot(self) -> dict:
        gw = self.gateway
        traffic = await self._traffic()
        return {"version": __version__, "pid": os.getpid(), "workers": gw.workers,
                "started_at": self.started, "uptime_s": round(time.time() - self.started),
                "now": time.time(), "state": gw.store.describe(),
                "draining": gw.draining, "keys": self.keys(), **traffic}
