"""What a request cost: the price row that applies (config.yaml `prices:` first, then the
built-in table of freeapi/prices_builtin.py), at the time it was served, applied to the
vendor's own usage, and exchange into the operator's `billing.currency`.

Cost = uncached input × input + cache hits × cached (the input price when the vendor has
none) + output × output, per million tokens; plus images × image, characters ×
character, seconds × second. Cache hits are capped at the prompt: input after a cache hit
is never negative. Reasoning tokens are part of the vendor's completion count and are
billed as output (every built-in vendor that says how bills them so).
"""

from __future__ import annotations

import time

from freeapi.prices_builtin import BUILTIN

TOKEN_PARTS = ("input", "cached", "output")
UNIT_PARTS = ("image", "character", "second")


def is_peak(peak: dict | None, at: float) -> bool:
    """Whether unix time `at` falls in a row's peak hours ({tz_offset_h, weekdays,
    hours: ((start, end), ...)} in that zone's local time)."""
    if not peak:
        return False
    # Plain arithmetic on the zone's local seconds, not a datetime per request: day 0 of
    # the epoch (1970-01-01) was a Thursday, weekday() 3.
    local = at + peak["tz_offset_h"] * 3600
    if (int(local // 86400) + 3) % 7 not in peak["weekdays"]:
        return False
    hour = int(local % 86400 // 3600)
    return any(lo <= hour < hi for lo, hi in peak["hours"])


def rates_at(row: dict, at: float) -> dict:
    """The row's prices at `at`: its off-peak prices outside its peak hours (a budget's
    estimate; Pricing.charge keeps the merged row per model instead)."""
    if row.get("off_peak") and row.get("peak") and not is_peak(row["peak"], at):
        return {**row, **row["off_peak"]}
    return row


def cost_of(rates: dict, counts: dict, units: dict | None = None) -> float:
    prompt = counts.get("prompt_tokens") or 0
    cached = min(counts.get("cached_tokens") or 0, prompt)
    cached_price = rates.get("cached")
    if cached_price is None:
        cached_price = rates.get("input") or 0.0
    total = ((prompt - cached) * (rates.get("input") or 0.0) + cached * cached_price
             + (counts.get("completion_tokens") or 0) * (rates.get("output") or 0.0)) / 1e6
    for part in UNIT_PARTS:
        n = (units or {}).get(part)
        if n and rates.get(part):
            total += n * rates[part]
    return total


def units_of(usage) -> dict:
    """Non-token units a usage object reports: images made, speech characters, audio
    seconds (the gateway sets these for the modalities that have them)."""
    if not isinstance(usage, dict):
        return {}
    out = {}
    for part, field in (("image", "images"), ("character", "characters"),
                        ("second", "seconds")):
        v = usage.get(field)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
            out[part] = v
    return out


class Pricing:
    """Built per config (rebuilt on reload). `clock` is injectable for tests."""

    def __init__(self, prices: dict, billing, provider_types: dict[str, str],
                 clock=time.time):
        self.billing = billing
        self.clock = clock
        self.types = provider_types  # provider name -> plugin type
        self.builtin = BUILTIN
        self.rows: dict[str, dict] = {}  # config.yaml's, which win over the built-in ones
        # (provider, upstream, model) -> (row, its off-peak rates or None): looked up once
        # per name, not per request (bounded: the model name is the client's).
        self._charged: dict[tuple, tuple] = {}
        for name, p in prices.items():
            row = {part: getattr(p, part) for part in TOKEN_PARTS + UNIT_PARTS}
            row.update(currency=p.currency or billing.currency, source="config",
                       verified=True, note=None, off_peak=None, peak=None)
            self.rows[name] = row

    def row_for(self, provider: str | None, upstream: str | None, model: str | None):
        """Config rows by `provider/upstream`, `upstream`, then the client's model name;
        then the built-in row of the provider's type."""
        for name in (f"{provider}/{upstream}", upstream, model):
            if name and name in self.rows:
                return self.rows[name]
        return self.builtin.get(f"{self.types.get(provider or '', provider)}/{upstream}")

    def charge(self, entry: dict, usage=None) -> dict:
        """{cost, currency, unpriced} for a ledger entry (its token counts) and the raw
        usage object (for images / characters / seconds)."""
        names = (entry.get("provider"), entry.get("upstream_model"), entry.get("model"))
        known = self._charged.get(names)
        if known is None:
            row = self.row_for(*names)
            off = {**row, **row["off_peak"]} if row and row.get("off_peak") \
                and row.get("peak") else None
            known = (row, off)
            if len(self._charged) < 4096:
                self._charged[names] = known
        row, off = known
        if row is None:
            return {"cost": None, "currency": None, "unpriced": True}
        rates = off if off is not None and not is_peak(row["peak"], self.clock()) else row
        units = units_of(usage)
        per_unit = [p for p in UNIT_PARTS if rates.get(p)]
        if per_unit and not any(p in units for p in per_unit) \
                and not any(rates.get(p) for p in TOKEN_PARTS):
            # Priced per second (say) and no seconds known (an mp3 to a vendor that does
            # not say its length): unpriced, not free.
            return {"cost": None, "currency": None, "unpriced": True}
        return {"cost": round(cost_of(rates, entry, units), 10),
                "currency": row["currency"], "unpriced": False}

    def convert(self, amount: float, currency: str) -> float | None:
        """`amount` in billing.currency; None when no rate is configured for `currency`."""
        if currency == self.billing.currency:
            return amount
        rate = self.billing.rates.get(currency)
        return None if rate is None else amount * rate

    def total(self, costs: dict[str, float]) -> dict:
        """{currency: amount} summed into billing.currency: {"amount", "currency",
        "unconverted": {currency: amount}} (those without an exchange rate)."""
        amount, left = 0.0, {}
        for cur, v in costs.items():
            got = self.convert(v, cur)
            if got is None:
                left[cur] = round(v, 10)
            else:
                amount += got
        return {"amount": round(amount, 10), "currency": self.billing.currency,
                "unconverted": left}
