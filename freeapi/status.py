"""The data behind the status page (GET /v1/status): key health as this process sees it now,
and traffic per model, per gateway key and recent requests from the usage ledger.

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
from freeapi.ledger import tokens_spent
from freeapi.store import StoreError

CACHE_S = 5.0
WINDOWS = (("hour", 3600), ("day", 86400))
SLOT_S = 900  # the day chart's bars: 15 minutes each
RECENT = 50
TOKEN_FIELDS = (("input", "prompt_tokens"), ("output", "completion_tokens"),
                ("cached", "cached_tokens"), ("reasoning", "reasoning_tokens"))
_RECENT_FIELDS = ("ts", "request_id", "endpoint", "key", "vendor_key", "provider", "model",
                  "upstream_model", "status", "error", "stream", "latency_ms", "ttfb_ms",
                  "prompt_tokens", "completion_tokens", "reasoning_tokens")


def error_class(e: dict) -> str | None:
    """None for a success; otherwise what kind of failure, for the errors-by-class
    columns."""
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


def percentile(sorted_values: list, p: float):
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(p * len(sorted_values)))]


def _model_stats(entries: list[dict]) -> dict:
    out: dict[str, dict] = {}
    lat: dict[str, list] = {}
    ttft: dict[str, list] = {}
    for e in entries:
        model = e.get("model") or "-"
        m = out.get(model)
        if m is None:
            m = out[model] = {"model": model, "requests": 0, "errors": {},
                              "tokens": dict.fromkeys((t for t, _ in TOKEN_FIELDS), 0)}
            lat[model], ttft[model] = [], []
        m["requests"] += 1
        cls = error_class(e)
        if cls is not None:
            m["errors"][cls] = m["errors"].get(cls, 0) + 1
        if e.get("latency_ms") is not None:
            lat[model].append(e["latency_ms"])
        if e.get("stream") and e.get("ttfb_ms") is not None:
            ttft[model].append(e["ttfb_ms"])
        for name, field in TOKEN_FIELDS:
            m["tokens"][name] += e.get(field) or 0
    for model, m in out.items():
        la, tt = sorted(lat[model]), sorted(ttft[model])
        m["latency_ms"] = {"p50": percentile(la, 0.5), "p95": percentile(la, 0.95)}
        m["ttft_ms"] = {"p50": percentile(tt, 0.5), "p95": percentile(tt, 0.95)}
    return out


def _month_start(now: float) -> float:
    t = time.gmtime(now)
    return calendar.timegm((t.tm_year, t.tm_mon, 1, 0, 0, 0))


def _day_start(now: float) -> float:
    return now - now % 86400


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

    async def _read_ledger(self, now: float) -> dict:
        cfg = self.gateway.config
        since = now - 86400
        if any(k.monthly_tokens for k in cfg.gateway_keys):
            since = min(since, _month_start(now))
        try:
            entries = await self.gateway.store.ledger(since=since)
        except StoreError as e:
            return {"error": f"the usage ledger cannot be read: {e}"}
        day = [e for e in entries if e["ts"] >= now - 86400]
        out = {"models": {}, "slots": [], "gateway_keys": self._key_usage(entries, now),
               "recent": [{f: e.get(f) for f in _RECENT_FIELDS}
                          for e in reversed(day[-RECENT:])]}
        for window, seconds in WINDOWS:
            stats = _model_stats([e for e in day if e["ts"] >= now - seconds])
            out["models"][window] = sorted(stats.values(), key=lambda m: -m["requests"])
        first = int(now // SLOT_S) * SLOT_S - (86400 // SLOT_S - 1) * SLOT_S
        slots = [{"start": first + i * SLOT_S, "ok": 0, "errors": 0}
                 for i in range(86400 // SLOT_S)]
        for e in day:
            i = int((e["ts"] - first) // SLOT_S)
            if 0 <= i < len(slots):
                slots[i]["errors" if error_class(e) else "ok"] += 1
        out["slots"] = slots
        self._ledger, self._ledger_at = out, time.time()
        return out

    def _key_usage(self, entries: list[dict], now: float) -> list[dict]:
        day0, month0 = _day_start(now), _month_start(now)
        rows = []
        for k in self.gateway.config.gateway_keys:
            used = {"rpm": 0, "tpm": 0, "daily_tokens": 0, "monthly_tokens": 0}
            for e in entries:
                if e.get("key") != k.name:
                    continue
                spent = tokens_spent(e)
                if e["ts"] >= now - 60:
                    used["rpm"] += 1
                    used["tpm"] += spent
                if e["ts"] >= day0:
                    used["daily_tokens"] += spent
                if e["ts"] >= month0:
                    used["monthly_tokens"] += spent
            rows.append({"name": k.name, "role": k.role, "models": k.models,
                         "limits": {n: getattr(k, n) for n in used},
                         "used": used})
        return rows

    async def snapshot(self) -> dict:
        gw = self.gateway
        traffic = await self._traffic()
        return {"version": __version__, "pid": os.getpid(), "workers": gw.workers,
                "started_at": self.started, "uptime_s": round(time.time() - self.started),
                "now": time.time(), "state": gw.store.describe(),
                "draining": gw.draining, "keys": self.keys(), **traffic}
