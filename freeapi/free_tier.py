"""What a provider declares about its vendor's official free tier: which models cost
nothing (or nothing within a quota), and which refusals mean that free quota is used up
and when it comes back. Pure data and arithmetic: providers import it, and the `free`
model (freeapi/free.py) routes with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

# How a used-up free quota comes back.
#: the vendor's own reset moment (its Retry-After, or the time its message names), else
#: the next midnight in the vendor's time zone (a daily cap)
DAILY = "daily"
#: granted once and never renewed (Qwen's new-user quota): the gateway asks again only
#: after `free.quota_recheck` seconds
GRANT = "grant"
#: free of charge, only rate-limited: nothing to use up (a refusal is a rate limit, which
#: the key pool's cooldown handles)
RATE = "rate"

#: Needs the operator's word that calls cannot be billed: Qwen's "Free Quota Only" mode,
#: declared with `providers.NAME.free_quota_only` (freeapi/free.py).
FREE_QUOTA_ONLY = "free_quota_only"


@dataclass(frozen=True)
class FreeOffer:
    """One model the vendor serves free of charge, or free within a quota.

    `rank`: its place in the built-in order of the `free` models (lower first; the config
    `free.models` replaces the order). `quota`: DAILY, GRANT or RATE. `needs`: None (free
    for everyone) or FREE_QUOTA_ONLY. `source` and `read`: the vendor's page that says so
    and the day it was read."""
    model: str
    rank: int
    quota: str
    source: str
    read: str = "2026-12-06"
    needs: str | None = None
    note: str = ""


#: Vendors whose API states times in Beijing time (GLM, Spark): a daily cap resets at
#: their midnight, 16:00 UTC.
BEIJING = timezone(timedelta(hours=8))


def next_midnight(now: float, tz: timezone = BEIJING) -> float:
    """The unix time of the next midnight in `tz` after `now`."""
    local = datetime.fromtimestamp(now, tz)
    tomorrow = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0,
                                                   microsecond=0)
    return tomorrow.timestamp()


def reset_at(rule: str, now: float, retry_after: float | None, recheck: float) -> float:
    """When a free quota refused under `rule` may be asked again (unix time)."""
    if retry_after is not None and retry_after > 0 and rule != GRANT:
        return now + retry_after
    if rule == DAILY:
        return next_midnight(now)
    return now + recheck
